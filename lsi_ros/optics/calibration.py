"""Detector and optics calibration of the single-pixel camera from bench captures, ROS-free.

The photodiode chain follows :mod:`lsi_ros.optics.photodiode`: ``E[c] = g·(α·y + A) + μ`` and
``Var[c] = g²·(α·y + A + σ²) + 1/12``. Four capture series estimate its parameters:

- **dark** (DMD all-off, objective covered): dark level ``μ`` = mean counts; read noise
  ``σ = √(Var − 1/12) / g`` (temporal variance, quantisation removed, in electrons once ``g`` is known);
- **ambient** (DMD all-off, flat field in front of the camera): ambient offset ``A = (mean − μ) / g``,
  the stray light that reaches the diode whatever the pattern;
- **photon transfer** (EMVA 1288 style): the flat field through patterns of increasing fill factor.
  Per light level, the dark-subtracted mean against the temporal variance minus the dark variance is
  a line of slope ``g`` (shot noise is Poisson in electrons); it is fitted by weighted least squares
  on the levels below 70 % of the saturation point (the maximum of the variance, EMVA's definition).
  The mean against the ideal measurement ``y`` of each pattern gives ``g·α`` (so ``α`` for the
  flat field's assumed scene value) and the linearity error;
- **registration target** (a known target in the scene, complete Hadamard basis): the reconstructed
  target against the expected one gives the shift and scale of the scene on the DMD's sampling grid,
  by phase correlation over a scale search, refined by least squares.

Temporal statistics are pooled per pattern (variance over frames of the same pattern), so
pattern-to-pattern differences never count as noise. Every estimate carries its standard error
from the number of samples. Nothing here touches a device: captures come from
:mod:`lsi_ros.hardware.calibration_bench` or from a recorded file.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from safetensors import SafetensorError
from scipy.optimize import minimize

from lsi_ros.optics.dmd import GridRegistration
from lsi_ros.optics.patterns import PatternSet, hadamard_reference_patterns
from lsi_ros.optics.photodiode import PhotodiodeModel

FILE_FORMAT = "lsi_ros.detector_calibration"
FILE_VERSION = 1
CAPTURES_FORMAT = "lsi_ros.calibration_captures"
QUANTISATION_VARIANCE = 1.0 / 12.0
LINEAR_RANGE = 0.7  # EMVA 1288: photon transfer fitted up to 70 % of the saturation point
TARGET_SUPERSAMPLING = 8
SCALE_SEARCH = np.geomspace(0.8, 1.25, 31)


class CalibrationError(ValueError):
    """Captures or a calibration file are missing, malformed, or cannot support an estimate."""


@dataclass(frozen=True)
class TemporalStats:
    """Pooled temporal statistics of ``(frames, patterns)`` counts."""

    means: np.ndarray  # per pattern
    mean: float
    variance: float  # pooled over patterns, ddof 1 per pattern
    dof: int
    samples: int

    @property
    def mean_se(self) -> float:
        return math.sqrt(self.variance / self.samples)

    @property
    def variance_se(self) -> float:
        """Standard error of a Gaussian sample variance with ``dof`` degrees of freedom."""
        return self.variance * math.sqrt(2.0 / self.dof)


def temporal_stats(counts: np.ndarray) -> TemporalStats:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] < 2:
        raise CalibrationError(f"need (frames >= 2, patterns) counts, got shape {counts.shape}")
    frames, patterns = counts.shape
    means = counts.mean(axis=0)
    return TemporalStats(
        means=means,
        mean=float(means.mean()),
        variance=float(counts.var(axis=0, ddof=1).mean()),
        dof=patterns * (frames - 1),
        samples=counts.size,
    )


@dataclass(frozen=True)
class DarkEstimate:
    """Dark level (counts) and read noise (electrons) from frames taken with the objective covered."""

    stats: TemporalStats
    read_noise: float
    read_noise_se: float

    @property
    def dark_level(self) -> float:
        return self.stats.mean

    @property
    def dark_level_se(self) -> float:
        return self.stats.mean_se


def estimate_dark(counts: np.ndarray, gain: float, gain_se: float = 0.0) -> DarkEstimate:
    """``(frames, patterns)`` dark counts → dark level ``μ`` and read noise ``σ = √(Var − 1/12) / g``."""
    dark = temporal_stats(counts)
    read_var = dark.variance - QUANTISATION_VARIANCE
    if read_var <= 0:
        raise CalibrationError(
            f"dark variance {dark.variance:.3g} counts² is at the quantisation floor: "
            "read noise not measurable"
        )
    read_noise = math.sqrt(read_var) / gain
    read_se = read_noise * math.hypot(dark.variance_se / (2 * read_var), gain_se / gain)
    return DarkEstimate(dark, read_noise, read_se)


@dataclass(frozen=True)
class PhotonTransfer:
    """Per light level of the photon-transfer series, and the fits (for the figure and the file)."""

    mean: np.ndarray  # dark-subtracted mean counts per level
    variance: np.ndarray  # temporal variance minus the dark variance per level
    variance_se: np.ndarray
    clipped_fraction: np.ndarray  # samples at the ADC limits per level
    used: np.ndarray  # bool: levels in the gain fit
    saturation_level: int | None  # index of the saturation point, None when nothing clipped
    gain: float
    gain_se: float
    intercept: float
    light: np.ndarray  # ideal measurement y per pattern (levels × patterns)
    pattern_mean: np.ndarray  # dark-subtracted mean counts per pattern
    signal_slope: float  # g·α, counts per unit y
    signal_slope_se: float
    signal_intercept: float  # g·A on the flat field, counts
    linearity_error: float  # percent of the fitted range


def photon_transfer(
    counts: np.ndarray, light: np.ndarray, dark: TemporalStats, adc_full_scale: float
) -> PhotonTransfer:
    """EMVA 1288 photon transfer from ``(levels, frames, patterns)`` counts and ``(levels, patterns)`` y."""
    counts = np.asarray(counts, dtype=np.float64)
    light = np.asarray(light, dtype=np.float64)
    if counts.ndim != 3 or light.shape != (counts.shape[0], counts.shape[2]):
        raise CalibrationError(
            f"photon transfer counts {counts.shape} do not match light levels {light.shape}"
        )
    levels = [temporal_stats(level) for level in counts]
    mean = np.array([s.mean for s in levels]) - dark.mean
    raw_variance = np.array([s.variance for s in levels])
    variance = raw_variance - dark.variance
    variance_se = np.sqrt(np.array([s.variance_se**2 for s in levels]) + dark.variance_se**2)
    clipped = ((counts >= adc_full_scale) | (counts <= 0)).mean(axis=(1, 2))
    saturation = int(np.argmax(variance)) if np.any(clipped > 0) else None
    limit = LINEAR_RANGE * mean[saturation] if saturation is not None else np.inf
    used = (clipped == 0) & (mean <= limit)
    if used.sum() < 3:
        raise CalibrationError(
            f"only {int(used.sum())} light levels below saturation; need 3 or more for the gain fit "
            "(lower the flat-field brightness or add fill-factor levels)"
        )
    (gain, intercept), cov = _weighted_line(mean[used], variance[used], variance_se[used])
    pattern_mean = counts.mean(axis=1) - dark.mean
    # Linearity (EMVA: 5–95 % of saturation): the mean against the light each pattern lets through.
    top = mean[saturation] if saturation is not None else mean.max()
    in_range = (clipped == 0) & (mean >= 0.05 * top) & (mean <= 0.95 * top)
    in_range = in_range if in_range.sum() >= 2 else clipped == 0
    x, y = light[in_range].ravel(), pattern_mean[in_range].ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    (slope, offset), *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = design @ np.array([slope, offset])
    spread = np.mean((y - fitted) ** 2) * len(x) / max(len(x) - 2, 1)
    slope_se = math.sqrt(spread / max(np.sum((x - x.mean()) ** 2), 1e-300))
    linearity = 100.0 * float(np.max(np.abs(y - fitted)) / max(fitted.max() - fitted.min(), 1e-300))
    return PhotonTransfer(
        mean=mean,
        variance=variance,
        variance_se=variance_se,
        clipped_fraction=clipped,
        used=used,
        saturation_level=saturation,
        gain=float(gain),
        gain_se=float(math.sqrt(cov[0, 0])),
        intercept=float(intercept),
        light=light,
        pattern_mean=pattern_mean,
        signal_slope=float(slope),
        signal_slope_se=float(slope_se),
        signal_intercept=float(offset),
        linearity_error=linearity,
    )


def _weighted_line(x: np.ndarray, y: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares line ``y = a·x + b``; covariance scaled up when χ² says the errors are low."""
    design = np.stack([x, np.ones_like(x)], axis=1) / se[:, None]
    target = y / se
    params, *_ = np.linalg.lstsq(design, target, rcond=None)
    cov = np.linalg.inv(design.T @ design)
    chi2 = float(np.sum((target - design @ params) ** 2)) / max(len(x) - 2, 1)
    return params, cov * max(chi2, 1.0)


# --- registration target ------------------------------------------------------------------------


def _box(u, v, cu, cv, hu, hv):
    return np.maximum(np.abs(u - cu) - hu, np.abs(v - cv) - hv)


def _target_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance to the registration target's bright shapes, in normalised coordinates (``u``
    right, ``v`` down, ±1 = grid edge): a centred cross and a different marker in each quadrant, so
    no shift or flip aliases."""
    shapes = (
        _box(u, v, 0.0, 0.0, 0.05, 0.55),
        _box(u, v, 0.0, 0.0, 0.55, 0.05),
        np.hypot(u + 0.45, v + 0.45) - 0.16,
        _box(u, v, 0.45, -0.42, 0.12, 0.12),
        (np.abs(u - 0.42) + np.abs(v - 0.45) - 0.18) / np.sqrt(2),
        np.hypot(u + 0.45, v - 0.5) - 0.08,
    )
    return np.minimum.reduce(shapes)


def registration_target(
    resolution: int,
    shift: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    supersampling: int = TARGET_SUPERSAMPLING,
) -> np.ndarray:
    """The target as it falls on an ``resolution²`` grid, area-integrated (float32 in [0, 1]).

    ``shift`` (rows, columns) in sampling pixels and ``scale`` place it: the target point at ``p``
    pixels from the grid centre appears at ``scale·p + shift``.
    """
    n = resolution * supersampling
    centres = (np.arange(n) + 0.5) / supersampling - resolution / 2
    rows = (centres - shift[0]) / scale
    cols = (centres - shift[1]) / scale
    v, u = np.meshgrid(2 * rows / resolution, 2 * cols / resolution, indexing="ij")
    # edges anti-aliased over one fine sample, so the image moves smoothly with shift and scale
    sample = 2.0 / (n * scale)
    coverage = np.clip(0.5 - _target_distance(u, v) / sample, 0.0, 1.0)
    fine = 0.15 + 0.7 * coverage
    return (
        fine.reshape(resolution, supersampling, resolution, supersampling)
        .mean(axis=(1, 3))
        .astype(np.float32)
    )


def target_pattern_set(resolution: int) -> PatternSet:
    """The complete Walsh–Hadamard basis (all-on reference first) that measures the target."""
    return hadamard_reference_patterns(resolution * resolution, resolution)


def reconstruct_target(ideal: np.ndarray, pattern_set: PatternSet) -> np.ndarray:
    """The grayscale target image from ideal-unit measurements of the complete Hadamard basis."""
    from lsi_ros.evaluation.baselines import reconstruct_pinv, walsh_coefficients

    indices, coefficients = walsh_coefficients(pattern_set, ideal)
    return reconstruct_pinv(indices, coefficients, pattern_set.resolution[0])


@dataclass(frozen=True)
class Registration:
    shift: tuple[float, float]  # rows, columns, sampling pixels
    scale: float
    residual: float  # rms of the least-squares fit, relative to the target's contrast


def estimate_registration(image: np.ndarray) -> Registration:
    """Shift and scale of the registration target in a reconstructed ``(n, n)`` image."""
    image = np.asarray(image, dtype=np.float64)
    n = image.shape[0]
    if image.shape != (n, n):
        raise CalibrationError(f"registration needs a square image, got {image.shape}")
    window = cv2.createHanningWindow((n, n), cv2.CV_64F)

    def misfit(params: np.ndarray) -> float:
        """Squared residual of ``image ≈ a·target(shift, scale) + b``, best ``a, b`` in closed form."""
        model = registration_target(n, (params[0], params[1]), params[2], supersampling=4).ravel()
        design = np.stack([model, np.ones_like(model)], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, image.ravel(), rcond=None)
        return float(np.sum((image.ravel() - design @ coefficients) ** 2))

    starts = []
    for scale in SCALE_SEARCH:
        expected = registration_target(n, scale=scale, supersampling=4).astype(np.float64)
        (dx, dy), _ = cv2.phaseCorrelate(expected, image.copy(), window)  # it windows its inputs in place
        starts.append(np.array([dy, dx, scale]))
    start = min(starts, key=misfit)
    limit = n / 4
    result = minimize(
        misfit,
        start,
        method="Nelder-Mead",
        bounds=[(-limit, limit), (-limit, limit), (SCALE_SEARCH[0] * 0.9, SCALE_SEARCH[-1] / 0.9)],
        options={"xatol": 1e-3, "fatol": 1e-9, "initial_simplex": _simplex(start)},
    )
    contrast = max(float(np.ptp(image)), 1e-300)
    rms = math.sqrt(result.fun / image.size) / contrast
    return Registration(
        shift=(float(result.x[0]), float(result.x[1])), scale=float(result.x[2]), residual=rms
    )


def _simplex(start: np.ndarray) -> np.ndarray:
    return np.stack([start, start + [0.5, 0, 0], start + [0, 0.5, 0], start + [0, 0, 0.03]])


# --- captures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationCaptures:
    """Raw ADC counts of one calibration session, as acquired (or as recorded to a file)."""

    dark: np.ndarray  # (frames, patterns): DMD all-off, objective covered
    ambient: np.ndarray  # (frames, patterns): DMD all-off, flat field present
    ptc_counts: np.ndarray  # (levels, frames, patterns): flat field through fill-factor patterns
    ptc_light: np.ndarray  # (levels, patterns): ideal measurement y of each of those patterns
    target: np.ndarray  # (frames, resolution²): registration target, complete Hadamard basis
    resolution: int
    flat_field: float  # scene value assumed for the flat field (1.0: a white reference)
    adc_full_scale: float  # largest code the ADC can deliver
    source: str = ""

    ARRAYS = ("dark", "ambient", "ptc_counts", "ptc_light", "target")

    def __post_init__(self) -> None:
        for name in self.ARRAYS:
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if not np.all(np.isfinite(value)):
                raise CalibrationError(f"captures: {name} holds non-finite values")
            object.__setattr__(self, name, value)
        n = int(self.resolution)
        checks = {
            "dark": self.dark.ndim == 2 and self.dark.shape[0] >= 2,
            "ambient": self.ambient.ndim == 2 and self.ambient.shape[0] >= 2,
            "ptc_counts": self.ptc_counts.ndim == 3 and self.ptc_counts.shape[1] >= 2,
            "ptc_light": self.ptc_light.shape == (self.ptc_counts.shape[0], self.ptc_counts.shape[-1]),
            "target": self.target.ndim == 2 and self.target.shape[1] == n * n,
        }
        for name, ok in checks.items():
            if not ok:
                raise CalibrationError(
                    f"captures: {name} has an unexpected shape {getattr(self, name).shape}"
                )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the captures as ``.npz`` (no pickles) or ``.safetensors``, by suffix."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": CAPTURES_FORMAT,
            "version": str(FILE_VERSION),
            "resolution": str(self.resolution),
            "flat_field": repr(self.flat_field),
            "adc_full_scale": repr(self.adc_full_scale),
            "source": self.source,
        }
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in self.ARRAYS}
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(arrays, str(path), metadata=meta)
        else:
            with path.open("wb") as f:
                np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationCaptures:
        """Read captures written by :meth:`save` (or by a bench script in the same layout)."""
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"captures file not found: {path}")
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="np") as f:
                    meta = f.metadata() or {}
                    arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
            else:
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {name: npz[name] for name in npz.files}
                meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, SafetensorError) as err:
            raise CalibrationError(f"{path}: not a readable captures file ({err})") from err
        if meta.get("format") != CAPTURES_FORMAT:
            raise CalibrationError(f"{path}: format is {meta.get('format')!r}, not {CAPTURES_FORMAT}")
        missing = [name for name in cls.ARRAYS if name not in arrays]
        if missing:
            raise CalibrationError(f"{path}: missing arrays {missing}")
        try:
            return cls(
                **{name: arrays[name] for name in cls.ARRAYS},
                resolution=int(meta["resolution"]),
                flat_field=float(meta["flat_field"]),
                adc_full_scale=float(meta["adc_full_scale"]),
                source=meta.get("source", str(path)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationError(f"{path}: {err}") from err


# --- the calibration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorCalibration:
    """Measured parameters of the photodiode chain and of the scene's placement on the DMD grid.

    Units as in :class:`~lsi_ros.optics.photodiode.PhotodiodeModel`: counts for ``dark_level`` and
    ``full_scale``, electrons for ``read_noise``, ``ambient`` and ``full_well``, counts per electron
    for ``gain``, electrons per unit of ideal ``y`` for ``photon_flux`` (at the flat field's assumed
    scene value), sampling pixels (rows, columns) for ``shift``.
    """

    dark_level: float
    read_noise: float
    gain: float
    ambient: float
    full_scale: float
    photon_flux: float
    full_well: float | None = None
    linearity_error: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    resolution: int = 0
    uncertainties: dict[str, float] = field(default_factory=dict)
    date: str = ""
    method: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        numbers = ("dark_level", "read_noise", "gain", "ambient", "full_scale", "photon_flux", "scale")
        for name in (*numbers, "linearity_error", *(("full_well",) if self.full_well is not None else ())):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise CalibrationError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.gain <= 0 or self.photon_flux <= 0 or self.scale <= 0:
            raise CalibrationError(
                "gain, photon_flux and scale must be positive, got "
                f"{self.gain}, {self.photon_flux}, {self.scale}"
            )
        if self.read_noise < 0:
            raise CalibrationError(f"read_noise must be >= 0, got {self.read_noise}")
        if self.full_scale <= self.dark_level:
            raise CalibrationError(f"full_scale {self.full_scale} must exceed dark_level {self.dark_level}")
        shift = tuple(self.shift)
        if len(shift) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) for v in shift):
            raise CalibrationError(f"shift must be two finite numbers (rows, columns), got {self.shift!r}")
        object.__setattr__(self, "shift", tuple(float(v) for v in shift))
        object.__setattr__(self, "uncertainties", {k: float(v) for k, v in dict(self.uncertainties).items()})

    @classmethod
    def from_model(cls, model: PhotodiodeModel, source: str = "") -> DetectorCalibration:
        """A calibration holding a photodiode model's parameters (nominal, not measured)."""
        return cls(
            dark_level=model.dark_level,
            read_noise=model.read_noise,
            gain=model.conversion_gain,
            ambient=model.ambient,
            full_scale=model.full_scale,
            photon_flux=model.photon_flux,
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            method="nominal photodiode model parameters",
            source=source,
        )

    def with_dark(self, dark: DarkEstimate, method: str) -> DetectorCalibration:
        """This calibration with a newly measured dark level and read noise (the rest kept)."""
        uncertainties = self.uncertainties | {
            "dark_level": dark.dark_level_se,
            "read_noise": dark.read_noise_se,
        }
        return replace(
            self,
            dark_level=dark.dark_level,
            read_noise=dark.read_noise,
            uncertainties=uncertainties,
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            method=f"{self.method}; {method}" if self.method else method,
        )

    def grid_registration(self, resolution: int) -> GridRegistration:
        """The measured shift and scale for patterns at ``resolution``² (the shift was measured in
        sampling pixels of the calibration's own resolution); what ``dmd_driver`` displays with."""
        if self.shift != (0.0, 0.0) and self.resolution <= 0:
            raise CalibrationError("the calibration has a shift but no resolution it was measured at")
        factor = resolution / self.resolution if self.resolution > 0 else 1.0
        return GridRegistration((self.shift[0] * factor, self.shift[1] * factor), self.scale)

    @property
    def ambient_counts(self) -> float:
        return self.gain * self.ambient

    def apply(self, counts):
        """ADC counts → photo-electrons of the pattern's light: dark level and ambient offset
        subtracted, divided by the gain. Clipped samples stay clipped (their count says so)."""
        return (np.asarray(counts, dtype=np.float64) - self.dark_level) / self.gain - self.ambient

    def to_ideal(self, counts):
        """ADC counts → ideal measurement ``y`` (units of :mod:`lsi_ros.optics.forward`)."""
        return self.apply(counts) / self.photon_flux

    def calibrate_frame(self, values: np.ndarray) -> np.ndarray:
        """What ``photodiode_sampler`` calls on each measurement frame before publishing it:
        ``(M,)`` counts → ``(M,)`` float32 photo-electrons (see :meth:`apply`)."""
        values = np.asarray(values)
        if values.ndim != 1:
            raise CalibrationError(f"a measurement frame is 1-D, got shape {values.shape}")
        return self.apply(values).astype(np.float32)

    def photodiode_model(self) -> PhotodiodeModel:
        """The detector model these parameters imply, for simulation and training with measured noise."""
        bits = max(1, math.ceil(math.log2(self.full_scale + 1) - 1e-9))
        return PhotodiodeModel(
            photon_flux=self.photon_flux,
            conversion_gain=self.gain,
            read_noise=self.read_noise,
            dark_level=self.dark_level,
            ambient=self.ambient,
            adc_bits=bits,
        )

    def to_json(self) -> dict:
        return {"format": FILE_FORMAT, "version": FILE_VERSION, **asdict(self), "shift": list(self.shift)}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> DetectorCalibration:
        """Read and validate a calibration file; raises :class:`CalibrationError` on any defect."""
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"calibration file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CalibrationError(f"{path}: not a readable JSON file ({err})") from err
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CalibrationError(f"{path}: format is {found!r}, not {FILE_FORMAT}")
        if data.get("version") != FILE_VERSION:
            raise CalibrationError(f"{path}: version {data.get('version')!r}, this code reads {FILE_VERSION}")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise CalibrationError(f"{path}: missing fields {missing}")
        unknown = sorted(set(data) - names - {"format", "version"})
        if unknown:
            raise CalibrationError(f"{path}: unknown fields {unknown}")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except CalibrationError as err:
            raise CalibrationError(f"{path}: {err}") from err
        except (TypeError, ValueError) as err:
            raise CalibrationError(f"{path}: malformed fields ({err})") from err


@dataclass(frozen=True)
class CalibrationResult:
    calibration: DetectorCalibration
    ptc: PhotonTransfer
    target_image: np.ndarray  # reconstructed registration target
    registration: Registration


def calibrate(captures: CalibrationCaptures) -> CalibrationResult:
    """All estimates from one session's captures."""
    dark = temporal_stats(captures.dark)
    ambient = temporal_stats(captures.ambient)
    ptc = photon_transfer(captures.ptc_counts, captures.ptc_light, dark, captures.adc_full_scale)
    gain, gain_se = ptc.gain, ptc.gain_se
    dark_estimate = estimate_dark(captures.dark, gain, gain_se)
    read_noise, read_se = dark_estimate.read_noise, dark_estimate.read_noise_se
    ambient_counts = ambient.mean - dark.mean
    ambient_counts_se = math.hypot(ambient.mean_se, dark.mean_se)
    ambient_e = ambient_counts / gain
    ambient_se = abs(ambient_e) * math.hypot(
        ambient_counts_se / max(abs(ambient_counts), 1e-300), gain_se / gain
    )
    photon_flux = ptc.signal_slope / gain
    photon_flux_se = photon_flux * math.hypot(ptc.signal_slope_se / ptc.signal_slope, gain_se / gain)
    clipped = ptc.saturation_level is not None
    full_scale = float(captures.ptc_counts.max()) if clipped else float(captures.adc_full_scale)
    full_well = float(ptc.mean[ptc.saturation_level] / gain) if clipped else None

    provisional = DetectorCalibration(
        dark_level=dark.mean,
        read_noise=read_noise,
        gain=gain,
        ambient=ambient_e,
        full_scale=full_scale,
        photon_flux=photon_flux,
    )
    pattern_set = target_pattern_set(captures.resolution)
    image = reconstruct_target(provisional.to_ideal(captures.target.mean(axis=0)), pattern_set)
    registration = estimate_registration(image)
    levels, frames, patterns = captures.ptc_counts.shape
    method = (
        f"dark: {captures.dark.shape[0]} frames x {captures.dark.shape[1]} all-off patterns, objective "
        f"covered; ambient: {captures.ambient.shape[0]} x {captures.ambient.shape[1]} all-off patterns, flat "
        f"field present; photon transfer (EMVA 1288): {levels} fill-factor levels x {patterns} patterns x "
        f"{frames} frames on a flat field of scene value {captures.flat_field:g}, gain by weighted least "
        f"squares on {int(ptc.used.sum())} levels below {LINEAR_RANGE:.0%} of saturation; registration: "
        f"{pattern_set.num_patterns}-pattern Hadamard basis at {captures.resolution}x{captures.resolution}, "
        f"{captures.target.shape[0]} frames, phase correlation over scale then least squares"
    )
    calibration = DetectorCalibration(
        dark_level=dark.mean,
        read_noise=read_noise,
        gain=gain,
        ambient=ambient_e,
        full_scale=full_scale,
        photon_flux=photon_flux,
        full_well=full_well,
        linearity_error=ptc.linearity_error,
        shift=registration.shift,
        scale=registration.scale,
        resolution=captures.resolution,
        uncertainties={
            "dark_level": dark.mean_se,
            "read_noise": read_se,
            "gain": gain_se,
            "ambient": ambient_se,
            "photon_flux": photon_flux_se,
        },
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        method=method,
        source=captures.source,
    )
    return CalibrationResult(calibration, ptc, image, registration)
