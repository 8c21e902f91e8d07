"""dmd_driver: loads a pattern set, sequences it on the DMD backend, announces it to the pipeline.

Backends (``backend``): ``sim`` (simulated DMD), ``dlpc900`` (TI LightCrafter 6500/9000 over USB HID;
``exposure_us``, ``dark_time_us``, ``trigger_out``, ``usb_path``/``usb_serial``), ``alp4`` (ViALUX
ALP-4 through ALP4lib; ``alp_version``, ``alp_lib_dir``), ``video`` (24 patterns per RGB frame on a
display output or into an image folder; ``video_output``).

With ``calibration`` (a JSON file from ``lsi calibrate``) the patterns are moved and scaled onto the
scene by its measured registration (shift, scale; lsi_ros.optics.dmd.GridRegistration); the announced
pattern set is unchanged, because the measurements still mean the same scene points. A calibration
that cannot be read or used is reported (ERROR) and the patterns are shown unregistered.

With ``framing`` (``framing:=auto`` in the launch files) the registration also comes live, from
``framing/registration`` (lsi_ros/Registration; face_locator sends it, ``ros2 topic pub`` works too):
the model's patterns are shown moved, scaled and turned onto that part of the scene field (after the
calibration's registration), to the nearest mirror. The pattern set and its announcement stay as they
are; each registration put on the DMD gets the next id and is announced on ``framing/applied``
(transient-local), stamped when it took effect; the sampler tags every frame with the id it was
measured under. A request that cannot be shown (bad numbers, grid off the mirror array) is refused,
counted and reported (WARN), and the registration on display stays; a grid partly off the mirror
array is shown where it has mirrors (the scene field lies inside the array). ``framing/probe`` asks for one
pass of another set (face_locator's Hadamard patterns), registered as the request says: it is shown,
announced on ``framing/probe_shown`` and the model's set comes back with its registration.

Publishes: ``pattern_set`` (lsi_ros/PatternSetInfo, transient-local: late joiners get it, sent once
the backend displays the set), ``/diagnostics``. A pattern set that cannot be loaded fails the
configure transition, is reported (ERROR) and the node keeps running, so a fixed file or parameter
is taken by configuring again (``ros2 lifecycle set /dmd_driver configure``) without restarting the
robot. A device that is absent, refuses a command or is lost while displaying is reported
(ERROR) and retried on a timer, the delay doubling up to ``retry_max_s``.

A lifecycle node (``ros2 lifecycle set /dmd_driver <transition>``): configure opens the backend,
loads the pattern set and uploads it; activate starts the sequence and announces it; deactivate
stops the sequence; cleanup releases the device. With ``autostart`` (default) it configures and
activates itself, so a plain ``ros2 run`` or launch file starts it displaying.
"""

import time
from dataclasses import replace

from lsi_ros.hardware import HardwareError, pattern_sources, projector_backends
from lsi_ros.msg import PatternSetInfo, Registration
from lsi_ros.optics import dmd as dmd_geometry
from lsi_ros.optics.calibration import CalibrationError, DetectorCalibration
from lsi_ros.ros import diagnostics, lifecycle, node_main, qos
from lsi_ros.ros import registration as framing
from lsi_ros.ros.parameters import Param, ParameterError
from lsi_ros.ros.reference import Topic

BACKEND_PARAMS = {
    "sim": (),
    "dlpc900": ("exposure_us", "dark_time_us", "trigger_out", "usb_path", "usb_serial"),
    "alp4": ("alp_version", "alp_lib_dir"),
    "video": ("video_output",),
}

TOPICS = (
    Topic(
        "pub",
        "pattern_set",
        "lsi_ros/msg/PatternSetInfo",
        "The set on display (transient-local), sent on activation.",
    ),
    Topic(
        "sub",
        framing.REQUEST,
        "lsi_ros/msg/Registration",
        "framing: the registration to show the model's set with, applied live.",
    ),
    Topic("sub", framing.PROBE, "lsi_ros/msg/Registration", "framing: show one pass of this set."),
    Topic(
        "pub",
        framing.APPLIED,
        "lsi_ros/msg/Registration",
        "framing: the registration on display and its id (transient-local).",
    ),
    Topic("pub", framing.PROBE_SHOWN, "lsi_ros/msg/Registration", "framing: a probe is on the DMD now."),
    Topic(
        "pub", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "Device state, registration, errors."
    ),
)

PARAMS = lifecycle.read_at_configure(
    Param("backend", "sim", "DMD backend.", choices=tuple(BACKEND_PARAMS)),
    Param(
        "device",
        "DLP6500",
        "Mirror array the patterns are placed on.",
        choices=tuple(dmd_geometry.MIRROR_ARRAYS),
    ),
    Param(
        "pattern_set",
        "hadamard-split:128",
        "A pattern-set file (.safetensors) or a generated family: hadamard-split:<P>, "
        "hadamard-reference:<P>, bernoulli:<P>[:seed].",
    ),
    Param("resolution", 256, "Sampling resolution of generated pattern sets.", min=8, max=1024),
    Param("pattern_rate_hz", 9500.0, "Binary pattern rate of the DMD.", min=1.0, max=50000.0),
    Param("cache_dir", "", "Where generated pattern sets are written (empty: ~/.cache/lsi_ros/patterns)."),
    Param(
        "calibration",
        "",
        "Calibration JSON from `lsi calibrate`: its registration moves the patterns onto the scene "
        "(empty: none).",
    ),
    Param(
        "framing",
        False,
        "Take registrations live from framing/registration and probes from framing/probe "
        "(false: the calibration's registration only).",
    ),
    Param("frame_id", "lsi_camera", "header.frame_id of the announcement."),
    Param(
        "exposure_us",
        0,
        "dlpc900: exposure per pattern in µs (0: 1e6 / pattern_rate_hz - dark_time_us).",
        min=0,
        max=2**24 - 1,
    ),
    Param("dark_time_us", 0, "dlpc900: dark time after each pattern in µs.", min=0, max=2**24 - 1),
    Param("trigger_out", True, "dlpc900: trigger outputs pulse with every pattern (clocks the ADC)."),
    Param("usb_path", "", "dlpc900: hidapi device path (empty: the first DLPC900, USB 0451:c900)."),
    Param("usb_serial", "", "dlpc900: USB serial number of the controller (empty: any)."),
    Param("alp_version", "4.3", "alp4: ALP API version of the ViALUX library."),
    Param("alp_lib_dir", "", "alp4: folder of the ViALUX ALP library (empty: ALP4lib's default)."),
    Param(
        "video_output",
        "folder:~/.cache/lsi_ros/video_frames",
        "video: 'display' (full-screen window, needs a GUI OpenCV) or 'folder:<path>' (PNG frames).",
    ),
    Param(
        "retry_max_s",
        30.0,
        "Longest delay between retries of an absent or failing device.",
        min=1.0,
        max=3600.0,
        applies="live",
    ),
    lifecycle.AUTOSTART,
)


class DmdDriver(lifecycle.ManagedNode):
    def __init__(self, **node_options):
        self.projector = None  # destroy_node runs even when a bad parameter stops the constructor
        super().__init__("dmd_driver", PARAMS, **node_options)
        self._diagnostics = diagnostics.DiagnosticsReporter(self, hardware_id=self.config["device"])
        # latched metadata, sent on activation: a plain publisher keeps it for late joiners
        self._publisher = self.create_publisher(PatternSetInfo, "pattern_set", qos.LATCHED)
        self.pattern_set = self.path = None
        self.uploaded = False
        self.registration = dmd_geometry.GridRegistration()
        self.registration_error = ""
        self.framing = dmd_geometry.GridRegistration()  # the live registration on the scene field
        self.framing_msg = framing.to_msg(None)
        self.framing_counters = dict.fromkeys(
            ("registrations_applied", "registrations_refused", "probes_shown", "probes_refused"), 0
        )
        self.framing_error = ""
        self._framing_inputs = []  # framing's subscriptions and publishers, made at configure
        self._retry_delay = 0.0
        self._retry_at = None
        self.create_timer(1.0, self._report)
        self.create_timer(0.25, self._retry)
        self.autostart()

    def configure(self):
        """Open the backend, load the pattern set and upload it (an absent device: retried)."""
        backend = self.config["backend"]
        options = {name: self.config[name] for name in BACKEND_PARAMS[backend]}
        try:
            self.projector = projector_backends()[backend](
                device=self.config["device"], pattern_rate_hz=self.config["pattern_rate_hz"], **options
            )
        except ValueError as error:
            raise ParameterError(f"backend '{backend}': {error}") from error
        try:
            self.pattern_set, self.path = pattern_sources.resolve(
                self.config["pattern_set"], self.config["resolution"], self.config["cache_dir"] or None
            )
        except (ValueError, OSError) as error:
            raise lifecycle.TransitionError(
                f"cannot display pattern set '{self.config['pattern_set']}': {error}"
            ) from error
        self.uploaded = False
        if self.config["framing"] and not self._framing_inputs:
            self._applied = self.create_publisher(Registration, framing.APPLIED, qos.LATCHED)
            self._probe_shown = self.create_publisher(Registration, framing.PROBE_SHOWN, qos.RELIABLE)
            self._framing_inputs = [
                self._applied,
                self._probe_shown,
                self.create_subscription(Registration, framing.REQUEST, self._on_registration, qos.RELIABLE),
                self.create_subscription(Registration, framing.PROBE, self._on_probe, qos.RELIABLE),
            ]
        self._bring_up()

    def activate(self):
        self._bring_up()

    def deactivate(self):
        self._retry_at = None
        self._stop_projector()

    def cleanup(self):
        self._retry_at = None
        self._stop_projector()
        close = getattr(self.projector, "close", None)
        if close is not None:
            close()
        self.projector = self.pattern_set = self.path = None
        self.uploaded = False
        for endpoint in self._framing_inputs:
            if endpoint in self.subscriptions:
                self.destroy_subscription(endpoint)
            else:
                self.destroy_publisher(endpoint)
        self._framing_inputs = []

    def _stop_projector(self):
        try:
            if self.projector is not None:
                self.projector.stop()
        except HardwareError as error:
            self.get_logger().warning(f"could not stop the DMD: {error}")

    def _bring_up(self):
        """Upload the set if it is not on the device, and, when active, start it and announce it; a
        device that is absent or refuses is retried on the timer."""
        self._retry_at = None
        try:
            if not self.uploaded:
                total = framing.compose(self._registration(self.pattern_set), self.framing)
                self.projector.upload(self.pattern_set, total, partial=not self.framing.is_identity)
                self.uploaded = True
            if self.active:
                self.projector.start()
        except HardwareError as error:
            self.uploaded = False
            self._schedule_retry(str(error))
            return
        except (ValueError, OSError) as error:
            raise lifecycle.TransitionError(
                f"cannot display pattern set '{self.config['pattern_set']}': {error}"
            ) from error
        self.error, self._retry_delay = "", 0.0
        if self.active:
            self._announce()

    def _announce(self):
        pattern_set = self.pattern_set
        info = PatternSetInfo(
            pattern_set_id=pattern_set.pattern_set_id,
            kind=pattern_set.kind,
            model_id=pattern_set.model_id,
            resolution=pattern_set.resolution[0],
            num_patterns=pattern_set.num_patterns,
            pattern_rate_hz=float(
                self.projector.status().get("pattern_rate_hz", self.config["pattern_rate_hz"])
            ),
            uri=str(self.path),
        )
        info.header.stamp = self.get_clock().now().to_msg()
        info.header.frame_id = self.config["frame_id"]
        self._publisher.publish(info)
        self.get_logger().info(
            f"displaying {pattern_set.kind} pattern set {pattern_set.pattern_set_id} "
            f"({pattern_set.num_patterns} patterns at {info.pattern_rate_hz:.0f} Hz)"
        )
        if self.config["framing"]:
            self._announce_framing()

    def _announce_framing(self):
        msg = self.framing_msg
        msg.pattern_set_id, msg.uri = self.pattern_set.pattern_set_id, str(self.path)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.config["frame_id"]
        self._applied.publish(msg)

    def _on_registration(self, msg: Registration):
        """framing: show the model's set with the requested registration; refuse what cannot be shown."""
        if not self.active or not self.uploaded:
            return self._refuse("registrations_refused", "registration request while not displaying")
        try:
            requested = framing.from_msg(msg)
            total = framing.compose(self.registration, requested)
            self.projector.upload(self.pattern_set, total, partial=True)
            self.projector.start()
        except (ValueError, HardwareError) as error:
            self._restore()
            return self._refuse("registrations_refused", f"registration not applied: {error}")
        self.framing = requested
        self.framing_msg = framing.to_msg(
            requested,
            framing.field_shape(msg, (0, 0)),
            registration_id=self.framing_msg.registration_id + 1,
        )
        self.framing_counters["registrations_applied"] += 1
        self.framing_error = ""
        self._announce_framing()

    def _on_probe(self, msg: Registration):
        """framing: one pass of another set (a locator's probe), then the model's set again."""
        if not self.active or not self.uploaded:
            return self._refuse("probes_refused", "probe request while not displaying")
        try:
            probe_set = pattern_sources.load_announced(msg.pattern_set_id, msg.uri)
            # the calibration's shift is in sampling pixels: rescaled to the probe's grid
            ratio = probe_set.resolution[0] / self.pattern_set.resolution[0]
            calibration = replace(self.registration, shift=tuple(ratio * v for v in self.registration.shift))
            registration = framing.compose(calibration, framing.from_msg(msg))
            self.projector.upload(probe_set, registration, partial=True)
            self.projector.start()
        except (ValueError, OSError) as error:
            self._restore()
            return self._refuse("probes_refused", f"probe {msg.registration_id} not shown: {error}")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.config["frame_id"]
        self._probe_shown.publish(msg)
        self.framing_counters["probes_shown"] += 1
        self.framing_error = ""
        self._restore()

    def _restore(self):
        """The model's set with the registration on display (after a probe or a refused request)."""
        try:
            total = framing.compose(self.registration, self.framing)
            self.projector.upload(self.pattern_set, total, partial=not self.framing.is_identity)
            self.projector.start()
        except HardwareError as error:
            self.uploaded = False
            self._schedule_retry(str(error))

    def _refuse(self, counter: str, message: str):
        self.framing_counters[counter] += 1
        self.framing_error = message
        self.get_logger().warning(message, throttle_duration_sec=2.0)

    def _registration(self, pattern_set) -> dmd_geometry.GridRegistration:
        """The calibration's registration for this pattern set, or none (and an error) when the file
        cannot be read or moves the patterns off the mirror array."""
        self.registration, self.registration_error = dmd_geometry.GridRegistration(), ""
        if not self.config["calibration"]:
            return self.registration
        try:
            calibration = DetectorCalibration.load(self.config["calibration"])
            registration = calibration.grid_registration(pattern_set.resolution[0])
            dmd_geometry.placement(self.projector.geometry, pattern_set.resolution, registration)
        except (CalibrationError, ValueError, OSError) as error:
            self.registration_error = f"registration not applied, patterns shown unregistered: {error}"
            self.get_logger().error(self.registration_error)
            return self.registration
        self.registration = registration
        return registration

    def _schedule_retry(self, reason: str):
        self._retry_delay = min(max(2 * self._retry_delay, 1.0), self.config["retry_max_s"])
        self._retry_at = time.monotonic() + self._retry_delay
        self.error = f"{self.config['backend']} backend: {reason} (retrying in {self._retry_delay:.0f} s)"
        self.get_logger().error(self.error)

    def _retry(self):
        if self._retry_at is not None and time.monotonic() >= self._retry_at and self.configured:
            try:
                self._bring_up()
            except lifecycle.TransitionError as error:
                self.error = str(error)
                self.get_logger().error(self.error)

    def _report(self):
        if self.projector is None:
            state = {"lifecycle_state": self.state_label()}
            level = diagnostics.ERROR if self.error else diagnostics.WARN
            self._diagnostics.publish(level, self.error or "unconfigured", state)
            return
        status = self.projector.status() | {"lifecycle_state": self.state_label()}
        if (
            status.get("connected") is False
            and status.get("state") == "disconnected"
            and self._retry_at is None
        ):
            self.uploaded = False
            self._schedule_retry(status.get("error", "device disconnected"))  # lost while displaying
        status |= {
            "registration_shift_px": "{:.3f}, {:.3f}".format(*self.registration.shift),
            "registration_scale": f"{self.registration.scale:.4f}",
        }
        if self.config["framing"]:
            status |= {
                "framing_registration_id": self.framing_msg.registration_id,
                "framing_shift_px": "{:.3f}, {:.3f}".format(*self.framing.shift),
                "framing_scale": f"{self.framing.scale:.4f}",
                "framing_roll_deg": f"{self.framing.roll:.2f}",
                **self.framing_counters,
            }
        error = self.error or status.get("error") or self.registration_error
        if error:
            self._diagnostics.publish(diagnostics.ERROR, error, status)
        elif self.framing_error:
            self._diagnostics.publish(diagnostics.WARN, self.framing_error, status)
        elif not self.active:
            self._diagnostics.publish(diagnostics.WARN, "inactive: patterns uploaded, not shown", status)
        else:
            self._diagnostics.publish(diagnostics.OK, "displaying", status)

    def destroy_node(self):
        self.release()
        super().destroy_node()


def main(args=None):
    return node_main.run(DmdDriver, args)
