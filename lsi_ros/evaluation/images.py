"""Offline test images (scikit-image and matplotlib sample data) at the sampling resolution.

Until held-out generated faces exist these are the quality test set: two real portraits
(astronaut, Grace Hopper) and other standard test images. Each is centre-cropped to a square and
area-resized, grayscale ones are replicated to RGB (a white-light scene), values in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square ``(n, n, ...)`` image to ``size × size`` by exact area averaging."""
    n = image.shape[0]
    edges = np.arange(size + 1) * (n / size)
    src = np.arange(n)
    overlap = np.minimum(edges[1:, None], src[None, :] + 1) - np.maximum(edges[:-1, None], src[None, :])
    weights = np.clip(overlap, 0.0, None) * (size / n)
    rows = np.tensordot(weights, image, axes=(1, 0))
    return np.moveaxis(np.tensordot(weights, rows, axes=(1, 1)), 0, 1)


def to_sampling_image(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Centre-crop to a square, area-resize, drop alpha, replicate gray to RGB; float in [0, 1]."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer):
        image = image / np.iinfo(image.dtype).max
    image = image.astype(np.float64)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return np.clip(area_resize(image[top : top + s, left : left + s], size), 0.0, 1.0)


def _grace_hopper() -> np.ndarray:
    from matplotlib.cbook import get_sample_data
    from matplotlib.image import imread

    with get_sample_data("grace_hopper.jpg") as f:
        return imread(f, format="jpg")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


TEST_IMAGES: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "grace_hopper": _grace_hopper,
    "camera": _skimage("camera"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "coins": _skimage("coins"),
}
# Used only to pick the TV weight, never scored.
CALIBRATION_IMAGE = "rocket"
_LOADERS = {**TEST_IMAGES, CALIBRATION_IMAGE: _skimage(CALIBRATION_IMAGE)}


def load_image(name: str, size: int = 256) -> np.ndarray:
    """One offline image by name as ``(size, size, 3)`` RGB in [0, 1]."""
    return to_sampling_image(_LOADERS[name](), size)


def grayscale(image: np.ndarray) -> np.ndarray:
    """Mean over channels: what the channel-summing photodiode can recover (up to a factor 3)."""
    return image.mean(axis=-1) if image.ndim == 3 else image
