"""Mirror-array geometry and timing: where a sampling pattern lands on a DMD, and how long it takes.

A ``H × W`` sampling pattern is shown as square blocks of ``b × b`` mirrors, with the largest
integer ``b`` that fits (``b = floor(min(rows / H, cols / W))``), centred on the array; all other
mirrors are off (they tilt light away from the photodiode). Example: 256² on a 1920×1080 DLP6500
→ b = 4, a 1024×1024 active area at column 448, row 28.

When the objective puts the scene off the grid (``lsi calibrate`` measures the shift and scale), or
the face to image sits elsewhere in the field (``lsi_ros.framing``: shift, scale and roll), a
:class:`GridRegistration` moves, scales and turns the patterns with it, to the nearest mirror: the
patterns then meet the scene points the model was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DmdGeometry:
    """A mirror array: ``cols`` × ``rows`` mirrors (width × height), as in the datasheets."""

    name: str
    cols: int
    rows: int


DLP6500 = DmdGeometry("DLP6500", cols=1920, rows=1080)
DLP7000 = DmdGeometry("DLP7000", cols=1024, rows=768)
DLP9000 = DmdGeometry("DLP9000", cols=2560, rows=1600)
MIRROR_ARRAYS = {dmd.name: dmd for dmd in (DLP6500, DLP7000, DLP9000)}


@dataclass(frozen=True)
class GridRegistration:
    """Where the scene lies on the sampling grid: the scene point the patterns expect at ``p``
    sampling pixels from the grid centre falls at ``scale·R(roll)·p + shift`` (rows, columns), as
    ``lsi_ros.optics.calibration.estimate_registration`` (shift, scale) and
    ``lsi_ros.framing`` (all three) report it.

    ``roll`` is in degrees, ``R = [[cos, −sin], [sin, cos]]`` on (row, column) offsets: a positive
    roll turns the grid counter-clockwise as the scene is seen (rows down, columns right)."""

    shift: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    roll: float = 0.0

    def __post_init__(self) -> None:
        shift = tuple(float(v) for v in self.shift)
        if len(shift) != 2 or not all(math.isfinite(v) for v in shift):
            raise ValueError(f"registration shift must be two finite numbers, got {self.shift!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"registration scale must be positive, got {self.scale!r}")
        if not math.isfinite(self.roll):
            raise ValueError(f"registration roll must be a finite angle in degrees, got {self.roll!r}")
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "roll", float(self.roll))

    @property
    def is_identity(self) -> bool:
        return self.shift == (0.0, 0.0) and self.scale == 1.0 and self.roll == 0.0

    def rotation(self) -> np.ndarray:
        """``R(roll)``, the 2×2 matrix acting on (row, column) offsets."""
        c, s = math.cos(math.radians(self.roll)), math.sin(math.radians(self.roll))
        return np.array([[c, -s], [s, c]])

    def to_scene(self, offsets: np.ndarray) -> np.ndarray:
        """Grid offsets ``(..., 2)`` (rows, columns from the grid centre) -> scene points, same units."""
        return self.scale * np.asarray(offsets, dtype=np.float64) @ self.rotation().T + self.shift

    def to_grid(self, points: np.ndarray) -> np.ndarray:
        """Scene points ``(..., 2)`` -> grid offsets: the inverse of :meth:`to_scene`."""
        return (np.asarray(points, dtype=np.float64) - self.shift) @ self.rotation() / self.scale


@dataclass(frozen=True)
class Placement:
    """Exact mapping of a sampling pattern onto a mirror array.

    Sampling pixel ``(i, j)`` covers mirror rows ``row_offset + b·i .. row_offset + b·i + b − 1``
    and mirror columns ``col_offset + b·j .. col_offset + b·j + b − 1``, with ``b = block``; with a
    ``registration`` it covers the mirrors whose centres fall in that pixel once the grid is moved,
    scaled and turned as the registration says.
    """

    geometry: DmdGeometry
    resolution: tuple[int, int]
    block: int
    row_offset: int
    col_offset: int
    registration: GridRegistration = GridRegistration()

    @property
    def active_shape(self) -> tuple[int, int]:
        return self.block * self.resolution[0], self.block * self.resolution[1]

    def _pixel_coordinates(self, axis: int) -> np.ndarray:
        """Sampling pixel (row or column) under each mirror row or column; out of range outside.
        Unrolled registrations only (a roll mixes rows and columns: :meth:`_pixel_grid`)."""
        size = self.resolution[axis]
        mirrors = np.arange((self.geometry.rows, self.geometry.cols)[axis])
        offset = (self.row_offset, self.col_offset)[axis]
        if self.registration.is_identity:
            return (mirrors - offset) // self.block
        centre = size / 2  # the grid's centre, about which the registration scales
        grid = (mirrors + 0.5 - offset) / self.block  # each mirror's centre in grid pixels
        return np.floor((grid - centre - self.registration.shift[axis]) / self.registration.scale + centre)

    def _pixel_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Sampling pixel (row, column) under every mirror, ``(rows, cols)`` int arrays each."""
        if self.registration.roll == 0.0:
            rows, cols = self._pixel_coordinates(0).astype(int), self._pixel_coordinates(1).astype(int)
            return np.broadcast_arrays(rows[:, None], cols[None, :])
        h, w = self.resolution
        centre = np.array([h / 2, w / 2])
        mirror_rows = (np.arange(self.geometry.rows) + 0.5 - self.row_offset) / self.block - centre[0]
        mirror_cols = (np.arange(self.geometry.cols) + 0.5 - self.col_offset) / self.block - centre[1]
        points = np.stack(np.meshgrid(mirror_rows, mirror_cols, indexing="ij"), axis=-1)
        pixels = np.floor(self.registration.to_grid(points) + centre).astype(int)
        return pixels[..., 0], pixels[..., 1]

    def pixel_index_map(self) -> np.ndarray:
        """``(rows, cols)`` int array: flat sampling-pixel index under each mirror, −1 outside."""
        h, w = self.resolution
        rows, cols = self._pixel_grid()
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        return np.where(inside, rows * w + cols, -1)

    def place(self, pattern: np.ndarray) -> np.ndarray:
        """Full-array bool image ``(rows, cols)`` for one ``(H, W)`` pattern."""
        pattern = np.asarray(pattern)
        if pattern.shape != self.resolution:
            raise ValueError(f"pattern shape {pattern.shape} is not the placement's {self.resolution}")
        return self.place_values(pattern.astype(bool))

    def place_values(self, values: np.ndarray) -> np.ndarray:
        """Full-array image ``(rows, cols, ...)`` of per-sampling-pixel values ``(H, W, ...)`` (e.g. the
        24 bit planes of a controller image), zero on the mirrors outside the active area."""
        values = np.asarray(values)
        if values.shape[:2] != self.resolution:
            raise ValueError(
                f"values of shape {values.shape} do not start with the placement's {self.resolution}"
            )
        if not self.registration.is_identity:
            index = self.pixel_index_map()
            flat = values.reshape(-1, *values.shape[2:])
            image = flat[np.maximum(index, 0)]
            image[index < 0] = 0
            return image
        image = np.zeros((self.geometry.rows, self.geometry.cols, *values.shape[2:]), dtype=values.dtype)
        r0, c0 = self.row_offset, self.col_offset
        rh, cw = self.active_shape
        image[r0 : r0 + rh, c0 : c0 + cw] = values.repeat(self.block, axis=0).repeat(self.block, axis=1)
        return image


def placement(
    geometry: DmdGeometry,
    resolution: int | tuple[int, int] = 256,
    registration: GridRegistration | None = None,
) -> Placement:
    """Largest integer mirror block that fits, centred (offsets rounded down), moved and scaled by
    ``registration``. A registration that pushes part of the grid off the array raises ValueError:
    the measurements would silently miss those pixels."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    block = min(geometry.rows // h, geometry.cols // w)
    if block < 1:
        raise ValueError(f"{geometry.name} ({geometry.cols}x{geometry.rows}) is smaller than {w}x{h}")
    place = Placement(
        geometry=geometry,
        resolution=(h, w),
        block=block,
        row_offset=(geometry.rows - block * h) // 2,
        col_offset=(geometry.cols - block * w) // 2,
        registration=registration or GridRegistration(),
    )
    if place.registration.roll != 0.0:
        _check_rolled(place)
    elif not place.registration.is_identity:
        for axis, size in enumerate((h, w)):
            offset, mirrors = (
                (place.row_offset, geometry.rows) if axis == 0 else (place.col_offset, geometry.cols)
            )
            shift, scale = place.registration.shift[axis], place.registration.scale
            # the registered grid's edges in mirrors; nearest-mirror rounding forgives half a mirror
            edges = [offset + block * (size / 2 + scale * side * size / 2 + shift) for side in (-1, 1)]
            missing = np.setdiff1d(np.arange(size), place._pixel_coordinates(axis))
            if edges[0] < -0.5 or edges[1] > mirrors + 0.5 or missing.size:
                raise ValueError(
                    f"registration {place.registration} moves sampling {('rows', 'columns')[axis]} "
                    f"off the {geometry.name} mirror array (registered grid spans mirrors "
                    f"{edges[0]:.1f}..{edges[1]:.1f} of {mirrors}, {missing.size} pixels without a mirror)"
                )
    return place


def _check_rolled(place: Placement) -> None:
    """A turned grid must keep its corners on the array and a mirror under every sampling pixel."""
    h, w = place.resolution
    corners = place.registration.to_scene(
        [[-h / 2, -w / 2], [-h / 2, w / 2], [h / 2, -w / 2], [h / 2, w / 2]]
    )
    corners = corners + [h / 2, w / 2]
    rows = place.row_offset + place.block * corners[:, 0]
    cols = place.col_offset + place.block * corners[:, 1]
    covered = np.unique(place.pixel_index_map())
    missing = h * w - int(np.count_nonzero(covered >= 0))
    if (
        rows.min() < -0.5
        or rows.max() > place.geometry.rows + 0.5
        or cols.min() < -0.5
        or (cols.max() > place.geometry.cols + 0.5)
        or missing
    ):
        raise ValueError(
            f"registration {place.registration} moves the sampling grid off the {place.geometry.name} "
            f"mirror array (corners at mirror rows {rows.min():.1f}..{rows.max():.1f} of "
            f"{place.geometry.rows}, columns {cols.min():.1f}..{cols.max():.1f} of {place.geometry.cols}, "
            f"{missing} pixels without a mirror)"
        )


def place_pattern(pattern: np.ndarray, geometry: DmdGeometry) -> np.ndarray:
    """Full-array bool image of one sampling pattern on ``geometry``."""
    return placement(geometry, np.asarray(pattern).shape).place(pattern)


@dataclass(frozen=True)
class DmdTiming:
    """Binary pattern rate and on-board pattern memory of a DMD controller."""

    name: str
    pattern_rate_hz: float
    pattern_memory: int

    def frame_time(self, num_patterns: int) -> float:
        """Seconds to display ``num_patterns`` patterns, one photodiode sample each."""
        return num_patterns / self.pattern_rate_hz

    def batches(self, num_patterns: int) -> int:
        """Uploads needed when a pattern set exceeds the on-board memory."""
        return math.ceil(num_patterns / self.pattern_memory)

    def frame_rate(self, num_patterns: int) -> float:
        """Measurement frames per second when the set fits the memory (no re-upload)."""
        return self.pattern_rate_hz / num_patterns


# TI DLPC900 (LightCrafter 6500/9000): ~9.5 kHz binary; 400 patterns at 1080p, 480 stated for
# the 9000 (check the controller's user guide for the firmware in use). ViALUX V-7000 (ALP-4,
# DLP7000): 22.7 kHz binary; 16 Gbit on-board memory / (1024·768 bits) = 21845 patterns.
DLPC900_1080P = DmdTiming("DLPC900 (DLP6500)", pattern_rate_hz=9500.0, pattern_memory=400)
DLPC900_WQXGA = DmdTiming("DLPC900 (DLP9000)", pattern_rate_hz=9500.0, pattern_memory=480)
ALP4_DLP7000 = DmdTiming("ALP-4 (DLP7000)", pattern_rate_hz=22700.0, pattern_memory=21845)
TIMINGS = {"DLP6500": DLPC900_1080P, "DLP9000": DLPC900_WQXGA, "DLP7000": ALP4_DLP7000}
