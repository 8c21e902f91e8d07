"""Photodiode and ADC model: ideal measurements ``y`` → ADC counts, with the noise a bench sees.

Per pattern, with ``y`` the ideal measurement of :mod:`lsi_ros.optics.forward`:

    electrons  e ~ Poisson(photon_flux · y + ambient)             (shot noise)
    analog     a = conversion_gain · (e + N(0, read_noise²)) + dark_level
    counts     c = clip(round(a), 0, 2^adc_bits − 1)                (quantisation, saturation)

so ``E[c] = g·(α·y + ambient) + μ`` and ``Var[c] = g²·(α·y + ambient + σ²)`` (+ 1/12 from
rounding) away from the clipping limits. Units: ``photon_flux`` α in photo-electrons per unit of
``y`` (one fully lit sampling pixel of one colour channel during one pattern exposure, scene value
1.0); ``ambient`` in electrons per pattern, independent of the pattern (stray light reaching the
diode around the DMD, plus dark current); ``read_noise`` σ in electrons rms (amplifier + ADC
input-referred); ``dark_level`` μ in counts (electronic offset); ``conversion_gain`` g in counts per
electron.

Default values, for an indoor face at ~400 lx (skin reflectance ~0.4 → ~50 cd/m²) through an f/4
objective onto a 1024² active area of 7.56 µm mirrors (DLP6500), at 9.5 kHz (105 µs per pattern):
~1.5e-4 lm on the DMD ≈ 6e11 photons/s; mirror fill/diffraction 0.6 × relay 0.8 × Si quantum
efficiency 0.6 ≈ 0.3 → ~2e7 electrons for an all-on pattern on a mid-grey (0.5) scene, i.e.
α ≈ 2e7 / (0.5 · 3 · 65536) ≈ 200. The gain puts a white scene under an all-on pattern (α·3·65536
≈ 3.9e7 e⁻) just below the 16-bit full scale (≈ 667 e⁻ per count); an amplified Si photodiode
(e.g. a switchable-gain transimpedance module) has ~1e-4 of full scale rms noise → σ ≈ 1000 e⁻;
a few-mV output offset → μ = 200 counts; stray light ~1 % of the signal → ambient = 2e5 e⁻.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch


class MeasurementFrame(NamedTuple):
    """ADC counts ``(..., P)`` of one or more frames, and per frame how many were clipped."""

    counts: np.ndarray | torch.Tensor
    saturated: np.ndarray | torch.Tensor
    underflow: np.ndarray | torch.Tensor


@dataclass(frozen=True)
class PhotodiodeModel:
    """Named physical parameters of the photodiode + ADC chain (units in the module docstring).

    ``adc_bits=None`` disables quantisation and clipping; ``shot_noise=False`` uses the mean
    electron count.
    """

    photon_flux: float = 200.0
    conversion_gain: float = 1.5e-3
    read_noise: float = 1000.0
    dark_level: float = 200.0
    ambient: float = 2.0e5
    adc_bits: int | None = 16
    shot_noise: bool = True

    @classmethod
    def noiseless(cls) -> PhotodiodeModel:
        """Counts equal the ideal ``y`` exactly: for ablations and noise-free baselines."""
        return cls(
            photon_flux=1.0,
            conversion_gain=1.0,
            read_noise=0.0,
            dark_level=0.0,
            ambient=0.0,
            adc_bits=None,
            shot_noise=False,
        )

    def with_photon_flux(self, photon_flux: float) -> PhotodiodeModel:
        """The same electronics on a brighter or dimmer scene, amplifier gain re-set to keep the
        full scale at the same scene radiance; ambient light scales with the scene, read noise not."""
        scale = photon_flux / self.photon_flux
        return replace(
            self,
            photon_flux=photon_flux,
            conversion_gain=self.conversion_gain / scale,
            ambient=self.ambient * scale,
        )

    @property
    def full_scale(self) -> float:
        """Largest ADC code (``inf`` without an ADC)."""
        return float("inf") if self.adc_bits is None else float(2**self.adc_bits - 1)

    @property
    def label(self) -> str:
        return "none" if self == PhotodiodeModel.noiseless() else f"photons={self.photon_flux:g}"

    def mean_electrons(self, y):
        return self.photon_flux * y + self.ambient

    def expected_counts(self, y):
        """Mean counts before quantisation and clipping (numpy or torch ``y``)."""
        return self.conversion_gain * self.mean_electrons(y) + self.dark_level

    def count_variance(self, y):
        """Variance of the counts before quantisation and clipping (numpy or torch ``y``)."""
        shot = self.mean_electrons(y) if self.shot_noise else 0.0 * y
        return self.conversion_gain**2 * (shot + self.read_noise**2)

    def to_ideal(self, counts):
        """Counts back to ideal-``y`` units: subtract the dark level, divide by gain·α.

        Ambient light is scene-dependent and not known at run time, so it stays in (as
        ``ambient / α``); split-pair differences cancel it.
        """
        return (counts - self.dark_level) / (self.conversion_gain * self.photon_flux)

    def sample(self, y: np.ndarray, rng: np.random.Generator) -> MeasurementFrame:
        """Simulate the ADC counts for ideal measurements ``y`` (..., P) with numpy."""
        lam = self.mean_electrons(np.asarray(y, dtype=np.float64))
        if np.any(lam < 0):
            raise ValueError("negative light: ideal measurements must be >= 0")
        electrons = rng.poisson(lam).astype(np.float64) if self.shot_noise else lam
        if self.read_noise:
            electrons = electrons + rng.normal(0.0, self.read_noise, size=lam.shape)
        analog = self.conversion_gain * electrons + self.dark_level
        if self.adc_bits is None:
            zeros = np.zeros(analog.shape[:-1], dtype=np.int64)
            return MeasurementFrame(analog, zeros, zeros.copy())
        codes = np.rint(analog)
        saturated = (codes >= self.full_scale).sum(axis=-1)
        underflow = (codes < 0).sum(axis=-1)
        return MeasurementFrame(np.clip(codes, 0, self.full_scale), saturated, underflow)

    def sample_torch(self, y: torch.Tensor, generator: torch.Generator | None = None) -> MeasurementFrame:
        """Simulate ADC counts in torch, differentiable with respect to ``y``.

        Values are exact samples (Poisson via ``torch.poisson``, Gaussian read noise, rounding);
        gradients pass straight through the Poisson draw and the rounding as if they were the
        identity on their mean (straight-through estimator), and are zero where the ADC clips.
        """
        lam = self.mean_electrons(y)
        electrons = lam
        if self.shot_noise:
            draw = torch.poisson(lam.detach().clamp_min(0), generator=generator)
            electrons = lam + (draw - lam).detach()
        if self.read_noise:
            noise = torch.randn(lam.shape, generator=generator, dtype=lam.dtype, device=lam.device)
            electrons = electrons + self.read_noise * noise
        analog = self.conversion_gain * electrons + self.dark_level
        if self.adc_bits is None:
            zeros = torch.zeros(analog.shape[:-1], dtype=torch.int64, device=analog.device)
            return MeasurementFrame(analog, zeros, zeros.clone())
        codes = analog + (torch.round(analog) - analog).detach()
        saturated = (codes.detach() >= self.full_scale).sum(dim=-1)
        underflow = (codes.detach() < 0).sum(dim=-1)
        return MeasurementFrame(codes.clamp(0, self.full_scale), saturated, underflow)
