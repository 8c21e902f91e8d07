"""ViALUX ALP-4 (V-7000 and relatives) through ALP4lib (optional: ``pip install lsi_ros[alp4]``).

ALP4lib loads ViALUX's ALP library (.dll/.so); both are loaded only when a
pattern set is uploaded, and their absence is a HardwareError that says what to install. The frames
ALP4lib's ``SeqPut`` takes are one byte per mirror, row-major, picture after picture; with a 1-bit
sequence only the byte's most significant bit counts, so mirrors are 0 or 255 (:func:`alp_frames`).
Not run against a real ALP-4 here: only the packing is tested.
"""

from __future__ import annotations

import numpy as np

from lsi_ros.hardware import HardwareError, PatternProjector, mirror_placement
from lsi_ros.optics import dmd as dmd_geometry

UPLOAD_CHUNK = 64  # pictures per SeqPut: bounds the host memory of one transfer


def alp_frames(placement: dmd_geometry.Placement, patterns: np.ndarray) -> np.ndarray:
    """``(n, H, W)`` binary patterns → the flat uint8 stream of ``n`` full-array pictures (0 or 255)."""
    patterns = np.asarray(patterns)
    if patterns.ndim != 3 or patterns.shape[1:] != placement.resolution:
        raise ValueError(
            f"patterns of shape {patterns.shape} do not match the placement's {placement.resolution}"
        )
    planes = np.moveaxis(patterns.astype(bool), 0, -1)  # (H, W, n)
    mirrors = placement.place_values(planes)  # (rows, cols, n)
    return (np.moveaxis(mirrors, -1, 0).astype(np.uint8) * 255).ravel()


class Alp4Projector(PatternProjector):
    """A pattern set in the ALP's on-board memory, shown in a loop at the pattern rate."""

    def __init__(
        self,
        device: str = "DLP7000",
        pattern_rate_hz: float = 22700.0,
        alp_version: str = "4.3",
        alp_lib_dir: str = "",
    ):
        if device != "DLP7000":
            raise ValueError(f"the alp4 backend knows the ALP-4 with a DLP7000 (V-7000), not {device}")
        self.geometry = dmd_geometry.MIRROR_ARRAYS[device]
        self.timing = dmd_geometry.ALP4_DLP7000
        self.pattern_rate_hz = float(pattern_rate_hz)
        self.alp_version, self.alp_lib_dir = alp_version, alp_lib_dir
        self.alp = None
        self.pattern_set = None
        self.state = "idle"
        self.fault = ""

    def _open(self):
        try:
            from ALP4 import ALP4
        except ImportError as error:
            raise HardwareError(
                f"ALP4lib is not installed (pip install 'alp4lib==1.1.0'): {error}"
            ) from error
        try:
            alp = ALP4(version=self.alp_version, libDir=self.alp_lib_dir or None)
            alp.Initialize()
        except (OSError, ValueError, RuntimeError) as error:
            raise HardwareError(f"ViALUX ALP library or device unavailable: {error}") from error
        if (alp.nSizeX, alp.nSizeY) != (self.geometry.cols, self.geometry.rows):
            alp.Free()
            raise HardwareError(
                f"the ALP has a {alp.nSizeX}x{alp.nSizeY} DMD, not the {self.geometry.name} "
                f"({self.geometry.cols}x{self.geometry.rows}) set by 'device'"
            )
        return alp

    def upload(self, pattern_set, registration=None, partial: bool = False) -> None:
        placement = mirror_placement(self.geometry, pattern_set.resolution, registration, partial)
        if pattern_set.num_patterns > self.timing.pattern_memory:
            raise ValueError(
                f"{pattern_set.num_patterns} patterns exceed the ALP's {self.timing.pattern_memory}"
            )
        try:
            if self.alp is None:
                self.alp = self._open()
            self.stop()
            self.alp.SeqAlloc(nbImg=pattern_set.num_patterns, bitDepth=1)
            dense = pattern_set.dense()
            for start in range(0, len(dense), UPLOAD_CHUNK):
                chunk = dense[start : start + UPLOAD_CHUNK]
                self.alp.SeqPut(imgData=alp_frames(placement, chunk), PicOffset=start, PicLoad=len(chunk))
            self.alp.SetTiming(pictureTime=round(1e6 / self.pattern_rate_hz))
        except HardwareError as error:
            self.fault = str(error)
            raise
        except Exception as error:  # ALP4lib raises its own ALPError (an Exception) for device errors
            self.fault = f"ALP error: {error}"
            raise HardwareError(self.fault) from error
        self.pattern_set, self.placement, self.state, self.fault = pattern_set, placement, "loaded", ""

    def start(self) -> None:
        if self.pattern_set is None:
            raise RuntimeError("no pattern set uploaded")
        self.alp.Run(loop=True)
        self.state = "running"

    def stop(self) -> None:
        if self.alp is not None and self.state == "running":
            self.alp.Halt()
            self.state = "loaded"

    def status(self) -> dict:
        status = {
            "backend": "alp4",
            "device": self.geometry.name,
            "state": self.state,
            "running": self.state == "running",
        }
        status["pattern_rate_hz"] = self.pattern_rate_hz
        if self.pattern_set is not None:
            status["frame_time_ms"] = 1e3 * self.pattern_set.num_patterns / self.pattern_rate_hz
            status["mirror_block"] = self.placement.block
        if self.fault:
            status["error"] = self.fault
        return status
