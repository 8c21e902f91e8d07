"""Mirror-array geometry and timing: where a sampling pattern lands on a DMD, and how long it takes.

A ``H × W`` sampling pattern is shown as square blocks of ``b × b`` mirrors, with the largest
integer ``b`` that fits (``b = floor(min(rows / H, cols / W))``), centred on the array; all other
mirrors are off (they tilt light away from the photodiode). Example: 256² on a 1920×1080 DLP6500
→ b = 4, a 1024×1024 active area at column 448, row 28.
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
class Placement:
    """Exact mapping of a sampling pattern onto a mirror array.

    Sampling pixel ``(i, j)`` covers mirror rows ``row_offset + b·i .. row_offset + b·i + b − 1``
    and mirror columns ``col_offset + b·j .. col_offset + b·j + b − 1``, with ``b = block``.
    """

    geometry: DmdGeometry
    resolution: tuple[int, int]
    block: int
    row_offset: int
    col_offset: int

    @property
    def active_shape(self) -> tuple[int, int]:
        return self.block * self.resolution[0], self.block * self.resolution[1]

    def pixel_index_map(self) -> np.ndarray:
        """``(rows, cols)`` int array: flat sampling-pixel index under each mirror, −1 outside."""
        h, w = self.resolution
        rows = np.arange(self.geometry.rows) - self.row_offset
        cols = np.arange(self.geometry.cols) - self.col_offset
        row_in = (rows >= 0) & (rows < self.block * h)
        col_in = (cols >= 0) & (cols < self.block * w)
        index = (rows // self.block)[:, None] * w + (cols // self.block)[None, :]
        return np.where(row_in[:, None] & col_in[None, :], index, -1)

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
        image = np.zeros((self.geometry.rows, self.geometry.cols, *values.shape[2:]), dtype=values.dtype)
        r0, c0 = self.row_offset, self.col_offset
        rh, cw = self.active_shape
        image[r0 : r0 + rh, c0 : c0 + cw] = values.repeat(self.block, axis=0).repeat(self.block, axis=1)
        return image


def placement(geometry: DmdGeometry, resolution: int | tuple[int, int] = 256) -> Placement:
    """Largest integer mirror block that fits, centred (offsets rounded down)."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    block = min(geometry.rows // h, geometry.cols // w)
    if block < 1:
        raise ValueError(f"{geometry.name} ({geometry.cols}x{geometry.rows}) is smaller than {w}x{h}")
    return Placement(
        geometry=geometry,
        resolution=(h, w),
        block=block,
        row_offset=(geometry.rows - block * h) // 2,
        col_offset=(geometry.cols - block * w) // 2,
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
