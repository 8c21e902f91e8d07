"""TI DLPC900 (DLP LightCrafter 6500 / 9000) over USB HID, in pattern-on-the-fly mode.

The protocol follows TI's "DLPC900 Programmer's Guide" (DLPU018, revision J); section numbers below
are that revision's. Where a detail comes from the open drivers (Pycrafter6500, QI2lab mcSIM
``dlp6500.py``, e841018/ERLE) rather than from a page of the guide that was read, the comment says
"(drivers)". Nothing here has run against a real controller: the tests drive it against
:mod:`lsi_ros.hardware.dlpc900_device`, a simulated controller written from the same reading.

The pure protocol encoding (reports, command payloads, bit-plane packing, image compression) is in
functions the tests check byte by byte; :class:`Dlpc900Projector` sequences them.

Binary patterns travel as 24-bit images: pattern ``k`` of a group of 24 is bit ``k`` of each 24-bit
pixel. On the wire a pixel is three bytes, bits 23–16 first, then 15–8, then 7–0 (drivers: all
three agree; the guide names the background colour bytes "BB GG RR").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import numpy as np

from lsi_ros.hardware import HardwareError, PatternProjector, mirror_placement
from lsi_ros.optics import dmd as dmd_geometry

VENDOR_ID = 0x0451
PRODUCT_ID = 0xC900

# §1.2 USB interface: every transfer is a 64-byte HID report led by report ID 0; the first report of
# a command carries a 4-byte header (flags, sequence, 16-bit length LSB first) then the payload (the
# 16-bit USB command LSB first, then its data); longer payloads continue in further reports without a
# header. The controller's command buffer holds 512 bytes, header included.
REPORT_ID = 0x00
REPORT_SIZE = 64
HEADER_SIZE = 4
MAX_COMMAND_SIZE = 512
FLAG_READ = 0x80  # bit 7: 1 = read transaction
FLAG_REPLY = 0x40  # bit 6: the host wants a reply
FLAG_ERROR = 0x20  # bit 5, in replies: command not found or command failed

BMP_CHUNK = 504  # "Pattern BMP Load": data bytes per command (the guide's example: 0x01F8)
IMAGE_HEADER_SIZE = 48
IMAGE_SIGNATURE = b"Spld"
PLANES_PER_IMAGE = 24
MAX_IMAGES = 18  # Initialize Pattern BMP Load: image index 0–17
MIN_EXPOSURE_US = 105  # shortest 1-bit exposure of the DLP6500/DLP9000 (drivers: mcSIM min_time_us)


class Command(IntEnum):
    """USB command codes (§2, the command tables)."""

    READ_ERROR_CODE = 0x0100
    READ_ERROR_DESCRIPTION = 0x0101
    HARDWARE_STATUS = 0x1A0A
    SYSTEM_STATUS = 0x1A0B
    MAIN_STATUS = 0x1A0C
    DISPLAY_MODE = 0x1A1B
    TRIGGER_OUT1 = 0x1A1D  # layout (drivers: mcSIM)
    PATTERN_START_STOP = 0x1A24
    INIT_BMP_LOAD = 0x1A2A
    BMP_LOAD = 0x1A2B
    INIT_BMP_LOAD_SECONDARY = 0x1A2C
    BMP_LOAD_SECONDARY = 0x1A2D
    LUT_CONFIGURATION = 0x1A31
    LUT_DEFINITION = 0x1A34


class DisplayMode(IntEnum):
    VIDEO = 0
    PRE_STORED = 1
    VIDEO_PATTERN = 2
    ON_THE_FLY = 3


class Sequencer(IntEnum):
    """Pattern Display Start/Stop (0x1A24) data byte."""

    STOP = 0
    PAUSE = 1
    START = 2


class Compression(IntEnum):
    """Image header compression byte (§2.4.2)."""

    NONE = 0
    RLE = 1
    ERLE = 2


ERROR_CODES = {
    0: "no error",
    1: "batch file checksum error",
    2: "device failure",
    3: "invalid command number",
    4: "incompatible controller or DMD",
    5: "command not allowed in current mode",
    6: "invalid command parameter",
    7: "item referred by the parameter is not present",
    8: "out of resource (RAM or flash)",
    9: "invalid BMP compression type",
    10: "pattern bit number out of range",
    11: "pattern BMP not present in flash",
    12: "pattern dark time is out of range",
    13: "signal delay parameter is out of range",
    14: "pattern exposure time is out of range",
    15: "pattern number is out of range",
    16: "invalid pattern definition",
    17: "pattern image memory address is out of range",
    255: "internal error",
}

# §2.1.1 Hardware Status (bit 0 = 1 means initialisation succeeded; the others flag errors).
HARDWARE_STATUS_BITS = {
    0: "init_ok",
    1: "incompatible_controller_or_dmd",
    2: "dmd_reset_controller_error",
    3: "forced_swap_error",
    4: "secondary_controller_present",
    6: "sequencer_abort",
    7: "sequencer_error",
}
HARDWARE_ERROR_BITS = (1, 2, 3, 6, 7)
# §2.1.3 Main Status.
MAIN_STATUS_BITS = {
    0: "mirrors_parked",
    1: "sequencer_running",
    2: "video_frozen",
    3: "external_source_locked",
    4: "port1_syncs_valid",
    5: "port2_syncs_valid",
}


class Dlpc900Error(HardwareError):
    """The controller refused a command (error bit in its reply) or did not answer."""

    def __init__(self, message: str, code: int = 0):
        super().__init__(message)
        self.code = code


# ---- reports -------------------------------------------------------------------------------------


def frame_stream(flags: int, sequence: int, payload: bytes) -> list[bytes]:
    """A header + payload split into 64-byte reports (without report ID), zero-padded."""
    if HEADER_SIZE + len(payload) > MAX_COMMAND_SIZE:
        raise ValueError(
            f"{len(payload)} payload bytes exceed the controller's {MAX_COMMAND_SIZE}-byte buffer"
        )
    stream = bytes([flags, sequence & 0xFF]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return [stream[i : i + REPORT_SIZE].ljust(REPORT_SIZE, b"\0") for i in range(0, len(stream), REPORT_SIZE)]


def command_reports(
    command: int, data: bytes = b"", *, read: bool = False, reply: bool = True, sequence: int = 0
) -> list[bytes]:
    """The HID output reports (report ID + 64 bytes each) of one command (§1.2.2, §1.2.3)."""
    flags = (FLAG_READ if read else 0) | (FLAG_REPLY if reply else 0)
    payload = int(command).to_bytes(2, "little") + bytes(data)
    return [bytes([REPORT_ID]) + chunk for chunk in frame_stream(flags, sequence, payload)]


@dataclass(frozen=True)
class Packet:
    """One command or reply, reassembled from its reports."""

    flags: int
    sequence: int
    payload: bytes

    @property
    def command(self) -> int:
        return int.from_bytes(self.payload[:2], "little")

    @property
    def data(self) -> bytes:
        """A command's data (after its 2 command bytes)."""
        return self.payload[2:]

    @property
    def error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)


class PacketAssembler:
    """Reassembles packets from 64-byte reports: the header says how many continuation reports follow."""

    def __init__(self):
        self._buffer = b""
        self._needed = 0

    def feed(self, report: bytes) -> Packet | None:
        if len(report) != REPORT_SIZE:
            raise ValueError(f"a report is {REPORT_SIZE} bytes, got {len(report)}")
        if not self._buffer:
            length = int.from_bytes(report[2:4], "little")
            if HEADER_SIZE + length > MAX_COMMAND_SIZE:
                raise ValueError(f"packet length {length} exceeds the {MAX_COMMAND_SIZE}-byte buffer")
            self._needed = HEADER_SIZE + length
        self._buffer += report
        if len(self._buffer) < self._needed:
            return None
        stream, self._buffer = self._buffer[: self._needed], b""
        return Packet(flags=stream[0], sequence=stream[1], payload=stream[HEADER_SIZE:])


# ---- command payloads ("Pattern Display LUT Definition/Configuration", "Pattern BMP Load") ----


@dataclass(frozen=True)
class LutEntry:
    """One Pattern Display LUT Definition (0x1A34): what the sequencer shows at ``pattern_index``."""

    pattern_index: int
    exposure_us: int
    image_index: int
    bit_position: int
    dark_time_us: int = 0
    clear_after: bool = True
    bit_depth: int = 1
    color: int = 0b111  # b001 red, b010 green, b100 blue; white = all LEDs
    wait_for_trigger: bool = False
    disable_trigger2: bool = False


def _check(name: str, value: int, low: int, high: int) -> int:
    if not low <= int(value) <= high:
        raise ValueError(f"{name} = {value} is outside {low}..{high}")
    return int(value)


def lut_definition_payload(entry: LutEntry) -> bytes:
    """12 bytes: index (2), exposure µs (3), options (1), dark time µs (3), trigger 2 (1),
    image index bits 10:0 and bit position bits 15:11 (2); all LSB first."""
    options = (
        int(entry.clear_after)
        | (_check("bit depth", entry.bit_depth, 1, 8) - 1) << 1
        | _check("color", entry.color, 0, 7) << 4
        | int(entry.wait_for_trigger) << 7
    )
    image = (
        _check("image index", entry.image_index, 0, 0x7FF)
        | _check("bit position", entry.bit_position, 0, 23) << 11
    )
    return (
        _check("pattern index", entry.pattern_index, 0, 0xFFFF).to_bytes(2, "little")
        + _check("exposure", entry.exposure_us, 0, 0xFFFFFF).to_bytes(3, "little")
        + bytes([options])
        + _check("dark time", entry.dark_time_us, 0, 0xFFFFFF).to_bytes(3, "little")
        + bytes([int(entry.disable_trigger2)])
        + image.to_bytes(2, "little")
    )


def parse_lut_definition(data: bytes) -> LutEntry:
    if len(data) != 12:
        raise ValueError(f"a LUT definition is 12 bytes, got {len(data)}")
    image = int.from_bytes(data[10:12], "little")
    return LutEntry(
        pattern_index=int.from_bytes(data[0:2], "little"),
        exposure_us=int.from_bytes(data[2:5], "little"),
        clear_after=bool(data[5] & 1),
        bit_depth=((data[5] >> 1) & 7) + 1,
        color=(data[5] >> 4) & 7,
        wait_for_trigger=bool(data[5] >> 7),
        dark_time_us=int.from_bytes(data[6:9], "little"),
        disable_trigger2=bool(data[9] & 1),
        image_index=image & 0x7FF,
        bit_position=image >> 11,
    )


def lut_configuration_payload(num_entries: int, num_patterns: int = 0) -> bytes:
    """0x1A31: number of LUT entries (2 bytes), patterns to display (4 bytes; 0 = repeat forever)."""
    return _check("LUT entries", num_entries, 1, 0x7FF).to_bytes(2, "little") + _check(
        "patterns to display", num_patterns, 0, 0xFFFFFFFF
    ).to_bytes(4, "little")


def init_bmp_load_payload(image_index: int, num_bytes: int) -> bytes:
    """0x1A2A/0x1A2C: image index (2 bytes), compressed image size including its 48-byte header (4)."""
    return _check("image index", image_index, 0, MAX_IMAGES - 1).to_bytes(2, "little") + _check(
        "image size", num_bytes, IMAGE_HEADER_SIZE, 0xFFFFFFFF
    ).to_bytes(4, "little")


def bmp_load_payloads(image: bytes) -> list[bytes]:
    """0x1A2B/0x1A2D: the image in 504-byte pieces, each led by its byte count (2 bytes)."""
    return [
        len(chunk).to_bytes(2, "little") + chunk
        for chunk in (image[i : i + BMP_CHUNK] for i in range(0, len(image), BMP_CHUNK))
    ]


def trigger_out_payload(invert: bool = False, rising_delay_us: int = 0, falling_delay_us: int = 0) -> bytes:
    """0x1A1D (drivers: mcSIM): polarity byte, then signed 16-bit rising/falling edge delays (µs).

    The −20..20000 µs range is the drivers'; the guide's table for this command was not read."""
    rising = _check("rising edge delay", rising_delay_us, -20, 20000)
    falling = _check("falling edge delay", falling_delay_us, -20, 20000)
    return (
        bytes([int(invert)])
        + rising.to_bytes(2, "little", signed=True)
        + falling.to_bytes(2, "little", signed=True)
    )


def decode_bits(byte: int, names: dict[int, str]) -> dict[str, bool]:
    return {name: bool(byte >> bit & 1) for bit, name in names.items()}


# ---- images: 24 binary patterns in the bit planes of one 24-bit image --------------------------------


def pack_bit_planes(patterns: np.ndarray) -> np.ndarray:
    """Up to 24 binary patterns ``(n, H, W)`` → ``(H, W, 3)`` uint8 in wire order (bits 23–16, 15–8, 7–0)."""
    patterns = np.asarray(patterns)
    if patterns.ndim != 3 or not 1 <= len(patterns) <= PLANES_PER_IMAGE:
        raise ValueError(f"expected 1..{PLANES_PER_IMAGE} patterns (n, H, W), got shape {patterns.shape}")
    value = np.zeros(patterns.shape[1:], dtype=np.uint32)
    for bit, pattern in enumerate(patterns):
        value |= pattern.astype(bool).astype(np.uint32) << np.uint32(bit)
    return np.stack([(value >> shift & 0xFF).astype(np.uint8) for shift in (16, 8, 0)], axis=-1)


def unpack_bit_planes(image: np.ndarray, count: int = PLANES_PER_IMAGE) -> np.ndarray:
    """``(H, W, 3)`` wire-order image → ``(count, H, W)`` bool patterns (inverse of pack_bit_planes)."""
    image = np.asarray(image, dtype=np.uint32)
    value = image[..., 0] << 16 | image[..., 1] << 8 | image[..., 2]
    return np.stack([(value >> np.uint32(bit) & 1).astype(bool) for bit in range(count)])


class ImageFormatError(ValueError):
    """A compressed image that does not follow §2.4.2/§2.4.3."""


def image_header(width: int, height: int, data_bytes: int, compression: Compression) -> bytes:
    """§2.4.2 image header (48 bytes). The guide's byte 24 is "reserved 0x00"; a sniffed TI GUI sends
    0x01 there (drivers) — 0x00 is used here."""
    return (
        IMAGE_SIGNATURE
        + width.to_bytes(2, "little")
        + height.to_bytes(2, "little")
        + data_bytes.to_bytes(4, "little")
        + b"\xff" * 8
        + b"\0" * 4  # background colour BB GG RR 00: black
        + bytes([0, int(compression), 1])
        + b"\0" * 21
    )


def _count(n: int) -> bytes:
    """§2.4.3.2: a count below 128 in one byte, else two: ``(n & 0x7F) | 0x80, n >> 7``."""
    if not 0 <= n < 1 << 15:
        raise ValueError(f"run length {n} cannot be encoded")
    return bytes([n]) if n < 128 else bytes([(n & 0x7F) | 0x80, n >> 7])


def _erle_row(row: np.ndarray) -> bytearray:
    """One line: runs of ≥ 2 equal pixels as (count, pixel), stretches of single pixels as
    ``0x00, count, pixels`` (count ≥ 2), and a lone single pixel as (1, pixel) as the drivers do."""
    width = len(row)
    flat = row.astype(np.uint32)
    value = flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]
    starts = np.concatenate(([0], np.flatnonzero(value[1:] != value[:-1]) + 1))
    lengths = np.diff(np.append(starts, width))
    out = bytearray()
    i = 0
    while i < len(starts):
        if lengths[i] > 1:
            out += _count(int(lengths[i])) + row[starts[i]].tobytes()
            i += 1
            continue
        j = i
        while j < len(starts) and lengths[j] == 1:
            j += 1
        if j - i == 1:
            out += b"\x01" + row[starts[i]].tobytes()
        else:
            out += b"\x00" + _count(j - i) + row[starts[i] : starts[i] + j - i].tobytes()
        i = j
    return out


def encode_image(pixels: np.ndarray, compression: Compression = Compression.ERLE) -> bytes:
    """A ``(H, W, 3)`` wire-order image as header + data (§2.4.2, §2.4.3).

    Enhanced RLE (§2.4.3.2): a line equal to the previous one is one "copy n pixels from the previous
    line" command; every line ends with an end-of-line mark (optional for ERLE, TI e2e forum), the
    image with end-of-image, padded to 4 bytes (drivers). Uncompressed: 3 bytes per pixel, row-major,
    no line padding (not confirmed for widths where ``3·W`` is not a multiple of 4; 1920 and 1280 are).
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    if compression == Compression.NONE:
        data = pixels.tobytes()
    elif compression == Compression.ERLE:
        out = bytearray()
        for r in range(height):
            if r and np.array_equal(pixels[r], pixels[r - 1]):
                out += b"\x00\x01" + _count(width)
            else:
                out += _erle_row(pixels[r])
            out += b"\x00\x00"
        out += b"\x00\x01\x00"
        out += b"\0" * (-len(out) % 4)
        data = bytes(out)
    else:
        raise ValueError(f"compression {compression!r} is not implemented (use NONE or ERLE)")
    return image_header(width, height, len(data), compression) + data


def parse_image_header(blob: bytes) -> tuple[int, int, int, Compression]:
    """(width, height, data bytes, compression) of an encoded image."""
    if len(blob) < IMAGE_HEADER_SIZE or blob[:4] != IMAGE_SIGNATURE:
        raise ImageFormatError("image does not start with the 'Spld' signature")
    try:
        compression = Compression(blob[25])
    except ValueError:
        raise ImageFormatError(f"unknown compression type {blob[25]}") from None
    return (
        int.from_bytes(blob[4:6], "little"),
        int.from_bytes(blob[6:8], "little"),
        int.from_bytes(blob[8:12], "little"),
        compression,
    )


def decode_image(blob: bytes) -> np.ndarray:
    """Header + data → ``(H, W, 3)`` wire-order pixels; the inverse of encode_image."""
    width, height, data_bytes, compression = parse_image_header(blob)
    data = blob[IMAGE_HEADER_SIZE:]
    if len(data) != data_bytes:
        raise ImageFormatError(f"header announces {data_bytes} data bytes, image has {len(data)}")
    if compression == Compression.NONE:
        if len(data) != 3 * width * height:
            raise ImageFormatError(f"uncompressed {width}x{height} image needs {3 * width * height} bytes")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3).copy()
    if compression == Compression.RLE:
        raise ImageFormatError("RLE (compression 1) is not implemented here; use ERLE or uncompressed")
    return _erle_decode(data, width, height)


def _erle_decode(data: bytes, width: int, height: int) -> np.ndarray:
    out = np.zeros((height, width, 3), dtype=np.uint8)
    row = col = pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise ImageFormatError("image data ends before its end-of-image mark")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    def count() -> int:
        first = take(1)[0]
        return (first & 0x7F) | take(1)[0] << 7 if first & 0x80 else first

    def span(n: int) -> slice:
        nonlocal col
        if row >= height or col + n > width:
            raise ImageFormatError(
                f"a run of {n} pixels at line {row}, column {col} leaves the {width}x{height} image"
            )
        col += n
        return slice(col - n, col)

    while True:
        if col == width and data[pos : pos + 2] != b"\x00\x00":
            row, col = row + 1, 0  # a full line without an end-of-line mark
        if take(1)[0] != 0:
            pos -= 1
            n = count()
            out[row, span(n)] = np.frombuffer(take(3), dtype=np.uint8)
            continue
        second = data[pos] if pos < len(data) else None
        if second == 0:
            take(1)
            if col != width:
                raise ImageFormatError(f"end of line {row} after {col} of {width} pixels")
            row, col = row + 1, 0
        elif second == 1:
            take(1)
            n = count()
            if n == 0:
                break
            if row == 0:
                raise ImageFormatError("'copy from previous line' on the first line")
            where = span(n)
            out[row, where] = out[row - 1, where]
        else:
            n = count()
            if n < 2:
                raise ImageFormatError(f"uncompressed run of {n} pixels")
            out[row, span(n)] = np.frombuffer(take(3 * n), dtype=np.uint8).reshape(n, 3)
    if col == width:
        row, col = row + 1, 0
    if row != height or col != 0:
        raise ImageFormatError(f"image ended at line {row}, column {col}; expected {height} full lines")
    return out


# ---- the link ---------------------------------------------------------------------------------------


class Transport(Protocol):
    """A HID link: write one output report (report ID + 64 bytes), read one input report (64 bytes,
    no report ID, as hidapi returns reports of a device without numbered reports; ``b""`` on timeout)."""

    def write(self, report: bytes) -> None: ...

    def read(self, timeout_s: float) -> bytes: ...

    def close(self) -> None: ...


class HidTransport:
    """The DLPC900's USB HID interface through the ``hid`` package (ctypes bindings of the system hidapi)."""

    def __init__(self, path: str = "", serial: str = ""):
        try:
            import hid
        except ImportError as error:
            raise Dlpc900Error(
                "cannot use USB HID: the 'hid' package or the system hidapi library is missing "
                f"(pip install hid; apt install libhidapi-hidraw0): {error}"
            ) from error
        found = hid.enumerate(VENDOR_ID, PRODUCT_ID)
        if path:
            found = [d for d in found if d["path"] == path.encode()]
        if serial:
            found = [d for d in found if d.get("serial_number") == serial]
        if not found:
            where = f" at {path}" if path else f" with serial {serial}" if serial else ""
            raise Dlpc900Error(f"no DLPC900 (USB {VENDOR_ID:04x}:{PRODUCT_ID:04x}){where} is connected")
        try:
            self._device = hid.Device(path=found[0]["path"])
        except Exception as error:  # hid.HIDException: permissions (udev rule), device busy
            raise Dlpc900Error(f"cannot open the DLPC900 at {found[0]['path']!r}: {error}") from error

    def write(self, report: bytes) -> None:
        try:
            written = self._device.write(bytes(report))
        except Exception as error:  # hid.HIDException: unplugged, power lost
            raise Dlpc900Error(f"USB write failed: {error}") from error
        if written != len(report):
            raise Dlpc900Error(f"USB write of {len(report)} bytes sent {written}")

    def read(self, timeout_s: float) -> bytes:
        try:
            return self._device.read(REPORT_SIZE, max(1, int(timeout_s * 1000)))
        except Exception as error:  # hid.HIDException
            raise Dlpc900Error(f"USB read failed: {error}") from error

    def close(self) -> None:
        self._device.close()


class Dlpc900:
    """Commands and replies over a transport. Writes ask for a reply, so each one's error bit is
    checked; on an error the controller's error code and description are read into the exception."""

    def __init__(self, transport: Transport, timeout_s: float = 1.0):
        self.transport = transport
        self.timeout_s = timeout_s
        self._sequence = 0

    def _transact(self, command: int, data: bytes, read: bool) -> Packet:
        self._sequence = (self._sequence + 1) & 0xFF
        for report in command_reports(command, data, read=read, reply=True, sequence=self._sequence):
            self.transport.write(report)
        assembler = PacketAssembler()
        deadline = time.monotonic() + self.timeout_s
        while True:
            report = self.transport.read(max(0.0, deadline - time.monotonic()))
            if not report:
                raise Dlpc900Error(f"no reply to command 0x{command:04X} within {self.timeout_s} s")
            packet = assembler.feed(bytes(report))
            if packet is not None and packet.sequence == self._sequence:
                return packet

    def _checked(self, command: int, data: bytes, read: bool) -> Packet:
        reply = self._transact(command, data, read)
        if reply.error:
            code, description = self.last_error()
            raise Dlpc900Error(
                f"command 0x{command:04X} failed: error {code} ({ERROR_CODES.get(code, 'unknown')})"
                + (f": {description}" if description else ""),
                code,
            )
        return reply

    def write(self, command: int, data: bytes = b"") -> None:
        self._checked(command, data, read=False)

    def read(self, command: int, data: bytes = b"") -> bytes:
        return self._checked(command, data, read=True).payload

    def last_error(self) -> tuple[int, str]:
        """§2.1.6/§2.1.7: the error code of the last command and its description."""
        code = self._transact(Command.READ_ERROR_CODE, b"", read=True).payload
        text = self._transact(Command.READ_ERROR_DESCRIPTION, b"", read=True).payload
        return (code[0] if code else 0), text.split(b"\0")[0].decode("ascii", "replace")

    def status(self) -> dict:
        """Hardware (§2.1.1), system (§2.1.2) and main status (§2.1.3) bits by name."""
        hardware = self.read(Command.HARDWARE_STATUS)[0]
        system = self.read(Command.SYSTEM_STATUS)[0]
        main = self.read(Command.MAIN_STATUS)[0]
        return (
            {f"hw.{k}": v for k, v in decode_bits(hardware, HARDWARE_STATUS_BITS).items()}
            | {"sys.memory_test_ok": bool(system & 1)}
            | {f"main.{k}": v for k, v in decode_bits(main, MAIN_STATUS_BITS).items()}
        )


# ---- the projector ------------------------------------------------------------------------------------

DLPC900_DEVICES = ("DLP6500", "DLP9000")
DUAL_CONTROLLER = {"DLP9000"}  # "Pattern BMP Load": left half on the primary, right on the secondary


class Dlpc900Projector(PatternProjector):
    """A pattern set shown by a DLPC900 in pattern-on-the-fly mode, uploaded in batches that fit the
    on-board pattern memory (400 LUT entries; lsi_ros.optics.dmd.TIMINGS).

    A set that fits runs forever (LUT repeat 0). A larger one is split: each batch is shown once per
    ``load_batch``; the caller steps through the batches and ``status()`` reports them.
    """

    def __init__(
        self,
        device: str = "DLP6500",
        pattern_rate_hz: float = 9500.0,
        exposure_us: int = 0,
        dark_time_us: int = 0,
        trigger_out: bool = True,
        usb_path: str = "",
        usb_serial: str = "",
        compression: str = "erle",
        transport: Transport | None = None,
        timeout_s: float = 1.0,
    ):
        if device not in DLPC900_DEVICES:
            raise ValueError(f"a DLPC900 drives the DLP6500 or DLP9000, not {device}")
        self.geometry = dmd_geometry.MIRROR_ARRAYS[device]
        self.pattern_memory = dmd_geometry.TIMINGS[device].pattern_memory
        self.dark_time_us = int(dark_time_us)
        self.exposure_us = int(exposure_us) or round(1e6 / pattern_rate_hz) - self.dark_time_us
        if self.exposure_us < MIN_EXPOSURE_US:
            raise ValueError(
                f"exposure {self.exposure_us} µs is below the {MIN_EXPOSURE_US} µs minimum of 1-bit patterns "
                f"(pattern rate {pattern_rate_hz:.0f} Hz, dark time {self.dark_time_us} µs)"
            )
        self.pattern_rate_hz = 1e6 / (self.exposure_us + self.dark_time_us)
        self.trigger_out = bool(trigger_out)
        if compression.upper() not in ("NONE", "ERLE"):
            raise ValueError(f"compression {compression!r} is not 'erle' or 'none'")
        self.compression = Compression[compression.upper()]
        self._transport, self._usb = transport, (usb_path, usb_serial)
        self.timeout_s = timeout_s
        self.link: Dlpc900 | None = None
        self.pattern_set = None
        self.placement = None
        self.batches: list[range] = []
        self.batch = -1
        self.state = "idle"
        self.fault = ""

    def connect(self) -> Dlpc900:
        if self.link is None:
            try:
                self.link = Dlpc900(self._transport or HidTransport(*self._usb), self.timeout_s)
            except HardwareError as error:
                self.fault = str(error)
                raise
        return self.link

    def _write(self, command: int, data: bytes = b"") -> None:
        try:
            self.connect().write(command, data)
        except Dlpc900Error as error:
            self.fault = str(error)
            if not error.code:  # the link itself failed (no reply, USB error): reconnect next time
                self.close()
            raise

    def upload(self, pattern_set, registration=None, partial: bool = False) -> None:
        self.placement = mirror_placement(self.geometry, pattern_set.resolution, registration, partial)
        self.pattern_set = pattern_set
        m = pattern_set.num_patterns
        self.batches = [range(s, min(s + self.pattern_memory, m)) for s in range(0, m, self.pattern_memory)]
        self.load_batch(0)

    def images(self, batch: range) -> list[list[bytes]]:
        """The batch's patterns on the mirror array, 24 per 24-bit image, compressed (§2.4.3); for a
        dual-controller DMD, [left, right] halves per image."""
        bits = self.pattern_set.bits[batch.start : batch.stop]
        dense = np.unpackbits(bits, axis=1, count=self.pattern_set.num_pixels)
        dense = dense.reshape(len(batch), *self.pattern_set.resolution)
        encoded = []
        for start in range(0, len(batch), PLANES_PER_IMAGE):
            planes = pack_bit_planes(dense[start : start + PLANES_PER_IMAGE])
            mirrors = self.placement.place_values(planes)
            if self.geometry.name in DUAL_CONTROLLER:
                half = self.geometry.cols // 2
                encoded.append(
                    [
                        encode_image(mirrors[:, :half], self.compression),
                        encode_image(mirrors[:, half:], self.compression),
                    ]
                )
            else:
                encoded.append([encode_image(mirrors, self.compression)])
        return encoded

    def load_batch(self, index: int) -> None:
        """Stop, define the LUT, load the images (last first, as "Initialize Pattern BMP Load" requires)."""
        batch = self.batches[index]
        self.batch, self.state = -1, "uploading"
        self._write(Command.PATTERN_START_STOP, bytes([Sequencer.STOP]))
        self._write(Command.DISPLAY_MODE, bytes([DisplayMode.ON_THE_FLY]))
        if self.trigger_out:
            self._write(Command.TRIGGER_OUT1, trigger_out_payload())
        for i in range(len(batch)):
            entry = LutEntry(
                pattern_index=i,
                exposure_us=self.exposure_us,
                dark_time_us=self.dark_time_us,
                image_index=i // PLANES_PER_IMAGE,
                bit_position=i % PLANES_PER_IMAGE,
                disable_trigger2=not self.trigger_out,
            )
            self._write(Command.LUT_DEFINITION, lut_definition_payload(entry))
        self._write(
            Command.LUT_CONFIGURATION,
            lut_configuration_payload(len(batch), 0 if len(self.batches) == 1 else len(batch)),
        )
        commands = (
            (Command.INIT_BMP_LOAD, Command.BMP_LOAD),
            (Command.INIT_BMP_LOAD_SECONDARY, Command.BMP_LOAD_SECONDARY),
        )
        images = self.images(batch)
        for image_index in reversed(range(len(images))):
            for (init, load), blob in zip(commands, images[image_index], strict=False):
                self._write(init, init_bmp_load_payload(image_index, len(blob)))
                for chunk in bmp_load_payloads(blob):
                    self._write(load, chunk)
        self.batch, self.state, self.fault = index, "loaded", ""

    def start(self) -> None:
        if self.batch < 0:
            raise RuntimeError("no pattern set uploaded")
        self._write(Command.PATTERN_START_STOP, bytes([Sequencer.START]))
        self.state = "running"

    def pause(self) -> None:
        self._write(Command.PATTERN_START_STOP, bytes([Sequencer.PAUSE]))
        self.state = "paused"

    def stop(self) -> None:
        if self.link is not None and self.state in ("running", "paused"):
            self._write(Command.PATTERN_START_STOP, bytes([Sequencer.STOP]))
            self.state = "loaded"

    def close(self) -> None:
        if self.link is not None:
            link, self.link = self.link, None
            try:
                link.transport.close()
            except Exception:  # closing a device that is already gone
                pass

    def status(self) -> dict:
        status = {
            "backend": "dlpc900",
            "device": self.geometry.name,
            "state": self.state,
            "running": self.state == "running",
            "connected": self.link is not None,
            "exposure_us": self.exposure_us,
            "dark_time_us": self.dark_time_us,
            "pattern_rate_hz": round(self.pattern_rate_hz, 1),
            "trigger_out": self.trigger_out,
        }
        if self.pattern_set is not None:
            m = self.pattern_set.num_patterns
            status |= {
                "frame_time_ms": 1e3 * m / self.pattern_rate_hz,
                "pattern_memory": self.pattern_memory,
                "upload_batches": len(self.batches),
                "batch": f"{self.batch + 1}/{len(self.batches)}",
                "mirror_block": self.placement.block,
            }
            if len(self.batches) > 1:
                status["batching"] = (
                    f"{m} patterns exceed the {self.pattern_memory}-pattern memory: "
                    f"{len(self.batches)} uploads of up to {self.pattern_memory}"
                )
        if self.link is not None:
            try:
                status |= self.link.status()
            except Dlpc900Error as error:
                self.fault = str(error)
                if not error.code:  # the link failed (unplugged?): reconnect on the next upload
                    self.close()
                    status["connected"], status["state"], status["running"] = False, "disconnected", False
                    self.state, self.batch = "disconnected", -1
            else:
                flagged = [
                    HARDWARE_STATUS_BITS[b]
                    for b in HARDWARE_ERROR_BITS
                    if status[f"hw.{HARDWARE_STATUS_BITS[b]}"]
                ]
                if flagged:
                    self.fault = f"hardware status reports {', '.join(flagged)}"
        if self.fault:
            status["error"] = self.fault
        return status
