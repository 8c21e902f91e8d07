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
    """Follows a localised face between localisations with a few low-order Walsh patterns on a window
    round it: the measured coefficients are matched against those of the window's reference image with
    the face (a soft ellipse round its landmarks) moved and scaled over the still background. The match
    gives the face's motion, which moves and scales the registration with it; a poor match (the face
    turned, left, or changed beyond a shift and scale) asks for a localisation.

    The window follows the face: once the face has moved ``anchor_shift`` of the window's side from its
    centre, or grown or shrunk by ``anchor_scale``, a new window is centred on it and a low-resolution
    image of it (``anchor_resolution``², every Walsh pattern of that grid) becomes the reference. The
    low-order coefficients the tracker matches are those of a coarse image, so a coarse reference
    predicts them as well as the zoomed image did, for a tenth of a localisation's patterns.
    """

    def __init__(
        self,
        locator,
        patterns: int = 15,
        max_residual: float = 0.5,
        max_drift: float = 0.25,
        anchor_resolution: int = 16,
        anchor_shift: float = 0.1,
        anchor_scale: float = 0.1,
        scale_prior: float = 4.0,
    ):
        from lsi_ros.optics.forward import ForwardModel
        from lsi_ros.optics.patterns import hadamard_reference_patterns

        self.locator = locator
        resolution = locator.config.zoom_resolution
        self.forward = ForwardModel(hadamard_reference_patterns(patterns, resolution), np.float32)
        self.anchor = ForwardModel(
            hadamard_reference_patterns(anchor_resolution**2, anchor_resolution), np.float32
        )
        self.max_residual, self.max_drift = max_residual, max_drift
        self.anchor_shift, self.anchor_scale = anchor_shift, anchor_scale
        self.scale_prior = scale_prior
        self.start_from = None
        self.last_patterns = 0  # patterns the last update showed (its re-anchoring included)
        self.anchors = 0

    @property
    def cost(self) -> int:
        """Patterns per update (the all-off ambient pattern included)."""
        return self.forward.num_patterns + self.locator.dark_patterns

    @property
    def anchor_cost(self) -> int:
        """Patterns of a new reference window."""
        return self.anchor.num_patterns + self.locator.dark_patterns

    def start(self, localization, origin: dict | None = None) -> None:
        """Track from a localisation's zoomed image, window and registration (``origin``: the face as
        first localised, which a new window is matched against; None: this localisation)."""
        import cv2

        from lsi_ros.framing.localize import to_field, to_window

        size = localization.image.shape[0]
        points = localization.landmarks  # field pixels -> zoom pixels through the window's inverse
        place_points = to_window(points, localization.window, size, self.locator.field_shape)
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
        self.start_from["origin"] = origin or {
            "image": self.start_from["image"],
            "mask": mask,
            "window": localization.window,
            "box": np.asarray(localization.box, dtype=np.float64),
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
            # A face grows or shrinks slowly: a change of scale costs (a few low-order coefficients
            # alone cannot tell a larger face from a moved one).
            growth = self.scale_prior * (params[2] - s["params"][2]) ** 2
            return float(np.sum((self._predicted(params, indices) - measured)[1:] ** 2)) / norm**2 + growth

        simplex = s["params"] + np.vstack([np.zeros(3), np.diag([2.0, 2.0, 0.04])])  # pixels, log scale
        fit = minimize(
            mismatch,
            s["params"],
            method="Nelder-Mead",
            options={"xatol": 0.02, "fatol": 1e-7, "initial_simplex": simplex},
        )
        s["params"] = fit.x
        residual = float(np.sqrt(fit.fun))
        registration = self._moved(fit.x)
        drift = abs(float(np.exp(fit.x[2])) - 1.0)
        self.last_patterns = self.cost
        ok = residual <= self.max_residual and drift <= self.max_drift
        size = s["image"].shape[0]
        moved = np.hypot(*(fit.x[:2] + s["centre"] - size / 2)) / size
        if ok and (moved > self.anchor_shift or drift > self.anchor_scale):
            self._reanchor(field_image, registration)
        return registration, residual, ok

    def _reanchor(self, field_image, registration) -> None:
        """Centre a new window on the tracked face and take its coarse image as the reference."""
        import dataclasses

        import cv2

        from lsi_ros.framing.localize import window_registration

        s = self.start_from
        found = s["localization"]
        size = s["image"].shape[0]
        box = self.box()
        side = self.locator.config.track_window * float(np.max(box[2:] - box[:2]))
        centre, field = (box[:2] + box[2:]) / 2, self.locator.field_shape
        window = window_registration(centre, side, size, field)
        # The same square for the coarse grid: a registration's shift is in its own grid's pixels.
        coarse_window = window_registration(centre, side, self.anchor.resolution[0], field)
        coarse = self.locator.acquire(field_image, self.anchor, coarse_window).astype(np.float32)
        landmarks = self._moved_points(found.landmarks)
        move, face, mask = self._matched(coarse, coarse_window, box)
        # The reference: the sharp first-localised face where it was matched, over the coarse background.
        image = face + (1 - mask) * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_NEAREST)
        box, landmarks = box + np.tile(move, 2), landmarks + move
        block = field_placement_block(self.locator.config.resolution, field)
        registration = dataclasses.replace(
            registration, shift=tuple(np.asarray(registration.shift) + move[::-1] / block)
        )
        self.start(
            dataclasses.replace(
                found, box=box, landmarks=landmarks, registration=registration, window=window, image=image
            ),
            s["origin"],
        )
        self.last_patterns += self.anchor_cost
        self.anchors += 1

    def _matched(self, coarse: np.ndarray, window, box: np.ndarray, reach: float = 0.3) -> np.ndarray:
        """Where the first-localised face sits in a new window's coarse image: the move (x, y) in field
        pixels from ``box`` (and the face and its mask warped there, in the window's zoom pixels) that
        best fits the face's masked appearance to the image (the background
        taken as measured), over a grid of moves up to ``reach`` face widths. Corrects the drift the
        low-order fits gather between windows."""
        import cv2

        from lsi_ros.framing.localize import to_field, to_window

        o, field = self.start_from["origin"], self.locator.field_shape
        size = o["image"].shape[0]
        width = float(box[2] - box[0])
        scale = width / float(o["box"][2] - o["box"][0])
        then, now = (o["box"][:2] + o["box"][2:]) / 2, (box[:2] + box[2:]) / 2
        source = np.array([[0.0, 0.0], [size, 0.0], [0.0, size]])
        on_field = now + scale * (to_field(source, size, o["window"], field) - then)
        steps = np.linspace(-reach, reach, 13) * width
        best, found = np.inf, None
        for dy in steps:
            for dx in steps:
                target = (
                    to_window(on_field + [dx, dy], window, coarse.shape[0], field) * size / coarse.shape[0]
                )
                matrix = cv2.getAffineTransform(np.float32(source), np.float32(target))
                face = cv2.warpAffine(o["image"] * o["mask"], matrix, (size, size))
                mask = cv2.warpAffine(o["mask"], matrix, (size, size))
                small_face, small_mask = (
                    cv2.resize(a, coarse.shape[::-1], interpolation=cv2.INTER_AREA) for a in (face, mask)
                )
                error = float(np.sum((small_face - small_mask * coarse) ** 2))
                if error < best:
                    best, found = error, (np.array([dx, dy]), face, mask)
        return found

    def box(self) -> np.ndarray:
        """The localisation's face box (x0, y0, x1, y1) moved and scaled as the face was tracked."""
        return self._moved_points(self.start_from["localization"].box.reshape(2, 2)).ravel()

    def _moved_points(self, points_xy: np.ndarray) -> np.ndarray:
        """Field points (x, y) of the reference moved and scaled as the face was tracked since."""
        s = self.start_from
        size = s["image"].shape[0]
        params = s["params"]
        zoom_block = field_placement_block(size, self.locator.field_shape)
        move = params[:2] * s["localization"].window.scale * zoom_block
        return s["centre_field"] + np.exp(params[2]) * (np.asarray(points_xy) - s["centre_field"]) + move

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


def field_placement_block(resolution: int, field_shape) -> int:
    from lsi_ros.framing.field import field_placement

    return field_placement(resolution, None, field_shape).block
