"""A small face finder for the camera's coarse images: where is the face, how wide, is there one.

face-api's tiny face detector, trained on sharp colour photos, scores the blurred grayscale images a
few hundred Walsh-Hadamard patterns give at 0.1–0.7 for clear faces, too close to empty scenes to
decide on. This net is trained on exactly those images (:func:`coarse_image`: unframed scenes measured
through ``measure_field`` with the locator's pattern set and photodiode noise, reconstructed by the
zero-filled inverse), so it needs no detector in the loop: a 64² image in, a 16² map out (CenterNet
style: face-centre heat, the centre's offset in its cell, the log face width), about 100k weights.
The zoomed image is checked by the same net, a second look that keeps empty scenes empty.

Training (``lsi eval --scenes unframed --train-finder``) uses faces of training seeds only; the weights
ship as ``models/face-finder.safetensors`` (format ``lsi_ros.face_finder``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from tqdm import tqdm

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
    """The trained net and its metadata (training provenance, thresholds)."""

    net: FaceFinderNet
    info: dict

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
        return write_safetensors(dict(self.net.state_dict()), path, metadata)


def load_face_finder(path) -> FaceFinder:
    metadata, tensors = read_safetensors(path, FILE_FORMAT, FaceFinderError, "face finder")
    info = json.loads(metadata["info"])
    net = FaceFinderNet(info["width"])
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise FaceFinderError(f"{path}: weights do not fit the face finder ({error})") from error
    return FaceFinder(net.eval(), info)


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
                loss = _focal(out[:, 0], hb)
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


def _focal(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, per image."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    peak = heat >= 0.999
    positive = -(((1 - p) ** 2) * torch.log(p))[peak].sum()
    negative = -(((1 - heat) ** 4) * (p**2) * torch.log(1 - p))[~peak].sum()
    return (positive + negative) / max(len(logits), 1)


def finder_training_set(faces: np.ndarray, count: int, locator, seed: int = 0) -> tuple[np.ndarray, list]:
    """Coarse images of ``count`` unframed scenes on a 256² field (a third of them empty) as the locator
    acquires them, with each face's box in coarse-image pixels."""
    from lsi_ros.framing.unframed import unframed_scene

    rng = np.random.default_rng(seed)
    field = locator.field_shape
    images, boxes = [], []
    for i in tqdm(range(count), desc="coarse training scenes", unit="scene"):
        face = None if rng.random() < 1 / 3 else faces[rng.integers(len(faces))]
        if face is not None and rng.random() < 0.5:
            face = face[:, ::-1]
        if face is not None:
            face = np.clip(face * rng.uniform(0.6, 1.3), 0, 255).astype(np.uint8)
        scene = unframed_scene(f"train {i}", face, rng, field)
        images.append(locator.coarse_image(scene.image))
        boxes.append(None if scene.box is None else scene.box * INPUT / field[1])
    return np.stack(images), boxes


# Faces for training the finder: training seeds (below the held-out range), never evaluated on.
TRAINING_FIRST_SEED = 700_000


def build_face_finder(
    generator, scenes: int, photodiode, path, faces: int = 160, epochs: int = 6, seed: int = 0
) -> FaceFinder:
    """Generate ``faces`` training-seed faces, ``scenes`` coarse training images of them through the
    locator's acquisition (256² field: the coarse image is 64² whatever the field), train, save."""
    from lsi_ros.framing.localize import FaceLocator
    from lsi_ros.framing.unframed import generated_faces

    face_images = generated_faces(generator, TRAINING_FIRST_SEED, faces)
    locator = FaceLocator(None, None, field_shape=(256, 256), photodiode=photodiode, seed=seed)
    images, boxes = finder_training_set(face_images, scenes, locator, seed)
    net = train_face_finder(images, boxes, epochs=epochs, seed=seed)
    info = {
        "width": net.body[0].out_channels * 2,
        "training_scenes": scenes,
        "training_faces": f"generated, seeds {TRAINING_FIRST_SEED}..{TRAINING_FIRST_SEED + faces - 1}",
        "coarse_patterns": locator.config.coarse_patterns,
        "photodiode": photodiode.label,
        "epochs": epochs,
    }
    finder = FaceFinder(net, info)
    finder.save(path)
    return finder
