"""Find the face in the field with the camera itself, and the registration that frames it as FFHQ.

Stage 1 (``coarse``): Walsh-Hadamard patterns over the whole field (the lowest ``coarse_patterns``
coefficients of an ``R₁²`` grid, reference-first, one pattern each) -> a blurred image of the field ->
face-api's tiny face detector -> a candidate box. Stage 2 (``zoom``): the same kind of patterns
registered onto a window round the candidate -> a sharper image of the face -> the detector again (the
score decides face or no face) and the 68-landmark net -> the FFHQ dataset script's square from the
eye and mouth landmarks (``lsi_ros.evaluation.real_faces.ffhq_quad``) -> the registration. In tracking
mode the last box is known and stage 2 alone runs round it. The cost is counted in patterns shown and
in milliseconds at the DMD's pattern rate (``DmdTiming``); compute time is reported beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lsi_ros.evaluation.baselines import reconstruct_pinv, walsh_coefficients
from lsi_ros.evaluation.real_faces import ffhq_quad
from lsi_ros.framing.field import DEFAULT_FIELD, field_placement, measure_field, registration_from_quad
from lsi_ros.optics.dmd import DLPC900_1080P, DmdTiming, GridRegistration
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.patterns import hadamard_reference_patterns
from lsi_ros.optics.photodiode import PhotodiodeModel


@dataclass(frozen=True)
class LocatorConfig:
    """Pattern budgets and thresholds of the two stages (see the module docstring)."""

    coarse_resolution: int = 64
    coarse_patterns: int = 1024
    zoom_resolution: int = 128
    zoom_patterns: int = 2048
    zoom_window: float = 2.2  # zoom window side / candidate box side
    track_window: float = 3.0  # wider in tracking mode: the face may have moved since
    min_score: float = 0.5  # detector score in the zoomed image that means "a face"
    candidate_score: float = 0.2  # stage-1 score worth a zoom
    resolution: int = 256  # the model's sampling grid, which the registration frames


@dataclass
class Localization:
    """What the locator found: box (x0, y0, x1, y1) and 68 landmarks (x, y) in field pixels, the
    detector's score, the registration of the model's grid onto the face (None: no face), and the cost."""

    box: np.ndarray | None
    landmarks: np.ndarray | None
    score: float
    registration: GridRegistration | None
    patterns: int
    display_ms: float
    compute_ms: float
    stages: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.registration is not None


def _to_field(
    points_xy: np.ndarray, resolution: int, registration: GridRegistration, field_shape
) -> np.ndarray:
    """Points (x, y) in an acquired image's pixels (pixel i spans [i, i + 1)) -> field pixels (x, y),
    pixel centres at integer coordinates."""
    place = field_placement(resolution, registration, field_shape)
    offsets = np.asarray(points_xy, dtype=np.float64)[..., ::-1] - resolution / 2
    rows_cols = (registration.to_scene(offsets) + resolution / 2) * place.block
    return (rows_cols + [place.row_offset - 0.5, place.col_offset - 0.5])[..., ::-1]


def window_registration(centre_xy, side: float, resolution: int, field_shape) -> GridRegistration:
    """The registration that puts an ``R²`` grid on the square of ``side`` field pixels at ``centre_xy``."""
    place = field_placement(resolution, None, field_shape)
    row = (centre_xy[1] + 0.5 - place.row_offset) / place.block - resolution / 2
    col = (centre_xy[0] + 0.5 - place.col_offset) / place.block - resolution / 2
    return GridRegistration((float(row), float(col)), side / (resolution * place.block))


class FaceLocator:
    """Two-stage localisation through the simulated (or real) detector of :func:`measure_field`.

    ``analyzer``: a :class:`lsi_ros.evaluation.face_analysis.FaceAnalyzer` with the detector and the
    landmark net; ``photodiode``: the detector's noise (None: ideal)."""

    def __init__(
        self,
        analyzer,
        field_shape=DEFAULT_FIELD,
        config: LocatorConfig = LocatorConfig(),
        photodiode: PhotodiodeModel | None = None,
        timing: DmdTiming = DLPC900_1080P,
        seed: int = 0,
    ):
        self.analyzer = analyzer
        self.field_shape = tuple(field_shape)
        self.config = config
        self.photodiode = photodiode
        self.timing = timing
        self.rng = np.random.default_rng(seed)

    @cached_property
    def coarse(self) -> ForwardModel:
        c = self.config
        return ForwardModel(hadamard_reference_patterns(c.coarse_patterns, c.coarse_resolution), np.float32)

    @cached_property
    def zoom(self) -> ForwardModel:
        c = self.config
        return ForwardModel(hadamard_reference_patterns(c.zoom_patterns, c.zoom_resolution), np.float32)

    def acquire(self, field_image, forward: ForwardModel, registration: GridRegistration) -> np.ndarray:
        """A grayscale image (R, R) in [0, 1] of what the registered Hadamard patterns see."""
        y = measure_field(field_image, forward, registration, self.photodiode, self.rng)
        if self.photodiode is not None:
            y = self.photodiode.to_ideal(y)
        indices, coefficients = walsh_coefficients(forward.pattern_set, y)
        return np.clip(reconstruct_pinv(indices, coefficients, forward.resolution[0]), 0.0, 1.0)

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        rgb = np.repeat(np.rint(image * 255).astype(np.uint8)[None, ..., None], 3, axis=-1)
        boxes, scores = self.analyzer.detect(rgb)
        return boxes[0], float(scores[0])

    def _landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        rgb = np.repeat(np.rint(image * 255).astype(np.uint8)[None, ..., None], 3, axis=-1)
        crops, frames = self.analyzer.crop(rgb, box[None])
        return frames[0, :2] + self.analyzer.landmarks(crops)[0] * frames[0, 2]

    def locate(self, field_image: np.ndarray, near: np.ndarray | None = None) -> Localization:
        """Find the face in ``field_image`` (rows, cols[, 3]); ``near``: the last known box (x0, y0, x1, y1)
        in field pixels, to zoom round it at once (tracking mode), falling back to the whole field."""
        start = time.perf_counter()
        c = self.config
        patterns, stages = 0, []
        candidate = None
        if near is not None:
            candidate, window = np.asarray(near, dtype=np.float64), c.track_window
        if candidate is None:
            identity = GridRegistration()
            image = self.acquire(field_image, self.coarse, identity)
            patterns += self.coarse.num_patterns
            stages.append("coarse")
            box, score = self._detect(image)
            if score >= c.candidate_score:
                corners = _to_field(box.reshape(2, 2), c.coarse_resolution, identity, self.field_shape)
                candidate, window = corners.ravel(), c.zoom_window
        result = None
        if candidate is not None:
            result = self._zoom(field_image, candidate, window)
            patterns += self.zoom.num_patterns
            stages.append("zoom")
            if not result.found and near is not None:
                fallback = self.locate(field_image)
                fallback.patterns += patterns
                fallback.stages = stages + fallback.stages
                fallback.display_ms = 1000.0 * self.timing.frame_time(fallback.patterns)
                fallback.compute_ms = 1000.0 * (time.perf_counter() - start)
                return fallback
        if result is None:
            result = Localization(None, None, 0.0, None, 0, 0.0, 0.0)
        result.patterns, result.stages = patterns, stages
        result.display_ms = 1000.0 * self.timing.frame_time(patterns)
        result.compute_ms = 1000.0 * (time.perf_counter() - start)
        return result

    def _zoom(self, field_image, candidate: np.ndarray, window: float) -> Localization:
        c = self.config
        centre = (candidate[:2] + candidate[2:]) / 2
        side = window * float(np.max(candidate[2:] - candidate[:2]))
        registration = window_registration(centre, side, c.zoom_resolution, self.field_shape)
        image = self.acquire(field_image, self.zoom, registration)
        box, score = self._detect(image)
        if score < c.min_score:
            return Localization(None, None, score, None, 0, 0.0, 0.0)
        landmarks = self._landmarks(image, box)
        to_field = lambda points: _to_field(points, c.zoom_resolution, registration, self.field_shape)  # noqa: E731
        landmarks = to_field(landmarks)
        quad = ffhq_quad(landmarks)
        framing = registration_from_quad(quad, self.field_shape, c.resolution)
        return Localization(to_field(box.reshape(2, 2)).ravel(), landmarks, score, framing, 0, 0.0, 0.0)
