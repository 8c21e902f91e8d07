"""Frame assembly: only complete, in-order frames of the expected pattern set are published."""

import math

import numpy as np

from lsi_ros.hardware.frames import INTERRUPTED, MISSED_TRIGGER, FrameAssembler, Sample


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
