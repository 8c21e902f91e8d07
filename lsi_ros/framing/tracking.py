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
    changed by more than ``change`` (relative, :func:`relative_change`) since the last localisation or
    tracking update. The realistic photodiode alone gives about 0.3 between two frames of a still face at
    M = 128, a shift of 2 sampling pixels about 0.6."""

    every: int = 600
    change: float = 0.6
    frames_since: int = 0
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.every < 1 or not self.change > 0:
            raise ValueError(f"every must be >= 1 and change > 0, got {self.every}, {self.change}")

    def localised(self) -> None:
        """A localisation has just been done: the next frame becomes the reference."""
        self.frames_since, self.reference = 0, None

    def reframed(self) -> None:
        """The tracker has moved the registration: the next frame becomes the reference, the count goes on."""
        self.reference = None

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
    tracking_updates: int = 0
    tracking_patterns: int = 0

    def add_frame(self) -> None:
        self.frames += 1

    def add_localisation(self, patterns: int, display_ms: float) -> None:
        self.localisations += 1
        self.localisation_patterns += int(patterns)
        self.localisation_ms += float(display_ms)

    def add_tracking(self, patterns: int, display_ms: float) -> None:
        self.tracking_updates += 1
        self.tracking_patterns += int(patterns)
        self.localisation_ms += float(display_ms)

    @property
    def fraction(self) -> float:
        """Share of all patterns shown that went to finding the face (localisations and tracking
        updates): the part of the frame budget it takes."""
        spent = self.localisation_patterns + self.tracking_patterns
        total = spent + self.frames * self.frame_patterns
        return spent / total if total else 0.0

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "frame_patterns": self.frame_patterns,
            "localisations": self.localisations,
            "localisation_patterns": self.localisation_patterns,
            "tracking_updates": self.tracking_updates,
            "tracking_patterns": self.tracking_patterns,
            "localisation_and_tracking_ms": round(self.localisation_ms, 2),
            "fraction_of_patterns": round(self.fraction, 4),
        }


class FaceTracker:
    """Follows a localised face between localisations with a few low-order Walsh patterns on the last
    zoom window: the measured coefficients are matched against those of the last zoomed image with the
    face (a soft ellipse round its landmarks) moved and scaled over the still background. The match
    gives the face's motion, which moves and scales the registration with it; a poor match (the face
    turned, left, or changed beyond a shift and scale) asks for a localisation.
    """

    def __init__(self, locator, patterns: int = 15, max_residual: float = 0.35, max_drift: float = 0.25):
        from lsi_ros.optics.forward import ForwardModel
        from lsi_ros.optics.patterns import hadamard_reference_patterns

        self.locator = locator
        resolution = locator.config.zoom_resolution
        self.forward = ForwardModel(hadamard_reference_patterns(patterns, resolution), np.float32)
        self.max_residual, self.max_drift = max_residual, max_drift
        self.start_from = None

    @property
    def cost(self) -> int:
        """Patterns per update (the all-off ambient pattern included)."""
        return self.forward.num_patterns + self.locator.dark_patterns

    def start(self, localization) -> None:
        """Track from a localisation's zoomed image, window and registration."""
        import cv2

        from lsi_ros.framing.localize import to_field

        size = localization.image.shape[0]
        points = localization.landmarks  # field pixels -> zoom pixels through the window's inverse
        place_points = _field_to_window(points, localization.window, size, self.locator.field_shape)
        centre = place_points.mean(0)
        half = (place_points.max(0) - place_points.min(0)) / 2
        y, x = np.mgrid[:size, :size] + 0.5
        inside = ((x - centre[0]) / (1.25 * half[0])) ** 2 + (
            (y - centre[1] + 0.1 * half[1]) / (1.5 * half[1])
        ) ** 2
        mask = cv2.GaussianBlur((inside <= 1).astype(np.float32), (0, 0), 0.04 * size)
        self.start_from = {
            "localization": localization,
            "image": localization.image.astype(np.float32),
            "mask": mask,
            "centre": centre,
            "centre_field": to_field(centre, size, localization.window, self.locator.field_shape),
            "params": np.zeros(3),
        }

    def _predicted(self, params: np.ndarray, indices: np.ndarray) -> np.ndarray:
        import cv2

        from lsi_ros.optics.hadamard import walsh2d

        s = self.start_from
        size = s["image"].shape[0]
        scale = float(np.exp(params[2]))
        cx, cy = s["centre"]
        matrix = np.float32(
            [[scale, 0, (1 - scale) * cx + params[0]], [0, scale, (1 - scale) * cy + params[1]]]
        )
        face = cv2.warpAffine(s["image"] * s["mask"], matrix, (size, size))
        mask = cv2.warpAffine(s["mask"], matrix, (size, size))
        predicted = face + (1 - mask) * s["image"]
        return walsh2d(predicted.astype(np.float64))[indices[:, 0], indices[:, 1]]

    def update(self, field_image):
        """One tracking update: (registration, residual, ok); ``ok`` False asks for a localisation."""
        from scipy.optimize import minimize

        s = self.start_from
        window = s["localization"].window
        indices, measured = self.locator.coefficients(field_image, self.forward, window)
        norm = float(np.linalg.norm(measured[1:])) + 1e-9

        def mismatch(params):
            return float(np.sum((self._predicted(params, indices) - measured)[1:] ** 2)) / norm**2

        fit = minimize(mismatch, s["params"], method="Nelder-Mead", options={"xatol": 0.05, "fatol": 1e-7})
        s["params"] = fit.x
        residual = float(np.sqrt(fit.fun))
        registration = self._moved(fit.x)
        drift = abs(float(np.exp(fit.x[2])) - 1.0)
        return registration, residual, residual <= self.max_residual and drift <= self.max_drift

    def box(self) -> np.ndarray:
        """The localisation's face box (x0, y0, x1, y1) moved and scaled as the face was tracked."""
        s = self.start_from
        size = s["image"].shape[0]
        params = s["params"]
        zoom_block = field_placement_block(size, self.locator.field_shape)
        move = params[:2] * s["localization"].window.scale * zoom_block
        corners = s["localization"].box.reshape(2, 2)
        moved = s["centre_field"] + np.exp(params[2]) * (corners - s["centre_field"]) + move
        return moved.ravel()

    def _moved(self, params: np.ndarray):
        """The localisation's registration with the face moved by ``params`` (zoom pixels, log scale)."""
        from lsi_ros.framing.field import field_to_grid
        from lsi_ros.optics.dmd import GridRegistration

        s = self.start_from
        found = s["localization"].registration
        resolution = self.locator.config.resolution
        size = s["image"].shape[0]
        window = s["localization"].window
        zoom_block = field_placement_block(size, self.locator.field_shape)
        field_per_zoom_pixel = window.scale * zoom_block
        block = field_placement_block(resolution, self.locator.field_shape)
        centre = field_to_grid(s["centre_field"], self.locator.field_shape, resolution)
        move = np.array([params[1], params[0]]) * field_per_zoom_pixel / block  # (rows, cols) grid px
        scale = float(np.exp(params[2]))
        shift = scale * (np.asarray(found.shift) - centre) + centre + move
        return GridRegistration((float(shift[0]), float(shift[1])), found.scale * scale, found.roll)


def _field_to_window(points_xy: np.ndarray, window, size: int, field_shape) -> np.ndarray:
    """Field pixels (x, y) -> pixels of an image acquired on ``window`` (pixel i spans [i, i + 1))."""
    from lsi_ros.framing.field import field_to_grid

    offsets = field_to_grid(points_xy, field_shape, size)
    return (window.to_grid(offsets) + size / 2)[..., ::-1]


def field_placement_block(resolution: int, field_shape) -> int:
    from lsi_ros.framing.field import field_placement

    return field_placement(resolution, None, field_shape).block
