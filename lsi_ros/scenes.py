"""Scene sources for simulation and demos: image folders, videos, held-out faces, offline portraits.

Each source yields (name, RGB uint8 image (H, W, 3)) forever or once; ROS-free, so the same scenes
feed the nodes (scene_source) and offline evaluation.
"""

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class SceneSourceError(ValueError):
    """A scene source that cannot deliver images (missing folder, unreadable video, no images)."""


def folder_scenes(folder) -> Iterator[tuple[str, np.ndarray]]:
    """Every readable image in a folder, sorted by name; unreadable files are skipped by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SceneSourceError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SceneSourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            yield path.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def video_scenes(path) -> Iterator[tuple[str, np.ndarray]]:
    """The frames of a video file, in order."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SceneSourceError(f"cannot open video: {path}")
    index = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield f"{Path(path).name}#{index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def face_scenes(generator_name: str = "mobilestylegan", first_seed: int | None = None, truncation_psi=None):
    """Generated faces from the held-out seed range (never seen in training), one per seed."""
    from lsi_ros.models.generators import get_generator
    from lsi_ros.training import data

    generator = get_generator(generator_name)
    seed = data.HELD_OUT_SEED_START if first_seed is None else first_seed
    psi = data.DEFAULT_PSI if truncation_psi is None else truncation_psi
    while True:
        w = generator.sample_latents([seed], truncation_psi=psi)
        yield f"seed {seed}", np.rint(generator.synthesize(w)[0] * 255).astype(np.uint8)
        seed += 1


def portrait_scenes() -> Iterator[tuple[str, np.ndarray]]:
    """Real portraits that ship with scikit-image and matplotlib (qualitative checks only)."""
    from matplotlib.cbook import get_sample_data
    from skimage import data

    yield "astronaut", data.astronaut()
    with get_sample_data("grace_hopper.jpg") as f:
        bgr = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    yield "grace_hopper", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# Square face boxes (top, left, side) in the portraits, framed roughly like FFHQ's aligned faces.
PORTRAIT_FACE_BOXES = {"astronaut": (20, 130, 220), "grace_hopper": (90, 110, 310)}


def portrait_faces() -> Iterator[tuple[str, np.ndarray]]:
    """The portraits cropped to their faces: real, out-of-distribution inputs for qualitative checks."""
    for name, rgb in portrait_scenes():
        top, left, side = PORTRAIT_FACE_BOXES[name]
        yield name, rgb[top : top + side, left : left + side]


def demo_scenes(
    generator_name: str = "mobilestylegan", portrait_every: int = 6
) -> Iterator[tuple[str, np.ndarray]]:
    """Held-out faces with a real portrait face (out of distribution) after every few of them."""
    portraits = list(portrait_faces())
    for index, face in enumerate(face_scenes(generator_name)):
        yield face
        if index % portrait_every == portrait_every - 1:
            yield portraits[(index // portrait_every) % len(portraits)]


def offline_faces(lfw_faces: int = 2) -> Iterator[tuple[str, np.ndarray]]:
    """Every real face photo that ships offline: the two portrait face crops, then the first
    ``lfw_faces`` of scikit-image's LFW subset (25x25 grayscale crops, replicated to RGB; tiny)."""
    from skimage import data

    yield from portrait_faces()
    for index, gray in enumerate(data.lfw_subset()[:lfw_faces]):
        yield f"lfw_{index:03d}", np.repeat(np.rint(gray * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def unframed_face_scenes(
    generator_name: str = "mobilestylegan",
    first_seed: int | None = None,
    field_size: int = 1024,
    seed: int = 0,
) -> Iterator[tuple[str, np.ndarray]]:
    """Held-out faces anywhere in a larger textured field, at any size and roll, every fifth field
    empty (lsi_ros.framing.unframed): what a robot's camera sees."""
    from lsi_ros.framing.unframed import unframed_scene

    rng = np.random.default_rng(seed)
    for index, (name, face) in enumerate(face_scenes(generator_name, first_seed)):
        scene = unframed_scene(name, None if index % 5 == 4 else face, rng, (field_size, field_size))
        yield f"unframed {scene.name}", np.rint(scene.image * 255).astype(np.uint8)


def walking_scenes(
    generator_name: str = "mobilestylegan",
    first_seed: int | None = None,
    field_size: int = 1024,
    frames: int = 60,
) -> Iterator[tuple[str, np.ndarray]]:
    """One held-out person walking across the field and towards the camera, in ``frames`` scenes
    (lsi_ros.framing.unframed.walking_sequence)."""
    from lsi_ros.framing.unframed import walking_sequence

    name, face = next(face_scenes(generator_name, first_seed))
    for scene in walking_sequence(face, frames, (field_size, field_size)):
        yield f"{name} {scene.name}", np.rint(scene.image * 255).astype(np.uint8)
