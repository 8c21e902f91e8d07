"""Torch port of the face-analysis networks of ``@vladmandic/face-api`` (MIT): the face labeller.

No labelled face set ships offline, but the npm package carries trained TF.js weights (uint8-quantised
shards + a JSON manifest with per-tensor scale/min). This module reads them with numpy and runs the
same graphs in torch: the tiny face detector (a separable-conv YOLO), the 68-point landmark net and
the expression net (dense blocks of separable convs), and the age/gender net (a tiny Xception).
TF's 'same' padding is asymmetric (extra row/column after), so it is applied explicitly.

The weights are fetched once by ``fetch_face_api`` (``npm pack``, cached under
``~/.cache/lsi_ros/face-api``), never at node run time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

FACE_API_PACKAGE = "@vladmandic/face-api@1.7.15"
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
# The 68-point scheme's left-right pairs: landmark i of a mirrored face is landmark LANDMARK_MIRROR[i].
LANDMARK_MIRROR = (
    tuple(range(16, -1, -1))  # jaw
    + tuple(range(26, 16, -1))  # brows
    + (27, 28, 29, 30, 35, 34, 33, 32, 31)  # nose
    + (45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40)  # eyes
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55)  # outer lips
    + (64, 63, 62, 61, 60, 67, 66, 65)  # inner lips
)
DETECTOR_ANCHORS = ((1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
                    (4.266906, 5.178857), (9.041765, 10.66308))  # fmt: skip
DETECTOR_MEAN_RGB = (117.001, 114.697, 97.404)
FACE_MEAN_RGB = (122.782, 117.001, 104.298)
FACE_INPUT = 112
DESCRIPTOR_INPUT = 150
NETWORKS = (
    "tiny_face_detector_model",
    "face_landmark_68_model",
    "age_gender_model",
    "face_expression_model",
    "face_recognition_model",
)


class FaceApiMissingError(FileNotFoundError):
    """The face-api weights are not in the cache (run ``lsi label --fetch``)."""


def default_face_api_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "lsi_ros" / "face-api" / "model"


def fetch_face_api(model_dir: Path | None = None) -> Path:
    """``npm pack`` the pinned package and keep its ``model/`` folder; a no-op when it is there."""
    model_dir = Path(model_dir or default_face_api_dir())
    if all((model_dir / f"{name}-weights_manifest.json").is_file() for name in NETWORKS):
        return model_dir
    if shutil.which("npm") is None:
        raise FaceApiMissingError("npm is needed once to fetch the face-api weights (apt install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", FACE_API_PACKAGE], cwd=tmp, check=True, capture_output=True)
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith("package/model/") and m.isfile()]
            archive.extractall(tmp, members=members, filter="data")
        staged = model_dir.with_suffix(".tmp")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(Path(tmp) / "package" / "model", staged)
        shutil.rmtree(model_dir, ignore_errors=True)
        staged.replace(model_dir)
    return model_dir


_DTYPES = {
    "uint8": np.uint8,
    "uint16": np.uint16,
    "float16": np.float16,
    "float32": np.float32,
    "int32": np.int32,
}


def read_tfjs_weights(manifest_path) -> dict[str, np.ndarray]:
    """A TF.js weights manifest and its shards -> ``{name: float32 array}`` (dequantised)."""
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise FaceApiMissingError(f"{manifest_path} not found: run `lsi label --fetch` once (needs npm)")
    weights = {}
    for group in json.loads(manifest_path.read_text()):
        blob = b"".join((manifest_path.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = math.prod(spec["shape"])
            quant = spec.get("quantization")
            dtype = np.dtype(_DTYPES[quant["dtype"] if quant else spec["dtype"]])
            raw = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
            offset += count * dtype.itemsize
            if quant and "scale" in quant:
                values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
            else:
                values = raw.astype(np.float32)
            weights[spec["name"]] = values.reshape(spec["shape"])
        if offset != len(blob):
            raise ValueError(f"{manifest_path}: manifest describes {offset} bytes, shards hold {len(blob)}")
    return weights


def _torch_weights(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TF layouts -> torch: conv HWIO -> OIHW, depthwise HWC1 -> C1HW; fc and biases as they are."""
    out = {}
    for name, value in weights.items():
        t = torch.from_numpy(np.ascontiguousarray(value))
        if name.endswith("depthwise_filter"):
            t = t.permute(2, 3, 0, 1)
        elif t.ndim == 4:
            t = t.permute(3, 2, 0, 1)
        out[name] = t.contiguous()
    return out


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TF 'same' padding: the odd pixel goes after (bottom/right)."""
    size = x.shape[-1]
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return functional.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2), value=value)


def _conv(x, p: dict, name: str, stride: int = 1, same: bool = True):
    w = p[f"{name}/filters"]
    if same:
        x = _pad_same(x, w.shape[-1], stride)
    return functional.conv2d(x, w, p[f"{name}/bias"], stride)


def _separable(x, p: dict, name: str, stride: int = 1):
    depthwise = p[f"{name}/depthwise_filter"]
    x = functional.conv2d(_pad_same(x, 3, stride), depthwise, stride=stride, groups=depthwise.shape[0])
    return functional.conv2d(x, p[f"{name}/pointwise_filter"], p[f"{name}/bias"])


def _max_pool_same(x, kernel: int, stride: int):
    return functional.max_pool2d(_pad_same(x, kernel, stride, value=-math.inf), kernel, stride)


def _normalise(batch: torch.Tensor, mean_rgb) -> torch.Tensor:
    """(N, 3, H, W) in 0..255 -> the nets' input: mean RGB removed, /255."""
    return (batch - torch.tensor(mean_rgb, dtype=batch.dtype, device=batch.device)[:, None, None]) / 255.0


def _dense_features(x: torch.Tensor, p: dict) -> torch.Tensor:
    """The landmark/expression feature extractor: four dense blocks, 112² -> (N, 256)."""
    for index, block in enumerate(("dense0", "dense1", "dense2", "dense3")):
        if index == 0:
            out1 = functional.relu(_conv(x, p, f"{block}/conv0", 2))
        else:
            out1 = functional.relu(_separable(x, p, f"{block}/conv0", 2))
        out2 = _separable(out1, p, f"{block}/conv1")
        out3 = _separable(functional.relu(out1 + out2), p, f"{block}/conv2")
        out4 = _separable(functional.relu(out1 + out2 + out3), p, f"{block}/conv3")
        x = functional.relu(out1 + out2 + out3 + out4)
    return functional.avg_pool2d(x, 7, 2).flatten(1)


def _xception_features(x: torch.Tensor, p: dict) -> torch.Tensor:
    """The age/gender feature extractor (tiny Xception, two main blocks), 112² -> (N, 512)."""

    def reduction(x, name, activate=True):
        out = functional.relu(x) if activate else x
        out = _separable(out, p, f"{name}/separable_conv0")
        out = _separable(functional.relu(out), p, f"{name}/separable_conv1")
        return _max_pool_same(out, 3, 2) + _conv(x, p, f"{name}/expansion_conv", 2)

    x = functional.relu(_conv(x, p, "entry_flow/conv_in", 2))
    x = reduction(x, "entry_flow/reduction_block_0", activate=False)
    x = reduction(x, "entry_flow/reduction_block_1")
    for block in ("middle_flow/main_block_0", "middle_flow/main_block_1"):
        out = x
        for conv in range(3):
            out = _separable(functional.relu(out), p, f"{block}/separable_conv{conv}")
        x = out + x
    x = reduction(x, "exit_flow/reduction_block")
    x = functional.relu(_separable(x, p, "exit_flow/separable_conv"))
    return functional.avg_pool2d(x, 7, 2).flatten(1)


def _scaled_conv(x, p: dict, name: str, stride: int = 1, relu: bool = True):
    """Conv + bias + per-channel scale layer of the recognition net; 'valid' when strided, else 'same'."""
    w = p[f"{name}/conv/filters"]
    if stride == 1:
        x = _pad_same(x, w.shape[-1], 1)
    x = functional.conv2d(x, w, p[f"{name}/conv/bias"], stride)
    x = x * p[f"{name}/scale/weights"][:, None, None] + p[f"{name}/scale/biases"][:, None, None]
    return functional.relu(x) if relu else x


def _residual(x, p: dict, name: str, down: bool = False):
    out = _scaled_conv(x, p, f"{name}/conv1", 2 if down else 1)
    out = _scaled_conv(out, p, f"{name}/conv2", relu=False)
    if down:
        x = functional.avg_pool2d(x, 2, 2)
        # Odd sizes: the strided branch is one short; TF.js pads it with zeros below and right.
        out = functional.pad(out, (0, x.shape[-1] - out.shape[-1], 0, x.shape[-2] - out.shape[-2]))
        x = functional.pad(x, (0, 0, 0, 0, 0, out.shape[1] - x.shape[1]))
    return functional.relu(out + x)


DESCRIPTOR_STAGES = ("conv32_3", "conv64_3", "conv128_2", "conv256_2")  # the last block of each width


def descriptor_features(x: torch.Tensor, p: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The 128-d face descriptor (dlib's ResNet-34-like metric net), 150² -> (N, 128), and the feature
    maps after each stage (``DESCRIPTOR_STAGES``): what a perceptual loss on faces compares."""
    x = functional.max_pool2d(_scaled_conv(x, p, "conv32_down", 2), 3, 2)
    stages = []
    for name in ("conv32_1", "conv32_2", "conv32_3", "conv64_down", "conv64_1", "conv64_2", "conv64_3",
                 "conv128_down", "conv128_1", "conv128_2", "conv256_down", "conv256_1", "conv256_2",
                 "conv256_down_out"):  # fmt: skip
        x = _residual(x, p, name, down=name.endswith(("down", "down_out")))
        if name in DESCRIPTOR_STAGES:
            stages.append(x)
    return x.mean((2, 3)) @ p["fc"], stages


@dataclass(frozen=True)
class FaceLabels:
    """Per face: detector box (x0, y0, x1, y1) and score, age in years, p(male), expression
    probabilities (``EXPRESSIONS`` order) and 68 landmarks (x, y), all in input-image pixels."""

    boxes: np.ndarray
    detection_scores: np.ndarray
    age: np.ndarray
    p_male: np.ndarray
    expressions: np.ndarray
    landmarks: np.ndarray


class FaceAnalyzer:
    """The face-api networks with their weights, ready for batches of RGB uint8 images (numpy
    arrays, or torch tensors already on ``device``, where the networks run)."""

    def __init__(self, model_dir=None, device: str | torch.device = "cpu", networks=NETWORKS):
        """``networks``: the subset of ``NETWORKS`` to load (labels need no face descriptor)."""
        model_dir = Path(model_dir or default_face_api_dir())
        self.device = torch.device(device)
        self.params = {
            name: {
                k: v.to(self.device)
                for k, v in _torch_weights(
                    read_tfjs_weights(model_dir / f"{name}-weights_manifest.json")
                ).items()
            }
            for name in networks
        }

    def _batch(self, images) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float on the analyser's device."""
        images = images if isinstance(images, torch.Tensor) else torch.tensor(np.asarray(images))
        return images.to(self.device).permute(0, 3, 1, 2).float()

    # -- detection -----------------------------------------------------------------------------
    @torch.inference_mode()
    def detector_map(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) images in 0..255 -> the detector's raw (N, 25, S/32, S/32) box map."""
        p = self.params["tiny_face_detector_model"]
        x = functional.leaky_relu(_conv(_normalise(batch, DETECTOR_MEAN_RGB), p, "conv0", same=False), 0.1)
        for index in range(1, 6):
            x = _max_pool_same(x, 2, 2)
            x = functional.leaky_relu(_separable(x, p, f"conv{index}"), 0.1)
        return _conv(_max_pool_same(x, 2, 1), p, "conv8", same=False)

    @torch.inference_mode()
    def detect(self, images: np.ndarray, input_size: int = 416) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) uint8 -> the best face box per image (N, 4) in pixels, and its score (N,).

        Each image is zero-padded to a square at the bottom/right and resized, as face-api does."""
        n, h, w = images.shape[:3]
        side = max(h, w)
        batch = torch.zeros(n, 3, side, side, device=self.device)
        batch[:, :, :h, :w] = self._batch(images)
        batch = functional.interpolate(batch, size=(input_size, input_size), mode="bilinear")
        out = self.detector_map(batch)
        cells = out.shape[-1]
        out = out.reshape(n, len(DETECTOR_ANCHORS), 5, cells, cells).permute(0, 3, 4, 1, 2)
        scores = torch.sigmoid(out[..., 4]).reshape(n, -1)
        best = scores.argmax(1)
        rows = (
            torch.arange(cells, device=self.device)[:, None, None]
            .expand(cells, cells, len(DETECTOR_ANCHORS))
            .reshape(-1)
        )
        cols = (
            torch.arange(cells, device=self.device)[None, :, None]
            .expand(cells, cells, len(DETECTOR_ANCHORS))
            .reshape(-1)
        )
        anchors = torch.tensor(DETECTOR_ANCHORS, device=self.device).repeat(cells * cells, 1)
        every = torch.arange(n, device=self.device)
        flat = out[..., :4].reshape(n, -1, 4)[every, best]
        cx = (cols[best] + torch.sigmoid(flat[:, 0])) / cells
        cy = (rows[best] + torch.sigmoid(flat[:, 1])) / cells
        bw = torch.exp(flat[:, 2]) * anchors[best, 0] / cells
        bh = torch.exp(flat[:, 3]) * anchors[best, 1] / cells
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) * side
        return boxes.cpu().numpy(), scores[every, best].cpu().numpy()

    # -- analysis of face crops ----------------------------------------------------------------
    def crop(self, images, boxes: np.ndarray, size: int = FACE_INPUT) -> tuple[torch.Tensor, np.ndarray]:
        """The boxes cut out, zero-padded to centred squares and resampled to size², as face-api does.

        Returns the (N, 3, size, size) batch and each crop's (x0, y0, side) for mapping points back."""
        batch = self._batch(images)
        h, w = batch.shape[-2:]
        boxes = torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
        side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        x0 = (boxes[:, 0] + boxes[:, 2] - side) / 2
        y0 = (boxes[:, 1] + boxes[:, 3] - side) / 2
        # An affine grid samples the square (zeros outside the image) at the net's input size.
        theta = torch.zeros(len(boxes), 2, 3, device=self.device)
        theta[:, 0, 0] = side / w
        theta[:, 1, 1] = side / h
        theta[:, 0, 2] = (2 * x0 + side) / w - 1
        theta[:, 1, 2] = (2 * y0 + side) / h - 1
        grid = functional.affine_grid(theta, [len(boxes), 3, size, size], align_corners=False)
        crops = functional.grid_sample(
            batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        # Zero outside the box: the square is the box padded with zeros, not more of the image.
        centres = (torch.arange(size, device=self.device) + 0.5) / size
        xs = x0[:, None] + centres * side[:, None]
        ys = y0[:, None] + centres * side[:, None]
        inside_x = (xs >= boxes[:, :1]) & (xs <= boxes[:, 2:3])
        inside_y = (ys >= boxes[:, 1:2]) & (ys <= boxes[:, 3:4])
        crops = crops * (inside_y[:, None, :, None] & inside_x[:, None, None, :])
        return crops, torch.stack([x0, y0, side], 1).cpu().numpy()

    @torch.inference_mode()
    def landmarks(self, crops: torch.Tensor) -> np.ndarray:
        """(N, 3, 112, 112) face crops in 0..255 -> (N, 68, 2) landmarks in crop units [0, 1]."""
        lm = self.params["face_landmark_68_model"]
        out = _dense_features(_normalise(crops, FACE_MEAN_RGB), lm) @ lm["fc/weights"] + lm["fc/bias"]
        return out.reshape(-1, 68, 2).cpu().numpy()

    def landmarks_both_ways(self, crops: torch.Tensor) -> np.ndarray:
        """``landmarks`` averaged with those of the mirrored crops (mapped back): the net's left-right
        bias cancels and its noise averages down, for sharper framing from blurred images."""
        mirrored = self.landmarks(crops.flip(-1))[:, LANDMARK_MIRROR]
        mirrored[..., 0] = 1.0 - mirrored[..., 0]
        return (self.landmarks(crops) + mirrored) / 2

    def age_gender(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable: (N, 3, 112, 112) face crops in 0..255 -> age in years (N,) and p_male (N,)
        as tensors (training losses; ``attributes`` is the numpy readout)."""
        ag = self.params["age_gender_model"]
        features = _xception_features(_normalise(crops, FACE_MEAN_RGB), ag)
        age = features @ ag["fc/age/weights"] + ag["fc/age/bias"]
        gender = torch.softmax(features @ ag["fc/gender/weights"] + ag["fc/gender/bias"], 1)
        return age[:, 0], gender[:, 0]

    @torch.inference_mode()
    def attributes(self, crops: torch.Tensor) -> dict[str, np.ndarray]:
        """(N, 3, 112, 112) aligned face crops in 0..255 -> age, p_male, expression probabilities."""
        age, p_male = self.age_gender(crops)
        ex = self.params["face_expression_model"]
        x = _normalise(crops, FACE_MEAN_RGB)
        expressions = torch.softmax(_dense_features(x, ex) @ ex["fc/weights"] + ex["fc/bias"], 1)
        return {
            "age": age.cpu().numpy(),
            "p_male": p_male.cpu().numpy(),
            "expressions": expressions.cpu().numpy(),
        }

    def descriptor_features(self, crops: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Differentiable: (N, 3, 150, 150) aligned crops in 0..255 -> descriptors (N, 128) as a
        tensor and the stage feature maps (training losses; ``descriptors`` is the numpy readout)."""
        return descriptor_features(_normalise(crops, FACE_MEAN_RGB), self.params["face_recognition_model"])

    @torch.inference_mode()
    def descriptors(self, crops: torch.Tensor) -> np.ndarray:
        """(N, 3, 150, 150) aligned face crops in 0..255 -> (N, 128) descriptors; faces of one person
        lie within a Euclidean distance of about 0.6 (face-api's matching threshold)."""
        return self.descriptor_features(crops)[0].cpu().numpy()

    def describe(self, images: np.ndarray, input_size: int = 416) -> np.ndarray:
        """(N, H, W, 3) uint8 -> the (N, 128) descriptor of each image's main face (detector,
        landmarks, aligned box), for identity: ``np.linalg.norm(a - b) < 0.6`` means the same person."""
        _, _, landmarks = self._landmarked(images, input_size)
        aligned, _ = self.crop(images, self.aligned_boxes(landmarks), DESCRIPTOR_INPUT)
        return self.descriptors(aligned)

    def _landmarked(self, images, input_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detector boxes, their scores, and the 68 landmarks found in each box, in image pixels."""
        boxes, scores = self.detect(images, input_size)
        crops, frames = self.crop(images, boxes)
        return boxes, scores, frames[:, None, :2] + self.landmarks(crops) * frames[:, None, 2:3]

    def aligned_boxes(self, landmarks: np.ndarray) -> np.ndarray:
        """face-api's aligned rectangle: the landmarks' bounding box padded by 20 %."""
        low, high = landmarks.min(1), landmarks.max(1)
        pad = 0.1 * (high - low)
        return np.concatenate([low - pad, high + pad], 1)

    def label(self, images: np.ndarray, input_size: int = 416) -> FaceLabels:
        """Detect the main face of each (N, H, W, 3) uint8 image, find its landmarks in the detector
        box, then age, gender and expression in the landmarks' box padded by 20 % (face-api's
        aligned rectangle)."""
        boxes, scores, landmarks = self._landmarked(images, input_size)
        aligned, _ = self.crop(images, self.aligned_boxes(landmarks))
        out = self.attributes(aligned)
        return FaceLabels(boxes, scores, out["age"], out["p_male"], out["expressions"], landmarks)

    def describe_and_label(
        self, images: np.ndarray, input_size: int = 416, box: np.ndarray | None = None
    ) -> tuple[np.ndarray, FaceLabels]:
        """``describe`` and ``label`` of the same images from one detection (identity and attributes).

        ``box`` (x0, y0, x1, y1): where the face is in every image when the framing fixes it (faces framed
        alike); the detector, most of the cost, is skipped and the landmarks are found in that box."""
        if box is None:
            boxes, scores, landmarks = self._landmarked(images, input_size)
        else:
            boxes, scores = np.repeat(np.asarray(box, np.float32)[None], len(images), 0), np.ones(len(images))
            crops, frames = self.crop(images, boxes)
            landmarks = frames[:, None, :2] + self.landmarks(crops) * frames[:, None, 2:3]
        box = self.aligned_boxes(landmarks)
        descriptors = self.descriptors(self.crop(images, box, DESCRIPTOR_INPUT)[0])
        out = self.attributes(self.crop(images, box)[0])
        labels = FaceLabels(boxes, scores, out["age"], out["p_male"], out["expressions"], landmarks)
        return descriptors, labels
