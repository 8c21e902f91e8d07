"""What the FFHQ rule's square misses of the generator's framing, read off all 68 landmarks.

The locator frames a face by the FFHQ dataset script's rule (the mean eye and mouth landmarks give an
oriented square), moved by ``LocatorConfig.framing_offset``. On the blurred zoomed images face-api's
landmarks are noisy and a little biased, and the rule uses only the eyes and the mouth, so the square
lands a couple of sampling pixels off where the generator frames the same face, differently for every
face. A ridge regression from the 68 landmarks, in the grid the rule framed, to where the generator's
grid lies in it (centre shift in rows and columns, log scale, roll) reads that residual from the whole
face. It is fitted on unframed scenes of training-range faces through the locator it corrects
(``lsi eval --scenes unframed --fit-framing-correction N``) and travels in the face-finder file, since
it belongs to that finder and its zoom settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsi_ros.optics.dmd import GridRegistration

LANDMARKS = 68
TARGETS = ("shift_row", "shift_col", "log_scale", "roll_deg")


@dataclass(frozen=True)
class FramingCorrection:
    """``target = (x − mean) · weight + bias``, where ``x`` is the 68 landmarks (rows, columns) in the
    sampling pixels of the grid the rule framed and ``target`` is where the generator's grid lies in it."""

    mean: np.ndarray  # (136,)
    weight: np.ndarray  # (136, 4)
    bias: np.ndarray  # (4,)

    def __post_init__(self) -> None:
        shapes = {"mean": (2 * LANDMARKS,), "weight": (2 * LANDMARKS, len(TARGETS)), "bias": (len(TARGETS),)}
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape or not np.all(np.isfinite(value)):
                raise ValueError(f"framing correction {name}: {shape} finite values, got {value.shape}")
            object.__setattr__(self, name, value)

    def predict(self, registration: GridRegistration, landmarks: np.ndarray) -> np.ndarray:
        """Where the generator's grid lies in ``registration``'s grid (4,), from ``landmarks`` (68, 2) as
        (row, column) offsets in the units of ``GridRegistration.shift``."""
        return (features(registration, landmarks) - self.mean) @ self.weight + self.bias

    def apply(self, registration: GridRegistration, landmarks: np.ndarray) -> GridRegistration:
        """``registration`` moved, scaled and turned onto the generator's framing the landmarks predict."""
        row, col, log_scale, roll = self.predict(registration, landmarks)
        return GridRegistration(
            shift=tuple(registration.to_scene(np.array([row, col]))),
            scale=registration.scale * float(np.exp(log_scale)),
            roll=registration.roll + float(roll),
        )

    def tensors(self) -> dict[str, np.ndarray]:
        return {"framing_correction.mean": self.mean, "framing_correction.weight": self.weight,
                "framing_correction.bias": self.bias}  # fmt: skip

    @classmethod
    def from_tensors(cls, tensors: dict) -> FramingCorrection | None:
        """The correction among a file's tensors (None when the file carries none)."""
        names = [f"framing_correction.{part}" for part in ("mean", "weight", "bias")]
        if not any(name in tensors for name in names):
            return None
        missing = [name for name in names if name not in tensors]
        if missing:
            raise ValueError(f"incomplete framing correction: {', '.join(missing)} missing")
        return cls(*(np.asarray(tensors[name], dtype=np.float64) for name in names))


def features(registration: GridRegistration, landmarks: np.ndarray) -> np.ndarray:
    """The landmarks (68, 2) in ``registration``'s grid, flattened (136,)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (LANDMARKS, 2):
        raise ValueError(f"the framing correction reads ({LANDMARKS}, 2) landmarks, got {landmarks.shape}")
    return registration.to_grid(landmarks).ravel()


def residual(found: GridRegistration, truth: GridRegistration) -> np.ndarray:
    """Where ``truth``'s grid lies in ``found``'s (4,): what a perfect correction predicts."""
    return np.array(
        [*found.to_grid(np.asarray(truth.shift)), np.log(truth.scale / found.scale), truth.roll - found.roll]
    )


def framing_errors(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per scene (N, 3): centre error in sampling pixels of the face's grid, |scale ratio − 1|, |roll| (°)."""
    return np.c_[
        np.hypot(*(predicted[:, :2] - actual[:, :2]).T),
        np.abs(np.exp(actual[:, 2] - predicted[:, 2]) - 1),
        np.abs(actual[:, 3] - predicted[:, 3]),
    ]


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> FramingCorrection:
    mean, bias = x.mean(0), y.mean(0)
    centred = x - mean
    weight = np.linalg.solve(centred.T @ centred + ridge * np.eye(x.shape[1]), centred.T @ (y - bias))
    return FramingCorrection(mean, weight, bias)


def _summary(errors: np.ndarray) -> dict:
    return {
        "centre_face_px_median": round(float(np.median(errors[:, 0])), 3),
        "centre_face_px_p90": round(float(np.percentile(errors[:, 0], 90)), 3),
        "scale_error_median": round(float(np.median(errors[:, 1])), 4),
        "roll_error_deg_median": round(float(np.median(errors[:, 2])), 3),
    }


def fit_framing_correction(
    x: np.ndarray, y: np.ndarray, ridges=(1.0, 10.0, 100.0, 1000.0), folds: int = 5, seed: int = 0
) -> tuple[FramingCorrection, dict]:
    """Ridge fit of targets ``y`` (N, 4) on landmark features ``x`` (N, 136), the ridge chosen by
    ``folds``-fold cross-validation on the median centre error; returns the correction fitted on all
    scenes and a report of the held-out errors without and with it."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 * folds:
        raise ValueError(f"{len(x)} scenes are too few to fit the framing correction ({2 * folds} at least)")
    parts = np.array_split(np.random.default_rng(seed).permutation(len(x)), folds)
    scores = {}
    for ridge in ridges:
        predicted = np.zeros_like(y)
        for k, held in enumerate(parts):
            train = np.concatenate([p for j, p in enumerate(parts) if j != k])
            fitted = _ridge(x[train], y[train], ridge)
            predicted[held] = (x[held] - fitted.mean) @ fitted.weight + fitted.bias
        scores[ridge] = framing_errors(predicted, y)
    best = min(ridges, key=lambda r: np.median(scores[r][:, 0]))
    report = {
        "scenes": len(x),
        "ridge": best,
        "cross_validation_folds": folds,
        "without": _summary(framing_errors(np.zeros_like(y), y)),
        "with": _summary(scores[best]),
        "by_ridge": {str(r): _summary(e) for r, e in scores.items()},
    }
    return _ridge(x, y, best), report
