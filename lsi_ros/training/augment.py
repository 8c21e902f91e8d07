"""Framing errors as training augmentation: faces slightly off the generator's framing.

A located face is framed with the locator's error (a few sampling pixels of shift, a few per cent of
scale, a few degrees of roll: ``lsi eval --scenes unframed``), and an encoder that has only ever seen
the generator's exact framing reads such a face as someone else. ``FramingJitter`` moves, scales and
turns each training face by a random similarity of its grid before it is measured, as a registration
error would; the latent target stays the face's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FramingJitter:
    """Per face, with probability ``fraction``: a shift uniform in a disc of ``shift_px`` sampling
    pixels, a scale log-uniform in ``[1 / (1 + scale), 1 + scale]`` and a roll uniform within
    ``± roll_deg``."""

    shift_px: float = 3.0
    scale: float = 0.05
    roll_deg: float = 3.0
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if min(self.shift_px, self.scale, self.roll_deg) < 0 or not 0 < self.fraction <= 1 or self.scale >= 1:
            raise ValueError(
                f"framing jitter needs shift, scale, roll >= 0, scale < 1, 0 < fraction <= 1: {self}"
            )

    @classmethod
    def from_config(cls, values) -> FramingJitter | None:
        """``TrainConfig.framing_jitter``: () for none, or (shift_px, scale, roll_deg[, fraction])."""
        count = len(values)
        if count and count not in (3, 4):
            raise ValueError(f"framing jitter takes SHIFT_PX SCALE ROLL_DEG [FRACTION], not {count} values")
        return cls(*(float(v) for v in values)) if values else None

    def draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """(count, 4): shift x, shift y (sampling pixels), log scale, roll (radians); zero where a face
        is left as framed."""
        u = torch.rand((count, 5), generator=generator, dtype=torch.float64)
        radius, angle = self.shift_px * u[:, 0].sqrt(), 2 * math.pi * u[:, 1]
        log_scale = math.log1p(self.scale) * (2 * u[:, 2] - 1)
        roll = math.radians(self.roll_deg) * (2 * u[:, 3] - 1)
        motion = torch.stack([radius * angle.cos(), radius * angle.sin(), log_scale, roll], dim=1)
        return motion * (u[:, 4:5] < self.fraction)

    def __call__(self, x_sum: torch.Tensor, resolution: int, generator: torch.Generator) -> torch.Tensor:
        """Channel sums (N, R·R) -> the same faces as a grid off by a drawn similarity would see them
        (bilinear, the face's edge pixels continued beyond it)."""
        motion = self.draw(len(x_sum), generator)
        return warp_faces(x_sum, resolution, motion)


def warp_faces(x_sum: torch.Tensor, resolution: int, motion: torch.Tensor) -> torch.Tensor:
    """Channel sums (N, R·R) seen by grids moved by ``motion`` (N, 4: shift x, y in sampling pixels,
    log scale, roll in radians): output pixel u shows the face at ``c + s·R(θ)(u − c) + d``."""
    scale, roll = motion[:, 2].exp(), motion[:, 3]
    cos, sin = scale * roll.cos(), scale * roll.sin()
    shift = 2 * motion[:, :2] / resolution  # grid_sample's [-1, 1] coordinates
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(torch.float32)
    images = x_sum.to(torch.float32).reshape(len(x_sum), 1, resolution, resolution)
    grid = torch.nn.functional.affine_grid(theta.to(images.device), images.shape, align_corners=False)
    moved = torch.nn.functional.grid_sample(images, grid, "bilinear", "border", align_corners=False)
    return moved.reshape(len(x_sum), -1)
