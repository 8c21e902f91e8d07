"""Frame assembly: only complete, in-order frames of the expected pattern set are published."""

import math

import numpy as np

from lsi_ros.hardware.frames import FrameAssembler, Sample


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
