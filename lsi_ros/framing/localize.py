"""Find the face in the field with the camera itself, and the registration that frames it as FFHQ.

Stage 1 (``coarse``): Walsh-Hadamard patterns over the whole field (the lowest ``coarse_patterns``
coefficients of a 64² grid, reference-first, one pattern each, and one all-off pattern for the ambient
light) -> a blurred image of the field -> the face finder (:mod:`lsi_ros.framing.finder`) -> a candidate
box. Stage 2 (``zoom``): the same kind of patterns registered onto a window round the candidate -> a
sharper image of the face -> the finder again (its score decides face or no face) and face-api's
68-landmark net (twice: in the finder's box, then in the landmarks' own box), whose points Dlib's
shape predictor places again more precisely (:mod:`lsi_ros.framing.landmarks`) -> the FFHQ dataset
script's square from the eye and mouth landmarks (``lsi_ros.evaluation.real_faces.ffhq_quad``) -> the
registration. In tracking mode the last box is known and stage 2 alone runs round it (tighter, with
half the patterns, when the tracker still holds the face and asks only because it grew). The cost is
counted in patterns shown and in milliseconds at the DMD's pattern rate (``DmdTiming``); compute time
is reported beside it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from lsi_ros.evaluation.baselines import reconstruct_pinv, walsh_coefficients
from lsi_ros.evaluation.real_faces import ffhq_quad
from lsi_ros.framing.field import (
    DEFAULT_FIELD,
    detect_light,
    field_placement,
    field_to_grid,
    light_fraction,
    measure_field,
    registration_from_quad,
)
from lsi_ros.framing.finder import INPUT as FINDER_INPUT
from lsi_ros.framing.landmarks import DlibLandmarks
from lsi_ros.framing.unframed import FACE_WIDTH_IN_CROP
from lsi_ros.optics.dmd import DLPC900_1080P, DmdTiming, GridRegistration
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.patterns import hadamard_reference_patterns
from lsi_ros.optics.photodiode import PhotodiodeModel


@dataclass(frozen=True)
class LocatorConfig:
    """Pattern budgets and thresholds of the two stages (see the module docstring)."""

    coarse_patterns: int = 1024
    zoom_resolution: int = 128
    zoom_patterns: int = 2048
    zoom_window: float = 1.8  # zoom window side / candidate face width
    track_window: float = 2.8  # wider in tracking mode: the face may have moved since
    # A face the tracker still holds (it only grew or shrank past what the tracker follows) is where the
    # tracker says: a tighter window images it as sharply with half the patterns.
    refresh_patterns: int = 1024
    refresh_window: float = 1.5
    candidate_score: float = 0.23  # stage-1 finder score worth a zoom (the finder's validation)
    min_score: float = 0.66  # finder score in the zoomed image that means "a face" (its validation)
    landmark_box: float = 1.36  # landmark crop side / face width (face-api's detector box is this wide)
    refine_window: float = 0.0  # a second, tighter zoom: its side / landmark extent (0: none)
    refine_patterns: int = 2048
    # Where the generator's own framing lies in the square the FFHQ rule draws from landmarks in the
    # zoomed image, in the model grid's sampling pixels (rows, columns, the face upright); fitted by
    # `lsi eval --scenes unframed --fit-framing-offset 100` (docs/results/framing_offset.json).
    framing_offset: tuple[float, float] = (0.7, 1.19)
    # Then the finder file's framing correction (lsi_ros.framing.correction), when it carries one.
    framing_correction: bool = True
    max_size_disagreement: float = 2.0  # the landmarks' face width / the finder's, either way
    # Landmark crops tried in turn (side / the finder's face width) when the landmarks of the first
    # disagree with the finder on the face's size by more than size_tolerance: on a blurred face the net
    # can shrink onto its middle. The crop whose landmarks agree best is kept.
    landmark_box_retries: tuple[float, ...] = (1.0, 1.8)
    size_tolerance: float = 1.3
    # Landmarks that agree with the finder in none of those crops: one more zoom, this many of the
    # finder's face widths wide round its box, where the face fills more of the image (0: none).
    retry_window: float = 1.3
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
    window: GridRegistration | None = None  # where the zoomed image was taken (its grid on the field)
    image: np.ndarray | None = None  # the zoomed image (R, R), grayscale in [0, 1]

    @property
    def found(self) -> bool:
        return self.registration is not None


def to_field(
    points_xy: np.ndarray, resolution: int, registration: GridRegistration, field_shape
) -> np.ndarray:
    """Points (x, y) in an acquired image's pixels (pixel i spans [i, i + 1)) -> field pixels (x, y),
    pixel centres at integer coordinates."""
    place = field_placement(resolution, registration, field_shape)
    offsets = np.asarray(points_xy, dtype=np.float64)[..., ::-1] - resolution / 2
    rows_cols = (registration.to_scene(offsets) + resolution / 2) * place.block
    return (rows_cols + [place.row_offset - 0.5, place.col_offset - 0.5])[..., ::-1]


def to_window(
    points_xy: np.ndarray, registration: GridRegistration, resolution: int, field_shape
) -> np.ndarray:
    """Field pixels (x, y) -> pixels of an ``R²`` image acquired through ``registration``: the inverse
    of :func:`to_field`."""
    offsets = field_to_grid(points_xy, field_shape, resolution)
    return (registration.to_grid(offsets) + resolution / 2)[..., ::-1]


def window_registration(centre_xy, side: float, resolution: int, field_shape) -> GridRegistration:
    """The registration that puts an ``R²`` grid on the square of ``side`` field pixels at ``centre_xy``."""
    row, col = field_to_grid(centre_xy, field_shape, resolution)
    block = field_placement(resolution, None, field_shape).block
    return GridRegistration((float(row), float(col)), side / (resolution * block))


class FaceLocator:
    """Two-stage localisation through the simulated (or real) detector of :func:`measure_field`.

    ``finder``: the trained :class:`lsi_ros.framing.finder.FaceFinder`; ``analyzer``: a
    :class:`lsi_ros.evaluation.face_analysis.FaceAnalyzer` with the 68-landmark net; ``photodiode``:
    the detector's noise (None: ideal)."""

    def __init__(
        self,
        finder,
        analyzer,
        field_shape=DEFAULT_FIELD,
        config: LocatorConfig = LocatorConfig(),
        photodiode: PhotodiodeModel | None = None,
        timing: DmdTiming = DLPC900_1080P,
        seed: int = 0,
    ):
        self.finder = finder
        self.analyzer = analyzer
        self.field_shape = tuple(field_shape)
        self.config = config
        self.photodiode = photodiode
        self.timing = timing
        self.rng = np.random.default_rng(seed)

    @property
    def dark_patterns(self) -> int:
        """The all-off pattern per acquisition that measures ambient light (none for an ideal detector)."""
        return 0 if self.photodiode is None else 1

    @staticmethod
    def _hadamard(patterns: int, resolution: int) -> ForwardModel:
        """The lowest ``patterns`` Walsh-Hadamard coefficients of a ``resolution``² grid, one pattern each."""
        return ForwardModel(hadamard_reference_patterns(patterns, resolution), np.float32)

    @cached_property
    def coarse(self) -> ForwardModel:
        return self._hadamard(self.config.coarse_patterns, FINDER_INPUT)

    @cached_property
    def zoom(self) -> ForwardModel:
        return self._hadamard(self.config.zoom_patterns, self.config.zoom_resolution)

    @cached_property
    def refresh(self) -> ForwardModel:
        return self._hadamard(self.config.refresh_patterns, self.config.zoom_resolution)

    @cached_property
    def refine(self) -> ForwardModel:
        return self._hadamard(self.config.refine_patterns, self.config.zoom_resolution)

    @cached_property
    def shape_predictor(self) -> DlibLandmarks:
        """Loaded at the first zoom that finds a face (about a second)."""
        return DlibLandmarks()

    @property
    def coarse_cost(self) -> int:
        return self.coarse.num_patterns + self.dark_patterns

    @property
    def zoom_cost(self) -> int:
        return self.zoom.num_patterns + self.dark_patterns

    def coefficients(self, field_image, forward: ForwardModel, registration: GridRegistration):
        """Sequency indices (K, 2) and orthonormal Walsh coefficients (K,) of the grayscale field under the
        registered Hadamard patterns; with a photodiode, one all-off pattern more measures the ambient
        light, which is subtracted."""
        y = measure_field(field_image, forward, registration, self.photodiode, self.rng)
        if self.photodiode is not None:
            fraction = light_fraction(forward.resolution, registration, self.field_shape)
            dark = detect_light(np.zeros(1), fraction, self.photodiode, self.rng)
            y = self.photodiode.to_ideal(y) - self.photodiode.to_ideal(dark)
        return walsh_coefficients(forward.pattern_set, y)

    def acquire(self, field_image, forward: ForwardModel, registration: GridRegistration) -> np.ndarray:
        """A grayscale image (R, R) in [0, 1] of what the registered Hadamard patterns see."""
        indices, coefficients = self.coefficients(field_image, forward, registration)
        return np.clip(reconstruct_pinv(indices, coefficients, forward.resolution[0]), 0.0, 1.0)

    def coarse_image(self, field_image) -> np.ndarray:
        """Stage 1's image of the whole field (64, 64)."""
        return self.acquire(field_image, self.coarse, GridRegistration())

    def locate(
        self, field_image: np.ndarray, near: np.ndarray | None = None, held: bool = False
    ) -> Localization:
        """Find the face in ``field_image`` (rows, cols[, 3]); ``near``: the last known box (x0, y0, x1, y1)
        in field pixels, to zoom round it at once (tracking mode), falling back to the whole field;
        ``held``: the box is a tracker's that still holds the face, so a tight, cheaper zoom round it
        comes first (``refresh_patterns`` in a ``refresh_window``), and the wide one only if it fails."""
        start = time.perf_counter()
        c = self.config
        patterns, stages = 0, []
        candidate, window, score = None, c.zoom_window, 0.0
        forward, stage = self.zoom, "zoom"
        if near is not None:
            candidate, window = np.asarray(near, dtype=np.float64), c.track_window
            if held:
                window, forward, stage = c.refresh_window, self.refresh, "refresh"
        else:
            image = self.coarse_image(field_image)
            patterns += self.coarse_cost
            stages.append("coarse")
            boxes, scores = self.finder.find(image[None])
            score = float(scores[0])
            if score >= c.candidate_score:
                identity = GridRegistration()
                candidate = to_field(boxes[0].reshape(2, 2), FINDER_INPUT, identity, self.field_shape).ravel()
        result = Localization(None, None, score, None, 0, 0.0, 0.0)
        if candidate is not None:
            result = self._zoom(field_image, candidate, window, forward)
            patterns += result.patterns
            stages += [stage, *result.stages]
            if not result.found and near is not None:
                fallback = self.locate(field_image, near if held else None)
                patterns += fallback.patterns
                stages += fallback.stages
                result = fallback
        result.patterns, result.stages = patterns, stages
        result.display_ms = 1000.0 * self.timing.frame_time(patterns)
        result.compute_ms = 1000.0 * (time.perf_counter() - start)
        return result

    def _zoom(self, field_image, candidate: np.ndarray, window: float, forward: ForwardModel) -> Localization:
        c = self.config
        cost = forward.num_patterns + self.dark_patterns
        centre = (candidate[:2] + candidate[2:]) / 2
        side = window * float(np.max(candidate[2:] - candidate[:2]))
        registration = window_registration(centre, side, c.zoom_resolution, self.field_shape)
        image = self.acquire(field_image, forward, registration)
        shrink = c.zoom_resolution / FINDER_INPUT
        small = cv2.resize(
            image.astype(np.float32), (FINDER_INPUT, FINDER_INPUT), interpolation=cv2.INTER_AREA
        )
        boxes, scores = self.finder.find(small[None])
        box, score = boxes[0] * shrink, float(scores[0])
        if score < c.min_score:
            return Localization(None, None, score, None, cost, 0.0, 0.0)
        landmarks, disagreement = None, np.inf
        for crop in (c.landmark_box, *c.landmark_box_retries):
            marks = self._landmarks(image, box, crop)
            off = abs(np.log(self._size_ratio(ffhq_quad(marks), box)))
            if off < disagreement:
                landmarks, disagreement = marks, off
            if off <= np.log(c.size_tolerance):
                break
        if not self._agrees_in_size(ffhq_quad(landmarks), box):
            if window <= c.retry_window:
                return Localization(None, None, score, None, cost, 0.0, 0.0)
            found = to_field(box.reshape(2, 2), c.zoom_resolution, registration, self.field_shape).ravel()
            again = self._zoom(field_image, found, c.retry_window, self.zoom)
            again.patterns += cost
            again.stages = ["retry", *again.stages]
            return again
        if disagreement > np.log(c.size_tolerance):
            # Points that shrank onto part of the face would start Dlib as small: start it from them
            # grown (or shrunk) to the finder's face size, round their centre.
            centre = (landmarks.min(0) + landmarks.max(0)) / 2
            landmarks = centre + (landmarks - centre) / self._size_ratio(ffhq_quad(landmarks), box)
        landmarks = self.shape_predictor.refine(image, landmarks)
        landmarks = to_field(landmarks, c.zoom_resolution, registration, self.field_shape)
        box = to_field(box.reshape(2, 2), c.zoom_resolution, registration, self.field_shape).ravel()
        if c.refine_window:
            # A second zoom, tighter round the face the landmarks found: sharper landmarks.
            low, high = landmarks.min(0), landmarks.max(0)
            side = c.refine_window * float(np.max(high - low))
            fine = window_registration((low + high) / 2, side, c.zoom_resolution, self.field_shape)
            sharp = self.acquire(field_image, self.refine, fine)
            inside = to_window(box.reshape(2, 2), fine, c.zoom_resolution, self.field_shape).ravel()
            landmarks = self.shape_predictor.refine(sharp, self._landmarks(sharp, inside, c.landmark_box))
            landmarks = to_field(landmarks, c.zoom_resolution, fine, self.field_shape)
        framing = registration_from_quad(ffhq_quad(landmarks), self.field_shape, c.resolution)
        framing = dataclasses.replace(framing, shift=tuple(framing.to_scene(np.array(c.framing_offset))))
        if c.framing_correction and self.finder.framing_correction is not None:
            marks = field_to_grid(landmarks, self.field_shape, c.resolution)
            framing = self.finder.framing_correction.apply(framing, marks)
        patterns = cost + (self.refine.num_patterns + self.dark_patterns if c.refine_window else 0)
        return Localization(
            box, landmarks, score, framing, patterns, 0.0, 0.0, window=registration, image=image
        )

    @staticmethod
    def _size_ratio(quad: np.ndarray, box: np.ndarray) -> float:
        """The face width the landmarks' FFHQ square (in the same pixels as the finder's ``box``) implies,
        over the finder's."""
        return float(np.hypot(*(quad[3] - quad[0]))) * FACE_WIDTH_IN_CROP / float(box[2] - box[0])

    def _agrees_in_size(self, quad: np.ndarray, box: np.ndarray) -> bool:
        """A square several times too small or large is landmarks found on something else, or landmarks
        that shrank onto part of the face."""
        ratio = self._size_ratio(quad, box)
        return 1 / self.config.max_size_disagreement <= ratio <= self.config.max_size_disagreement

    def _landmarks(self, image: np.ndarray, box: np.ndarray, crop: float) -> np.ndarray:
        """68 landmarks (x, y) in the image's pixels: first in a square ``crop`` times the finder's box
        wide round it, then in face-api's aligned box of those landmarks; each time averaged with those
        of the mirrored crop."""
        rgb = np.repeat(np.rint(image * 255).astype(np.uint8)[None, ..., None], 3, axis=-1)
        centre, half = (box[:2] + box[2:]) / 2, crop * (box[2] - box[0]) / 2
        crop_box = np.concatenate([centre - half, centre + half])[None]
        for _ in range(2):
            crops, frames = self.analyzer.crop(rgb, crop_box)
            landmarks = frames[:, None, :2] + self.analyzer.landmarks_both_ways(crops) * frames[:, None, 2:3]
            crop_box = self.analyzer.aligned_boxes(landmarks)
        return landmarks[0]
