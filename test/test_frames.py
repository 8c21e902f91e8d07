"""Frame assembly: only complete, in-order frames of the expected pattern set are published."""

import math

import numpy as np
import pytest

from lsi_ros.hardware.frames import INTERRUPTED, MISSED_TRIGGER, DeviceClock, FrameAssembler, Sample


def feed(assembler, indices, set_id="A", values=None, stamp=0):
    frames = []
    for k, index in enumerate(indices):
        value = float(index) if values is None else values[k]
        frame = assembler.add(Sample(set_id, index, value, saturated=index == 1), stamp + k)
        if frame is not None:
            frames.append(frame)
    return frames


def test_complete_frames_are_published_with_first_pattern_stamp_and_sequence():
    assembler = FrameAssembler("A", 4)
    frames = feed(assembler, [0, 1, 2, 3, 0, 1, 2, 3], stamp=100)
    assert [f.sequence for f in frames] == [0, 1]
    assert [f.stamp_ns for f in frames] == [100, 104]
    np.testing.assert_array_equal(frames[0].values, [0, 1, 2, 3])
    assert frames[0].saturated_count == 1 and assembler.counters.dropped == 0


def test_incomplete_out_of_order_foreign_and_nan_frames_are_dropped_and_counted():
    assembler = FrameAssembler("A", 4)
    assert feed(assembler, [0, 1, 0, 1, 2, 3]) and assembler.counters.dropped_incomplete == 1
    assert not feed(assembler, [0, 2, 3]) and assembler.counters.dropped_out_of_order == 1
    assert not feed(assembler, [0, 1], set_id="B") and assembler.counters.dropped_foreign_pattern_set == 2
    assert not feed(assembler, [0, 1, 2, 3], values=[1.0, math.nan, 2.0, 3.0])
    assert assembler.counters.dropped_invalid_value == 1
    good = feed(assembler, [0, 1, 2, 3])
    assert len(good) == 1 and good[0].sequence == 1
    assert assembler.counters.published == 2


def test_a_gap_in_the_sample_stream_drops_the_frame_once_and_resyncs_at_pattern_zero():
    assembler = FrameAssembler("A", 4)
    add = assembler.add
    assert add(Sample("A", 0, 1.0), 10) is None and add(Sample("A", 1, 1.0), 11) is None
    # a whole pass lost between pattern 1 and pattern 2: in order by index, but not one pass
    assert add(Sample("A", 2, 1.0, gap_before=MISSED_TRIGGER), 12) is None
    assert add(Sample("A", 3, 1.0, gap_before=MISSED_TRIGGER), 13) is None  # same broken frame
    assert assembler.counters.dropped_missed_trigger == 1 and assembler.counters.published == 0
    # pattern 0 lost: the next pass is dropped too, and counted
    assert add(Sample("A", 1, 1.0, gap_before=MISSED_TRIGGER), 14) is None
    assert assembler.counters.dropped_missed_trigger == 2
    assert not feed(assembler, [2, 3])
    assert add(Sample("A", 0, 5.0, gap_before=INTERRUPTED), 20) is None  # a gap at a frame boundary
    assert assembler.counters.dropped_interrupted == 0
    frames = feed(assembler, [1, 2, 3])
    assert len(frames) == 1 and frames[0].stamp_ns == 20 and frames[0].values[0] == 5.0
    assert assembler.counters.dropped == 2


def usb_arrivals(trigger_s: np.ndarray, rng) -> np.ndarray:
    """When a host sees samples taken at ``trigger_s``: handed over in 16 ms USB/driver chunks, then
    a scheduling delay of 0.2 ms plus an exponential tail (mean 1 ms)."""
    chunk = 0.016
    return np.ceil(trigger_s / chunk) * chunk + 2e-4 + rng.exponential(1e-3, len(trigger_s))


@pytest.mark.parametrize("drift_ppm", [80.0, -80.0])
def test_device_clock_stamps_samples_when_taken_not_when_handed_over(drift_ppm):
    """1 kHz triggers for 20 s, the device crystal 80 ppm fast or slow and its clock an hour off the
    host's: after 0.1 s the arrival time is up to 16 ms late, the mapped device time late only by
    the fixed 0.2 ms latency (which no timestamp can reveal) plus under 0.3 ms, never after arrival."""
    rng = np.random.default_rng(0)
    host_s = np.arange(20_000) * 1e-3 + 5.0
    device_ns = np.rint((host_s * (1 + drift_ppm * 1e-6) - 3600.0) * 1e9).astype(np.int64) + 10**13
    arrival_ns = np.rint(usb_arrivals(host_s, rng) * 1e9).astype(np.int64)
    clock = DeviceClock()
    stamps = np.array([clock.to_host(int(d), int(a)) for d, a in zip(device_ns, arrival_ns, strict=True)])
    true_ns = host_s * 1e9
    late_arrival = (arrival_ns - true_ns)[100:]
    late_stamp = (stamps - true_ns)[100:] - 0.2e6
    assert late_arrival.max() > 15e6 and late_arrival.mean() > 7e6  # what arrival stamps carry
    assert late_stamp.min() > -0.01e6 and late_stamp.max() < 0.3e6, late_stamp.max() / 1e6
    assert np.all(stamps <= arrival_ns)


def test_device_clock_learns_a_new_clock_after_an_interruption_and_passes_samples_without_one():
    clock = DeviceClock()
    assert clock.stamp(Sample("p", 0, 1.0, device_time_ns=1_000), arrival_ns=5_000) == 1_000 + 4_000
    assert clock.stamp(Sample("p", 1, 1.0, device_time_ns=2_000), arrival_ns=5_500) == 2_000 + 3_500
    # the device restarted: its clock began again near zero, the old offset would be wildly wrong
    restarted = Sample("p", 0, 1.0, gap_before=INTERRUPTED, device_time_ns=10)
    assert clock.stamp(restarted, arrival_ns=9_000_000) == 9_000_000
    assert clock.offset_ns == 9_000_000 - 10
    assert clock.stamp(Sample("p", 0, 1.0), arrival_ns=123) == 123  # no device time: its arrival
