"""The ``nidaqmx`` photodiode: hardware-timed acquisition on an NI DAQ clocked by the DMD.

The DMD's trigger-out drives the sample clock of one analog-input channel, so the DAQ converts
exactly one sample per displayed pattern. A start trigger on the DMD's frame-start line (or,
without one, arming the task before the DMD starts its sequence) makes sample k of the stream
pattern k mod M. Samples are read in chunks of M with a timeout. A short read (the DMD stopped)
or a DAQ error closes the task, marks the next sample as following a gap and re-arms the task
with backoff, so the frame assembler drops the frame in progress and the next pass starts at
pattern 0. Only ``_open_task`` and ``acquire_frame`` touch nidaqmx; the pattern bookkeeping is
plain numpy (``PatternCounter``). nidaqmx and NI's driver are optional: ``pip install
'lsi_ros[nidaq]'``.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from lsi_ros.hardware import Detector, HardwareError
from lsi_ros.hardware.frames import INTERRUPTED, Sample

NIDAQ_MISSING = (
    "the nidaqmx photodiode backend needs the nidaqmx package (pip install 'lsi_ros[nidaq]') "
    "and NI's NI-DAQmx driver (Linux: python -m nidaqmx installdriver)"
)
TERMINAL_CONFIGS = ("DEFAULT", "RSE", "NRSE", "DIFF", "PSEUDO_DIFF")


def load_nidaqmx():
    """The nidaqmx module, or HardwareError naming the extra and the driver."""
    try:
        import nidaqmx
        import nidaqmx.stream_readers
    except ImportError as error:
        raise HardwareError(f"{NIDAQ_MISSING} ({error})") from None
    return nidaqmx


def saturated(volts: np.ndarray, range_v: float) -> np.ndarray:
    """Samples at or beyond the configured input range ±range_v: the ADC clipped them."""
    return np.abs(np.asarray(volts, dtype=np.float64)) >= range_v


@dataclass
class PatternCounter:
    """Pattern indices of a hardware-timed stream: after (re)arming, sample k shows pattern k mod M."""

    pattern_set_id: str
    num_patterns: int
    range_v: float
    next_index: int = 0
    gap_before_next: str = ""

    def samples(self, volts: np.ndarray) -> list[Sample]:
        """One chunk of the stream (any length) as Samples in pattern order."""
        volts = np.asarray(volts, dtype=np.float64).ravel()
        indices = (self.next_index + np.arange(volts.size)) % self.num_patterns
        clipped = saturated(volts, self.range_v)
        samples = [
            Sample(self.pattern_set_id, int(i), float(v), bool(c))
            for i, v, c in zip(indices, volts, clipped, strict=True)
        ]
        if samples and self.gap_before_next:
            samples[0] = replace(samples[0], gap_before=self.gap_before_next)
            self.gap_before_next = ""
        self.next_index = (self.next_index + volts.size) % self.num_patterns
        return samples

    def resync(self) -> None:
        """The task was re-armed (after a short read or an error): the next sample is pattern 0,
        after a gap, so a frame in progress is dropped rather than completed with foreign samples."""
        self.next_index = 0
        self.gap_before_next = INTERRUPTED


@dataclass
class DaqCounters:
    chunks: int = 0
    samples: int = 0
    timeouts: int = 0
    daq_errors: int = 0
    task_restarts: int = 0
    saturated_samples: int = 0


class NidaqPhotodiode(Detector):
    """The photodiode amplifier on one analog input of an NI DAQ, sampled on the DMD's trigger-out.

    Values are volts. All DAQ calls happen in the thread that iterates ``acquire_frame``; nothing
    raises into the caller: errors land in ``status()`` and the task is recreated with backoff.
    """

    def __init__(
        self,
        channel: str = "Dev1/ai0",
        clock_source: str = "/Dev1/PFI0",
        start_trigger: str = "/Dev1/PFI1",
        range_v: float = 10.0,
        terminal_config: str = "DEFAULT",
        read_timeout_s: float = 0.5,
        reconnect_max_backoff_s: float = 5.0,
    ):
        if terminal_config not in TERMINAL_CONFIGS:
            raise ValueError(f"terminal_config must be one of {TERMINAL_CONFIGS}, got {terminal_config!r}")
        self.channel = channel
        self.clock_source = clock_source
        self.start_trigger = start_trigger
        self.range_v = range_v
        self.terminal_config = terminal_config
        self.read_timeout_s = read_timeout_s
        self.reconnect_max_backoff_s = reconnect_max_backoff_s
        self.pattern_rate_hz = 9500.0
        self.pattern_set = None
        self.last_error = ""
        self.counters = DaqCounters()
        self._nidaqmx = None
        self._task = None
        self._reader = None
        self._armed_set = None
        self._ever_armed = False
        self._counter: PatternCounter | None = None
        self._backoff_s = 0.0
        self._retry_at = 0.0

    def set_pattern_set(self, pattern_set) -> None:
        self.pattern_set = pattern_set

    def set_pattern_rate(self, pattern_rate_hz: float) -> None:
        """The DMD's pattern rate: the highest rate the external sample clock will run at."""
        self.pattern_rate_hz = pattern_rate_hz

    @property
    def connected(self) -> bool:
        return self._task is not None

    def acquire_frame(self) -> Iterator[Sample]:
        """Up to one chunk of M samples (fewer after a short read, none while the task is down)."""
        if not self._ready():
            return
        counter = self._counter
        chunk = np.zeros(counter.num_patterns, dtype=np.float64)
        errors = self._nidaqmx.errors
        try:
            read = self._reader.read_many_sample(
                chunk, number_of_samples_per_channel=chunk.size, timeout=self._read_timeout()
            )
        except errors.DaqReadError as error:
            read = error.samps_per_chan_read
            if error.error_code == self._nidaqmx.error_codes.DAQmxErrors.SAMPLES_NOT_YET_AVAILABLE:
                self.counters.timeouts += 1
                self._lose(f"read timeout: {read} of {chunk.size} samples (DMD stopped?)", backoff=False)
            else:
                self.counters.daq_errors += 1
                self._lose(f"read failed: {error}")
            # the samples before the short read were taken at their patterns; the re-armed task restarts
            yield from self._take(counter, chunk[:read], resync=True)
            return
        except errors.Error as error:
            self.counters.daq_errors += 1
            self._lose(f"read failed: {error}")
            counter.resync()
            return
        self._backoff_s = 0.0
        yield from self._take(counter, chunk[:read], resync=False)

    def close(self) -> None:
        self._close_task()

    def status(self) -> dict:
        return {
            "backend": "nidaqmx",
            "channel": self.channel,
            "connected": self.connected,
            "clock_source": self.clock_source,
            "start_trigger": self.start_trigger or "none (pattern-count alignment)",
            "range_v": self.range_v,
            **vars(self.counters),
            "last_error": self.last_error,
        }

    def _take(self, counter: PatternCounter, volts: np.ndarray, resync: bool) -> list[Sample]:
        samples = counter.samples(volts)
        if resync:
            counter.resync()
        self.counters.chunks += 1
        self.counters.samples += len(samples)
        self.counters.saturated_samples += sum(s.saturated for s in samples)
        return samples

    def _read_timeout(self) -> float:
        return self._counter.num_patterns / self.pattern_rate_hz + self.read_timeout_s

    def _ready(self) -> bool:
        """A task armed for the current pattern set; otherwise (re)create one after the backoff."""
        pattern_set = self.pattern_set
        if self._task is not None and self._armed_set is pattern_set:
            return True
        if pattern_set is not None and time.monotonic() >= self._retry_at:
            try:
                self._open_task(pattern_set)
                return True
            except HardwareError as error:
                self._lose(str(error))
        time.sleep(min(max(self._retry_at - time.monotonic(), 0.01), self.read_timeout_s))
        return False

    def _open_task(self, pattern_set) -> None:
        self._close_task()
        nidaqmx = load_nidaqmx()
        constants = nidaqmx.constants
        try:
            task = nidaqmx.Task()
        except nidaqmx.errors.Error as error:
            raise HardwareError(f"{NIDAQ_MISSING}: {error}") from None
        try:
            task.ai_channels.add_ai_voltage_chan(
                self.channel,
                terminal_config=constants.TerminalConfiguration[self.terminal_config],
                min_val=-self.range_v,
                max_val=self.range_v,
            )
            task.timing.cfg_samp_clk_timing(
                self.pattern_rate_hz,
                source=self.clock_source,
                active_edge=constants.Edge.RISING,
                sample_mode=constants.AcquisitionType.CONTINUOUS,
                samps_per_chan=max(16 * pattern_set.num_patterns, 10_000),
            )
            if self.start_trigger:
                task.triggers.start_trigger.cfg_dig_edge_start_trig(self.start_trigger, constants.Edge.RISING)
            task.start()
        except nidaqmx.errors.Error as error:
            task.close()
            raise HardwareError(f"cannot configure {self.channel}: {error}") from None
        if self._ever_armed:
            self.counters.task_restarts += 1
        self._ever_armed = True
        self._nidaqmx = nidaqmx
        self._task = task
        self._reader = nidaqmx.stream_readers.AnalogSingleChannelReader(task.in_stream)
        self._armed_set = pattern_set
        self._counter = PatternCounter(
            pattern_set.pattern_set_id, pattern_set.num_patterns, self.range_v, gap_before_next=INTERRUPTED
        )

    def _lose(self, message: str, backoff: bool = True) -> None:
        self.last_error = message
        self._close_task()
        if backoff:
            self._backoff_s = min(self.reconnect_max_backoff_s, max(0.05, 2 * self._backoff_s))
            self._retry_at = time.monotonic() + self._backoff_s

    def _close_task(self) -> None:
        if self._task is not None:
            try:
                self._task.close()
            except Exception:  # noqa: BLE001 - a failing driver must not stop the node
                pass
        self._task = None
        self._reader = None
        self._armed_set = None
