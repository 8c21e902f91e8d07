"""A small face finder for the camera's coarse images: where is the face, how wide, is there one.

face-api's tiny face detector, trained on sharp colour photos, scores the blurred grayscale images a
few hundred Walsh-Hadamard patterns give at 0.1–0.7 for clear faces, too close to empty scenes to
decide on. This net is trained on exactly those images (:func:`coarse_image`: unframed scenes measured
through ``measure_field`` with the locator's pattern set and photodiode noise, reconstructed by the
zero-filled inverse), so it needs no detector in the loop: a 64² image in, a 16² map out (CenterNet
style: face-centre heat, fitted by cross-entropy to a Gaussian round the centre; the centre's offset in
its cell; the log face width), a few tens of thousands of weights.
The zoomed image is checked by the same net, a second look that keeps empty scenes empty.

Training (``lsi eval --scenes unframed --train-finder``) uses faces of training seeds only; the weights
ship as ``models/face-finder.safetensors`` (format ``lsi_ros.face_finder``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional
from tqdm import tqdm

from lsi_ros.framing.correction import FramingCorrection
from lsi_ros.models.files import read_safetensors, write_safetensors

FILE_FORMAT = "lsi_ros.face_finder"
INPUT = 64
STRIDE = 4


class FaceFinderError(ValueError):
    """A face-finder file that is missing, unreadable or not a face finder."""


class FaceFinderNet(nn.Module):
    """64² grayscale -> (4, 16, 16): heat logit, x/y offset logits in the cell, log face width."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=4, dilation=4), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=8, dilation=8), nn.ReLU(),
            nn.Conv2d(2 * w, 4, 1),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images[:, None] if images.ndim == 3 else images
        mean = x.mean((2, 3), keepdim=True)
        std = x.std((2, 3), keepdim=True) + 0.02
        return self.body((x - mean) / std)


@dataclass
class FaceFinder:
    """The trained net and its metadata (training provenance, thresholds), and the locator's framing
    correction fitted with it (None: the locator frames by the FFHQ rule and its offset alone)."""

    net: FaceFinderNet
    info: dict
    framing_correction: FramingCorrection | None = None

    @torch.inference_mode()
    def find(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grayscale images (N, 64, 64) in [0, 1] -> each one's face box (N, 4) (x0, y0, x1, y1) in image
        pixels (a square of the face's width) and score (N,) in [0, 1]."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 3 or images.shape[1:] != (INPUT, INPUT):
            raise ValueError(f"the face finder reads (N, {INPUT}, {INPUT}) images, got {images.shape}")
        out = self.net(torch.from_numpy(images)).numpy()
        cells = out.shape[-1]
        heat = out[:, 0].reshape(len(out), -1)
        best = heat.argmax(1)
        rows, cols = np.divmod(best, cells)
        every = np.arange(len(out))
        x = (cols + 1 / (1 + np.exp(-out[every, 1, rows, cols]))) * STRIDE
        y = (rows + 1 / (1 + np.exp(-out[every, 2, rows, cols]))) * STRIDE
        half = np.exp(out[every, 3, rows, cols]) * INPUT / 2
        scores = 1 / (1 + np.exp(-heat[every, best]))
        return np.stack([x - half, y - half, x + half, y + half], 1), scores

    def save(self, path) -> Path:
        metadata = {"format": FILE_FORMAT, "info": json.dumps(self.info, sort_keys=True)}
        tensors = dict(self.net.state_dict())
        if self.framing_correction is not None:
            tensors |= {k: torch.from_numpy(v) for k, v in self.framing_correction.tensors().items()}
        return write_safetensors(tensors, path, metadata)


def load_face_finder(path) -> FaceFinder:
    metadata, tensors = read_safetensors(path, FILE_FORMAT, FaceFinderError, "face finder")
    info = json.loads(metadata["info"])
    net = FaceFinderNet(info["width"])
    extra = {k: tensors.pop(k).numpy() for k in list(tensors) if k.startswith("framing_correction.")}
    try:
        net.load_state_dict(tensors, strict=True)
        correction = FramingCorrection.from_tensors(extra)
    except (RuntimeError, ValueError) as error:
        raise FaceFinderError(f"{path}: weights do not fit the face finder ({error})") from error
    return FaceFinder(net.eval(), info, correction)


def _targets(boxes: list, cells: int) -> tuple[np.ndarray, ...]:
    """Per image: Gaussian heat (cells, cells), centre cell (row, col), offsets (2,), log width; boxes
    in image pixels or None."""
    heat = np.zeros((len(boxes), cells, cells), np.float32)
    centre = np.full((len(boxes), 2), -1, np.int64)
    regress = np.zeros((len(boxes), 3), np.float32)
    grid = np.arange(cells) + 0.5
    for i, box in enumerate(boxes):
        if box is None:
            continue
        cx, cy = (box[0] + box[2]) / 2 / STRIDE, (box[1] + box[3]) / 2 / STRIDE
        width = (box[2] - box[0]) / INPUT
        sigma = max(0.6, 0.15 * width * cells)
        heat[i] = np.exp(-((grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2) / (2 * sigma**2))
        row, col = min(int(cy), cells - 1), min(int(cx), cells - 1)
        heat[i, row, col] = 1.0  # the centre's cell is the one positive
        centre[i] = row, col
        regress[i] = np.clip(cx - col, 0.01, 0.99), np.clip(cy - row, 0.01, 0.99), np.log(width)
    return heat, centre, regress


def train_face_finder(
    images: np.ndarray, boxes: list, epochs: int = 12, batch: int = 64, seed: int = 0, width: int = 16
) -> FaceFinderNet:
    """Fit the net to coarse images (N, 64, 64) and their face boxes (image pixels; None = no face)."""
    torch.manual_seed(seed)
    net = FaceFinderNet(width)
    heat, centre, regress = (torch.from_numpy(a) for a in _targets(boxes, INPUT // STRIDE))
    x = torch.from_numpy(np.asarray(images, np.float32))
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    with tqdm(total=steps, desc="training the face finder", unit="step") as bar:
        for _ in range(epochs):
            for index in torch.randperm(len(x), generator=generator).split(batch):
                flip = torch.rand(()) < 0.5
                xb, hb, cb, rb = x[index], heat[index], centre[index].clone(), regress[index].clone()
                if flip:  # a mirrored scene is a scene: the x offset and the column mirror too
                    xb, hb = xb.flip(-1), hb.flip(-1)
                    has = cb[:, 1] >= 0
                    cx = (cb[:, 1] + rb[:, 0])[has]
                    cx = hb.shape[-1] - cx
                    cb[has, 1] = cx.floor().long().clamp(max=hb.shape[-1] - 1)
                    rb[has, 0] = (cx - cb[has, 1]).clamp(0.01, 0.99)
                out = net(xb)
                loss = _heat_loss(out[:, 0], hb)
                has = cb[:, 0] >= 0
                if has.any():
                    k = torch.nonzero(has)[:, 0]
                    at = out[k, 1:, cb[k, 0], cb[k, 1]]
                    loss = loss + functional.binary_cross_entropy_with_logits(at[:, :2], rb[k, :2])
                    loss = loss + functional.smooth_l1_loss(at[:, 2], rb[k, 2], beta=0.1)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                bar.update()
    return net.eval()


def _heat_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the Gaussian heat, the cells near a face centre weighted up (they are few)."""
    weight = 1.0 + 20.0 * heat
    return functional.binary_cross_entropy_with_logits(logits, heat, weight=weight)


# Zoom windows of the training set: the candidate box is the true box moved and resized by about what
# the coarse finder gets wrong, and the window is one the locator zooms with round it.
CANDIDATE_SHIFT = 0.12  # std of the candidate centre's error, in face widths
CANDIDATE_SCALE = 0.2  # std of the candidate width's log error


def zoom_windows(locator) -> tuple:
    """Every window the locator looks through after the coarse stage: (side / candidate face width, the
    patterns it shows there as a ``ForwardModel``, the candidate's error / a coarse candidate's). The
    tight retry and refresh windows go round a box that a zoom or the tracker found, which is off by
    about half as much; one window between the first zoom and the tracking window fills the gap."""
    c = locator.config
    return (
        (c.retry_window, locator.zoom, 0.5),
        (c.refresh_window, locator.refresh, 0.5),
        (c.zoom_window, locator.zoom, 1.0),
        ((c.zoom_window + c.track_window) / 2, locator.zoom, 1.0),
        (c.track_window, locator.zoom, 1.0),
    )


def _training_face(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A third of the scenes are empty; a face is mirrored half the time and lit brighter or darker."""
    if rng.random() < 1 / 3:
        return None
    face = faces[rng.integers(len(faces))]
    face = face[:, ::-1] if rng.random() < 0.5 else face
    return np.clip(face * rng.uniform(0.6, 1.3), 0, 255).astype(np.uint8)


def _zoom_sample(face, rng: np.random.Generator, locators: dict) -> tuple[np.ndarray, object]:
    """One zoomed image (64², as the locator checks it) of a window round a candidate box, and the face's
    box in it (None: no face). A candidate whose window cuts the face is drawn again: a face partly in
    the window is neither a face the finder must size nor an empty window. The field is just large
    enough for the window's sampling pixels to cover whole mirrors (512² below a third of the field,
    else 256²), so the photodiode sees the light the full field would send."""
    from lsi_ros.framing.localize import to_window, window_registration
    from lsi_ros.framing.unframed import FACE_WIDTHS, unframed_scene

    width = rng.uniform(*FACE_WIDTHS)
    size = 256 if width >= 1 / 3 else 512
    locator = locators[size]
    scene = unframed_scene("zoom", face, rng, (size, size), widths=(width, width))
    resolution = locator.config.zoom_resolution
    windows = zoom_windows(locator)
    box = None
    while True:
        window_side, forward, error = windows[rng.integers(len(windows))]
        if scene.box is None:
            side = width * size
            centre = rng.uniform(side / 2, size - side / 2, 2)
        else:
            side = (scene.box[2] - scene.box[0]) * np.exp(rng.normal(0, error * CANDIDATE_SCALE))
            centre = (scene.box[:2] + scene.box[2:]) / 2 + rng.normal(0, error * CANDIDATE_SHIFT, 2) * side
        window = window_registration(centre, window_side * side, resolution, (size, size))
        if scene.box is None:
            break
        corners = to_window(scene.box.reshape(2, 2), window, resolution, (size, size))
        box = corners.ravel() * INPUT / resolution
        if box[0] >= 0 and box[1] >= 0 and box[2] <= INPUT and box[3] <= INPUT:
            break
    image = locator.acquire(scene.image, forward, window)
    return cv2.resize(image.astype(np.float32), (INPUT, INPUT), interpolation=cv2.INTER_AREA), box


def finder_training_set(faces: np.ndarray, count: int, photodiode, seed: int = 0, desc: str = "training"):
    """``count`` unframed scenes (a third of them empty) as the locator sees them, two images each: the
    coarse image of the whole field (256² field: the coarse image is 64² whatever the field) and a zoomed
    image of a window round a candidate near the face (or anywhere in an empty scene), each with the
    face's box in its pixels (None: no face). Returns images (2·count, 64, 64) and the boxes."""
    from lsi_ros.framing.localize import FaceLocator
    from lsi_ros.framing.unframed import unframed_scene

    rng = np.random.default_rng(seed)
    locators = {
        size: FaceLocator(None, None, field_shape=(size, size), photodiode=photodiode, seed=seed + size)
        for size in (256, 512)
    }
    coarse = locators[256]
    images, boxes = [], []
    for i in tqdm(range(count), desc=f"{desc} scenes (coarse and zoomed)", unit="scene"):
        face = _training_face(faces, rng)
        scene = unframed_scene(f"train {i}", face, rng, coarse.field_shape)
        images.append(coarse.coarse_image(scene.image))
        boxes.append(None if scene.box is None else scene.box * INPUT / coarse.field_shape[1])
        image, box = _zoom_sample(_training_face(faces, rng), rng, locators)
        images.append(image)
        boxes.append(box)
    return np.stack(images), boxes


def score_threshold(scores: np.ndarray, has_face: np.ndarray, max_false_positives: float) -> float:
    """The lowest score that leaves at most ``max_false_positives`` of the images without a face over it."""
    empty = np.sort(scores[~has_face])
    if not len(empty):
        return 0.5
    k = int(np.floor(len(empty) * (1 - max_false_positives)))
    return float(empty[min(k, len(empty) - 1)]) + 1e-4


def validate(finder: FaceFinder, images: np.ndarray, boxes: list) -> dict:
    """Scores of the finder on validation images (coarse and zoomed alternate): the zoom threshold that
    keeps 1 % of empty windows, the coarse threshold that keeps 99.5 % of faces, and the rates at them."""
    found, scores = finder.find(images)
    has = np.array([b is not None for b in boxes])
    coarse, zoom = np.arange(len(images)) % 2 == 0, np.arange(len(images)) % 2 == 1
    min_score = score_threshold(scores[zoom], has[zoom], 0.01)
    face_scores = np.sort(scores[coarse & has])
    candidate = float(face_scores[int(0.005 * len(face_scores))]) if len(face_scores) else 0.3
    candidate = min(candidate, min_score)
    centre = np.hypot(*((found[:, :2] + found[:, 2:]) / 2 - [((b[:2] + b[2:]) / 2) if b is not None else
                                                           (0, 0) for b in boxes]).T)  # fmt: skip
    widths = np.array([b[2] - b[0] if b is not None else np.nan for b in boxes])
    return {
        "images": len(images),
        "candidate_score": round(candidate, 4),
        "min_score": round(min_score, 4),
        "coarse_faces_over_candidate": round(float(np.mean(scores[coarse & has] >= candidate)), 4),
        "coarse_empty_over_candidate": round(float(np.mean(scores[coarse & ~has] >= candidate)), 4),
        "zoom_faces_over_min": round(float(np.mean(scores[zoom & has] >= min_score)), 4),
        "zoom_empty_over_min": round(float(np.mean(scores[zoom & ~has] >= min_score)), 4),
        "zoom_centre_error_median": round(float(np.median((centre / widths)[zoom & has])), 4),
        "coarse_centre_error_median": round(float(np.median((centre / widths)[coarse & has])), 4),
    }


# Faces for training the finder: training seeds (below the held-out range), never evaluated on.
TRAINING_FIRST_SEED = 700_000


def training_faces(generator, analyzer, generated: int, real: int) -> tuple[np.ndarray, str]:
    """The face bank: ``generated`` faces of training seeds and the first ``real`` UTKFace photos of the
    training split (FFHQ-framed as the evaluation frames its held-out ones; none without the photos)."""
    from lsi_ros.framing.unframed import generated_faces

    parts = [generated_faces(generator, TRAINING_FIRST_SEED, generated)]
    label = f"generated, seeds {TRAINING_FIRST_SEED}..{TRAINING_FIRST_SEED + generated - 1}"
    if real:
        from lsi_ros.evaluation import real_faces

        root = Path(real_faces.default_real_faces_dir()) / real_faces.UTKFACE_FOLDER
        if root.is_dir():
            photos = real_faces.utkface_faces(root, split="train")[:real]
            parts.append(real_faces.frame_faces(analyzer, photos).images)
            label += f"; UTKFace training split, first {len(photos)}"
    return np.concatenate(parts), label


def build_face_finder(
    generator,
    scenes: int,
    photodiode,
    path,
    faces: int = 320,
    real: int = 300,
    analyzer=None,
    epochs: int = 12,
    width: int = 24,
    seed: int = 0,
) -> FaceFinder:
    """Train the finder on ``scenes`` unframed scenes (coarse and zoomed images) of a bank of training
    faces; a tenth of the bank's faces is kept apart for a validation set (a tenth as many scenes) that
    sets the score thresholds; save."""
    from lsi_ros.framing.localize import LocatorConfig

    bank, label = training_faces(generator, analyzer, faces, real)
    order = np.random.default_rng(seed).permutation(len(bank))
    held = order[: max(1, len(bank) // 10)]
    train = order[len(held) :]
    images, boxes = finder_training_set(bank[train], scenes, photodiode, seed)
    net = train_face_finder(images, boxes, epochs=epochs, seed=seed, width=width)
    info = {
        "width": width,
        "training_scenes": scenes,
        "training_images": len(images),
        "training_faces": label,
        "coarse_patterns": LocatorConfig().coarse_patterns,
        "photodiode": photodiode.label,
        "epochs": epochs,
    }
    finder = FaceFinder(net, info)
    val_images, val_boxes = finder_training_set(
        bank[held], max(200, scenes // 10), photodiode, seed + 1, "validation"
    )
    info["validation"] = {"faces": len(held), **validate(finder, val_images, val_boxes)}
    finder.save(path)
    return finder
