"""Ideal single-pixel forward model: ``y_m = Σ_c Σ_p P_m[p]·x_c[p]``.

The same binary pattern modulates every colour channel and the photodiode sums them, so an RGB
image in [0, 1] gives measurements up to ``3·H·W`` and a grayscale one up to ``H·W``. One unit of
``y`` is one fully lit sampling pixel in one channel during one pattern; the photodiode model turns
it into photo-electrons and ADC counts.

Conventions, one per backend:

- numpy (nodes): ROS image layout, ``(..., H, W, 3)`` RGB or ``(..., H, W)`` grayscale; RGB is
  tried first when the trailing shape is ambiguous. Integer images are scaled by their dtype's
  maximum (uint8 255 → 1.0). Computed in float64, or float32 where speed matters more than the
  last digits (the simulated detector at the DMD frame rate: relative error ~1e-6, far below shot
  noise).
- torch (training): ``(..., C, H, W)`` with any channel count ``C`` summed, or ``(H, W)``
  grayscale. Computed in the input's floating dtype, differentiable in images and patterns.

Both return ``(..., P)``.
"""

from __future__ import annotations

import numpy as np
import torch

from lsi_ros.optics.patterns import PatternSet


def _channel_sum_numpy(images: np.ndarray, resolution: tuple[int, int], dtype=np.float64) -> np.ndarray:
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.integer):
        images = images / np.iinfo(images.dtype).max
    images = images.astype(dtype, copy=False)
    h, w = resolution
    if images.ndim >= 3 and images.shape[-3:] == (h, w, 3):
        images = images[..., 0] + images[..., 1] + images[..., 2]  # 4x faster than sum(axis=-1)
    elif images.shape[-2:] != (h, w):
        raise ValueError(f"images of shape {images.shape} do not match patterns at {h}x{w} (HxWx3 or HxW)")
    return images.reshape(*images.shape[:-2], h * w)


def measure_numpy(matrix: np.ndarray, images: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    """Ideal measurements of numpy images through a ``(P, H·W)`` pattern matrix, in the matrix's
    float dtype (float64 unless it is float32)."""
    dtype = np.float32 if np.asarray(matrix).dtype == np.float32 else np.float64
    flat = _channel_sum_numpy(images, resolution, dtype)
    return flat @ np.asarray(matrix, dtype=dtype).T


def measure_torch(patterns: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Ideal measurements of ``(..., C, H, W)`` (or ``(H, W)``) images through ``(P, H, W)`` or
    ``(P, H·W)`` patterns; patterns may be straight-through binarised weights during training."""
    if images.ndim == 2:
        images = images.unsqueeze(0)
    flat = images.sum(dim=-3).flatten(-2)
    matrix = patterns.flatten(1).to(flat.dtype)
    if matrix.shape[1] != flat.shape[-1]:
        raise ValueError(f"images with {flat.shape[-1]} pixels do not match patterns with {matrix.shape[1]}")
    return flat @ matrix.T


class ForwardModel:
    """A pattern set ready for measuring: caches its numpy matrix (float64, or ``dtype``) and torch copies."""

    def __init__(self, pattern_set: PatternSet, dtype=np.float64):
        self.pattern_set = pattern_set
        self.resolution = pattern_set.resolution
        self.matrix = pattern_set.matrix().astype(dtype)
        self._torch: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def num_patterns(self) -> int:
        return self.pattern_set.num_patterns

    def measure(self, images: np.ndarray) -> np.ndarray:
        """Ideal measurements of ``(..., H, W, 3)`` or ``(..., H, W)`` numpy images, ``(..., P)``."""
        return measure_numpy(self.matrix, images, self.resolution)

    def measure_torch(self, images: torch.Tensor) -> torch.Tensor:
        """Ideal measurements of ``(..., C, H, W)`` or ``(H, W)`` tensors, ``(..., P)``."""
        key = (images.device, images.dtype)
        if key not in self._torch:
            self._torch[key] = torch.from_numpy(self.pattern_set.matrix()).to(images.device, images.dtype)
        return measure_torch(self._torch[key], images)
