"""photodiode_sampler: one detector value per displayed pattern, assembled into measurement frames.

The ``sim`` backend images a scene topic (any camera driver, a bag, scene_source) onto the DMD's
sampling grid and measures it through the photodiode model. The ``serial_adc`` backend reads the
samples a microcontroller streams over serial (lsi_ros.hardware.serial_adc) on a reader thread;
a frame is stamped with the time its first pattern was shown, from the device's own timestamps
mapped onto the host clock (lsi_ros.hardware.frames.DeviceClock); the node keeps running while the
device is absent or reconnecting (ERROR diagnostics). The ``nidaqmx`` backend
(lsi_ros.hardware.nidaq) reads an NI DAQ analog input clocked by the DMD's trigger-out the same
way; without the nidaqmx package or NI's driver it reports ERROR and keeps running. Frames that
are incomplete, out of order, from another pattern set or span missed triggers or a reconnection
are dropped and counted in diagnostics, never published; so is a frame whose values come out empty
or non-finite (lsi_ros.ros.checks). Diagnostics are WARN while drops happened within the last
seconds. A re-announced identical pattern set (a restarted dmd_driver) keeps the frame sequence
numbers and counters going.

With ``framing`` the sampler follows dmd_driver's registration (``framing/applied``): every frame
carries the id of the registration it was measured under (Measurements.registration_id); a frame in
progress when the registration changes, or begun before the change took effect, is dropped and
counted (frames_dropped_registration_change). The sim backend then images the scene onto the whole
field (``field_size`` pixels a side, the DMD's active area) and measures it through the registered
patterns (lsi_ros.framing.measure_field), and measures each probe dmd_driver shows
(``framing/probe_shown``) once, on the latest scene, with one all-off pattern more for the ambient
light, into ``framing/probe_measurements`` (in the model's units, ambient subtracted: one lit sampling
pixel of one channel = 1; ``registration_id`` = the probe's id).

Service ``~/measure_dark`` (std_srvs/Trigger): with the objective covered, averages the next
``dark_frames`` frames into the dark level and read noise of the calibration in use (or of one made
from the photodiode model's nominal parameters), saves it to ``calibration`` when that is set and
answers with the numbers.

Subscribes: ``pattern_set`` (lsi_ros/PatternSetInfo, transient-local), ``scene``
(sensor_msgs/Image, sim backend; best effort, 100 deep). Publishes: ``measurements``
(lsi_ros/Measurements, reliable, 100 deep), ``/diagnostics`` (frame counters; serial_adc: connected,
frames, crc_errors, bytes_skipped, missed_triggers, timeouts, reconnects, last_error).

A lifecycle node (``ros2 lifecycle set /photodiode_sampler <transition>``): configure builds the
detector backend, loads the calibration and subscribes to the pattern set (and the scene); activate
starts sampling (the serial/DAQ reader thread, the continuous trigger); deactivate stops it, and
nothing is published while the node is not active; cleanup closes the port. With ``autostart``
(default) it configures and activates itself.

Parameters: backend, frame_trigger, noise, photon_flux, seed (sim); port, baud_rate,
read_timeout_s, reconnect_max_backoff_s (serial_adc, nidaqmx); daq_channel, daq_clock_source,
daq_start_trigger, daq_range_v, daq_terminal_config (nidaqmx); calibration, dark_frames,
dark_timeout_s, frame_id. With a calibration file (``lsi calibrate``) frames carry photo-electrons
(dark level and ambient subtracted, divided by the gain) instead of raw ADC counts; a file that
cannot be used is reported and raw counts flow.
"""

import threading
from dataclasses import replace

import numpy as np
import torch
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.task import Future
from rclpy.time import Time
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from lsi_ros.hardware import detector_backends, pattern_sources
from lsi_ros.hardware.frames import DeviceClock, FrameAssembler
from lsi_ros.msg import Measurements, PatternSetInfo, Registration
from lsi_ros.optics.calibration import CalibrationError, DetectorCalibration, estimate_dark
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.photodiode import PhotodiodeModel
from lsi_ros.ros import checks, diagnostics, image, lifecycle, node_main, qos
from lsi_ros.ros import registration as framing
from lsi_ros.ros.parameters import Param
from lsi_ros.ros.reference import Topic

TOPICS = (
    Topic("sub", "pattern_set", "lsi_ros/msg/PatternSetInfo", "The set the DMD shows (transient-local)."),
    Topic("sub", "scene", "sensor_msgs/msg/Image", "sim backend: the scene imaged onto the DMD."),
    Topic(
        "pub",
        "measurements",
        "lsi_ros/msg/Measurements",
        "One frame per pass over the patterns, while active.",
    ),
    Topic(
        "sub",
        framing.APPLIED,
        "lsi_ros/msg/Registration",
        "framing: the registration frames are measured under.",
    ),
    Topic("sub", framing.PROBE_SHOWN, "lsi_ros/msg/Registration", "framing, sim: a probe to measure."),
    Topic(
        "pub",
        framing.PROBE_MEASUREMENTS,
        "lsi_ros/msg/Measurements",
        "framing, sim: one frame of each probe, in the model's units.",
    ),
    Topic("srv", "~/measure_dark", "std_srvs/srv/Trigger", "Dark level and read noise, objective covered."),
    Topic("pub", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "Frame counters, link state."),
)

PARAMS = lifecycle.read_at_configure(
    Param("backend", "sim", "Detector backend.", choices=("sim", "serial_adc", "nidaqmx")),
    Param(
        "frame_trigger",
        "per_scene",
        "sim: 'per_scene' measures one frame per scene image (stamped with the scene's stamp); "
        "'continuous' measures the latest scene at the DMD frame rate (pattern rate / M).",
        choices=("per_scene", "continuous"),
    ),
    Param(
        "noise", True, "sim: apply the photodiode noise model (false: noiseless ablation).", applies="live"
    ),
    Param(
        "photon_flux",
        5000.0,
        "sim: expected photo-electrons per fully lit pixel per pattern.",
        min=1e-3,
        max=1e9,
        applies="live",
    ),
    Param("seed", 0, "sim: seed of the detector noise.", min=0, max=2**31 - 1),
    Param(
        "framing",
        False,
        "Tag frames with dmd_driver's registration (framing/applied); sim: measure the whole scene "
        "field through the registered patterns, and the probes.",
    ),
    Param(
        "field_size",
        1024,
        "sim, framing: side in pixels of the field the scene is imaged onto (the DMD's active area; "
        "registrations are independent of it; at least the model's 256-pixel grid).",
        min=256,
        max=8192,
    ),
    Param("port", "/dev/ttyACM0", "serial_adc: serial device path or pyserial URL (rfc2217://, socket://)."),
    Param(
        "baud_rate",
        2_000_000,
        "serial_adc: baud rate of a UART link (USB CDC ignores it).",
        min=9600,
        max=12_000_000,
    ),
    Param(
        "read_timeout_s",
        0.5,
        "serial_adc, nidaqmx: read timeout (nidaqmx: beyond a chunk's M / pattern rate); must exceed "
        "the trigger period (a timeout is counted).",
        min=0.01,
        max=10.0,
    ),
    Param(
        "reconnect_max_backoff_s",
        5.0,
        "serial_adc, nidaqmx: longest wait between reconnection attempts (backoff doubles from 50 ms).",
        min=0.05,
        max=300.0,
    ),
    Param("daq_channel", "Dev1/ai0", "nidaqmx: analog-input channel of the photodiode amplifier."),
    Param(
        "daq_clock_source",
        "/Dev1/PFI0",
        "nidaqmx: terminal wired to the DMD's trigger-out, the external sample clock "
        "(one sample per pattern).",
    ),
    Param(
        "daq_start_trigger",
        "/Dev1/PFI1",
        "nidaqmx: terminal wired to the DMD's frame-start trigger, so sample 0 is pattern 0 "
        "(empty: count patterns from when the task is armed; arm it before the DMD starts).",
    ),
    Param(
        "daq_range_v",
        10.0,
        "nidaqmx: input range ±V; samples at its limits count as saturated.",
        min=0.01,
        max=100.0,
    ),
    Param(
        "daq_terminal_config",
        "DEFAULT",
        "nidaqmx: input terminal configuration.",
        choices=("DEFAULT", "RSE", "NRSE", "DIFF", "PSEUDO_DIFF"),
    ),
    Param(
        "calibration",
        "",
        "Detector calibration JSON from `lsi calibrate` (empty: publish raw ADC counts).",
    ),
    Param(
        "dark_frames",
        50,
        "~/measure_dark: frames averaged into the dark level and read noise (objective covered).",
        min=2,
        max=1_000_000,
        applies="live",
    ),
    Param(
        "dark_timeout_s",
        60.0,
        "~/measure_dark: give up when the frames have not arrived within this time.",
        min=0.1,
        max=3600.0,
        applies="live",
    ),
    Param("frame_id", "lsi_camera", "header.frame_id of the measurement frames.", applies="live"),
    lifecycle.AUTOSTART,
)


class PhotodiodeSampler(lifecycle.ManagedNode):
    def __init__(self, **node_options):
        self.detector = self.assembler = self.calibration = None
        self._reader = self._timer = None
        self._frame_period_s = None
        self._inputs = []
        self._stop_reading = threading.Event()
        super().__init__("photodiode_sampler", PARAMS, **node_options)
        self.rejected_scenes = 0
        self.last_error = ""
        self.device_clock = DeviceClock()
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self.refusals = checks.Refusals(self)
        self._recent_drops = checks.RecentIncrease()
        self._publisher = checks.CheckedPublisher(
            self,
            Measurements,
            "measurements",
            qos.FRAMES,
            self.refusals,
            create=self.create_lifecycle_publisher,
        )
        self._probe_publisher = None
        self._registration = Registration()
        self._probe_forwards = {}
        self.probes_measured = 0
        self._dark_lock = threading.Lock()
        self._dark_frames: list | None = None
        self._dark_done: Future | None = None
        # its own group: the pending call awaits frames the default group's callbacks deliver
        self.create_service(
            Trigger, "~/measure_dark", self._on_measure_dark, callback_group=ReentrantCallbackGroup()
        )
        self.create_timer(1.0, self._report)
        self.autostart()

    def configure(self):
        """Build the detector backend, load the calibration, listen for the pattern set (and scene)."""
        self.detector = self._make_detector()
        self.calibration = self._load_calibration()
        self.device_clock = DeviceClock()
        self._inputs = [
            self.create_subscription(PatternSetInfo, "pattern_set", self._on_pattern_set, qos.LATCHED)
        ]
        if self.config["framing"]:
            self._inputs.append(
                self.create_subscription(Registration, framing.APPLIED, self._on_registration, qos.LATCHED)
            )
            if self.config["backend"] == "sim" and self._probe_publisher is None:
                self._probe_publisher = self.create_lifecycle_publisher(
                    Measurements, framing.PROBE_MEASUREMENTS, qos.RELIABLE
                )
            if self.config["backend"] == "sim":
                self._inputs.append(
                    self.create_subscription(Registration, framing.PROBE_SHOWN, self._on_probe, qos.RELIABLE)
                )
        if self.config["backend"] == "sim":
            self._inputs.append(self.create_subscription(Image, "scene", self._on_scene, qos.SCENES_IN))

    def activate(self):
        if self.config["backend"] != "sim":
            self._stop_reading.clear()
            self._reader = threading.Thread(target=self._read_samples, name="detector_reader", daemon=True)
            self._reader.start()
        self._start_trigger()

    def deactivate(self):
        self._stop_reading.set()
        if self._reader is not None:
            self._reader.join(timeout=5.0)
            self._reader = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def cleanup(self):
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        if self.config["backend"] != "sim":
            self.detector.close()
        self.detector = self.assembler = self.calibration = None

    def apply_parameters(self, changes: dict):
        """noise, photon_flux: the simulated photodiode takes the new model from its next frame."""
        if (
            {"noise", "photon_flux"} & changes.keys()
            and self.config["backend"] == "sim"
            and self.detector is not None
        ):
            self.detector.model = self._photodiode_model(self.config | changes)

    @staticmethod
    def _photodiode_model(config: dict) -> PhotodiodeModel:
        if not config["noise"]:
            return PhotodiodeModel.noiseless()
        return PhotodiodeModel().with_photon_flux(config["photon_flux"])

    def _make_detector(self):
        backend = detector_backends()[self.config["backend"]]
        if self.config["backend"] == "sim":
            torch.set_num_threads(1)  # one frame is one small product; more threads only contend
            side = self.config["field_size"]
            return backend(
                model=self._photodiode_model(self.config),
                seed=self.config["seed"],
                field_shape=(side, side) if self.config["framing"] else None,
            )
        if self.config["backend"] == "nidaqmx":
            return backend(
                channel=self.config["daq_channel"],
                clock_source=self.config["daq_clock_source"],
                start_trigger=self.config["daq_start_trigger"],
                range_v=self.config["daq_range_v"],
                terminal_config=self.config["daq_terminal_config"],
                read_timeout_s=self.config["read_timeout_s"],
                reconnect_max_backoff_s=self.config["reconnect_max_backoff_s"],
            )
        return backend(
            port=self.config["port"],
            baud_rate=self.config["baud_rate"],
            read_timeout_s=self.config["read_timeout_s"],
            reconnect_max_backoff_s=self.config["reconnect_max_backoff_s"],
        )

    def _load_calibration(self) -> DetectorCalibration | None:
        if not self.config["calibration"]:
            return None
        try:
            return DetectorCalibration.load(self.config["calibration"])
        except CalibrationError as error:
            self._fail(f"calibration not applied, publishing raw ADC counts: {error}")
            return None

    def _on_pattern_set(self, info: PatternSetInfo):
        try:
            pattern_set = pattern_sources.load_announced(info.pattern_set_id, info.uri)
        except (ValueError, OSError) as error:
            self._fail(f"cannot use announced pattern set {info.pattern_set_id}: {error}")
            return
        if self.config["backend"] == "nidaqmx":
            self.detector.set_pattern_rate(info.pattern_rate_hz)
        self.detector.set_pattern_set(pattern_set)
        if self.assembler is None or self.assembler.pattern_set_id != pattern_set.pattern_set_id:
            self.assembler = FrameAssembler(pattern_set.pattern_set_id, pattern_set.num_patterns)
            self._follow_registration()
        self.get_logger().info(
            f"sampling pattern set {pattern_set.pattern_set_id} (M = {pattern_set.num_patterns})"
        )
        self._frame_period_s = pattern_set.num_patterns / info.pattern_rate_hz
        if self.active:
            self._start_trigger()

    def _on_registration(self, msg: Registration):
        """framing: the registration dmd_driver shows the model's set with from now on."""
        try:
            framing.from_msg(msg)
        except ValueError as error:
            self._fail(f"announced registration {msg.registration_id} ignored: {error}")
            return
        self._registration = msg
        self._follow_registration()

    def _follow_registration(self):
        msg = self._registration
        if self.config["backend"] == "sim":
            # measured at once on the latest scene: no frame can straddle, whatever its scene's stamp
            self.detector.registration = framing.from_msg(msg) if msg.scale > 0 else None
            since_ns = 0
        else:
            since_ns = Time.from_msg(msg.header.stamp).nanoseconds
        if self.assembler is not None:
            self.assembler.change_registration(msg.registration_id, since_ns)

    def _on_probe(self, msg: Registration):
        """framing, sim: one frame of the probe dmd_driver shows, on the latest scene."""
        if not self.active or self.detector.scene is None:
            return
        try:
            forward = self._probe_forwards.get(msg.pattern_set_id)
            if forward is None:
                pattern_set = pattern_sources.load_announced(msg.pattern_set_id, msg.uri)
                forward = self._probe_forwards[msg.pattern_set_id] = ForwardModel(pattern_set, np.float32)
            counts, dark = self.detector.measure_probe(forward, framing.from_msg(msg))
        except (ValueError, OSError) as error:
            self._fail(f"probe {msg.registration_id} not measured: {error}")
            return
        model = self.detector.model
        out = Measurements(
            pattern_set_id=msg.pattern_set_id,
            registration_id=msg.registration_id,
            sequence=self.probes_measured,
            values=(model.to_ideal(counts) - model.to_ideal(dark)).astype(np.float32),
            saturated_count=int(np.count_nonzero(counts >= self.detector.model.full_scale)),
        )
        out.header = msg.header
        self._probe_publisher.publish(out)
        self.probes_measured += 1

    def _start_trigger(self):
        """sim, continuous: measure the latest scene at the DMD frame rate."""
        sim_continuous = self.config["backend"] == "sim" and self.config["frame_trigger"] == "continuous"
        if not sim_continuous or self._frame_period_s is None:
            return
        if self._timer is not None:
            self.destroy_timer(self._timer)
        self._timer = self.create_timer(self._frame_period_s, self._measure_now)

    def _on_scene(self, msg: Image):
        if self.assembler is None or not self.active:
            return
        try:
            self.detector.set_scene(image.to_rgb_float(msg))
        except image.ImageEncodingError as error:
            self.rejected_scenes += 1
            self._fail(f"scene rejected: {error}")
            return
        if self.config["frame_trigger"] == "per_scene":
            self._measure(Time.from_msg(msg.header.stamp).nanoseconds)

    def _measure_now(self):
        if self.detector.scene is not None:
            self._measure(self.get_clock().now().nanoseconds)

    def _measure(self, stamp_ns: int):
        try:
            samples = list(self.detector.acquire_frame())
        except ValueError as error:  # a field the registered patterns cannot measure
            self._fail(f"frame not measured: {error}")
            return
        for sample in samples:
            frame = self.assembler.add(sample, stamp_ns)
            if frame is not None:
                self._publish(frame)

    def _read_samples(self):
        """serial_adc, nidaqmx: feed every arriving sample to the current assembler (the detector blocks at
        most a read timeout, reconnects by itself and never raises)."""
        while not self._stop_reading.is_set():
            assembler = self.assembler
            for sample in self.detector.acquire_frame():
                if assembler is None or assembler is not self.assembler:
                    break
                stamp_ns = self.device_clock.stamp(sample, self.get_clock().now().nanoseconds)
                frame = assembler.add(sample, stamp_ns)
                if frame is None:
                    continue
                try:
                    self._publish(frame)
                except RuntimeError:  # rclpy's RCLError once Ctrl-C has shut the context down
                    if self.context.ok():
                        raise
                    return

    def destroy_node(self):
        self.release()
        return super().destroy_node()

    async def _on_measure_dark(self, request, response):
        """Average the next ``dark_frames`` raw frames (the operator has covered the objective) into
        the dark level and read noise of the calibration in use; save it where it was loaded from."""
        if self.assembler is None:
            response.message = "no pattern set announced yet: no frames to measure"
            return response
        with self._dark_lock:
            if self._dark_done is not None:
                response.message = "a dark measurement is already running"
                return response
            done = self._dark_done = Future()
            self._dark_frames = []
        timer = self.create_timer(self.config["dark_timeout_s"], self._end_dark_collection)
        try:
            frames = await done
        finally:
            self.destroy_timer(timer)
            with self._dark_lock:
                self._dark_done = self._dark_frames = None
        if frames is None:
            response.message = (
                f"no {self.config['dark_frames']} frames within {self.config['dark_timeout_s']} s: "
                "is the DMD running (and, sim, a scene arriving)?"
            )
            return response
        try:
            response.message = self._apply_dark(np.stack(frames))
        except (CalibrationError, OSError) as error:
            response.message = f"dark measurement failed: {error}"
            self._fail(response.message)
            return response
        response.success = True
        self.get_logger().info(response.message)
        return response

    def _apply_dark(self, counts: np.ndarray) -> str:
        calibration = self.calibration
        if calibration is None:
            # nominal model parameters; the stray light a covered camera still sees goes into the
            # dark level, so the ambient offset starts at 0 until `lsi calibrate` measures it
            model = self.detector.model if self.config["backend"] == "sim" else PhotodiodeModel()
            calibration = replace(
                DetectorCalibration.from_model(model, source="photodiode_sampler"), ambient=0.0
            )
        dark = estimate_dark(counts, calibration.gain, calibration.uncertainties.get("gain", 0.0))
        frames, patterns = counts.shape
        calibration = calibration.with_dark(
            dark, f"dark: {frames} frames x {patterns} patterns, objective covered (~/measure_dark)"
        )
        saved = ""
        if self.config["calibration"]:
            saved = f", saved to {calibration.save(self.config['calibration'])}"
        self.calibration = calibration
        return (
            f"dark level {dark.dark_level:.3f} ± {dark.dark_level_se:.3f} counts, read noise "
            f"{dark.read_noise:.1f} ± {dark.read_noise_se:.1f} e- ({frames} frames x {patterns} patterns)"
            f"{saved}"
        )

    def _end_dark_collection(self) -> None:
        with self._dark_lock:
            if self._dark_done is not None and not self._dark_done.done():
                self._dark_done.set_result(None)

    def _collect_dark(self, values: np.ndarray) -> None:
        with self._dark_lock:
            if self._dark_frames is None or self._dark_done.done():
                return
            self._dark_frames.append(np.array(values, dtype=np.float64))
            if len(self._dark_frames) >= self.config["dark_frames"]:
                self._dark_done.set_result(self._dark_frames)

    def _publish(self, frame):
        self._collect_dark(frame.values)
        values = frame.values if self.calibration is None else self.calibration.calibrate_frame(frame.values)
        msg = Measurements(
            pattern_set_id=frame.pattern_set_id,
            sequence=frame.sequence,
            values=np.asarray(values, dtype=np.float32),
            saturated_count=frame.saturated_count,
            dropped_count=0,
            registration_id=frame.registration_id,
        )
        msg.header.stamp = Time(nanoseconds=frame.stamp_ns).to_msg()
        msg.header.frame_id = self.config["frame_id"]
        self._publisher.publish(msg, checks.describe(msg.header, frame.sequence), values=msg.values)

    def _fail(self, message: str):
        self.last_error = message
        self.get_logger().warning(message, throttle_duration_sec=5.0)

    def _report(self):
        if self.detector is None:
            level = diagnostics.ERROR if self.error else diagnostics.WARN
            self._diagnostics.publish(
                level, self.error or "unconfigured", {"lifecycle_state": "unconfigured"}
            )
            return
        values = {
            "lifecycle_state": self.state_label(),
            "rejected_scenes": self.rejected_scenes,
            "calibration": (self.config["calibration"] or "measured dark (~/measure_dark), not saved")
            if self.calibration
            else "none (raw ADC counts)",
            **self.detector.status(),
        }
        if self.device_clock.offset_ns is not None:
            values["device_clock_offset_s"] = f"{self.device_clock.offset_ns * 1e-9:.6f}"
        if not values.get("connected", True):
            where = values.get("port") or values.get("channel")
            message = f"detector not connected ({where}): {values['last_error'] or 'connecting'}"
            self._diagnostics.publish(diagnostics.ERROR, message, values)
            return
        if not self.active:
            self._diagnostics.publish(diagnostics.WARN, "inactive: not sampling", values)
            return
        if self.assembler is None:
            self._diagnostics.publish(diagnostics.WARN, "waiting for a pattern set", values)
            return
        counters = self.assembler.counters
        values |= {
            "frames_published": counters.published,
            "frames_dropped_incomplete": counters.dropped_incomplete,
            "frames_dropped_out_of_order": counters.dropped_out_of_order,
            "frames_dropped_foreign_pattern_set": counters.dropped_foreign_pattern_set,
            "frames_dropped_invalid_value": counters.dropped_invalid_value,
            "frames_dropped_missed_trigger": counters.dropped_missed_trigger,
            "frames_dropped_interrupted": counters.dropped_interrupted,
            **(
                {
                    "frames_dropped_registration_change": counters.dropped_registration_change,
                    "registration_id": self._registration.registration_id,
                    "probes_measured": self.probes_measured,
                }
                if self.config["framing"]
                else {}
            ),
            **self.refusals.values(),
        }
        calibration_failed = bool(self.config["calibration"]) and self.calibration is None
        recent_drops = self._recent_drops(counters.dropped + self.rejected_scenes) + self.refusals.recent()
        level = diagnostics.WARN if recent_drops or calibration_failed else diagnostics.OK
        self._diagnostics.publish(level, self.last_error or "sampling", values)


def main(args=None):
    return node_main.run(PhotodiodeSampler, args)
