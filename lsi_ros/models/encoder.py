"""The latent space imaging model: learned binary DMD patterns + a digital encoder to the latent.

Training sees ``LatentSpaceImager``: straight-through binary patterns (the paper's optical
encoder), the photodiode in the loop, and the encoder that maps the M measurements to the
generator's latent as an offset from its mean (normalised by the latent's per-dimension std).
At run time only ``MeasurementEncoder`` and the frozen patterns are needed.
"""

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)
        )

    def forward(self, x):
        return x + self.net(x)


class MeasurementEncoder(nn.Module):
    """M measurements -> latent, ``w_mean + w_std · f(LayerNorm(y))``.

    LayerNorm over the measurements of a frame removes a global gain and offset (light level,
    amplifier gain, dark level, ambient light), so one model serves bright and dim scenes.
    """

    def __init__(self, num_measurements: int, latent_dim: int = 512, width: int = 1024, depth: int = 2):
        super().__init__()
        self.num_measurements = num_measurements
        self.latent_dim = latent_dim
        self.width = width
        self.depth = depth
        self.net = nn.Sequential(
            nn.LayerNorm(num_measurements),
            nn.Linear(num_measurements, width),
            nn.SiLU(),
            *[ResidualBlock(width) for _ in range(depth)],
            nn.LayerNorm(width),
            nn.Linear(width, latent_dim),
        )
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    def normalised(self, y: torch.Tensor) -> torch.Tensor:
        """The predicted offset ``(w - w_mean) / w_std`` (what the latent loss compares)."""
        return self.net(y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.latent_mean + self.latent_std * self.net(y)


class BinaryPatterns(nn.Module):
    """Learnable DMD patterns: weights in [0, 1] shown as round(clamp(w)) with a straight-through gradient."""

    def __init__(self, num_patterns: int, resolution: int, generator: torch.Generator | None = None):
        super().__init__()
        init = 0.5 + 0.05 * torch.randn(num_patterns, resolution * resolution, generator=generator)
        self.weight = nn.Parameter(init)
        self.resolution = resolution

    def forward(self) -> torch.Tensor:
        clamped = self.weight.clamp(0.0, 1.0)
        return (torch.round(clamped) - clamped).detach() + clamped

    def binary(self) -> torch.Tensor:
        return self.weight.detach().clamp(0.0, 1.0).round().to(torch.bool)
