"""Video-mode fallback: binary patterns as the bit planes of 24-bit RGB video frames.

A DLPC900 or DLPC350 in video pattern mode shows each 60 Hz RGB frame on its video input as up to 24
binary patterns, one per bit plane, so any display output can drive the DMD at up to
60 × 24 = 1440 patterns/s. Bit order (the DLPC350/DLPC900 video-pattern convention, bit planes
G0–G7, R0–R7, B0–B7): pattern ``24·f + k`` of the set is, in frame ``f``, bit ``k`` of green for
``k`` 0–7, bit ``k − 8`` of red for 8–15 and bit ``k − 16`` of blue for 16–23. The controller's
video-pattern LUT must list the planes in that order (set up with TI's GUI or the
Pattern Display LUT commands; not done here).

Frames go to a frame sink: an image folder (PNG files, works with the headless OpenCV this package
ships) or a full-screen window (needs an OpenCV built with a GUI, e.g. ``opencv-python``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from lsi_ros.hardware import HardwareError, PatternProjector, mirror_placement
from lsi_ros.optics import dmd as dmd_geometry

FRAME_RATE_HZ = 60.0
PLANES_PER_FRAME = 24
MAX_PATTERN_RATE_HZ = FRAME_RATE_HZ * PLANES_PER_FRAME  # 1440 patterns/s
CHANNEL_OF_BYTE = (1, 0, 2)  # bits 0–7 → G, 8–15 → R, 16–23 → B (RGB channel indices)


def pack_video_frames(patterns: np.ndarray) -> np.ndarray:
    """``(n, H, W)`` binary patterns → ``(ceil(n/24), H, W, 3)`` uint8 RGB frames (bit order above)."""
    patterns = np.asarray(patterns).astype(bool)
    if patterns.ndim != 3:
        raise ValueError(f"patterns must have shape (n, H, W), got {patterns.shape}")
    n, h, w = patterns.shape
    frames = np.zeros((-(-n // PLANES_PER_FRAME), h, w, 3), dtype=np.uint8)
    for index, pattern in enumerate(patterns):
        frame, bit = divmod(index, PLANES_PER_FRAME)
        frames[frame, :, :, CHANNEL_OF_BYTE[bit // 8]] |= pattern.astype(np.uint8) << (bit % 8)
    return frames


def unpack_video_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """RGB frames → the first ``count`` binary patterns ``(count, H, W)`` (inverse of pack_video_frames)."""
    frames = np.asarray(frames, dtype=np.uint8)
    if count > len(frames) * PLANES_PER_FRAME:
        raise ValueError(f"{len(frames)} frames hold at most {len(frames) * PLANES_PER_FRAME} patterns")
    return np.stack(
        [
            (
                frames[i // PLANES_PER_FRAME, :, :, CHANNEL_OF_BYTE[i % PLANES_PER_FRAME // 8]] >> (i % 8) & 1
            ).astype(bool)
            for i in range(count)
        ]
    )


class FrameSink(Protocol):
    def show(self, frames: np.ndarray, frame_rate_hz: float) -> None:
        """Start showing the RGB frames cyclically (or write them once)."""

    def stop(self) -> None: ...


class ImageFolderSink:
    """Writes the frames as lossless PNGs ``frame_00000.png …`` (for a player, a test, or inspection)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        self.written: list[Path] = []

    def show(self, frames: np.ndarray, frame_rate_hz: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("frame_*.png"):
            old.unlink()
        self.written = []
        for index, frame in enumerate(frames):
            path = self.folder / f"frame_{index:05d}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                raise HardwareError(f"cannot write video frame {path}")
            self.written.append(path)

    def stop(self) -> None:
        pass


def gui_available() -> bool:
    """Whether this OpenCV can open windows (opencv-python-headless cannot)."""
    return "GUI:                           NONE" not in cv2.getBuildInformation()


class DisplaySink:
    """A borderless full-screen OpenCV window on the display wired to the controller's video input."""

    WINDOW = "lsi_ros DMD video"

    def __init__(self):
        if not gui_available():
            raise HardwareError(
                "video output 'display' needs an OpenCV with GUI support; this one is headless "
                "(opencv-python-headless). Install opencv-python, or use video_output 'folder:<path>'"
            )
        self._thread = None
        self._stop = threading.Event()

    def show(self, frames: np.ndarray, frame_rate_hz: float) -> None:
        self.stop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(frames, frame_rate_hz), daemon=True)
        self._thread.start()

    def _loop(self, frames: np.ndarray, frame_rate_hz: float) -> None:
        cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
        cv2.setWindowProperty(self.WINDOW, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        period, index = 1.0 / frame_rate_hz, 0
        while not self._stop.is_set():
            started = time.monotonic()
            cv2.imshow(self.WINDOW, cv2.cvtColor(frames[index % len(frames)], cv2.COLOR_RGB2BGR))
            cv2.waitKey(1)
            index += 1
            time.sleep(max(0.0, period - (time.monotonic() - started)))
        cv2.destroyWindow(self.WINDOW)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)
            self._thread = None


def open_sink(video_output: str) -> FrameSink:
    """``folder:<path>`` → ImageFolderSink, ``display`` → DisplaySink."""
    kind, _, target = video_output.partition(":")
    if kind == "folder" and target:
        return ImageFolderSink(target)
    if kind == "display":
        return DisplaySink()
    raise ValueError(f"video_output {video_output!r} is not 'folder:<path>' or 'display'")


class VideoModeProjector(PatternProjector):
    """Patterns placed on the mirror array, packed 24 per RGB frame and sent to a frame sink."""

    def __init__(
        self,
        device: str = "DLP6500",
        pattern_rate_hz: float = MAX_PATTERN_RATE_HZ,
        video_output: str = "folder:~/.cache/lsi_ros/video_frames",
        sink: FrameSink | None = None,
    ):
        if not 0 < pattern_rate_hz <= MAX_PATTERN_RATE_HZ:
            raise ValueError(
                f"video mode shows at most {MAX_PATTERN_RATE_HZ:.0f} patterns/s "
                f"({FRAME_RATE_HZ:.0f} Hz x {PLANES_PER_FRAME} bit planes), asked for {pattern_rate_hz:.0f}"
            )
        self.geometry = dmd_geometry.MIRROR_ARRAYS[device]
        self.pattern_rate_hz = float(pattern_rate_hz)
        self.video_output = video_output
        self.sink = sink
        self.frames = None
        self.pattern_set = None
        self.state = "idle"
        self.fault = ""

    def upload(self, pattern_set, registration=None, partial: bool = False) -> None:
        self.placement = mirror_placement(self.geometry, pattern_set.resolution, registration, partial)
        planes = pack_video_frames(pattern_set.dense())  # (F, H, W, 3) at sampling resolution
        self.frames = np.stack([self.placement.place_values(frame) for frame in planes])
        self.pattern_set = pattern_set

    def start(self) -> None:
        if self.frames is None:
            raise RuntimeError("no pattern set uploaded")
        try:
            if self.sink is None:
                self.sink = open_sink(self.video_output)
            self.sink.show(self.frames, self.pattern_rate_hz / PLANES_PER_FRAME)
        except HardwareError as error:
            self.fault = str(error)
            raise
        self.state, self.fault = "running", ""

    def stop(self) -> None:
        if self.sink is not None:
            self.sink.stop()
        if self.state == "running":
            self.state = "loaded"

    def status(self) -> dict:
        status = {
            "backend": "video",
            "device": self.geometry.name,
            "state": self.state,
            "running": self.state == "running",
            "video_output": self.video_output,
            "pattern_rate_hz": self.pattern_rate_hz,
        }
        if self.pattern_set is not None:
            status["frames"] = len(self.frames)
            status["frame_time_ms"] = 1e3 * self.pattern_set.num_patterns / self.pattern_rate_hz
            status["mirror_block"] = self.placement.block
        if self.fault:
            status["error"] = self.fault
        return status
