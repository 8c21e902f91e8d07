"""Unframed scenes: a face anywhere in a larger, textured field, at any size and roll, with its truth.

Each face arrives FFHQ-framed (a generated face, or a real photo re-framed by
``lsi_ros.evaluation.real_faces``); it is pasted into a field through a soft elliptical mask (hair and
neck in, the crop's square corners out) at a random position, face width (``FACE_WIDTHS`` of the field)
and roll (±``MAX_ROLL`` degrees). Since the crop is FFHQ-framed, the registration that pasted it is the
hand framing: :func:`lsi_ros.framing.field.framed_view` with it gives the face as the model expects it.
Backgrounds are 1/f coloured noise (the spectrum of natural images) with blurred-edged blocks (furniture,
doors), never flat; empty scenes are backgrounds alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from lsi_ros.framing.field import DEFAULT_FIELD, registration_from_quad, registration_quad
from lsi_ros.optics.dmd import GridRegistration

# The face's box (x0, y0, x1, y1) in an FFHQ-framed crop, in crop sides: the median box of face-api's 68
# landmarks (jaw to jaw, brows to chin) over held-out generated faces; the face width is its width.
FACE_BOX_IN_CROP = (0.21, 0.37, 0.80, 0.93)
FACE_WIDTH_IN_CROP = FACE_BOX_IN_CROP[2] - FACE_BOX_IN_CROP[0]
FACE_WIDTHS = (0.15, 0.60)
MAX_ROLL = 15.0


@dataclass
class UnframedScene:
    """A field image (rows, cols, 3) float32 in [0, 1]; for a scene with a face: its FFHQ-framed crop
    (R, R, 3) uint8, its box (x0, y0, x1, y1) in field pixels, the hand registration (the grid on the
    crop), face width (fraction of the field's width) and roll (degrees)."""

    name: str
    image: np.ndarray
    face: np.ndarray | None = None
    box: np.ndarray | None = None
    registration: GridRegistration | None = None
    face_width: float = 0.0
    roll: float = 0.0

    @property
    def has_face(self) -> bool:
        return self.face is not None


def background(field_shape=DEFAULT_FIELD, rng: np.random.Generator | None = None) -> np.ndarray:
    """A textured background (rows, cols, 3) float32 in [0, 1]: 1/f colour noise and a few blocks."""
    rng = rng or np.random.default_rng(0)
    rows, cols = field_shape
    small = max(64, min(rows, cols) // 4)  # drawn at a quarter of the field, then smoothly enlarged
    fy, fx = np.meshgrid(np.fft.fftfreq(small), np.fft.fftfreq(small), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / small) ** rng.uniform(1.0, 1.4)
    noise = np.stack(
        [np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((small, small)))).real for _ in range(3)], -1
    )
    noise = (noise - noise.mean()) / (noise.std() + 1e-9)
    tint = rng.uniform(0.25, 0.7, 3)
    image = np.clip(tint + 0.12 * noise * rng.uniform(0.6, 1.4), 0, 1).astype(np.float32)
    for _ in range(rng.integers(2, 6)):
        y0, x0 = rng.integers(0, small, 2)
        h, w = rng.integers(small // 8, small // 2, 2)
        block = np.zeros((small, small), np.float32)
        block[y0 : y0 + h, x0 : x0 + w] = 1.0
        block = cv2.GaussianBlur(block, (0, 0), rng.uniform(0.5, 3.0))[..., None]
        image = image * (1 - block) + block * np.clip(rng.uniform(0.05, 0.95, 3) + 0.05 * noise, 0, 1)
    return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_CUBIC).clip(0, 1).astype(np.float32)


def face_mask(size: int) -> np.ndarray:
    """Soft ellipse over the face, hair and neck of an FFHQ crop (size, size) in [0, 1]."""
    y, x = (np.mgrid[:size, :size] + 0.5) / size
    inside = ((x - 0.5) / 0.42) ** 2 + ((y - 0.52) / 0.48) ** 2 <= 1.0
    return cv2.GaussianBlur(inside.astype(np.float32), (0, 0), size * 0.04)


def face_registration(
    centre_xy, face_width: float, roll: float, field_shape=DEFAULT_FIELD, resolution: int = 256
) -> GridRegistration:
    """The hand registration of a face whose box centre is at ``centre_xy`` (field pixels), ``face_width``
    of the field's width wide, turned by ``roll`` degrees."""
    side = face_width * field_shape[1] / FACE_WIDTH_IN_CROP
    x0, y0, x1, y1 = FACE_BOX_IN_CROP
    # The crop's centre relative to the box centre, in crop sides, turned with the face.
    offset = np.array([0.5 - (x0 + x1) / 2, 0.5 - (y0 + y1) / 2]) * side
    angle = np.radians(roll)
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])  # (x, y), y down
    centre = np.asarray(centre_xy, dtype=np.float64) + turn @ offset
    corners = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]]) * side / 2  # TL, BL, BR, TR (x, y)
    return registration_from_quad(centre + corners @ turn.T, field_shape, resolution)


def render(
    face: np.ndarray,
    registration: GridRegistration,
    backdrop: np.ndarray,
) -> np.ndarray:
    """The FFHQ-framed face (R, R, 3) uint8 pasted into ``backdrop`` where ``registration`` puts the grid."""
    size = face.shape[0]
    rows, cols = backdrop.shape[:2]
    quad = registration_quad(registration, (rows, cols), size)
    source = np.float32([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    matrix = cv2.getAffineTransform(source, np.float32(quad[:3]))
    pasted = cv2.warpAffine(face.astype(np.float32) / 255.0, matrix, (cols, rows), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(face_mask(size), matrix, (cols, rows), flags=cv2.INTER_LINEAR)[..., None]
    return (backdrop * (1 - alpha) + pasted * alpha).astype(np.float32)


def face_box(registration: GridRegistration, field_shape=DEFAULT_FIELD, resolution: int = 256) -> np.ndarray:
    """The axis-aligned box (x0, y0, x1, y1) round the turned face box of a registered FFHQ crop."""
    quad = registration_quad(registration, field_shape, resolution)
    x0, y0, x1, y1 = FACE_BOX_IN_CROP
    corners = np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]])
    # Crop fractions (x, y) -> field points, from the quad's top-left corner and its two edges.
    points = quad[0] + corners[:, :1] * (quad[3] - quad[0]) + corners[:, 1:] * (quad[1] - quad[0])
    return np.concatenate([points.min(0), points.max(0)])


def unframed_scene(
    name: str,
    face: np.ndarray | None,
    rng: np.random.Generator,
    field_shape=DEFAULT_FIELD,
    widths=FACE_WIDTHS,
    max_roll: float = MAX_ROLL,
) -> UnframedScene:
    """One scene: ``face`` (FFHQ-framed, uint8) at a random width, roll and place on a fresh
    background, the whole face box inside the field; ``face=None`` gives an empty scene."""
    backdrop = background(field_shape, rng)
    if face is None:
        return UnframedScene(name, backdrop)
    rows, cols = field_shape
    width, roll = rng.uniform(*widths), rng.uniform(-max_roll, max_roll)
    registration = face_registration((0, 0), width, roll, field_shape, face.shape[0])
    box = face_box(registration, field_shape, face.shape[0])
    # Move the face so its whole box lies in the field, anywhere.
    low, high = -box[:2], np.array([cols, rows]) - box[2:]
    move_xy = rng.uniform(low, np.maximum(high, low))
    registration = GridRegistration(
        (registration.shift[0] + move_xy[1] / _block(field_shape, face.shape[0]),
         registration.shift[1] + move_xy[0] / _block(field_shape, face.shape[0])),
        registration.scale,
        registration.roll,
    )  # fmt: skip
    return UnframedScene(
        name,
        render(face, registration, backdrop),
        face,
        face_box(registration, field_shape, face.shape[0]),
        registration,
        float(width),
        float(roll),
    )


def _block(field_shape, resolution: int) -> int:
    return min(field_shape[0], field_shape[1]) // resolution


def unframed_scenes(faces, count: int, empty: int, seed: int = 0, field_shape=DEFAULT_FIELD, names=None):
    """``count`` scenes with the faces (N, R, R, 3) uint8 in turn, then ``empty`` scenes without, made
    one at a time as they are taken (a 1024² field is 12 MB: hundreds of them do not fit at once)."""
    rng = np.random.default_rng(seed)
    names = names or [f"face {i}" for i in range(len(faces))]
    for i in range(count):
        yield unframed_scene(names[i % len(faces)], faces[i % len(faces)], rng, field_shape)
    for i in range(empty):
        yield unframed_scene(f"empty {i}", None, rng, field_shape)


def walking_sequence(
    face: np.ndarray,
    frames: int = 240,
    field_shape=DEFAULT_FIELD,
    widths=(0.15, 0.45),
    seed: int = 0,
):
    """A person walking across the field (left to right) and towards the camera (the face growing from
    ``widths[0]`` to ``widths[1]``), head bobbing and rolling a little: ``frames`` scenes, one background."""
    rng = np.random.default_rng(seed)
    backdrop = background(field_shape, rng)
    rows, cols = field_shape
    for t in np.linspace(0.0, 1.0, frames):
        width = widths[0] + (widths[1] - widths[0]) * t
        centre = (cols * (0.2 + 0.6 * t), rows * (0.45 + 0.02 * np.sin(2 * np.pi * 4 * t)))
        roll = 6.0 * np.sin(2 * np.pi * 2 * t)
        registration = face_registration(centre, width, roll, field_shape, face.shape[0])
        yield UnframedScene(
            f"walk {t:.3f}",
            render(face, registration, backdrop),
            face,
            face_box(registration, field_shape, face.shape[0]),
            registration,
            float(width),
            float(roll),
        )


def generated_faces(generator, first_seed: int, count: int) -> np.ndarray:
    """Faces (N, R, R, 3) uint8 of ``count`` seeds from ``first_seed`` (psi as in training)."""
    from lsi_ros.training import data

    parts = []
    for start in tqdm(range(0, count, 8), desc="generating faces", unit="batch"):
        seeds = list(range(first_seed + start, first_seed + min(start + 8, count)))
        latents = generator.sample_latents(seeds, truncation_psi=data.DEFAULT_PSI)
        parts.append(np.rint(generator.synthesize(latents) * 255).astype(np.uint8))
    return np.concatenate(parts)
