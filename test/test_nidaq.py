"""nidaqmx photodiode: the pattern bookkeeping of a hardware-timed sample stream on real numpy
streams, and, without NI hardware or driver here, the clear error and a photodiode_sampler that
keeps running and reports ERROR on /diagnostics.
"""

import importlib.util

import numpy as np
import pytest
from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter

from lsi_ros.hardware import HardwareError, detector_backends
from lsi_ros.hardware.frames import FrameAssembler
from lsi_ros.hardware.nidaq import NidaqPhotodiode, PatternCounter, load_nidaqmx, saturated
from lsi_ros.msg import PatternSetInfo
from lsi_ros.optics import patterns
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.photodiode import PhotodiodeModel
from lsi_ros.ros import qos

M = 16
RANGE_V = 5.0


@pytest.fixture
def pattern_set():
    return patterns.hadamard_split_patterns(M, 32)


def volt_stream(pattern_set, frames, seed=0):
    """``frames`` passes of the photodiode's output in volts (noisy counts scaled onto ±RANGE_V)."""
    rng = np.random.default_rng(seed)
    scenes = rng.uniform(0, 1, (frames, 32, 32, 3)).astype(np.float32)
    y = ForwardModel(pattern_set, dtype=np.float32).measure(scenes)
    model = PhotodiodeModel()
    counts = model.sample(y, rng).counts
    return (counts / model.full_scale * 2 * RANGE_V - RANGE_V).astype(np.float64)  # (frames, M)


def assemble(counter, chunks, assembler):
    frames = []
    for chunk, short in chunks:
        for sample in counter.samples(chunk):
            frame = assembler.add(sample, 0)
            if frame is not None:
                frames.append(frame.values)
        if short:
            counter.resync()
    return frames


def test_chunks_of_any_length_become_the_stream_frames_in_pattern_order(pattern_set):
    passes = volt_stream(pattern_set, 6)
    stream = passes.ravel()
    counter = PatternCounter(pattern_set.pattern_set_id, M, RANGE_V)
    cuts = [0, 5, 16, 17, 40, 41, 64, 90, stream.size]  # chunks shorter and longer than M
    chunks = [(stream[a:b], False) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    assembler = FrameAssembler(pattern_set.pattern_set_id, M)
    frames = assemble(counter, chunks, assembler)
    assert len(frames) == 6
    np.testing.assert_allclose(np.stack(frames), passes.astype(np.float32))
    assert assembler.counters.dropped == 0
    indices = [s.pattern_index for s in PatternCounter("x", M, RANGE_V).samples(stream[:40])]
    assert indices == [k % M for k in range(40)]


def test_short_read_drops_the_partial_frame_and_resyncs_at_pattern_zero(pattern_set):
    passes = volt_stream(pattern_set, 4, seed=1)
    counter = PatternCounter(pattern_set.pattern_set_id, M, RANGE_V)
    # pass 0 whole; pass 1 stops after 7 patterns (read timeout: the DMD stopped); the DMD then
    # restarts its sequence at pattern 0 and shows passes 2 and 3
    chunks = [(passes[0], False), (passes[1][:7], True), (passes[2], False), (passes[3], False)]
    assembler = FrameAssembler(pattern_set.pattern_set_id, M)
    frames = assemble(counter, chunks, assembler)
    np.testing.assert_allclose(np.stack(frames), passes[[0, 2, 3]].astype(np.float32))
    assert assembler.counters.dropped_interrupted == 1
    assert assembler.counters.dropped == 1
    # without the resync the restarted sequence would be misread as patterns 7.. of pass 1
    stale = PatternCounter(pattern_set.pattern_set_id, M, RANGE_V)
    stale_assembler = FrameAssembler(pattern_set.pattern_set_id, M)
    stale_frames = assemble(stale, [(c, False) for c, _ in chunks], stale_assembler)
    assert not any(np.allclose(f, passes[2]) for f in stale_frames)


def test_saturation_against_the_configured_range(pattern_set):
    volts = np.array([0.0, 4.99, 5.0, 5.3, -5.0, -4.2, -7.0])
    np.testing.assert_array_equal(saturated(volts, 5.0), [0, 0, 1, 1, 1, 0, 1])
    counter = PatternCounter(pattern_set.pattern_set_id, M, 5.0)
    stream = volt_stream(pattern_set, 1, seed=2)[0]
    stream[[3, 9]] = [5.0, -5.2]
    assembler = FrameAssembler(pattern_set.pattern_set_id, M)
    frames = [assembler.add(s, 0) for s in counter.samples(stream)]
    assert frames[-1] is not None and frames[-1].saturated_count == 2


@pytest.mark.skipif(importlib.util.find_spec("nidaqmx") is not None, reason="nidaqmx is installed here")
def test_without_nidaqmx_the_backend_names_the_extra_and_the_driver(pattern_set):
    with pytest.raises(HardwareError, match=r"lsi_ros\[nidaq\].*NI-DAQmx driver"):
        load_nidaqmx()
    detector = detector_backends()["nidaqmx"](read_timeout_s=0.05, reconnect_max_backoff_s=0.1)
    assert isinstance(detector, NidaqPhotodiode)
    detector.set_pattern_set(pattern_set)
    assert list(detector.acquire_frame()) == []  # never raises
    status = detector.status()
    assert status["connected"] is False and "NI-DAQmx driver" in status["last_error"]


def test_sampler_with_nidaqmx_backend_keeps_running_and_reports_error(
    tmp_path, pattern_set, ros_context, spin
):
    from lsi_ros.nodes.photodiode_sampler import PhotodiodeSampler

    uri = patterns.save_pattern_set(pattern_set, tmp_path / "set.safetensors")
    probe = Node("nidaq_probe", context=ros_context)
    received = []

    def on_diagnostics(array):
        received.extend(s for s in array.status if s.name == "photodiode_sampler")

    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    announce = probe.create_publisher(PatternSetInfo, "pattern_set", qos.LATCHED)
    overrides = [
        Parameter("backend", value="nidaqmx"),
        Parameter("daq_channel", value="Dev7/ai3"),
        Parameter("read_timeout_s", value=0.05),
        Parameter("reconnect_max_backoff_s", value=0.2),
    ]
    sampler = PhotodiodeSampler(context=ros_context, parameter_overrides=overrides)
    stop = spin(probe, sampler)
    try:
        info = PatternSetInfo(pattern_set_id=pattern_set.pattern_set_id, num_patterns=M, uri=str(uri))
        info.resolution, info.pattern_rate_hz, info.kind = 32, 2000.0, "hadamard-split"
        announce.publish(info)

        def reported_missing_driver():
            return any("NI-DAQmx" in s.message for s in received[-3:])

        assert wait_for(reported_missing_driver, timeout=10)
        count = len(received)
        assert wait_for(lambda: len(received) >= count + 2, timeout=5)  # still reporting every second
        assert sampler._reader.is_alive()
    finally:
        stop()
        sampler.destroy_node()
    last = received[-1]
    assert last.level == DiagnosticStatus.ERROR and "Dev7/ai3" in last.message
    values = {kv.key: kv.value for kv in last.values}
    assert values["backend"] == "nidaqmx" and values["connected"] == "False"
