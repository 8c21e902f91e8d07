"""Offline test images (scikit-image and matplotlib sample data) at the sampling resolution.

Until held-out generated faces exist these are the quality test set: two real portraits
(astronaut, Grace Hopper) and other standard test images. Each goes through the objective
(lsi_ros.optics.objective: centre square, area resample, gray as white light), values in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lsi_ros.optics.objective import scene_on_dmd


def to_sampling_image(image: np.ndarray, size: int = 256) -> np.ndarray:
    """The image through the objective (centre square, area resample, RGB), clipped to [0, 1], float64."""
    return np.clip(scene_on_dmd(image, size), 0.0, 1.0).astype(np.float64)


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
