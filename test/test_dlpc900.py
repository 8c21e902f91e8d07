"""DLPC900 backend: byte layouts from TI's DLPC900 Programmer's Guide (DLPU018J), image compression,
the projector against the simulated controller, and dmd_driver without a device."""

import subprocess

import numpy as np
import pytest
from conftest import node_command, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node

from lsi_ros.hardware import HardwareError
from lsi_ros.hardware import dlpc900 as p
from lsi_ros.hardware.dlpc900_device import SimulatedDlpc900
from lsi_ros.msg import PatternSetInfo
from lsi_ros.optics import dmd, patterns
from lsi_ros.ros import qos


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# ---- reports (§1.2.2, §1.2.3) ----


def test_read_and_write_reports_match_the_guide_examples():
    # Table 1-5: read the curtain colour (0x1100), reply wanted, sequence 0x11.
    (report,) = p.command_reports(0x1100, read=True, reply=True, sequence=0x11)
    assert report == hexbytes("00 C0 11 02 00 00 11").ljust(65, b"\0")
    # Table 1-7: set the curtain colour to 511 each, no reply, sequence 0x12.
    (report,) = p.command_reports(0x1100, hexbytes("FF 01 FF 01 FF 01"), reply=False, sequence=0x12)
    assert report == hexbytes("00 00 12 08 00 00 11 FF 01 FF 01 FF 01").ljust(65, b"\0")


def test_long_payloads_continue_in_headerless_reports_and_reassemble():
    data = bytes(range(200))
    reports = p.command_reports(p.Command.BMP_LOAD, data, sequence=7)
    assert [len(r) for r in reports] == [65] * 4  # 4 header + 2 command + 200 data = 206 bytes
    assert reports[0][:7] == hexbytes("00 40 07 CA 00 2B 1A")  # length 202 = 0x00CA, command LSB first
    assert reports[1] == b"\0" + data[58:122]  # continuation: report ID, then the stream goes on
    assembler = p.PacketAssembler()
    packets = [assembler.feed(r[1:]) for r in reports]
    assert packets[:3] == [None] * 3
    assert packets[3].command == p.Command.BMP_LOAD and packets[3].data == data and packets[3].sequence == 7
    with pytest.raises(ValueError, match="512"):
        p.command_reports(p.Command.BMP_LOAD, bytes(507))


# ---- command payloads: the guide's pattern on-the-fly example (§4, two images) ----


def test_pattern_on_the_fly_example_payloads():
    red = p.LutEntry(pattern_index=0, exposure_us=200, image_index=0, bit_position=0, color=0b001)
    green = p.LutEntry(
        pattern_index=1, exposure_us=400, image_index=0, bit_position=1, bit_depth=2, color=0b010
    )
    assert p.lut_definition_payload(red) == hexbytes("00 00 C8 00 00 11 00 00 00 00 00 00")
    assert p.lut_definition_payload(green) == hexbytes("01 00 90 01 00 23 00 00 00 00 00 08")
    assert p.parse_lut_definition(p.lut_definition_payload(green)) == green
    assert p.lut_configuration_payload(2, 0) == hexbytes("02 00 00 00 00 00")
    assert p.init_bmp_load_payload(0, 6057) == hexbytes("00 00 A9 17 00 00")
    chunks = p.bmp_load_payloads(bytes(6057))
    assert len(chunks) == 13 and chunks[0][:2] == hexbytes("F8 01") and len(chunks[0]) == 506
    assert chunks[-1][:2] == hexbytes("09 00") and len(chunks[-1]) == 11  # "load last 9 bytes"


def test_lut_fields_pack_into_their_bits_and_ranges_are_checked():
    entry = p.LutEntry(
        pattern_index=0x0123,
        exposure_us=0x0A0B0C,
        image_index=17,
        bit_position=23,
        dark_time_us=0x010203,
        clear_after=False,
        wait_for_trigger=True,
        disable_trigger2=True,
    )
    assert p.lut_definition_payload(entry) == hexbytes("23 01 0C 0B 0A F0 03 02 01 01 11 B8")
    with pytest.raises(ValueError, match="bit position"):
        p.lut_definition_payload(p.LutEntry(0, 105, 0, 24))
    with pytest.raises(ValueError, match="exposure"):
        p.lut_definition_payload(p.LutEntry(0, 1 << 24, 0, 0))
    assert p.trigger_out_payload(True, -20, 300) == hexbytes("01 EC FF 2C 01")


def test_status_bits_decode_by_name():
    assert p.decode_bits(0b1100_0001, p.HARDWARE_STATUS_BITS)["sequencer_error"]
    assert p.decode_bits(0b0000_0010, p.MAIN_STATUS_BITS) == {
        "mirrors_parked": False,
        "sequencer_running": True,
        "video_frozen": False,
        "external_source_locked": False,
        "port1_syncs_valid": False,
        "port2_syncs_valid": False,
    }


# ---- bit planes and compression (§2.4.2, §2.4.3) ----


def test_bit_planes_round_trip_in_wire_order():
    rng = np.random.default_rng(0)
    stack = rng.random((24, 5, 7)) > 0.5
    image = p.pack_bit_planes(stack)
    np.testing.assert_array_equal(p.unpack_bit_planes(image), stack)
    single = p.pack_bit_planes(np.eye(1, 24 * 1, dtype=bool).reshape(24, 1, 1)[:1])  # pattern 0 only
    assert single[0, 0].tolist() == [0, 0, 1]  # bit 0 is the LSB of the third byte
    assert p.pack_bit_planes(np.ones((24, 1, 1), bool))[0, 0].tolist() == [255, 255, 255]
    top = np.zeros((24, 1, 1), bool)
    top[23] = True
    assert p.pack_bit_planes(top)[0, 0].tolist() == [128, 0, 0]


def test_erle_stream_bytes():
    a, b, c = [1, 2, 3], [4, 5, 6], [7, 8, 9]
    image = np.array([[a, a, b, c], [a, a, b, c]], dtype=np.uint8)
    blob = p.encode_image(image, p.Compression.ERLE)
    header, data = blob[:48], blob[48:]
    expected = hexbytes("02 010203 00 02 040506 070809 0000 00 01 04 0000 00 01 00")
    assert data == expected + b"\0" * (-len(expected) % 4)
    assert header == (
        b"Spld"
        + hexbytes("04 00 02 00")
        + len(data).to_bytes(4, "little")
        + b"\xff" * 8
        + bytes(4)
        + hexbytes("00 02 01")
    ) + bytes(21)
    wide = np.full((1, 300, 3), 9, dtype=np.uint8)
    assert p.encode_image(wide)[48:51] == hexbytes("AC 02 09")  # 300 = 0x12C as (0x2C|0x80, 0x02)


@pytest.mark.parametrize("compression", [p.Compression.ERLE, p.Compression.NONE])
def test_compression_round_trip(compression):
    rng = np.random.default_rng(1)
    placement = dmd.placement(dmd.DLP6500, 64)
    planes = p.pack_bit_planes(rng.random((24, 64, 64)) > 0.5)
    image = placement.place_values(planes)
    image[0, :5] = [[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4], [4, 4, 4]]  # singles then a pair
    blob = p.encode_image(image, compression)
    np.testing.assert_array_equal(p.decode_image(blob), image)
    if compression == p.Compression.ERLE:
        assert len(blob) < image.size // 4  # 4x4 mirror blocks and repeated lines compress well


def test_damaged_images_are_refused():
    image = np.zeros((3, 8, 3), dtype=np.uint8)
    blob = p.encode_image(image)
    with pytest.raises(p.ImageFormatError, match="announces"):
        p.decode_image(blob[:-4])
    with pytest.raises(p.ImageFormatError, match="signature"):
        p.decode_image(b"Bmp!" + blob[4:])
    short_line = blob[:48] + hexbytes("07 000000 0000 00 01 00 00")  # 7 of 8 pixels, then end of line
    short_line = short_line[:8] + (len(short_line) - 48).to_bytes(4, "little") + short_line[12:]
    with pytest.raises(p.ImageFormatError, match="end of line 0"):
        p.decode_image(short_line)


# ---- the projector against the simulated controller ----


class Placed:
    """The full-array mirror images of a pattern set, built on demand (400 of them would be 830 MB)."""

    def __init__(self, pattern_set, geometry):
        self.placement = dmd.placement(geometry, pattern_set.resolution)
        self.dense = pattern_set.dense()

    def __getitem__(self, index):
        return np.stack([self.placement.place(pattern) for pattern in self.dense[index]])


def placed(pattern_set, geometry):
    return Placed(pattern_set, geometry)


@pytest.mark.parametrize("device", ["DLP6500", "DLP9000"])
def test_controller_decodes_the_pattern_set_bit_for_bit(device):
    pattern_set = patterns.bernoulli_patterns(30, 32, seed=3)
    controller = SimulatedDlpc900(device)
    projector = p.Dlpc900Projector(
        device=device, pattern_rate_hz=5000.0, dark_time_us=20, transport=controller
    )
    projector.upload(pattern_set)
    projector.start()
    assert controller.running and controller.mode == p.DisplayMode.ON_THE_FLY
    np.testing.assert_array_equal(
        controller.displayed_patterns(), placed(pattern_set, dmd.MIRROR_ARRAYS[device])[:]
    )
    entry = controller.lut[29]
    assert (entry.exposure_us, entry.dark_time_us, entry.image_index, entry.bit_position) == (180, 20, 1, 5)
    assert controller.lut_repeat == 0  # fits: repeat forever
    images = [
        c for c in controller.commands if c in (p.Command.INIT_BMP_LOAD, p.Command.INIT_BMP_LOAD_SECONDARY)
    ]
    assert len(images) == (4 if device == "DLP9000" else 2)
    status = projector.status()
    assert status["running"] and status["main.sequencer_running"] and status["hw.init_ok"]
    assert status["upload_batches"] == 1 and "error" not in status
    projector.pause()
    assert not projector.status()["main.sequencer_running"]
    projector.stop()
    assert controller.sequencer == p.Sequencer.STOP


def test_a_registered_upload_shows_the_patterns_moved_onto_the_scene():
    """What the controller decodes is the registered placement, mirror for mirror (DLP9000: both halves)."""
    pattern_set = patterns.bernoulli_patterns(30, 32, seed=3)
    registration = dmd.GridRegistration(shift=(0.25, -1.5), scale=0.98)  # 32² fills its rows
    controller = SimulatedDlpc900("DLP9000")
    projector = p.Dlpc900Projector(device="DLP9000", transport=controller)
    projector.upload(pattern_set, registration)
    projector.start()
    place = dmd.placement(dmd.DLP9000, 32, registration)
    expected = np.stack([place.place(pattern) for pattern in pattern_set.dense()])
    np.testing.assert_array_equal(controller.displayed_patterns(), expected)
    assert not np.array_equal(expected, placed(pattern_set, dmd.DLP9000)[:])


def test_sets_larger_than_the_pattern_memory_are_uploaded_in_batches():
    pattern_set = patterns.bernoulli_patterns(410, 8, seed=4)
    controller = SimulatedDlpc900()
    projector = p.Dlpc900Projector(transport=controller)
    projector.upload(pattern_set)
    status = projector.status()
    assert status["upload_batches"] == 2 and status["batch"] == "1/2"
    assert "410 patterns exceed the 400-pattern memory" in status["batching"]
    assert controller.lut_entries == 400 and controller.lut_repeat == 400  # each batch shown once
    expected = placed(pattern_set, dmd.DLP6500)
    sample = [0, 1, 23, 24, 200, 383, 384, 399]  # across images, bit positions and the last image
    np.testing.assert_array_equal(controller.displayed_patterns(sample), expected[sample])
    projector.load_batch(1)
    projector.start()
    assert projector.status()["batch"] == "2/2" and controller.lut_entries == 10
    np.testing.assert_array_equal(controller.displayed_patterns(), expected[400:])


def test_controller_error_bits_reach_the_projector_status():
    controller = SimulatedDlpc900("DLP6500")
    link = p.Dlpc900(controller)
    with pytest.raises(p.Dlpc900Error, match="error 5 .*not in a pattern mode"):
        link.write(p.Command.PATTERN_START_STOP, bytes([p.Sequencer.START]))
    link.write(p.Command.DISPLAY_MODE, bytes([p.DisplayMode.ON_THE_FLY]))
    with pytest.raises(p.Dlpc900Error, match="error 7 .*LUT is empty") as refused:
        link.write(p.Command.PATTERN_START_STOP, bytes([p.Sequencer.START]))
    assert refused.value.code == 7
    link.write(
        p.Command.LUT_DEFINITION, p.lut_definition_payload(p.LutEntry(0, 200, image_index=3, bit_position=0))
    )
    link.write(p.Command.LUT_CONFIGURATION, p.lut_configuration_payload(1))
    with pytest.raises(p.Dlpc900Error, match=r"images \[3\] that are not loaded"):
        link.write(p.Command.PATTERN_START_STOP, bytes([p.Sequencer.START]))
    with pytest.raises(p.Dlpc900Error, match="error 3"):
        link.write(0x1ABC)
    # A projector told the wrong DMD: the controller refuses the image, the projector's status says so.
    projector = p.Dlpc900Projector(device="DLP6500", transport=SimulatedDlpc900("DLP9000"))
    with pytest.raises(HardwareError, match="error 6 .*1920x1080, the DMD takes 1280x1600"):
        projector.upload(patterns.bernoulli_patterns(4, 16))
    status = projector.status()
    assert status["error"].startswith("command 0x1A2B failed: error 6") and status["connected"]


def test_silent_device_and_missing_hidapi_are_hardware_errors():
    class Silent:
        def write(self, report):
            pass

        def read(self, timeout_s):
            return b""

        def close(self):
            pass

    with pytest.raises(HardwareError, match="no reply to command 0x1A24"):
        p.Dlpc900Projector(transport=Silent(), timeout_s=0.05).upload(patterns.bernoulli_patterns(2, 8))
    projector = p.Dlpc900Projector()
    with pytest.raises(HardwareError, match="hidapi|no DLPC900"):
        projector.upload(patterns.bernoulli_patterns(2, 8))
    assert not projector.status()["connected"] and projector.status()["error"]


def test_a_controller_lost_while_running_is_reported_and_reconnected():
    class Cable:
        """The simulated controller behind a USB cable that can be pulled."""

        def __init__(self, controller):
            self.controller, self.plugged = controller, True

        def write(self, report):
            if not self.plugged:
                raise p.Dlpc900Error("USB write failed: device disconnected")
            self.controller.write(report)

        def read(self, timeout_s):
            return self.controller.read(timeout_s)

        def close(self):
            pass

    cable = Cable(SimulatedDlpc900())
    projector = p.Dlpc900Projector(transport=cable)
    pattern_set = patterns.bernoulli_patterns(6, 16)
    projector.upload(pattern_set)
    projector.start()
    cable.plugged = False
    status = projector.status()
    assert status["state"] == "disconnected" and not status["connected"] and "disconnected" in status["error"]
    cable.plugged, cable.controller = (
        True,
        SimulatedDlpc900(),
    )  # replugged: a controller that forgot everything
    projector.upload(pattern_set)
    projector.start()
    assert cable.controller.running and "error" not in projector.status()


def test_exposure_below_the_1bit_minimum_is_refused():
    with pytest.raises(ValueError, match="105"):
        p.Dlpc900Projector(pattern_rate_hz=20000.0)
    assert p.Dlpc900Projector(exposure_us=200, dark_time_us=50).pattern_rate_hz == 4000.0


# ---- dmd_driver without a device ----


def test_dmd_driver_without_a_dlpc900_reports_error_and_keeps_retrying(tmp_path, ros_context, spin):
    node = Node("dlpc900_probe", context=ros_context)
    received = {"status": [], "info": []}

    def on_diagnostics(array):
        received["status"] += [s for s in array.status if s.name == "dmd_driver"]

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    node.create_subscription(PatternSetInfo, "pattern_set", received["info"].append, qos.LATCHED)
    spin(node)
    params = ["backend:=dlpc900", "pattern_set:=hadamard-split:8", "resolution:=16", f"cache_dir:={tmp_path}"]
    process = subprocess.Popen(node_command("dmd_driver", *(x for param in params for x in ("-p", param))))
    try:
        assert wait_for(lambda: len(received["status"]) >= 3, timeout=30), "no diagnostics from dmd_driver"
        assert process.poll() is None, "dmd_driver died"
        latest = received["status"][-1]
        assert latest.level == DiagnosticStatus.ERROR
        assert "dlpc900 backend" in latest.message and "retrying" in latest.message
        values = {kv.key: kv.value for kv in latest.values}
        assert values["backend"] == "dlpc900" and values["connected"] == "False"
        assert not received["info"], "a pattern set was announced without a device"
    finally:
        process.terminate()
        process.wait(timeout=20)
