"""Keep the face framed between localisations, decide when to look again, and count what it costs
against the frames it serves.

:class:`MeasurementTracker` follows the face with the model's own measurements of each frame (no
pattern of its own but a rare coarse look at new background); :class:`FaceTracker` with a few
low-order Walsh patterns of its own every few frames.

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

    still_holds = False  # it asks for a localisation only when it has lost the face

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


LOOKS_KEPT = 4  # the newest looks at the background a tracker keeps (the oldest lie far behind)


class MeasurementTracker:
    """Follows the face with the model's own measurements, which every frame shows anyway: no pattern
    of its own while the face stays on background it has seen.

    At a localisation, the zoomed image resampled onto the model's grid through the registration the
    locator found is the reference: the face (the FFHQ crop's head ellipse) over the background. Each
    frame's measurements are fitted (Gauss-Newton in measurement space, through the model's own
    patterns) by the reference face moved by a similarity of the grid (shift, scale, roll) over the
    background where the grid now lies, with a fitted gain, offset (ambient light) and level of the
    background no look has seen. The fitted motion, through an alpha-beta filter (``alpha``, ``beta``),
    moves the registration for the next frame, ahead by the face's velocity. Once more than
    ``look_unknown`` of the background under the grid is unseen, a coarse look
    (``look_resolution``², every Walsh pattern of that grid) at a window ``look_window`` times the
    grid's side becomes the newest background. A fit that no longer explains the measurements
    (``max_residual``, against what the reference misses on average) or a jump beyond ``max_step`` (a
    face that left or turned) asks for a localisation, and so does a face grown or shrunk by ``regrow``
    since it was localised (a larger face is localised more precisely); the tracker then
    :attr:`still_holds` the face, and a tight zoom round its box serves.
    """

    def __init__(
        self,
        locator,
        pattern_set,
        photodiode=None,
        iterations: int = 3,
        alpha: float = 0.7,
        beta: float = 0.2,
        max_residual: float = 0.6,
        max_step: float = 0.25,
        miss_rate: float = 0.1,
        look_unknown: float = 0.1,
        look_resolution: int = 8,
        look_window: float = 1.5,
        regrow: float = 2.0,
    ):
        from lsi_ros.optics.forward import ForwardModel
        from lsi_ros.optics.patterns import hadamard_reference_patterns

        self.locator = locator
        self.forward = ForwardModel(pattern_set, np.float32)
        self.resolution = int(self.forward.resolution[0])
        self.photodiode = photodiode
        self.iterations, self.alpha, self.beta = iterations, alpha, beta
        self.max_residual, self.max_step, self.miss_rate = max_residual, max_step, miss_rate
        self.look_unknown, self.look_window, self.regrow = look_unknown, look_window, regrow
        self.look = ForwardModel(hadamard_reference_patterns(look_resolution**2, look_resolution), np.float32)
        r = self.resolution
        self.centre = np.array([r / 2 - 0.5, r / 2 - 0.5])  # (x, y) pixels, centres at integers
        y, x = np.mgrid[:r, :r].astype(np.float32)
        u = np.stack([x - self.centre[0], y - self.centre[1]])
        ones, zeros = np.ones_like(x), np.zeros_like(x)
        # How a grid point moves under each parameter: shift x, shift y, log scale, roll.
        self.motions = np.stack(
            [np.stack([ones, zeros]), np.stack([zeros, ones]), u, np.stack([-u[1], u[0]])]
        )
        self.registration = None
        self.residual, self.unknown, self.anchors, self.last_patterns = 0.0, 0.0, 0, 0
        self.still_holds = False

    cost = 0  # patterns of its own per frame

    @property
    def anchor_cost(self) -> int:
        """Patterns of a look at the background round the face."""
        return self.look.num_patterns + self.locator.dark_patterns

    @property
    def wants_look(self) -> bool:
        """The grid has moved onto background that no look has seen."""
        return self.unknown > self.look_unknown

    def start(self, localization) -> None:
        """Take the localisation's zoomed image and registration as the reference."""
        import cv2

        from lsi_ros.framing.unframed import face_mask

        self.registration = localization.registration
        self.localised_scale = self.registration.scale
        zoom = localization.image.astype(np.float32)
        self.layers = [(zoom, localization.window)]  # looks at the background, newest first
        self.mask = face_mask(self.resolution)
        self.face = self.mask * np.nan_to_num(self._remap(zoom, localization.window, self.registration))
        self.gradients = [
            np.stack(
                [cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)]
            )
            / 8
            for image in (self.face, self.mask)
        ]
        self.velocity = np.zeros(4)  # registration (shift rows, cols, log scale, roll rad) per frame
        self.miss = None  # what the reference misses of the measurements, on average
        self.unknown = 0.0
        self.still_holds = False

    def follow(self, counts: np.ndarray):
        """One frame's counts, measured through :attr:`registration` -> (the registration for the next
        frame, the fit's relative residual, ok); ``ok`` False asks for a localisation."""
        y = np.asarray(counts, dtype=np.float64)
        y = y if self.photodiode is None else self.photodiode.to_ideal(y)
        background = self._background()
        self.unknown = float(((1 - self.mask) * np.isnan(background)).sum() / (1 - self.mask).sum())
        motion, fitted = self._fit(y, background)
        miss = y - fitted
        # What the reference misses (detail finer than the zoom's) stays put while the face is
        # followed: the residual is the smaller of the fit's and the fit's against that running mean
        # (noisy over the first frames); both jump when the face is lost.
        change = miss if self.miss is None else min(miss, miss - self.miss, key=np.linalg.norm)
        self.miss = miss if self.miss is None else self.miss + self.miss_rate * (miss - self.miss)
        self.residual = float(np.linalg.norm(change) / max(np.linalg.norm(y - y.mean()), 1e-12))
        step = abs(motion[2]) + abs(motion[3]) + np.hypot(*motion[:2]) / self.resolution
        ok = self.residual <= self.max_residual and step <= self.max_step
        self.still_holds = False
        if ok:
            predicted = _as_vector(self.registration)
            innovation = _as_vector(self._moved(motion)) - predicted
            self.velocity = self.velocity + self.beta * innovation
            self.registration = _from_vector(predicted + self.alpha * innovation + self.velocity)
            # A face much larger (or smaller) than when it was localised is localised again: the
            # locator frames a large face more precisely, and the tracker keeps what it found.
            grown = self.registration.scale / self.localised_scale
            ok = 1 / self.regrow < grown < self.regrow
            # The fit still holds the face: only its size asks for a localisation, round the box.
            self.still_holds = not ok
        self.last_patterns = 0
        return self.registration, self.residual, ok

    def look_again(self, field_image) -> int:
        """A coarse look at a window round the face, as the grid now frames it, becomes the newest
        background; returns the patterns it showed."""
        from lsi_ros.framing.field import registration_quad
        from lsi_ros.framing.localize import window_registration

        quad = registration_quad(self.registration, self.locator.field_shape, self.resolution)
        side = self.look_window * float(np.linalg.norm(quad[3] - quad[0]))
        window = window_registration(quad.mean(0), side, self.look.resolution[0], self.locator.field_shape)
        image = self.locator.acquire(field_image, self.look, window).astype(np.float32)
        self.layers = [(image, window), *self.layers[: LOOKS_KEPT - 1]]
        self.anchors += 1
        self.unknown = 0.0
        self.last_patterns = self.anchor_cost
        return self.anchor_cost

    def box(self) -> np.ndarray:
        """The face box (x0, y0, x1, y1) in field pixels where the registration frames it."""
        from lsi_ros.framing.unframed import face_box

        return face_box(self.registration, self.locator.field_shape, self.resolution)

    def _fit(self, y: np.ndarray, background: np.ndarray):
        """Gauss-Newton: the motion (x, y grid pixels, log scale, roll in radians) by which grid point u
        sees reference point δ(u), and the measurements it predicts."""
        import cv2

        r, patterns = self.resolution, self.forward.matrix
        unseen = np.isnan(background)
        background = np.nan_to_num(background)
        motion = np.zeros(4)
        for _ in range(self.iterations):
            matrix = _similarity(motion, self.centre)

            def warp(image, matrix=matrix):
                return cv2.warpAffine(image, matrix, (r, r), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)

            face, mask = warp(self.face), warp(self.mask)
            slope = np.stack([warp(g) for g in self.gradients[0]])
            slope -= background * np.stack([warp(g) for g in self.gradients[1]])
            steepest = np.einsum("cyx,kcyx->kyx", slope, self.motions).reshape(4, -1)
            image = face + (1 - mask) * background
            design = np.column_stack(
                [np.ones(len(y)), patterns @ image.ravel(), patterns @ ((1 - mask) * unseen).ravel()]
            )
            nuisance, *_ = np.linalg.lstsq(design, y, rcond=None)
            jacobian = nuisance[1] * (patterns @ steepest.T)
            step, *_ = np.linalg.lstsq(np.column_stack([design, jacobian]), y, rcond=None)
            motion = motion + step[3:]
        return motion, design @ nuisance

    def _background(self) -> np.ndarray:
        """The background the grid now lies on (R, R): the newest look that reaches each sampling
        pixel, NaN where none does."""
        background = np.full((self.resolution, self.resolution), np.nan, np.float32)
        for image, window in self.layers:
            unseen = np.isnan(background)
            if not unseen.any():
                break
            background[unseen] = self._remap(image, window, self.registration)[unseen]
        return background

    def _remap(self, image: np.ndarray, window, registration) -> np.ndarray:
        """A look's image (taken through ``window``) as the model's grid under ``registration`` sees
        it (R, R), NaN beyond the look."""
        import cv2

        from lsi_ros.framing.localize import to_field, to_window

        r = self.resolution
        y, x = np.mgrid[:r, :r] + 0.5
        field = to_field(np.stack([x, y], -1), r, registration, self.locator.field_shape)
        at = (to_window(field, window, image.shape[0], self.locator.field_shape) - 0.5).astype(np.float32)
        return cv2.remap(
            image,
            at[..., 0],
            at[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=np.nan,
        )

    def _moved(self, motion: np.ndarray):
        """The registration whose grid sees the reference face where it was: ``registration ∘ δ⁻¹``."""
        from lsi_ros.optics.dmd import GridRegistration

        swap = np.array([[0.0, 1.0], [1.0, 0.0]])  # (x, y) <-> (row, column)
        a = swap @ _similarity(motion, np.zeros(2))[:, :2].astype(np.float64) @ swap
        k = self.registration.scale * self.registration.rotation() @ np.linalg.inv(a)
        shift = np.asarray(self.registration.shift) - k @ (swap @ motion[:2])
        roll = float(np.degrees(np.arctan2(k[1, 0], k[0, 0])))
        return GridRegistration(tuple(shift), float(np.sqrt(abs(np.linalg.det(k)))), roll)


def _similarity(motion: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The 2×3 affine (x, y) of δ(u) = c + s·R(θ)(u − c) + d for motion (dx, dy, log s, θ)."""
    s, theta = np.exp(motion[2]), motion[3]
    turn = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return np.float32(np.column_stack([turn, centre + motion[:2] - turn @ centre]))


def _as_vector(registration) -> np.ndarray:
    return np.array([*registration.shift, np.log(registration.scale), np.radians(registration.roll)])


def _from_vector(v: np.ndarray):
    from lsi_ros.optics.dmd import GridRegistration

    return GridRegistration((float(v[0]), float(v[1])), float(np.exp(v[2])), float(np.degrees(v[3])))
