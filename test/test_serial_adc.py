"""serial_adc photodiode: the documented frame bytes, the stream parser, and the backend and the
photodiode_sampler node against the simulated device on a real pseudo-terminal (no hardware here).
"""

import itertools
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter

from lsi_ros.hardware.frames import FrameAssembler
from lsi_ros.hardware.serial_adc import (
    FRAME_SIZE,
    AdcFrame,
    FrameParser,
    SerialAdcPhotodiode,
    crc16_ccitt_false,
    decode_frame,
    encode_frame,
)
from lsi_ros.hardware.serial_adc_device import SimulatedSerialAdc
from lsi_ros.msg import Measurements, PatternSetInfo
from lsi_ros.optics import patterns
from lsi_ros.ros import qos

# The worked examples of docs/serial_adc_protocol.md.
EXAMPLE = AdcFrame(pattern_index=3, trigger_sequence=1_234_567, device_time_us=987_654_321, adc_value=40_000)
EXAMPLE_HEX = "a5 5a 01 00 03 00 87 d6 12 00 b1 68 de 3a 40 9c 00 00 41 e2"
SATURATED = AdcFrame(
    pattern_index=0, trigger_sequence=32, device_time_us=1000, adc_value=65535, saturated=True
)
SATURATED_HEX = "a5 5a 01 01 00 00 20 00 00 00 e8 03 00 00 ff ff 00 00 f5 cd"
M = 16


def test_frame_bytes_match_the_documented_examples():
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    for frame, text in ((EXAMPLE, EXAMPLE_HEX), (SATURATED, SATURATED_HEX)):
        data = bytes.fromhex(text)
        assert len(data) == FRAME_SIZE == 20
        assert encode_frame(frame) == data
        assert decode_frame(data) == frame
    corrupted = bytearray(bytes.fromhex(EXAMPLE_HEX))
    corrupted[14] ^= 0x01
    with pytest.raises(ValueError, match="CRC"):
        decode_frame(bytes(corrupted))


def frames(count, first=0):
    return [AdcFrame(i % M, first + i, 100 * i, 1000 + i) for i in range(count)]


def test_parser_handles_split_concatenated_and_garbled_streams():
    sent = frames(6)
    stream = b"".join(encode_frame(f) for f in sent)
    byte_by_byte = FrameParser()
    assert [f for i in range(len(stream)) for f in byte_by_byte.feed(stream[i : i + 1])] == sent
    assert byte_by_byte.counters.bytes_skipped == 0

    parser = FrameParser()
    garbage = b"\x00\xa5OK START\n\xa5"  # a lone first sync byte, a reply line, a sync byte at a chunk end
    corrupted = bytearray(encode_frame(sent[2]))
    corrupted[10] ^= 0xFF
    truncated = encode_frame(sent[3])[:11]
    chunks = [garbage, encode_frame(sent[0]), encode_frame(sent[1]), bytes(corrupted), truncated]
    chunks += [encode_frame(sent[4]) + encode_frame(sent[5])[:7], encode_frame(sent[5])[7:]]
    received = [f for chunk in chunks for f in parser.feed(chunk)]
    assert received == [sent[0], sent[1], sent[4], sent[5]]
    assert parser.counters.frames == 4
    assert parser.counters.crc_errors == 2  # the corrupted frame, and the truncated one read with the next
    assert parser.counters.bytes_skipped == len(garbage) + FRAME_SIZE + len(truncated)

    future = bytearray(encode_frame(sent[0]))
    future[2] = 2
    future[18:] = crc16_ccitt_false(bytes(future[:18])).to_bytes(2, "little")
    assert parser.feed(bytes(future) + encode_frame(sent[1])) == [sent[1]]
    assert parser.counters.version_errors == 1


@pytest.fixture
def pattern_set():
    return patterns.hadamard_split_patterns(M, 32)


@pytest.fixture
def device(tmp_path, pattern_set):
    scene = np.random.default_rng(3).uniform(0, 1, (48, 40, 3)).astype(np.float32)
    device = SimulatedSerialAdc(pattern_set, scene, pattern_rate_hz=2000.0, link=tmp_path / "ttyADC")
    yield device
    device.close()


class Host:
    """The backend and a frame assembler driven in the test's thread, as the node's reader does."""

    def __init__(self, port, pattern_set, **options):
        self.detector = SerialAdcPhotodiode(port, read_timeout_s=0.2, **options)
        self.detector.set_pattern_set(pattern_set)
        self.assembler = FrameAssembler(pattern_set.pattern_set_id, pattern_set.num_patterns)
        self.frames = []

    def run(self, until, timeout=10.0, during=None):
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            for sample in self.detector.acquire_frame():
                frame = self.assembler.add(sample, time.monotonic_ns())
                if frame is not None:
                    self.frames.append(frame)
                    if during is not None:
                        during(len(self.frames))
        return until()

    def close(self):
        self.detector.close()


def pass_numbers(frames, device):
    """Which of the device's passes each published frame is; fails on a frame that is none of them."""
    numbers = []
    for frame in frames:
        matches = [k for k, (_, values) in enumerate(device.passes) if np.array_equal(frame.values, values)]
        assert len(matches) == 1, f"frame {frame.sequence} is not one pass the device measured"
        numbers.append(matches[0])
    assert numbers == sorted(set(numbers))
    return numbers


def test_frames_equal_the_values_the_device_measured(device, pattern_set):
    host = Host(device.start(), pattern_set)
    try:
        assert host.run(lambda: len(host.frames) >= 10)
    finally:
        host.close()
    pass_numbers(host.frames, device)
    status = host.detector.status()
    assert status["device"].startswith("LSI-SERIAL-ADC,1,")
    assert status["frames"] >= 10 * M and status["crc_errors"] == status["missed_triggers"] == 0
    assert host.assembler.counters.dropped == 0
    assert all(f.values.dtype == np.float32 and f.values.shape == (M,) for f in host.frames)
    # the noise model is on: consecutive passes differ, so matching a pass is not a coincidence
    assert not np.array_equal(host.frames[0].values, host.frames[1].values)


def test_missed_triggers_drop_the_frame_and_the_next_frame_is_good(device, pattern_set):
    host = Host(device.start(), pattern_set)
    try:
        assert host.run(lambda: len(host.frames) >= 3)
        published = len(host.frames)
        device.drop_triggers(3, at_index=5)
        assert host.run(
            lambda: host.detector.counters.missed_triggers >= 3 and len(host.frames) >= published + 2
        )
        # a whole pass lost across a frame: index 5 of the next pass follows index 4 of this one
        device.drop_triggers(M, at_index=5)
        assert host.run(lambda: host.detector.counters.missed_triggers >= 3 + M)
        published = len(host.frames)
        device.corrupt_frames(1)
        device.inject_garbage(50)
        assert host.run(lambda: len(host.frames) >= published + 3)
    finally:
        host.close()
    status = host.detector.status()
    assert status["missed_triggers"] == 3 + M + 1  # + the corrupted frame
    assert status["crc_errors"] >= 1 and status["bytes_skipped"] >= 50
    assert host.assembler.counters.dropped_missed_trigger == 3
    assert host.assembler.counters.dropped_out_of_order == 0
    numbers = pass_numbers(host.frames, device)
    assert len(numbers) < len(device.passes) - 3


def test_device_vanishing_mid_frame_drops_the_partial_frame_and_reconnects(device, pattern_set):
    host = Host(device.start(), pattern_set, reconnect_max_backoff_s=0.1)
    seen_disconnected = []

    def vanish_once(count):
        if count == 3:
            device.disconnect(at_index=7, downtime_s=0.5)

    def note_state():
        seen_disconnected.append(not host.detector.connected)
        return len(host.frames) >= 8

    try:
        assert host.run(note_state, during=vanish_once)
    finally:
        host.close()
    status = host.detector.status()
    assert device.counters.disconnects == 1 and any(seen_disconnected)
    assert status["reconnects"] == 1 and status["connect_failures"] >= 1 and status["connected"] is False
    assert "read failed" in status["last_error"] or "open failed" in status["last_error"]
    assert host.assembler.counters.dropped_interrupted == 1
    numbers = pass_numbers(host.frames, device)
    (cut_short,) = device.vanished_in_passes
    assert cut_short not in numbers and numbers[-1] > cut_short  # not published; frames resumed


def test_silent_device_is_counted_and_its_stream_restarted(device, pattern_set):
    host = Host(device.start(), pattern_set, stall_restart_s=0.5)
    try:
        assert host.run(lambda: len(host.frames) >= 2)
        device.pause_triggers(1.0)
        assert host.run(lambda: host.detector.counters.timeouts >= 3)
        published = len(host.frames)
        assert "restarting the stream" in host.detector.last_error
        assert host.run(lambda: len(host.frames) >= published + 3)
    finally:
        host.close()
    assert host.detector.status()["connected"] is False and host.detector.counters.reconnects == 0
    pass_numbers(host.frames, device)


def test_absent_device_is_retried_with_backoff_until_it_appears(tmp_path, device, pattern_set):
    host = Host(str(device.link), pattern_set, reconnect_max_backoff_s=0.2)
    try:
        started = time.monotonic()
        assert not host.run(lambda: host.frames, timeout=1.0)
        status = host.detector.status()
        assert not status["connected"] and str(device.link) in status["last_error"]
        assert 3 <= status["connect_failures"] <= 1.0 / 0.05, status  # backoff, not a busy loop
        assert time.monotonic() - started < 2.0
        device.start()
        assert host.run(lambda: len(host.frames) >= 2)
    finally:
        host.close()
    pass_numbers(host.frames, device)


def test_device_command_line_prints_a_port_the_backend_reads(tmp_path, pattern_set):
    link = tmp_path / "ttyCLI"
    command = [sys.executable, "-m", "lsi_ros.hardware.serial_adc_device", "--patterns", "hadamard-split:16"]
    command += [
        "--resolution",
        "32",
        "--link",
        str(link),
        "--pattern-rate-hz",
        "2000",
        "--garbage-rate",
        "0.2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()
        assert str(link) in first_line and "M = 16" in first_line
        host = Host(str(link), pattern_set)
        try:
            assert host.run(lambda: len(host.frames) >= 5)
        finally:
            host.close()
        assert host.detector.status()["bytes_skipped"] > 0  # the garbage it was asked to inject
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sampler_node_publishes_serial_frames_and_reports_counters(
    tmp_path, device, pattern_set, ros_context, spin
):
    from lsi_ros.nodes.photodiode_sampler import PhotodiodeSampler

    uri = patterns.save_pattern_set(pattern_set, tmp_path / "set.safetensors")
    probe = Node("serial_probe", context=ros_context)
    received = {"frames": [], "status": []}
    probe.create_subscription(Measurements, "measurements", received["frames"].append, qos.SENSOR_DATA)

    def on_diagnostics(array):
        received["status"] += [s for s in array.status if s.name == "photodiode_sampler"]

    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    announce = probe.create_publisher(PatternSetInfo, "pattern_set", qos.LATCHED)
    overrides = [
        Parameter("backend", value="serial_adc"),
        Parameter("port", value=str(device.link)),
        Parameter("read_timeout_s", value=0.2),
        Parameter("reconnect_max_backoff_s", value=0.2),
    ]
    sampler = PhotodiodeSampler(context=ros_context, parameter_overrides=overrides)
    stop = spin(probe, sampler)
    try:

        def last_values():
            return {kv.key: kv.value for kv in received["status"][-1].values} if received["status"] else {}

        # no device yet: the node runs and says so
        assert wait_for(lambda: received["status"], timeout=10)
        assert received["status"][-1].level == DiagnosticStatus.ERROR
        assert last_values()["connected"] == "False"
        device.start()
        info = PatternSetInfo(pattern_set_id=pattern_set.pattern_set_id, num_patterns=M, uri=str(uri))
        info.resolution, info.pattern_rate_hz, info.kind = 32, 2000.0, "hadamard-split"
        announce.publish(info)
        assert wait_for(lambda: len(received["frames"]) >= 5, timeout=15)
        device.disconnect(at_index=5, downtime_s=0.3)
        assert wait_for(lambda: device.counters.disconnects == 1, timeout=5)
        # the reconnect is reported before the first sample after it, which is what drops the cut frame
        assert wait_for(lambda: int(last_values().get("frames_dropped_interrupted", 0)) == 1, timeout=15)
        assert int(last_values()["reconnects"]) == 1
        resumed = len(received["frames"])
        assert wait_for(lambda: len(received["frames"]) >= resumed + 5, timeout=15)
        # diagnostics come once a second: wait for a report that counts the frames received so far
        seen = len(received["frames"])
        assert wait_for(lambda: int(last_values().get("frames_published", 0)) >= seen, timeout=5)
    finally:
        stop()  # no frame arrives after this: what the probe holds is what the node published
        sampler.destroy_node()
    messages, last_status = received["frames"], received["status"][-1]
    values = {kv.key: kv.value for kv in last_status.values}
    assert values["connected"] == "True" and values["device"].startswith("LSI-SERIAL-ADC")
    assert int(values["frames"]) >= 10 * M and values["crc_errors"] == "0"
    assert int(values["frames_published"]) >= 10
    assert int(values["frames_dropped_interrupted"]) == 1
    for msg in messages:
        assert msg.pattern_set_id == pattern_set.pattern_set_id and msg.header.frame_id == "lsi_camera"
    sequences = [msg.sequence for msg in messages]
    assert sequences == sorted(set(sequences))
    stamps = [msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec for msg in messages]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 10
    matched = [any(np.array_equal(msg.values, values) for _, values in device.passes) for msg in messages]
    assert all(matched)
    # stamped by the device's clock: passes that follow each other are one frame time apart (16
    # patterns at 2 kHz), however the pseudo-terminal and the reader thread batched the samples
    first_sequence = {values.tobytes(): sequence for sequence, values in device.passes}
    frames = [
        (first_sequence[np.asarray(msg.values).astype(np.uint32).tobytes()], stamp)
        for msg, stamp in zip(messages, stamps, strict=True)
    ]
    spacing = [b[1] - a[1] for a, b in itertools.pairwise(frames) if b[0] - a[0] == M]
    assert len(spacing) >= 5 and np.median(np.abs(np.array(spacing) - M / 2000.0)) < 1e-4, spacing
    assert float(values["device_clock_offset_s"]) != 0.0
