"""A simulated serial-ADC microcontroller on a pseudo-terminal, for trying the ``serial_adc`` backend
and the photodiode_sampler node without hardware.

It speaks docs/serial_adc_protocol.md on the master side of a pty; the host opens the slave
through a stable symlink with pyserial exactly as it would open /dev/ttyACM0 (the link moves to
the new pty when the device comes back after a disconnect, as a re-enumerated USB device keeps
its name). The "photodiode" is the optics core: the scene on the DMD's sampling grid through the
pattern set's ForwardModel and the PhotodiodeModel, a fresh noise draw per pass, at a pattern rate.
Faults can be injected: garbage bytes, corrupted frames, dropped triggers, and the device vanishing
mid-frame and coming back.

    python -m lsi_ros.hardware.serial_adc_device --patterns model:m32
"""

import argparse
import fcntl
import os
import select
import signal
import sys
import tempfile
import termios
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsi_ros.hardware.serial_adc import (
    IDENTITY_PREFIX,
    MAX_PATTERNS,
    PROTOCOL_VERSION,
    AdcFrame,
    encode_frame,
)
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.objective import scene_on_dmd
from lsi_ros.optics.photodiode import PhotodiodeModel

OUTPUT_BUFFER_LIMIT = 64 * 1024
FIRMWARE = "pty-sim-1"


@dataclass
class DeviceCounters:
    triggers: int = 0
    frames_sent: int = 0
    triggers_dropped: int = 0
    frames_corrupted: int = 0
    garbage_bytes: int = 0
    overflow_drops: int = 0
    disconnects: int = 0


@dataclass
class FaultRates:
    """Random faults per trigger (command-line use); tests schedule faults explicitly."""

    garbage: float = 0.0
    drop: float = 0.0


class SimulatedSerialAdc:
    """The device; ``start()`` returns the port path to open. ``passes`` records, per pass over the
    pattern set, the trigger sequence number of pattern 0 and the ADC values the device computed;
    ``vanished_in_passes`` the passes a disconnect cut short."""

    def __init__(
        self,
        pattern_set,
        scene_rgb: np.ndarray,
        model: PhotodiodeModel | None = None,
        pattern_rate_hz: float = 1000.0,
        seed: int = 0,
        link: str | os.PathLike | None = None,
        faults: FaultRates | None = None,
    ):
        self.pattern_set = pattern_set
        self.model = model or PhotodiodeModel()
        self.ideal = ForwardModel(pattern_set).measure(scene_on_dmd(scene_rgb, pattern_set.resolution[0]))
        self.period_s = 1.0 / pattern_rate_hz
        self.rng = np.random.default_rng(seed)
        self.fault_rng = np.random.default_rng(seed + 1)
        self.faults = faults or FaultRates()
        if link is None:
            link = Path(tempfile.mkdtemp(prefix="lsi_serial_adc_")) / "ttyADC"
        self.link = Path(link)
        self.counters = DeviceCounters()
        # its micros() epoch: powered up a while ago, on its own clock (not the host's)
        self._powered_at = time.monotonic() - float(np.random.default_rng(seed + 2).uniform(0, 3600))
        self.passes: list[tuple[int, np.ndarray]] = []
        self.vanished_in_passes: list[int] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = None
        self._master = self._slave = None
        self._back_at = 0.0
        self._out = bytearray()
        self._commands = bytearray()
        self._reset_state()
        self._garbage_pending = 0
        self._corrupt_pending = 0
        self._drop_pending = 0
        self._drop_at: int | None = None
        self._disconnect_at: int | None = None
        self._downtime_s = 0.0
        self._paused_until = 0.0

    @property
    def port(self) -> str:
        return str(self.link)

    @property
    def connected(self) -> bool:
        return self._master is not None

    def start(self) -> str:
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name="serial_adc_device", daemon=True)
        self._thread.start()
        return self.port

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._close_pty()

    # Fault injection: applied by the device thread at the next trigger(s).

    def inject_garbage(self, num_bytes: int) -> None:
        with self._lock:
            self._garbage_pending += num_bytes

    def corrupt_frames(self, count: int) -> None:
        """Flip a bit in the next ``count`` frames (the host sees CRC errors)."""
        with self._lock:
            self._corrupt_pending += count

    def drop_triggers(self, count: int, at_index: int | None = None) -> None:
        """Send no frame for ``count`` consecutive triggers (the trigger count still advances),
        starting at the next trigger showing pattern ``at_index`` (or the next trigger)."""
        with self._lock:
            self._drop_pending, self._drop_at = count, at_index

    def pause_triggers(self, duration_s: float) -> None:
        """The DMD stops triggering for a while (the device stays connected and silent)."""
        with self._lock:
            self._paused_until = time.monotonic() + duration_s

    def disconnect(self, at_index: int | None = None, downtime_s: float = 0.5) -> None:
        """Vanish (close the pty, remove the link) right after sending the frame of pattern
        ``at_index`` (or now), and come back as a freshly reset device after ``downtime_s``."""
        with self._lock:
            self._disconnect_at, self._downtime_s = (-1 if at_index is None else at_index), downtime_s

    def _reset_state(self) -> None:
        self.num_patterns = 0
        self.streaming = False
        self.sequence = 0
        self.index = 0
        self._values = self._saturated = None
        self._next_trigger = 0.0

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        tmp = self.link.with_name(self.link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.link)
        self._master, self._slave = master, slave
        self._out.clear()
        self._commands.clear()
        self._reset_state()

    def _close_pty(self) -> None:
        self.link.unlink(missing_ok=True)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def _run(self) -> None:
        while not self._closing.is_set():
            if self._master is None:
                if time.monotonic() < self._back_at:
                    time.sleep(0.01)
                    continue
                self._open_pty()
            if self._disconnect_at == -1:
                self._vanish()
                continue
            wait = min(0.02, max(0.0, self._next_trigger - time.monotonic())) if self.streaming else 0.02
            writable = [self._master] if self._out else []
            readable, writable, _ = select.select([self._master], writable, [], wait)
            if readable:
                self._read_commands()
            if self.streaming:
                self._emit_due_triggers()
            self._flush()

    def _read_commands(self) -> None:
        try:
            self._commands += os.read(self._master, 4096)
        except BlockingIOError:
            return
        while b"\n" in self._commands:
            line, _, rest = bytes(self._commands).partition(b"\n")
            self._commands[:] = rest
            reply = self._execute(line.decode("ascii", "replace").strip())
            self._out += reply.encode("ascii") + b"\n"

    def _execute(self, command: str) -> str:
        verb, _, argument = command.partition(" ")
        if verb == "IDN?":
            adc_bits = self.model.adc_bits or 32
            return f"{IDENTITY_PREFIX},{PROTOCOL_VERSION},{FIRMWARE},{adc_bits}"
        if verb == "STOP":
            self.streaming = False
            return "OK STOP"
        if verb == "M":
            if self.streaming:
                return "ERR busy: STOP first"
            if not argument.isdigit() or not 1 <= int(argument) <= MAX_PATTERNS:
                return f"ERR M must be 1..{MAX_PATTERNS}"
            if int(argument) != self.pattern_set.num_patterns:
                return f"ERR M {argument}: the simulated DMD shows {self.pattern_set.num_patterns} patterns"
            self.num_patterns = int(argument)
            return f"OK M {self.num_patterns}"
        if verb == "START":
            if not self.num_patterns:
                return "ERR set M first"
            self.streaming, self.sequence, self.index = True, 0, 0
            self._next_trigger = time.monotonic()
            return "OK START"
        return f"ERR unknown command '{command}'"

    def _emit_due_triggers(self) -> None:
        now = time.monotonic()
        if now < self._paused_until:
            self._next_trigger = self._paused_until
            return
        if now - self._next_trigger > 1.0:  # stalled (machine busy): skip, like a DMD we never saw
            self._next_trigger = now
        while self.streaming and self._master is not None and self._next_trigger <= now:
            self._trigger(self._next_trigger)
            self._next_trigger += self.period_s

    def _trigger(self, at: float) -> None:
        """The trigger due at monotonic time ``at``: stamped then by the device's own clock, which
        started at its power-up (``micros()``), whenever the host gets around to reading it."""
        index = self.index
        if index == 0:
            counts = self.model.sample(self.ideal, self.rng).counts
            self._values = np.clip(np.rint(counts), 0, 2**32 - 1).astype(np.uint32)
            self._saturated = counts >= self.model.full_scale
            self.passes.append((self.sequence, self._values))
        frame = AdcFrame(
            pattern_index=index,
            trigger_sequence=self.sequence,
            device_time_us=int((at - self._powered_at) * 1e6) % 2**32,
            adc_value=int(self._values[index]),
            saturated=bool(self._saturated[index]),
        )
        self.counters.triggers += 1
        self.sequence += 1
        self.index = (index + 1) % self.num_patterns
        with self._lock:
            drop = self._drop_pending > 0 and self._drop_at in (None, index)
            if drop:
                self._drop_pending -= 1
                self._drop_at = None
            garbage, self._garbage_pending = self._garbage_pending, 0
            corrupt = self._corrupt_pending > 0 and not drop
            self._corrupt_pending -= int(corrupt)
            disconnect = self._disconnect_at in (-1, index)
        garbage += int(self.fault_rng.integers(1, 20)) if self.fault_rng.random() < self.faults.garbage else 0
        drop = drop or self.fault_rng.random() < self.faults.drop
        if garbage:
            self._send(self.fault_rng.integers(0, 256, garbage, dtype=np.uint8).tobytes())
            self.counters.garbage_bytes += garbage
        if drop:
            self.counters.triggers_dropped += 1
        else:
            data = bytearray(encode_frame(frame))
            if corrupt:
                data[12] ^= 0x10
                self.counters.frames_corrupted += 1
            if self._send(bytes(data)):
                self.counters.frames_sent += 1
        if disconnect:
            self._vanish()

    def _send(self, data: bytes) -> bool:
        """Queue bytes for the host; a host that stops reading loses frames, not the device."""
        if len(self._out) + len(data) > OUTPUT_BUFFER_LIMIT:
            self.counters.overflow_drops += 1
            return False
        self._out += data
        return True

    def _flush(self) -> None:
        if self._master is None or not self._out:
            return
        try:
            written = os.write(self._master, self._out)
        except BlockingIOError:
            return
        del self._out[:written]

    def _vanish(self) -> None:
        """Deliver what was sent (give the host up to 1 s to read it), then disappear."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            self._flush()
            pending = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
            if not self._out and int.from_bytes(pending, sys.byteorder) == 0:
                break
            time.sleep(0.002)
        with self._lock:
            self._disconnect_at = None
            self._back_at = time.monotonic() + self._downtime_s
            self._powered_at = self._back_at  # it comes back from a reset: micros() starts at 0
        self.counters.disconnects += 1
        if self.streaming:
            self.vanished_in_passes.append(len(self.passes) - 1)
        self._close_pty()
        self._reset_state()


def _scene(spec: str) -> np.ndarray:
    import cv2

    if spec == "portrait":
        from lsi_ros.scenes import portrait_faces

        return next(portrait_faces())[1].astype(np.float32) / 255.0
    bgr = cv2.imread(spec, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read scene image {spec}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lsi_ros.hardware.serial_adc_device",
        description="A simulated serial-ADC photodiode on a pseudo-terminal. Prints the port to give "
        "photodiode_sampler (backend:=serial_adc port:=<path>); runs until Ctrl-C.",
    )
    parser.add_argument(
        "--patterns",
        required=True,
        help="the pattern set the (simulated) DMD shows, as dmd_driver's pattern_set: model:m32, "
        "hadamard-split:128, a .safetensors file; must be the one the node is told about",
    )
    parser.add_argument("--resolution", type=int, default=256, help="resolution of generated pattern sets")
    parser.add_argument("--scene", default="portrait", help="'portrait' (the astronaut's face) or an image")
    parser.add_argument("--pattern-rate-hz", type=float, default=1000.0, help="triggers per second")
    parser.add_argument("--photon-flux", type=float, default=5000.0, help="photo-electrons per lit pixel")
    parser.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True, help="detector noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--link", help="path of the port symlink (default: a new temporary folder)")
    parser.add_argument("--garbage-rate", type=float, default=0.0, help="probability of garbage per trigger")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="probability of a dropped trigger")
    parser.add_argument("--disconnect-every", type=float, default=0.0, help="vanish every S s (0: never)")
    parser.add_argument("--downtime", type=float, default=1.0, help="seconds gone after each disconnect")
    args = parser.parse_args(argv)

    from lsi_ros.hardware import pattern_sources

    pattern_set, _ = pattern_sources.resolve(args.patterns, args.resolution)
    model = PhotodiodeModel().with_photon_flux(args.photon_flux)
    if not args.noise:
        model = PhotodiodeModel.noiseless()
    device = SimulatedSerialAdc(
        pattern_set,
        _scene(args.scene),
        model,
        pattern_rate_hz=args.pattern_rate_hz,
        seed=args.seed,
        link=args.link,
        faults=FaultRates(garbage=args.garbage_rate, drop=args.drop_rate),
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = device.start()
    print(f"serial ADC on {port} (M = {pattern_set.num_patterns}, {args.pattern_rate_hz:g} Hz)", flush=True)
    node = "ros2 run lsi_ros photodiode_sampler --ros-args -p backend:=serial_adc"
    print(f"  {node} -p port:={port}", flush=True)
    try:
        while True:
            if args.disconnect_every > 0:
                time.sleep(args.disconnect_every)
                middle = int(device.fault_rng.integers(1, max(2, pattern_set.num_patterns)))
                device.disconnect(at_index=middle, downtime_s=args.downtime)
            else:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:  # also on SIGTERM: the link is removed
        device.close()
        print(f"stopped: {device.counters}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
