"""A simulated DLPC900 behind the same HID transport as the real one (lsi_ros.hardware.dlpc900).

It parses the reports a host writes, keeps the state a controller keeps in pattern-on-the-fly mode
(display mode, LUT definitions and configuration, loaded images decoded back to bit planes,
running/paused) and answers reads. Commands that a controller refuses set the reply's error bit and
the error code (§2.1.6) with a description: a LUT entry out of range, an image index beyond memory,
a BMP load without its initialisation, a compressed image that does not decode, starting with an
empty LUT or a LUT that refers to an image not loaded.

Which error code the real firmware picks for each of these is this simulation's reading of the
code table, not observed behaviour. Unknown commands answer error 3. RLE-compressed images (type 1)
are refused here although a real controller accepts them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from lsi_ros.hardware import dlpc900 as protocol
from lsi_ros.hardware.dlpc900 import Command, DisplayMode, Packet, Sequencer
from lsi_ros.optics import dmd as dmd_geometry

MAX_LUT_ENTRIES = 400


class CommandRefusedError(Exception):
    """A command the controller refuses: its error code and description."""

    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code


@dataclass
class ImageLoad:
    """An image being received after Initialize Pattern BMP Load."""

    index: int
    size: int
    received: bytearray = field(default_factory=bytearray)


class SimulatedDlpc900:
    """A DLPC900 with a DLP6500 (one controller) or DLP9000 (primary + secondary) as a Transport."""

    def __init__(self, device: str = "DLP6500"):
        self.geometry = dmd_geometry.MIRROR_ARRAYS[device]
        self.dual = device in protocol.DUAL_CONTROLLER
        self.width = self.geometry.cols // 2 if self.dual else self.geometry.cols
        self.mode = DisplayMode.VIDEO
        self.lut: dict[int, protocol.LutEntry] = {}
        self.lut_entries = 0
        self.lut_repeat = 0
        self.images: list[dict[int, np.ndarray]] = [{}, {}]  # primary, secondary: index → (H, W, 3)
        self.loading: list[ImageLoad | None] = [None, None]
        self.sequencer = Sequencer.STOP
        self.trigger_out1 = b""
        self.error_code = 0
        self.error_description = ""
        self.commands: list[int] = []
        self._assembler = protocol.PacketAssembler()
        self._replies: deque[bytes] = deque()
        self.closed = False

    # ---- Transport ----

    def write(self, report: bytes) -> None:
        if self.closed:
            raise protocol.Dlpc900Error("device closed")
        if len(report) != 1 + protocol.REPORT_SIZE or report[0] != protocol.REPORT_ID:
            raise protocol.Dlpc900Error(f"malformed HID report of {len(report)} bytes")
        packet = self._assembler.feed(bytes(report[1:]))
        if packet is not None:
            self._execute(packet)

    def read(self, timeout_s: float) -> bytes:
        return self._replies.popleft() if self._replies else b""

    def close(self) -> None:
        self.closed = True

    # ---- command execution ----

    def _execute(self, packet: Packet) -> None:
        command, data = packet.command, packet.data
        self.commands.append(command)
        is_read = bool(packet.flags & protocol.FLAG_READ)
        reply = b""
        failed = False
        try:
            reply = self._read(command) if is_read else self._write(command, data)
            if command not in (Command.READ_ERROR_CODE, Command.READ_ERROR_DESCRIPTION):
                self.error_code, self.error_description = 0, ""
        except CommandRefusedError as refusal:
            failed = True
            self.error_code, self.error_description = refusal.code, str(refusal)
        if packet.flags & protocol.FLAG_REPLY:
            flags = (packet.flags & (protocol.FLAG_READ | protocol.FLAG_REPLY)) | (
                protocol.FLAG_ERROR if failed else 0
            )
            self._replies.extend(protocol.frame_stream(flags, packet.sequence, reply))

    def _read(self, command: int) -> bytes:
        if command == Command.READ_ERROR_CODE:
            return bytes([self.error_code])
        if command == Command.READ_ERROR_DESCRIPTION:
            return self.error_description.encode("ascii")[:127].ljust(128, b"\0")
        if command == Command.HARDWARE_STATUS:
            return bytes([0x01 | (0x10 if self.dual else 0)])
        if command == Command.SYSTEM_STATUS:
            return bytes([0x01])
        if command == Command.MAIN_STATUS:
            return bytes([0x02 if self.sequencer == Sequencer.START else 0x00])
        if command == Command.DISPLAY_MODE:
            return bytes([self.mode])
        raise CommandRefusedError(3, f"read of command 0x{command:04X} is not supported")

    def _write(self, command: int, data: bytes) -> bytes:
        handlers = {
            Command.DISPLAY_MODE: self._display_mode,
            Command.PATTERN_START_STOP: self._start_stop,
            Command.LUT_DEFINITION: self._lut_definition,
            Command.LUT_CONFIGURATION: self._lut_configuration,
            Command.TRIGGER_OUT1: self._trigger_out,
            Command.INIT_BMP_LOAD: lambda d: self._init_load(0, d),
            Command.BMP_LOAD: lambda d: self._load(0, d),
            Command.INIT_BMP_LOAD_SECONDARY: lambda d: self._init_load(1, d),
            Command.BMP_LOAD_SECONDARY: lambda d: self._load(1, d),
        }
        if command not in handlers:
            raise CommandRefusedError(3, f"command 0x{command:04X} is not a write command")
        handlers[command](data)
        return b""

    @staticmethod
    def _length(data: bytes, expected: int) -> None:
        if len(data) != expected:
            raise CommandRefusedError(6, f"expected {expected} data bytes, got {len(data)}")

    def _display_mode(self, data: bytes) -> None:
        self._length(data, 1)
        if data[0] > DisplayMode.ON_THE_FLY:
            raise CommandRefusedError(6, f"display mode {data[0]} does not exist")
        self.sequencer = Sequencer.STOP
        self.mode = DisplayMode(data[0])

    def _require_pattern_mode(self) -> None:
        if self.mode not in (DisplayMode.PRE_STORED, DisplayMode.ON_THE_FLY):
            raise CommandRefusedError(5, f"not in a pattern mode (display mode {self.mode.name})")

    def _require_stopped(self) -> None:
        if self.sequencer != Sequencer.STOP:
            raise CommandRefusedError(5, "the pattern sequence is not stopped")

    def _lut_definition(self, data: bytes) -> None:
        self._length(data, 12)
        self._require_pattern_mode()
        self._require_stopped()
        entry = protocol.parse_lut_definition(data)
        if entry.pattern_index >= MAX_LUT_ENTRIES:
            raise CommandRefusedError(
                15, f"pattern index {entry.pattern_index} is beyond the {MAX_LUT_ENTRIES}-entry LUT"
            )
        if entry.bit_depth != 1:
            raise CommandRefusedError(16, "only 1-bit patterns are simulated")
        if entry.exposure_us < protocol.MIN_EXPOSURE_US:
            raise CommandRefusedError(
                14, f"exposure {entry.exposure_us} µs is below {protocol.MIN_EXPOSURE_US} µs"
            )
        if entry.bit_position >= protocol.PLANES_PER_IMAGE:
            raise CommandRefusedError(10, f"bit position {entry.bit_position} is beyond 23")
        if entry.image_index >= protocol.MAX_IMAGES:
            raise CommandRefusedError(17, f"image index {entry.image_index} is beyond the pattern memory")
        self.lut[entry.pattern_index] = entry

    def _lut_configuration(self, data: bytes) -> None:
        self._length(data, 6)
        self._require_stopped()
        entries = int.from_bytes(data[0:2], "little") & 0x7FF
        if not 1 <= entries <= MAX_LUT_ENTRIES:
            raise CommandRefusedError(6, f"{entries} LUT entries: 1..{MAX_LUT_ENTRIES} allowed")
        missing = [i for i in range(entries) if i not in self.lut]
        if missing:
            raise CommandRefusedError(16, f"LUT entries {missing[:5]} are not defined")
        self.lut_entries = entries
        self.lut_repeat = int.from_bytes(data[2:6], "little")

    def _trigger_out(self, data: bytes) -> None:
        self._length(data, 5)
        for offset in (1, 3):
            delay = int.from_bytes(data[offset : offset + 2], "little", signed=True)
            if not -20 <= delay <= 20000:
                raise CommandRefusedError(13, f"trigger delay {delay} µs is out of range")
        self.trigger_out1 = bytes(data)

    def _init_load(self, controller: int, data: bytes) -> None:
        self._length(data, 6)
        if self.mode != DisplayMode.ON_THE_FLY:
            raise CommandRefusedError(5, "images are loaded over USB only in pattern on-the-fly mode")
        if controller == 1 and not self.dual:
            raise CommandRefusedError(3, "no secondary controller")
        self._require_stopped()
        index = int.from_bytes(data[0:2], "little") & 0x1F
        size = int.from_bytes(data[2:6], "little")
        if index >= protocol.MAX_IMAGES:
            raise CommandRefusedError(17, f"image index {index} is beyond the pattern memory")
        if size < protocol.IMAGE_HEADER_SIZE:
            raise CommandRefusedError(6, f"image size {size} is smaller than its header")
        self.images[controller].pop(index, None)
        self.loading[controller] = ImageLoad(index, size)

    def _load(self, controller: int, data: bytes) -> None:
        load = self.loading[controller]
        if load is None:
            raise CommandRefusedError(7, "pattern BMP data without Initialize Pattern BMP Load")
        count = int.from_bytes(data[0:2], "little") & 0x3FF
        if len(data) != 2 + count:
            raise CommandRefusedError(6, f"packet announces {count} bytes, carries {len(data) - 2}")
        load.received += data[2:]
        if len(load.received) > load.size:
            self.loading[controller] = None
            raise CommandRefusedError(6, f"more image data than the {load.size} bytes announced")
        if len(load.received) < load.size:
            return
        self.loading[controller] = None
        blob = bytes(load.received)
        try:
            width, height, _, compression = protocol.parse_image_header(blob)
            if compression == protocol.Compression.RLE:
                raise CommandRefusedError(9, "RLE images are not simulated")
            if (width, height) != (self.width, self.geometry.rows):
                raise CommandRefusedError(
                    6, f"image is {width}x{height}, the DMD takes {self.width}x{self.geometry.rows}"
                )
            self.images[controller][load.index] = protocol.decode_image(blob)
        except protocol.ImageFormatError as error:
            raise CommandRefusedError(
                9 if "compression" in str(error) else 6, f"image {load.index}: {error}"
            ) from None

    def _start_stop(self, data: bytes) -> None:
        self._length(data, 1)
        action = Sequencer(data[0]) if data[0] <= Sequencer.START else None
        if action is None:
            raise CommandRefusedError(6, f"pattern start/stop value {data[0]} does not exist")
        if action == Sequencer.START:
            self._require_pattern_mode()
            if self.lut_entries == 0:
                raise CommandRefusedError(7, "the pattern display LUT is empty")
            missing = sorted(
                {self.lut[i].image_index for i in range(self.lut_entries)}
                - {i for i in self.images[0] if not self.dual or i in self.images[1]}
            )
            if missing:
                raise CommandRefusedError(7, f"the LUT refers to images {missing} that are not loaded")
        elif action == Sequencer.PAUSE and self.sequencer != Sequencer.START:
            raise CommandRefusedError(5, "nothing is running to pause")
        self.sequencer = action

    # ---- what the mirrors show ----

    @property
    def running(self) -> bool:
        return self.sequencer == Sequencer.START

    def image(self, index: int) -> np.ndarray:
        """The full-array ``(rows, cols, 3)`` image ``index`` as stored (both halves on a DLP9000)."""
        if self.dual:
            return np.concatenate([self.images[0][index], self.images[1][index]], axis=1)
        return self.images[0][index]

    def displayed_patterns(self, entries=None) -> np.ndarray:
        """``(n, rows, cols)`` bool: the mirror states of LUT entries (default: all), in display order."""
        values = {}
        frames = []
        for i in range(self.lut_entries) if entries is None else entries:
            entry = self.lut[i]
            if entry.image_index not in values:
                pixels = self.image(entry.image_index).astype(np.uint32)
                values[entry.image_index] = pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2]
            frames.append((values[entry.image_index] >> np.uint32(entry.bit_position) & 1).astype(bool))
        return np.stack(frames)
