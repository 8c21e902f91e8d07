"""Checks on the data a node publishes or accepts, and the refusals they lead to.

Every data publisher of the pipeline goes through ``CheckedPublisher``: a message whose arrays are
empty or hold NaN/inf, or that is larger than ``MAX_MESSAGE_BYTES``, is refused, counted, logged
with the offending input (sequence, stamp) and never leaves the node. ``Refusals`` counts refusals
in total and over the last ``WINDOW_S`` seconds, so a node's diagnostics turn WARN while refusals
happen and back to OK once they stop.
"""

import time
from collections import Counter, deque

import numpy as np

# Diagnostics look at the refusals of this many past seconds (counters stay cumulative).
WINDOW_S = 10.0

# Largest message a pipeline node publishes. Fast DDS fragments larger samples over UDP; on the
# sensor-data (best-effort) QoS one lost fragment loses the whole sample without a trace.
MAX_MESSAGE_BYTES = 16 * 2**20

# Physically possible detector readings: raw ADC counts are in [0, 2^bits - 1] (a 32-bit ADC at
# most); calibrated photo-electrons dip below 0 only by read noise (~1e3-1e5 e- rms).
READING_FLOOR = -1e7
READING_CEILING = 2.0**32


class Refusals:
    """Refused inputs and outputs of one node, per kind, in total and within the last ``window_s``."""

    def __init__(self, node, window_s: float = WINDOW_S):
        self._logger = node.get_logger()
        self.window_s = window_s
        self.totals = Counter()
        self.last_message = ""
        self._times = deque()

    def refuse(self, kind: str, message: str) -> None:
        self.totals[kind] += 1
        self.last_message = message
        self._times.append(time.monotonic())
        self._logger.warning(message, throttle_duration_sec=5.0)

    def recent(self) -> int:
        """Refusals within the last ``window_s`` seconds: what the diagnostics level reflects."""
        cutoff = time.monotonic() - self.window_s
        while self._times and self._times[0] < cutoff:
            self._times.popleft()
        return len(self._times)

    def values(self) -> dict:
        return {**self.totals, f"refused_last_{self.window_s:g}s": self.recent()}


class RecentIncrease:
    """How much a cumulative counter grew within the last ``window_s`` seconds (call it with the
    counter's total, e.g. once per diagnostics report)."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._history = deque([(time.monotonic(), 0)])

    def __call__(self, total: int) -> int:
        now = time.monotonic()
        self._history.append((now, total))
        while len(self._history) > 1 and self._history[1][0] <= now - self.window_s:
            self._history.popleft()
        return total - self._history[0][1]


def describe(header, sequence: int | None = None) -> str:
    """The input a refusal is about, as its sequence number and stamp."""
    stamp = f"stamp {header.stamp.sec}.{header.stamp.nanosec:09d}"
    return stamp if sequence is None else f"frame {sequence} ({stamp})"


def array_problem(**arrays) -> str:
    """Why these arrays may not be published (empty, NaN or infinite values), or ''."""
    for name, array in arrays.items():
        values = np.asarray(array)
        if values.size == 0:
            return f"{name} is empty (shape {list(values.shape)})"
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            return f"{name} holds {bad} NaN or infinite values of {values.size}"
    return ""


def reading_problem(values: np.ndarray) -> str:
    """Why finite detector readings are not physically possible (negative beyond noise, or above
    any ADC's ceiling), or ''."""
    low, high = float(np.min(values)), float(np.max(values))
    if low < READING_FLOOR or high > READING_CEILING:
        return (
            f"values span [{low:.4g}, {high:.4g}], outside the physically possible "
            f"[{READING_FLOOR:.0e}, {READING_CEILING:.4g}]"
        )
    return ""


class CheckedPublisher:
    """A publisher that checks its data first: refused messages are counted and reported, not sent."""

    def __init__(
        self,
        node,
        msg_type,
        topic: str,
        qos_profile,
        refusals: Refusals,
        max_bytes=MAX_MESSAGE_BYTES,
        create=None,
    ):
        """``create`` makes the underlying publisher (default ``node.create_publisher``; a lifecycle
        node passes ``node.create_lifecycle_publisher``)."""
        self._publisher = (create or node.create_publisher)(msg_type, topic, qos_profile)
        self.topic = self._publisher.topic_name
        self.refusals = refusals
        self.max_bytes = max_bytes
        self.published = 0

    def publish(self, msg, source: str, **arrays) -> bool:
        """Publish ``msg`` (or what a zero-argument ``msg()`` builds, only once the arrays passed)
        unless ``arrays`` (the message's data) are empty, non-finite or too large; True if sent."""
        problem = array_problem(**arrays)
        size = sum(np.asarray(a).nbytes for a in arrays.values())
        if not problem and size > self.max_bytes:
            problem = f"{size / 2**20:.1f} MiB exceeds the {self.max_bytes / 2**20:g} MiB message limit"
        if problem:
            self.refusals.refuse("refused_output", f"{self.topic}: not published for {source}: {problem}")
            return False
        self._publisher.publish(msg() if callable(msg) else msg)
        self.published += 1
        return True

    def get_subscription_count(self) -> int:
        return self._publisher.get_subscription_count()
