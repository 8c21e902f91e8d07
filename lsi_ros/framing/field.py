"""The scene field: everything the objective puts on the DMD's active area, one pixel per mirror.

A pattern set of ``R × R`` sampling pixels sits on a field of ``rows × cols`` mirrors as
:class:`lsi_ros.optics.dmd.Placement` puts it on a mirror array: blocks of ``b = min(rows, cols) // R``
mirrors, centred, then moved, scaled and turned by a :class:`GridRegistration` (``shift`` in sampling
pixels of that placement, ``scale`` relative to ``b``), each mirror showing the sampling pixel its
centre falls in. Unlike a calibration registration, a framing registration may leave part of the
grid off the field (a face near the edge): those sampling pixels are shown on no mirror.

Units of the measurements: one fully lit sampling pixel of one colour channel, as the models are
trained (:mod:`lsi_ros.optics.forward`): each mirror counts ``1 / (b·scale)²``, so the same face
measures the same at any distance. The light is physical, though: the photodiode model is stated for
the model's 256² grid spread over the whole field, so a grid on fewer mirrors sends it the fraction
``light_fraction`` of that light. The simulated detector draws the noise of the light that arrives and
scales the counts back to the model's units (the gain follows the framing, as an automatic exposure
would): a small face is measured with more noise, a coarse image of the whole field with little.
"""

from __future__ import annotations

import numpy as np

from lsi_ros.optics.dmd import DmdGeometry, GridRegistration, Placement
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.patterns import PatternSet
from lsi_ros.optics.photodiode import PhotodiodeModel

# The DLP6500's active area for 256² patterns at 4 mirrors a pixel: the field the objective images.
DEFAULT_FIELD = (1024, 1024)
# The sampling grid the photodiode model's units are stated for (lsi_ros.optics.photodiode).
MODEL_RESOLUTION = 256


def _shape(field_shape) -> tuple[int, int]:
    rows, cols = (int(v) for v in tuple(field_shape)[:2])
    if rows < 1 or cols < 1:
        raise ValueError(f"field shape must be positive, got {field_shape!r}")
    return rows, cols


def field_placement(
    resolution: int | tuple[int, int], registration: GridRegistration | None, field_shape=DEFAULT_FIELD
) -> Placement:
    """Where an ``R × R`` grid lands on the field's mirrors (no check that it stays on the field)."""
    rows, cols = _shape(field_shape)
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(int(v) for v in resolution)
    block = min(rows // h, cols // w)
    if block < 1:
        raise ValueError(f"a {rows}x{cols} field is smaller than the {h}x{w} sampling grid")
    return Placement(
        geometry=DmdGeometry("field", cols=cols, rows=rows),
        resolution=(h, w),
        block=block,
        row_offset=(rows - block * h) // 2,
        col_offset=(cols - block * w) // 2,
        registration=registration or GridRegistration(),
    )


def registered_patterns(
    pattern_set: PatternSet, registration: GridRegistration | None, field_shape=DEFAULT_FIELD
) -> np.ndarray:
    """The pattern set on the field ``(P, rows, cols)`` bool, each mirror showing its sampling pixel."""
    index = field_placement(pattern_set.resolution, registration, field_shape).pixel_index_map()
    flat = pattern_set.dense().reshape(pattern_set.num_patterns, -1).astype(bool)
    shown = flat[:, np.maximum(index, 0)]
    shown[:, index < 0] = False
    return shown


def _gray(field_image: np.ndarray, field_shape: tuple[int, int]) -> np.ndarray:
    """Channel sum (the photodiode sees every colour through the same mirror) in [0, C]."""
    image = np.asarray(field_image)
    if np.issubdtype(image.dtype, np.integer):
        image = image / np.iinfo(image.dtype).max
    image = image.astype(np.float64, copy=False)
    if image.shape[:2] != field_shape:
        raise ValueError(f"field image of shape {image.shape} is not {field_shape}")
    return image.sum(axis=-1) if image.ndim == 3 else image


def _pixel_sums(values: np.ndarray, placement: Placement) -> tuple[np.ndarray, np.ndarray]:
    """Per sampling pixel: the sum of ``values`` (rows, cols[, C]) over its mirrors, and its mirror count."""
    index = placement.pixel_index_map().ravel()
    inside = index >= 0
    pixels = placement.resolution[0] * placement.resolution[1]
    counts = np.bincount(index[inside], minlength=pixels).astype(np.float64)
    flat = values.reshape(len(index), -1)[inside]
    sums = np.stack([np.bincount(index[inside], weights=c, minlength=pixels) for c in flat.T], axis=-1)
    return sums, counts


def light_fraction(
    resolution: int | tuple[int, int], registration: GridRegistration | None, field_shape=DEFAULT_FIELD
) -> float:
    """Light per sampling-pixel unit on the registered grid against the model's grid on the whole
    field: ``(b·scale)² / b₀²`` (b₀ the block of a ``MODEL_RESOLUTION``² grid on the field)."""
    place = field_placement(resolution, registration, field_shape)
    reference = field_placement(MODEL_RESOLUTION, None, field_shape).block
    return (place.block * place.registration.scale / reference) ** 2


def detect_light(
    y: np.ndarray, fraction: float, photodiode: PhotodiodeModel, rng: np.random.Generator
) -> np.ndarray:
    """ADC counts in the model's units for ideal ``y`` that reach the photodiode as ``fraction·y``:
    sampled at the light that arrives, then scaled back about the counts of darkness."""
    counts = photodiode.sample(np.asarray(y, dtype=np.float64) * fraction, rng).counts
    dark = photodiode.expected_counts(0.0)
    return (counts - dark) / fraction + dark


def measure_field(
    field_image: np.ndarray,
    pattern_set: PatternSet | ForwardModel,
    registration: GridRegistration | None,
    photodiode: PhotodiodeModel | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The ``P`` values the registered patterns measure on a field image ``(rows, cols[, 3])``: ideal
    ``y`` without a photodiode, its ADC counts (:func:`detect_light`) with one. Exact at mirror level and
    cheap: the mirrors under each sampling pixel are summed first, then one matrix product."""
    forward = pattern_set if isinstance(pattern_set, ForwardModel) else ForwardModel(pattern_set, np.float32)
    field_shape = np.asarray(field_image).shape[:2]
    place = field_placement(forward.resolution, registration, field_shape)
    sums, _ = _pixel_sums(_gray(field_image, field_shape), place)
    mirrors_per_pixel = (place.block * place.registration.scale) ** 2
    y = forward.matrix @ (sums[:, 0] / mirrors_per_pixel).astype(forward.matrix.dtype)
    if photodiode is None:
        return y
    fraction = light_fraction(forward.resolution, registration, field_shape)
    return detect_light(y, fraction, photodiode, rng or np.random.default_rng(0))


def framed_view(
    field_image: np.ndarray, registration: GridRegistration | None, resolution: int = 256
) -> np.ndarray:
    """What the registered grid frames: each sampling pixel the mean of its mirrors ``(R, R[, C])``
    in the image's units (float); a pixel without a mirror takes the mirror nearest its centre, a
    pixel off the field is 0."""
    image = np.asarray(field_image)
    image = image / np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else image
    place = field_placement(resolution, registration, image.shape[:2])
    sums, counts = _pixel_sums(image.astype(np.float64), place)
    view = sums / np.maximum(counts, 1)[:, None]
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        h, w = place.resolution
        offsets = np.stack([empty // w + 0.5 - h / 2, empty % w + 0.5 - w / 2], axis=-1)
        centres = place.registration.to_scene(offsets) + [h / 2, w / 2]
        mirrors = np.floor(centres * place.block + [place.row_offset, place.col_offset]).astype(int)
        on_field = np.all((mirrors >= 0) & (mirrors < image.shape[:2]), axis=1)
        flat = image.reshape(image.shape[0] * image.shape[1], -1)
        view[empty] = 0.0
        view[empty[on_field]] = flat[mirrors[on_field, 0] * image.shape[1] + mirrors[on_field, 1]]
    return view.reshape(*place.resolution, *image.shape[2:]).astype(np.float32)


def registration_quad(
    registration: GridRegistration, field_shape=DEFAULT_FIELD, resolution: int = 256
) -> np.ndarray:
    """The registered grid's corners in field pixels (x, y), ordered as ``ffhq_quad`` orders them:
    top-left, bottom-left, bottom-right, top-right (pixel centres at integer coordinates)."""
    place = field_placement(resolution, registration, field_shape)
    h, w = place.resolution
    offsets = np.array([[-h / 2, -w / 2], [h / 2, -w / 2], [h / 2, w / 2], [-h / 2, w / 2]])
    rows_cols = (registration.to_scene(offsets) + [h / 2, w / 2]) * place.block
    rows_cols += [place.row_offset - 0.5, place.col_offset - 0.5]
    return rows_cols[:, ::-1]


def carry_points(
    points_xy: np.ndarray,
    before: GridRegistration,
    after: GridRegistration,
    field_shape=DEFAULT_FIELD,
    resolution: int = 256,
) -> np.ndarray:
    """Field points (x, y) that the grid registered ``before`` sees, moved to where the grid registered
    ``after`` sees the same sampling pixels: a face's landmarks carried along as a tracker moves its grid."""
    source = registration_quad(before, field_shape, resolution)
    target = registration_quad(after, field_shape, resolution)
    # Both quads are similar squares: three corners fix the map.
    matrix = np.linalg.solve(np.column_stack([source[:3], np.ones(3)]), target[:3])
    points = np.asarray(points_xy, dtype=np.float64)
    return points @ matrix[:2] + matrix[2]


def field_to_grid(points_xy: np.ndarray, field_shape=DEFAULT_FIELD, resolution: int = 256) -> np.ndarray:
    """Field pixels (x, y) (pixel centres at integers) -> (row, column) offsets from the centre of an
    unregistered ``R²`` grid, in its sampling pixels: the units of ``GridRegistration.shift``."""
    place = field_placement(resolution, None, field_shape)
    points = np.asarray(points_xy, dtype=np.float64)
    rows = (points[..., 1] + 0.5 - place.row_offset) / place.block - place.resolution[0] / 2
    cols = (points[..., 0] + 0.5 - place.col_offset) / place.block - place.resolution[1] / 2
    return np.stack([rows, cols], axis=-1)


def registration_from_quad(
    quad: np.ndarray, field_shape=DEFAULT_FIELD, resolution: int = 256
) -> GridRegistration:
    """The registration that puts the sampling grid on an oriented square (4, 2) of field pixels (x, y)
    (``ffhq_quad``'s corner order): the least-squares similarity from the grid's corners to it."""
    quad = np.asarray(quad, dtype=np.float64)
    if quad.shape != (4, 2) or not np.all(np.isfinite(quad)):
        raise ValueError(f"a quad is four finite (x, y) corners, got {quad!r}")
    h, w = field_placement(resolution, None, field_shape).resolution
    # Complex (row + i·column): R(roll) is multiplication by exp(i·roll).
    grid = np.array([-h / 2 - w / 2 * 1j, h / 2 - w / 2 * 1j, h / 2 + w / 2 * 1j, -h / 2 + w / 2 * 1j])
    offsets = field_to_grid(quad, field_shape, resolution)
    scene = offsets[:, 0] + 1j * offsets[:, 1]
    a = np.vdot(grid - grid.mean(), scene - scene.mean()) / np.vdot(grid - grid.mean(), grid - grid.mean())
    shift = scene.mean() - a * grid.mean()
    return GridRegistration(
        shift=(float(shift.real), float(shift.imag)), scale=float(abs(a)), roll=float(np.degrees(np.angle(a)))
    )
