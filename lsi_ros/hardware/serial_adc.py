"""The ``serial_adc`` photodiode: a microcontroller samples the photodiode amplifier on every DMD
trigger-out pulse and streams one framed sample per displayed pattern over (USB) serial.

The wire format and command set are in docs/serial_adc_protocol.md. This module holds the frame
codec, an incremental stream parser that resynchronises after garbage, and the ``Detector``
backend, which opens the port with pyserial, configures the device, turns frames into
``Sample``s and survives the device going away: gaps in the trigger count and reconnections are
marked on the next sample (``Sample.gap_before``) so the frame assembler drops the frame in
progress instead of publishing it half-filled.
"""

import binascii
import struct
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from lsi_ros.hardware import Detector
from lsi_ros.hardware.frames import INTERRUPTED, MISSED_TRIGGER, Sample

SYNC = b"\xa5\x5a"
PROTOCOL_VERSION = 1
IDENTITY_PREFIX = "LSI-SERIAL-ADC"
FLAG_SATURATED = 0x01
MAX_PATTERNS = 0xFFFF
_BODY = struct.Struct("<2sBBHIII")
FRAME_SIZE = _BODY.size + 2
SEQUENCE_MODULUS = 2**32


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final xor)."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class AdcFrame:
    """One photodiode sample as the device sends it."""

    pattern_index: int
    trigger_sequence: int
    device_time_us: int
    adc_value: int
    saturated: bool = False
    version: int = PROTOCOL_VERSION


def encode_frame(frame: AdcFrame) -> bytes:
    flags = FLAG_SATURATED if frame.saturated else 0
    body = _BODY.pack(
        SYNC,
        frame.version,
        flags,
        frame.pattern_index,
        frame.trigger_sequence % SEQUENCE_MODULUS,
        frame.device_time_us % 2**32,
        frame.adc_value,
    )
    return body + struct.pack("<H", crc16_ccitt_false(body))


def decode_frame(data: bytes) -> AdcFrame:
    """One frame of exactly FRAME_SIZE bytes; ValueError on a wrong size, sync or CRC."""
    if len(data) != FRAME_SIZE:
        raise ValueError(f"a frame is {FRAME_SIZE} bytes, got {len(data)}")
    sync, version, flags, index, sequence, device_time, value = _BODY.unpack_from(data)
    if sync != SYNC:
        raise ValueError(f"bad sync bytes {sync.hex()}")
    (crc,) = struct.unpack_from("<H", data, _BODY.size)
    if crc != crc16_ccitt_false(data[: _BODY.size]):
        raise ValueError("CRC mismatch")
    return AdcFrame(index, sequence, device_time, value, bool(flags & FLAG_SATURATED), version)


@dataclass
class ParserCounters:
    frames: int = 0
    crc_errors: int = 0
    version_errors: int = 0
    bytes_skipped: int = 0


class FrameParser:
    """Incremental: feed any chunks of the byte stream, get the complete valid frames back.

    Bytes before a sync word are skipped; a candidate frame with a bad CRC is counted and the
    search restarts one byte after its sync word, so a corrupted or truncated frame never hides
    the next good one. Frames of an unknown protocol version are counted and skipped whole.
    """

    def __init__(self):
        self.counters = ParserCounters()
        self._buffer = bytearray()

    def reset(self) -> None:
        """Forget buffered bytes (after a reconnection); they are not counted as skipped."""
        self._buffer.clear()

    def feed(self, data: bytes) -> list[AdcFrame]:
        self._buffer += data
        frames = []
        start = 0
        buffer = self._buffer
        while True:
            sync_at = buffer.find(SYNC, start)
            if sync_at < 0:
                # keep a trailing first sync byte: the second may arrive in the next chunk
                keep = 1 if buffer.endswith(SYNC[:1]) else 0
                self.counters.bytes_skipped += len(buffer) - start - keep
                start = len(buffer) - keep
                break
            self.counters.bytes_skipped += sync_at - start
            if len(buffer) - sync_at < FRAME_SIZE:
                start = sync_at
                break
            candidate = bytes(buffer[sync_at : sync_at + FRAME_SIZE])
            try:
                frame = decode_frame(candidate)
            except ValueError:
                self.counters.crc_errors += 1
                self.counters.bytes_skipped += 1
                start = sync_at + 1
                continue
            start = sync_at + FRAME_SIZE
            if frame.version != PROTOCOL_VERSION:
                self.counters.version_errors += 1
                self.counters.bytes_skipped += FRAME_SIZE
                continue
            self.counters.frames += 1
            frames.append(frame)
        del buffer[:start]
        return frames


class DeviceError(RuntimeError):
    """The device answered a command with an error, or not as an LSI serial ADC."""


@dataclass
class LinkCounters:
    missed_triggers: int = 0
    timeouts: int = 0
    reconnects: int = 0
    connect_failures: int = 0


class SerialAdcPhotodiode(Detector):
    """The photodiode behind a serial-ADC microcontroller (pyserial path or URL, e.g. /dev/ttyACM0,
    rfc2217://host:port, socket://host:port).

    All port I/O happens in the thread that iterates ``acquire_frame``; ``set_pattern_set`` only
    records what the device should be told. Nothing here raises into the caller: errors close the
    port, land in ``status()['last_error']`` and the port is reopened with exponential backoff.
    ``read_timeout_s`` must exceed the trigger period.
    """

    def __init__(
        self,
        port: str,
        baud_rate: int = 2_000_000,
        read_timeout_s: float = 0.5,
        reconnect_max_backoff_s: float = 5.0,
        reply_timeout_s: float = 1.0,
        stall_restart_s: float = 3.0,
    ):
        self.port = port
        self.baud_rate = baud_rate
        self.read_timeout_s = read_timeout_s
        self.reconnect_max_backoff_s = reconnect_max_backoff_s
        self.reconnect_min_backoff_s = min(0.05, reconnect_max_backoff_s)
        self.reply_timeout_s = reply_timeout_s
        self.stall_restart_s = stall_restart_s
        self.pattern_set = None
        self.identity = ""
        self.last_error = ""
        self.counters = LinkCounters()
        self.parser = FrameParser()
        self._serial = None
        self._ever_connected = False
        self._streaming_set = None
        self._last_sequence: int | None = None
        self._pending_gap = ""
        self._last_device_us: int | None = None
        self._device_wraps = 0
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._last_data_at = 0.0

    def set_pattern_set(self, pattern_set) -> None:
        self.pattern_set = pattern_set

    @property
    def connected(self) -> bool:
        return self._serial is not None

    def acquire_frame(self) -> Iterator[Sample]:
        """The samples that arrive until one pass over the pattern set ends (pattern index M − 1),
        the read times out or the device is lost; possibly none. Never raises."""
        if not self._ready():
            return
        while True:
            try:
                data = self._serial.read(max(1, self._serial.in_waiting))
            except (OSError, ValueError) as error:  # SerialException is an OSError
                self._lose(f"read failed: {error}")
                return
            if not data:
                self._on_silence()
                return
            self._last_data_at = time.monotonic()
            streaming_set = self._streaming_set
            samples = [self._to_sample(frame, streaming_set) for frame in self.parser.feed(data)]
            yield from samples
            if self.pattern_set is not streaming_set:
                return
            if any(s.pattern_index == streaming_set.num_patterns - 1 for s in samples):
                return

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.write(b"STOP\n")
            except (OSError, ValueError):
                pass
            self._close_port()

    def status(self) -> dict:
        return {
            "backend": "serial_adc",
            "port": self.port,
            "connected": self.connected,
            "device": self.identity,
            "streaming_patterns": self._streaming_set.num_patterns if self._streaming_set else 0,
            **asdict(self.parser.counters),
            **asdict(self.counters),
            "last_error": self.last_error,
        }

    def _to_sample(self, frame: AdcFrame, streaming_set) -> Sample:
        gap, self._pending_gap = self._pending_gap, ""
        if self._last_sequence is not None:
            missed = (frame.trigger_sequence - self._last_sequence - 1) % SEQUENCE_MODULUS
            if missed:
                self.counters.missed_triggers += missed
                gap = gap or MISSED_TRIGGER
        self._last_sequence = frame.trigger_sequence
        return Sample(
            streaming_set.pattern_set_id,
            frame.pattern_index,
            float(frame.adc_value),
            frame.saturated,
            gap_before=gap,
            device_time_ns=self._unwrapped_device_ns(frame.device_time_us, restarted=gap == INTERRUPTED),
        )

    def _unwrapped_device_ns(self, device_time_us: int, restarted: bool) -> int:
        """The device's 32-bit microsecond clock, continued across its wrap (every ~71.6 min)."""
        if restarted or self._last_device_us is None:
            self._device_wraps = 0
        elif device_time_us < self._last_device_us - 2**31:
            self._device_wraps += 1
        self._last_device_us = device_time_us
        return (self._device_wraps * 2**32 + device_time_us) * 1000

    def _ready(self) -> bool:
        """Connected and streaming the current pattern count; otherwise try to get there (after the
        backoff) and wait a read timeout so the caller's loop does not spin."""
        pattern_set = self.pattern_set
        if self._serial is not None and pattern_set is not None and self._streaming_set is pattern_set:
            return True
        if time.monotonic() >= self._retry_at and (self._serial is None or pattern_set is not None):
            try:
                if self._serial is None:
                    self._open()
                if pattern_set is not None:
                    self._configure(pattern_set)
                    self._backoff_s = 0.0
                    return True
            except (OSError, ValueError, DeviceError) as error:
                self._lose(str(error))
        if self._serial is not None:
            time.sleep(self.read_timeout_s)
        else:
            time.sleep(min(max(self._retry_at - time.monotonic(), 0.01), self.read_timeout_s))
        return False

    def _open(self) -> None:
        import serial

        port = serial.serial_for_url(self.port, do_not_open=True)
        port.baudrate = self.baud_rate
        port.timeout = self.read_timeout_s
        port.write_timeout = self.reply_timeout_s
        try:
            port.open()
        except (OSError, ValueError) as error:
            self.counters.connect_failures += 1
            raise OSError(f"open failed: {error}") from None
        self._serial = port
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        self._serial.reset_input_buffer()
        self._command("STOP", "OK STOP")
        self._serial.reset_input_buffer()
        self.identity = self._command("IDN?", IDENTITY_PREFIX)

    def _configure(self, pattern_set) -> None:
        """(Re)start the stream for a pattern set; the device restarts its trigger count at 0."""
        self._streaming_set = None
        self._command("STOP", "OK STOP")
        num_patterns = pattern_set.num_patterns
        self._command(f"M {num_patterns}", f"OK M {num_patterns}")
        self.parser.reset()
        self._command("START", "OK START")
        self._streaming_set = pattern_set
        self._last_sequence = None
        self._pending_gap = INTERRUPTED
        self._last_data_at = time.monotonic()

    def _command(self, command: str, expected: str) -> str:
        """Send one command line; return the reply line starting with ``expected``. Lines that are
        not replies (frames still in flight) are skipped until the reply timeout."""
        self._serial.write(command.encode("ascii") + b"\n")
        deadline = time.monotonic() + self.reply_timeout_s
        while time.monotonic() < deadline:
            line = self._serial.read_until(b"\n", 256).strip().decode("ascii", "replace")
            if line.startswith(expected):
                return line
            if line.startswith("ERR"):
                raise DeviceError(f"device refused '{command}': {line}")
        raise DeviceError(f"no reply '{expected}' to '{command}' within {self.reply_timeout_s} s")

    def _on_silence(self) -> None:
        """A read timeout: count it; a device silent for ``stall_restart_s`` is told to restart its
        stream (it may have reset), which drops the frame in progress."""
        self.counters.timeouts += 1
        silent_s = time.monotonic() - self._last_data_at
        if silent_s >= self.stall_restart_s:
            self.last_error = f"no samples for {silent_s:.1f} s: restarting the stream"
            self._streaming_set = None

    def _lose(self, message: str) -> None:
        self.last_error = message
        self._close_port()
        self._backoff_s = min(
            self.reconnect_max_backoff_s, max(self.reconnect_min_backoff_s, 2 * self._backoff_s)
        )
        self._retry_at = time.monotonic() + self._backoff_s

    def _close_port(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (OSError, ValueError):
                pass
        self._serial = None
        self._streaming_set = None
        self._pending_gap = INTERRUPTED
        self.parser.reset()
