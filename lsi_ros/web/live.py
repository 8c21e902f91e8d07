"""What the live page shows, gathered from the pipeline's messages as plain values (no ROS here).

The web_view node calls these from its ROS callbacks and the HTTP server reads them from its own
threads, so every object takes its lock for a few assignments only. A callback keeps a reference to
the message's pixels (a function returning them) and never converts or encodes: that happens in the
server's threads, once per frame, when a client asks for it.
"""

import asyncio
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Frame:
    """One image as it arrived: its number on the channel, arrival (monotonic s), header stamp."""

    seq: int
    received: float
    stamp_ns: int
    width: int
    height: int
    pixels: Callable[[], np.ndarray]  # RGB, float in [0, 1] or uint8, shape (H, W, 3)


class ImageChannel:
    """The newest frame of one image topic; clients wait for a newer one and skip what they missed."""

    def __init__(self, topic: str):
        self.topic = topic
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._jpegs: dict = {}  # (seq, quality, width, height) -> bytes, of the newest frame only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake waiters on this event loop (the HTTP server's) when a frame arrives."""
        if self._loop is loop:
            return
        self._loop = loop
        self._changed = asyncio.Event()

    def put(self, stamp_ns: int, width: int, height: int, pixels: Callable[[], np.ndarray]) -> None:
        """Called from a ROS callback: O(1), never blocks on clients."""
        with self._lock:
            seq = self._frame.seq + 1 if self._frame else 0
            self._frame = Frame(seq, time.monotonic(), stamp_ns, width, height, pixels)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._notify)
            except RuntimeError:  # the server's loop is closed: nobody is waiting
                pass

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frame

    async def next_frame(self, after_seq: int, timeout: float) -> Frame | None:
        """The newest frame if it is newer than ``after_seq``, else wait for one (None on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            frame = self.latest()
            if frame is not None and frame.seq > after_seq:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return None

    def jpeg(self, frame: Frame, quality: int, width: int = 0, height: int = 0) -> bytes:
        """The frame as JPEG (scaled to width x height when given), encoded once per frame and size."""
        key = (frame.seq, quality, width, height)
        with self._lock:
            cached = self._jpegs.get(key)
        if cached is not None:
            return cached
        rgb = frame.pixels()
        if rgb.dtype != np.uint8:
            rgb = np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
        if width and height:
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        ok, buffer = cv2.imencode(
            ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise ValueError(f"cannot encode a {rgb.shape} frame of {self.topic} as JPEG")
        data = buffer.tobytes()
        with self._lock:
            if self._frame is not None and self._frame.seq == frame.seq:
                self._jpegs = {k: v for k, v in self._jpegs.items() if k[0] == frame.seq} | {key: data}
        return data

    def describe(self, now: float) -> dict:
        frame = self.latest()
        if frame is None:
            return {"topic": self.topic, "seq": None, "age_s": None}
        return {
            "topic": self.topic,
            "seq": frame.seq,
            "stamp_ns": frame.stamp_ns,
            "age_s": round(now - frame.received, 2),
            "width": frame.width,
            "height": frame.height,
        }


def _p50(values) -> float | None:
    return round(float(np.percentile(list(values), 50)), 1) if values else None


class PipelineState:
    """Rates, latencies, sizes and counts of the pipeline, followed by header stamp like the monitor.

    The sampler stamps a frame with its scene's stamp and the encoder and decoder copy it, so
    arrival minus stamp is the latency from the scene (or, on hardware, from the frame's first
    pattern) to each stage. A scene that yields no code, or a code no image, within ``match_s`` is
    counted as dropped. The attributes shown are those of the decoded image shown (same stamp)
    while images flow, else the newest.
    """

    MAX_PLOT_VALUES = 1024
    KEPT = 64  # attributes waiting for their decoded image

    def __init__(self, match_s: float = 5.0, window_s: float = 10.0):
        self.match_s = match_s
        self.window_s = window_s
        self._lock = threading.Lock()
        self._pending = {"scene": {}, "code": {}}  # stamp_ns -> arrival (monotonic)
        self._latency_ms = {"scene_to_code": deque(maxlen=100), "scene_to_image": deque(maxlen=100)}
        self._image_times = deque()
        self._dropped = {"not_encoded": 0, "not_decoded": 0, "sequence_gaps": 0}
        self._last_sequence = None
        self._refused = {}
        self._bytes = {}
        self._measurements = None
        self._attributes = OrderedDict()  # stamp_ns -> attributes, the last KEPT
        self._shown_stamp = None
        self._pattern_set = None
        self._code = {"model_id": "", "pattern_set_id": ""}

    def scene(self, stamp_ns: int, nbytes: int) -> None:
        with self._lock:
            self._pending["scene"][stamp_ns] = time.monotonic()
            self._bytes["scene"] = nbytes

    def measurements(self, stamp_ns: int, sequence: int, values: np.ndarray, nbytes: int, saturated: int):
        values = np.asarray(values, dtype=np.float64)
        stride = max(1, math.ceil(values.size / self.MAX_PLOT_VALUES))
        with self._lock:
            if self._last_sequence is not None and sequence > self._last_sequence + 1:
                self._dropped["sequence_gaps"] += sequence - self._last_sequence - 1
            self._last_sequence = sequence
            self._bytes["measurements"] = nbytes
            self._measurements = {
                "received": time.monotonic(),
                "sequence": int(sequence),
                "count": int(values.size),
                "stride": stride,
                "saturated": int(saturated),
                "values": [round(v, 4) for v in values[::stride].tolist()],
            }

    def latent(self, stamp_ns: int, arrival_ns: int, model_id: str, pattern_set_id: str, nbytes: int):
        with self._lock:
            self._pending["scene"].pop(stamp_ns, None)
            self._pending["code"][stamp_ns] = time.monotonic()
            if stamp_ns:
                self._latency_ms["scene_to_code"].append((arrival_ns - stamp_ns) / 1e6)
            self._code = {"model_id": model_id, "pattern_set_id": pattern_set_id}
            self._bytes["latent"] = nbytes

    def image(self, stamp_ns: int, arrival_ns: int, nbytes: int) -> None:
        with self._lock:
            self._pending["code"].pop(stamp_ns, None)
            if stamp_ns:
                self._latency_ms["scene_to_image"].append((arrival_ns - stamp_ns) / 1e6)
            self._image_times.append(time.monotonic())
            self._bytes["image"] = nbytes
            self._shown_stamp = stamp_ns

    def attributes(self, stamp_ns: int, names, scores, model_id: str) -> None:
        with self._lock:
            self._attributes[stamp_ns] = {
                "received": time.monotonic(),
                "stamp_ns": stamp_ns,
                "model_id": model_id,
                "names": list(names),
                "scores": [round(float(s), 4) for s in scores],
            }
            self._attributes.move_to_end(stamp_ns)
            while len(self._attributes) > self.KEPT:
                self._attributes.popitem(last=False)

    def pattern_set(self, pattern_set_id: str, kind: str, model_id: str, num_patterns: int, resolution: int):
        with self._lock:
            self._pattern_set = {
                "pattern_set_id": pattern_set_id,
                "kind": kind,
                "model_id": model_id,
                "num_patterns": int(num_patterns),
                "resolution": int(resolution),
            }

    def diagnostics(self, name: str, values: dict) -> None:
        """A node's /diagnostics counters: the ones named refused*/rejected* are inputs it refused."""
        refused = sum(
            int(v) for k, v in values.items() if k.startswith(("refused", "rejected")) and str(v).isdigit()
        )
        with self._lock:
            self._refused[name] = refused

    def _expire(self, now: float) -> None:
        for stage, counter in (("scene", "not_encoded"), ("code", "not_decoded")):
            pending = self._pending[stage]
            old = [stamp for stamp, arrived in pending.items() if now - arrived > self.match_s]
            for stamp in old:
                del pending[stamp]
            self._dropped[counter] += len(old)
        while self._image_times and now - self._image_times[0] > self.window_s:
            self._image_times.popleft()

    def snapshot(self) -> dict:
        """Everything the page shows except the images, as JSON-ready values."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            times = self._image_times
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            rate = (len(times) - 1) / span if span > 0 else 0.0
            pattern_set = self._pattern_set
            side = pattern_set["resolution"] if pattern_set else 0
            measurements = self._measurements and {
                k: v for k, v in self._measurements.items() if k != "received"
            } | {"age_s": round(now - self._measurements["received"], 2)}
            attributes = self._attributes.get(self._shown_stamp) or (
                next(reversed(self._attributes.values())) if self._attributes else None
            )
            attributes = attributes and {k: v for k, v in attributes.items() if k != "received"} | {
                "age_s": round(now - attributes["received"], 2)
            }
            return {
                "frame_rate_hz": round(rate, 2),
                "latency_ms": {k: _p50(v) for k, v in self._latency_ms.items()},
                # What a camera sends per frame against the raw rgb8 image of the sampling grid.
                "bytes_per_frame": dict(self._bytes) | ({"raw_image": side * side * 3} if side else {}),
                "dropped": dict(self._dropped),
                "refused": dict(self._refused),
                "model_id": self._code["model_id"] or (pattern_set or {}).get("model_id", ""),
                "pattern_set": pattern_set or {"pattern_set_id": self._code["pattern_set_id"]},
                "measurements": measurements,
                "attributes": attributes,
            }
