"""Assembling per-pattern detector samples into measurement frames.

A frame is published only when it is complete, in pattern order, from the expected pattern set
and without a gap in the detector's sample stream; anything else is dropped and counted, so an
encoder never sees a half-filled frame.
"""

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One detector reading taken while pattern ``pattern_index`` was displayed."""

    pattern_set_id: str
    pattern_index: int
    value: float
    saturated: bool = False
    gap_before: str = ""
    """Why samples may be missing just before this one: "" (none), ``MISSED_TRIGGER`` (the
    detector's trigger count jumped) or ``INTERRUPTED`` (device lost, restarted or stalled)."""
    device_time_ns: int | None = None
    """The detector's own clock when the pattern was shown (unwrapped, continuous while the stream
    runs; a new stream after ``INTERRUPTED`` may start anywhere), if it has one: see DeviceClock."""


MISSED_TRIGGER = "missed_trigger"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class MeasurementFrame:
    """The M values of one pass over the pattern set, stamped with the first pattern's display time."""

    pattern_set_id: str
    sequence: int
    stamp_ns: int
    values: np.ndarray
    saturated_count: int
    registration_id: int = 0


@dataclass
class FrameCounters:
    published: int = 0
    dropped_incomplete: int = 0
    dropped_out_of_order: int = 0
    dropped_foreign_pattern_set: int = 0
    dropped_invalid_value: int = 0
    dropped_missed_trigger: int = 0
    dropped_interrupted: int = 0
    dropped_registration_change: int = 0

    @property
    def dropped(self) -> int:
        return (
            self.dropped_incomplete
            + self.dropped_out_of_order
            + self.dropped_foreign_pattern_set
            + self.dropped_invalid_value
            + self.dropped_missed_trigger
            + self.dropped_interrupted
            + self.dropped_registration_change
        )


@dataclass
class DeviceClock:
    """Host time of a sample from the detector's own timestamp, so a frame's stamp is when its first
    pattern was shown, not when a USB or driver buffer happened to hand the sample over.

    Every sample arrives after it was taken: ``arrival − device time`` is the clock offset plus a
    delay that is never negative. The estimate is the smallest such difference seen, allowed to rise
    by ``drift_ppm`` of the elapsed device time, so the two crystals may drift apart. Until a
    sample with little delay has arrived, stamps are late by at most the first samples' delay; they
    are never later than the arrival itself."""

    drift_ppm: float = 200.0
    _offset_ns: int | None = None
    _last_device_ns: int = 0

    @property
    def offset_ns(self) -> int | None:
        """Host time minus device time (None before the first sample)."""
        return self._offset_ns

    def to_host(self, device_ns: int, arrival_ns: int) -> int:
        observed = arrival_ns - device_ns
        if self._offset_ns is None:
            self._offset_ns = observed
        else:
            elapsed = max(0, device_ns - self._last_device_ns)
            self._offset_ns = min(self._offset_ns + int(elapsed * self.drift_ppm * 1e-6), observed)
        self._last_device_ns = device_ns
        return device_ns + self._offset_ns

    def stamp(self, sample: Sample, arrival_ns: int) -> int:
        """The host time a sample was taken: from its device time when it has one, else its arrival.
        A stream that restarted (``INTERRUPTED``) has a new device clock, learnt afresh."""
        if sample.gap_before == INTERRUPTED:
            self._offset_ns = None
        if sample.device_time_ns is None:
            return arrival_ns
        return self.to_host(sample.device_time_ns, arrival_ns)


@dataclass
class FrameAssembler:
    pattern_set_id: str
    num_patterns: int
    counters: FrameCounters = field(default_factory=FrameCounters)
    _values: list = field(default_factory=list)
    _saturated: int = 0
    _stamp_ns: int = 0
    _sequence: int = 0
    _broken: bool = False
    _gap_counted: bool = False
    _last_index: int = -1
    registration_id: int = 0
    _registration_since_ns: int = 0

    def change_registration(self, registration_id: int, since_ns: int = 0) -> None:
        """The DMD shows the patterns with another registration from ``since_ns`` on (host time):
        the frame in progress, and a frame whose first pattern was shown before, mix two registrations
        and are dropped and counted; the frames after carry ``registration_id``."""
        if registration_id == self.registration_id:
            return
        if self._values:
            self.counters.dropped_registration_change += 1
            self._restart(broken=True)
        self.registration_id, self._registration_since_ns = registration_id, since_ns

    def add(self, sample: Sample, stamp_ns: int) -> MeasurementFrame | None:
        """Feed one sample (``stamp_ns``: when its pattern was shown); returns a frame when one completes."""
        if sample.pattern_set_id != self.pattern_set_id:
            self.counters.dropped_foreign_pattern_set += 1
            self._restart(broken=True)
            return None
        if sample.pattern_index <= self._last_index:
            self._gap_counted = False  # a new pass began
        self._last_index = sample.pattern_index
        if sample.gap_before:
            # a frame lost samples: the one in progress, or the one this sample is part of
            if (self._values or sample.pattern_index != 0) and not self._gap_counted:
                if sample.gap_before == MISSED_TRIGGER:
                    self.counters.dropped_missed_trigger += 1
                else:
                    self.counters.dropped_interrupted += 1
                self._gap_counted = True
            self._restart(broken=True)
        if sample.pattern_index == 0:
            if self._values:
                self.counters.dropped_incomplete += 1
            self._restart(broken=False)
            self._stamp_ns = stamp_ns
            if stamp_ns < self._registration_since_ns:
                self.counters.dropped_registration_change += 1
                self._restart(broken=True)
                return None
        elif self._broken:
            return None
        elif sample.pattern_index != len(self._values):
            self.counters.dropped_out_of_order += 1
            self._restart(broken=True)
            return None
        if not math.isfinite(sample.value):
            self.counters.dropped_invalid_value += 1
            self._restart(broken=True)
            return None
        self._values.append(sample.value)
        self._saturated += int(sample.saturated)
        if len(self._values) < self.num_patterns:
            return None
        frame = MeasurementFrame(
            pattern_set_id=self.pattern_set_id,
            sequence=self._sequence,
            stamp_ns=self._stamp_ns,
            values=np.asarray(self._values, dtype=np.float32),
            saturated_count=self._saturated,
            registration_id=self.registration_id,
        )
        self._sequence += 1
        self.counters.published += 1
        self._restart(broken=True)
        return frame

    def _restart(self, broken: bool) -> None:
        self._values = []
        self._saturated = 0
        self._broken = broken
