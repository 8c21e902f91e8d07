"""When to look again: re-localise every ``every`` frames, or sooner when the measurements say the
face moved, and count what localisation costs against the frames it serves.

A registered pattern set measures the same values while the face stays put (up to detector noise);
when the face moves against the grid they change. :class:`RelocalisationPolicy` compares each frame's
measurements (or any signature of them, e.g. the encoder's latent) with those of the first frame after
the last localisation: the relative change of their mean-removed values; above ``change`` it asks for a
localisation (a zoom round the last box, in :meth:`lsi_ros.framing.localize.FaceLocator.locate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def relative_change(values: np.ndarray, reference: np.ndarray) -> float:
    """``‖v − r‖ / ‖r‖`` of the mean-removed vectors: 0 for the same frame, ~1.4 for unrelated ones."""
    v = np.asarray(values, dtype=np.float64).ravel()
    r = np.asarray(reference, dtype=np.float64).ravel()
    v, r = v - v.mean(), r - r.mean()
    return float(np.linalg.norm(v - r) / max(np.linalg.norm(r), 1e-12))


@dataclass
class RelocalisationPolicy:
    """Ask for a localisation every ``every`` frames at most, or when the frame's measurements have
    changed by more than ``change`` (relative, :func:`relative_change`) since the last localisation."""

    every: int = 150
    change: float = 0.12
    frames_since: int = 0
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.every < 1 or not self.change > 0:
            raise ValueError(f"every must be >= 1 and change > 0, got {self.every}, {self.change}")

    def localised(self) -> None:
        """A localisation has just been done: the next frame becomes the reference."""
        self.frames_since, self.reference = 0, None

    def should_localise(self, measurements: np.ndarray) -> bool:
        """Record one frame's measurements; True when the face should be found again."""
        self.frames_since += 1
        if self.reference is None:
            self.reference = np.array(measurements, dtype=np.float64)
            return self.frames_since >= self.every
        return self.frames_since >= self.every or relative_change(measurements, self.reference) > self.change


@dataclass
class LocalisationCost:
    """Patterns and display time spent on localisation against those of the frames (``frame_patterns``
    each, e.g. M = 128 of the model)."""

    frame_patterns: int
    frames: int = 0
    localisations: int = 0
    localisation_patterns: int = 0
    localisation_ms: float = 0.0

    def add_frame(self) -> None:
        self.frames += 1

    def add_localisation(self, patterns: int, display_ms: float) -> None:
        self.localisations += 1
        self.localisation_patterns += int(patterns)
        self.localisation_ms += float(display_ms)

    @property
    def fraction(self) -> float:
        """Share of all patterns shown that went to localisation (the frame budget it takes)."""
        total = self.localisation_patterns + self.frames * self.frame_patterns
        return self.localisation_patterns / total if total else 0.0

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "frame_patterns": self.frame_patterns,
            "localisations": self.localisations,
            "localisation_patterns": self.localisation_patterns,
            "localisation_ms": round(self.localisation_ms, 2),
            "fraction_of_patterns": round(self.fraction, 4),
        }
