"""face_locator: finds the face in the field with the camera itself and frames the model's patterns on it.

A thin wrapper over lsi_ros.framing.localize.FaceLocator whose acquisitions go through the real
camera: each probe (the coarse Walsh-Hadamard patterns over the whole field, then the zoom round the
candidate) is sent to dmd_driver (``framing/probe``), which shows it once; photodiode_sampler measures
it (``framing/probe_measurements``). The face detector and the 68-landmark net run on the images
reconstructed from those measurements; the FFHQ square from the landmarks becomes the registration of
the model's patterns, sent to dmd_driver (``framing/registration``), and the box, landmarks and
registration are published in the camera's frame (``framing/face``, lsi_ros/FaceLocation; box and
landmarks in pixels of the field, ``field_size`` a side), after each localisation and, with stage
``track``, after each tracker update (the landmarks carried along with the grid).

Localisation starts when dmd_driver announces its registration (``framing/applied``); without a face
it is tried again every ``search_period_s``. With ``tracking`` the measurement frames taken under
this node's registration are watched and the registration follows the face between localisations.
``tracker`` chooses how: ``measurements`` fits each frame's own values through the model's pattern set
(announced on ``pattern_set``) by the face moved, scaled and turned, with a coarse look at the
background when the grid reaches background it has not seen (lsi_ros.framing.tracking.
MeasurementTracker: no pattern of its own per frame); ``walsh`` shows a few low-order Walsh patterns on
the last zoom window every ``track_every`` frames (lsi_ros.framing.tracking.FaceTracker). After
``every`` frames, when the frames change by more than ``change``
(lsi_ros.framing.tracking.RelocalisationPolicy), or when the tracker loses the face, the face is
looked for again round its last box (the zoom alone; the whole field when it is gone). A probe that gets no
measurement within ``probe_timeout_s`` ends that localisation (reported, tried again).

The face finder (``finder``: a model name or file, lsi_ros.framing.finder) finds the face in the
reconstructed images; face-api's 68-landmark net, read from ``face_api_dir`` (empty:
~/.cache/lsi_ros/face-api, fetched once by ``make .venv/.stamps/face-api``), finds the landmarks and
Dlib's shape predictor (lsi_ros.framing.landmarks) places them. Without any of them the node reports
ERROR and keeps running.
"""

import threading
import time
from dataclasses import replace

import numpy as np
from rclpy.node import Node

from lsi_ros.evaluation.baselines import walsh_coefficients
from lsi_ros.framing.finder import INPUT as FINDER_INPUT
from lsi_ros.framing.localize import FaceLocator, LocatorConfig
from lsi_ros.framing.tracking import FaceTracker, LocalisationCost, MeasurementTracker, RelocalisationPolicy
from lsi_ros.hardware import pattern_sources
from lsi_ros.msg import FaceLocation, Measurements, PatternSetInfo, Registration
from lsi_ros.optics.dmd import DLPC900_1080P
from lsi_ros.ros import diagnostics, node_main, qos
from lsi_ros.ros import registration as framing
from lsi_ros.ros.parameters import Param, declare
from lsi_ros.ros.reference import Topic

TOPICS = (
    Topic("sub", framing.APPLIED, "lsi_ros/msg/Registration", "dmd_driver's registration (transient-local)."),
    Topic("sub", framing.PROBE_MEASUREMENTS, "lsi_ros/msg/Measurements", "The sampler's frame of a probe."),
    Topic("sub", "measurements", "lsi_ros/msg/Measurements", "tracking: frames under this registration."),
    Topic("sub", "pattern_set", "lsi_ros/msg/PatternSetInfo", "tracker measurements: the model's set."),
    Topic("pub", framing.PROBE, "lsi_ros/msg/Registration", "The Hadamard probes, to dmd_driver."),
    Topic("pub", framing.REQUEST, "lsi_ros/msg/Registration", "The registration framing the face."),
    Topic(
        "pub",
        framing.FACE,
        "lsi_ros/msg/FaceLocation",
        "Box, landmarks, registration, cost (transient-local).",
    ),
    Topic("pub", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "Localisations, cost, errors."),
)

DEFAULTS = LocatorConfig()

PARAMS = (
    Param(
        "field_size", 1024, "Side of the field in pixels, as boxes and landmarks are given.", min=64, max=8192
    ),
    Param("resolution", DEFAULTS.resolution, "Sampling resolution of the model's patterns.", min=8, max=1024),
    Param(
        "coarse_patterns",
        DEFAULTS.coarse_patterns,
        "Hadamard patterns of the whole-field look.",
        min=16,
        max=FINDER_INPUT**2,
    ),
    Param(
        "zoom_patterns",
        DEFAULTS.zoom_patterns,
        "Hadamard patterns of the look round the candidate.",
        min=16,
        max=DEFAULTS.zoom_resolution**2,
    ),
    Param("min_score", DEFAULTS.min_score, "Detector score that means a face.", min=0.0, max=1.0),
    Param(
        "framing_correction",
        DEFAULTS.framing_correction,
        "Move the FFHQ square by the finder file's framing correction, when it carries one.",
    ),
    Param("tracking", True, "Watch the frames and look again when the face moved.", applies="live"),
    Param(
        "tracker",
        "measurements",
        "tracking: what follows the face between localisations: the model's own frames, or Walsh "
        "patterns of its own every track_every frames.",
        choices=("measurements", "walsh"),
    ),
    Param(
        "every",
        RelocalisationPolicy.every,
        "tracking: look again after this many frames at most.",
        min=1,
        max=10**9,
        applies="live",
    ),
    Param(
        "track_every",
        2,
        "tracking: frames between tracker updates (0: no tracker, localisations only; measurements: "
        "any value above 0 follows every frame).",
        min=0,
        max=10**6,
        applies="live",
    ),
    Param(
        "change",
        RelocalisationPolicy.change,
        "tracking: relative change of the frames (mean removed) that means the face moved.",
        min=1e-4,
        max=10.0,
        applies="live",
    ),
    Param(
        "search_period_s", 1.0, "Without a face: seconds between looks.", min=0.01, max=3600.0, applies="live"
    ),
    Param("probe_timeout_s", 5.0, "Seconds a probe may take to come back measured.", min=0.1, max=600.0),
    Param("pattern_rate_hz", 9500.0, "DMD pattern rate, for the display-time cost.", min=1.0, max=50000.0),
    Param("finder", "face-finder", "Face finder: a model name (models/) or file."),
    Param("face_api_dir", "", "Folder of the face-api landmark weights (empty: the default cache)."),
    Param("cache_dir", "", "Where the probe pattern sets are written (empty: ~/.cache/lsi_ros/patterns)."),
    Param("frame_id", "lsi_camera", "header.frame_id of the face locations and requests.", applies="live"),
)


class ProbeTimeoutError(TimeoutError):
    """A probe that was not measured in time (dmd_driver or the sampler absent, no scene yet)."""


class CameraFaceLocator(FaceLocator):
    """The core locator, acquiring through dmd_driver and photodiode_sampler instead of a field image."""

    def __init__(self, node: "FaceLocatorNode", finder, analyzer, field_shape, config, timing):
        super().__init__(finder, analyzer, field_shape, config, photodiode=None, timing=timing)
        self.node = node

    def coefficients(self, field_image, forward, registration):
        """The Walsh coefficients of what the sampler measured of the probe (its ambient light already
        subtracted: the sampler publishes probes in the model's units)."""
        return walsh_coefficients(forward.pattern_set, self.node.probe(forward, registration))


class FaceLocatorNode(Node):
    def __init__(self, **node_options):
        super().__init__("face_locator", **node_options)
        self.config = declare(self, PARAMS)
        self.error = ""
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        side = self.config["field_size"]
        self.field_shape = (side, side)
        self.locator = None
        self.cost = LocalisationCost(frame_patterns=0)
        self.policy = RelocalisationPolicy(every=self.config["every"], change=self.config["change"])
        counted = ("localisations", "faces_found", "tracking_updates", "tracking_looks", "tracking_lost")
        self.counters = dict.fromkeys((*counted, "probe_timeouts"), 0)
        self.tracker = None  # a tracker started from the last localisation that found the face
        self.pattern_set = None  # the model's set on the DMD (tracker measurements)
        self._frame = None  # the frame the tracker follows next (tracker measurements)
        self._task = "locate"  # what the worker does when woken: "locate" or "track"
        self._frames_since_track = 0
        self.last = None  # the last localisation's FaceLocation
        self.located = None  # the last localisation that found the face
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._near = None  # box to zoom round first (tracking)
        self._requested = None  # the registration this node asked for, until dmd_driver applies it
        self._requested_at = 0.0
        self._requested_by = "locate"
        self._framing_id = None  # dmd_driver's id of this node's registration, once applied
        self._next_search = None
        self._probe_id = 0
        self._probe_files = {}
        self._probe_done = threading.Event()
        self._probe_values = None
        self._probe_pub = self.create_publisher(Registration, framing.PROBE, qos.RELIABLE)
        self._request_pub = self.create_publisher(Registration, framing.REQUEST, qos.RELIABLE)
        self._face_pub = self.create_publisher(FaceLocation, framing.FACE, qos.FACES)
        self.create_subscription(Registration, framing.APPLIED, self._on_applied, qos.LATCHED)
        self.create_subscription(
            Measurements, framing.PROBE_MEASUREMENTS, self._on_probe_measured, qos.RELIABLE
        )
        self.create_subscription(Measurements, "measurements", self._on_frame, qos.SENSOR_DATA)
        self.create_subscription(PatternSetInfo, "pattern_set", self._on_pattern_set, qos.LATCHED)
        self.create_timer(1.0, self._report)
        self.create_timer(0.05, self._search_timer)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="face_locator", daemon=True)
        self._load_locator()
        self._worker.start()

    def _load_locator(self):
        from lsi_ros.evaluation.face_analysis import FaceAnalyzer
        from lsi_ros.framing.finder import FaceFinderError, load_face_finder
        from lsi_ros.framing.landmarks import DlibLandmarks
        from lsi_ros.models.registry import find_model

        c = self.config
        config = LocatorConfig(
            coarse_patterns=c["coarse_patterns"],
            zoom_patterns=c["zoom_patterns"],
            min_score=c["min_score"],
            framing_correction=c["framing_correction"],
            resolution=c["resolution"],
        )
        try:
            finder = load_face_finder(find_model(c["finder"]))
            analyzer = FaceAnalyzer(c["face_api_dir"] or None, networks=("face_landmark_68_model",))
            shape_predictor = DlibLandmarks()
        except (OSError, ImportError, FaceFinderError) as error:
            self.error = f"face finder, face-api or Dlib landmark weights not readable: {error}"
            self.get_logger().error(self.error)
            return
        timing = replace(DLPC900_1080P, pattern_rate_hz=c["pattern_rate_hz"])
        self.locator = CameraFaceLocator(self, finder, analyzer, self.field_shape, config, timing)
        self.locator.shape_predictor = shape_predictor

    # -- acquisition through the camera ------------------------------------------------------------

    def probe(self, forward, registration) -> np.ndarray:
        """Show ``forward``'s patterns once, registered so, and return what the sampler measured."""
        pattern_set = forward.pattern_set
        path = self._probe_files.get(pattern_set.pattern_set_id)
        if path is None:
            spec = f"hadamard-reference:{pattern_set.num_patterns}"
            resolved, path = pattern_sources.resolve(
                spec, pattern_set.resolution[0], self.config["cache_dir"] or None
            )
            if resolved.pattern_set_id != pattern_set.pattern_set_id:
                raise ValueError(f"probe set {spec} is not the locator's set {pattern_set.pattern_set_id}")
            self._probe_files[pattern_set.pattern_set_id] = path
        with self._lock:
            self._probe_id += 1
            probe_id = self._probe_id
            self._probe_values = None
            self._probe_done.clear()
        msg = framing.to_msg(
            registration,
            self.field_shape,
            registration_id=probe_id,
            pattern_set_id=pattern_set.pattern_set_id,
            uri=str(path),
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.config["frame_id"]
        self._probe_pub.publish(msg)
        if not self._probe_done.wait(self.config["probe_timeout_s"]) or self._stop.is_set():
            raise ProbeTimeoutError(
                f"probe {probe_id} ({pattern_set.num_patterns} patterns) not measured within "
                f"{self.config['probe_timeout_s']} s: are dmd_driver and photodiode_sampler running "
                "with framing, and a scene arriving?"
            )
        return self._probe_values

    def _on_probe_measured(self, msg: Measurements):
        with self._lock:
            if msg.registration_id == self._probe_id and not self._probe_done.is_set():
                self._probe_values = np.asarray(msg.values, dtype=np.float64)
                self._probe_done.set()

    # -- when to look ------------------------------------------------------------------------------

    def _on_applied(self, msg: Registration):
        with self._lock:
            if self._requested is not None and _same(msg, self._requested):
                self._framing_id, self._requested = msg.registration_id, None
                self._frames_since_track = 0
                if self._requested_by == "track":
                    self.policy.reframed()
                else:
                    self.policy.localised()
            elif self.last is None and self._next_search is None:
                self._next_search = time.monotonic()  # the DMD is up: first look

    def _on_pattern_set(self, info: PatternSetInfo):
        try:
            self.pattern_set = pattern_sources.load_announced(info.pattern_set_id, info.uri)
        except (OSError, ValueError) as error:
            self.pattern_set = None
            self.error = f"pattern set {info.pattern_set_id} not readable for tracking: {error}"
            self.get_logger().warning(self.error)

    def _on_frame(self, msg: Measurements):
        self.cost.frame_patterns = len(msg.values)
        self.cost.add_frame()
        if not self.config["tracking"] or msg.registration_id != self._framing_id or self._wanted.is_set():
            return
        self.policy.every, self.policy.change = self.config["every"], self.config["change"]
        self._frames_since_track += 1
        values = np.asarray(msg.values, dtype=np.float64)
        locate = self.policy.should_localise(values)
        follows = isinstance(self.tracker, MeasurementTracker)
        if follows and msg.pattern_set_id != self.tracker.forward.pattern_set.pattern_set_id:
            self.tracker = None  # another set on the DMD: the next localisation tracks with it
            return
        track = self.tracker is not None and (
            follows or 0 < self.config["track_every"] <= self._frames_since_track
        )
        if locate or track:
            with self._lock:
                self._task = "locate" if locate else "track"
                self._frame = values if follows else None
                self._near, self._framing_id = self.tracked_box(), None
            self._wanted.set()

    def tracked_box(self):
        """The face's box as last localised, moved as the tracker followed it (None: no face)."""
        last, tracker = self.last, self.tracker  # read once: the worker may replace either meanwhile
        if last is None or not last.found:
            return None
        return tracker.box() if tracker is not None else np.asarray(last.box, dtype=np.float64)

    def _search_timer(self):
        with self._lock:
            now = time.monotonic()
            if self._requested is not None and now - self._requested_at > self.config["probe_timeout_s"]:
                self._requested = None  # dmd_driver refused it (its diagnostics say why): look again
                self.error = "dmd_driver did not apply the registration framing the face"
                self._next_search = now + self.config["search_period_s"]
            due = self._next_search is not None and now >= self._next_search
            if due:
                self._next_search = None
        if due:
            self._wanted.set()

    def _work(self):
        while not self._stop.is_set():
            if not self._wanted.wait(0.1):
                continue
            if self.locator is None:
                self._wanted.clear()
                continue
            try:
                with self._lock:
                    task, self._task = self._task, "locate"
                if task == "track":
                    self._track()
                else:
                    self._localise()
            except ProbeTimeoutError as error:
                self.counters["probe_timeouts"] += 1
                self.error = str(error)
                self.get_logger().warning(self.error, throttle_duration_sec=5.0)
                self._retry_later()
            except Exception as error:  # the worker outlives any one failed look
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: the context went before this look ended
                self.error = f"{task} failed: {type(error).__name__}: {error}"
                self.get_logger().error(self.error)
                self.tracker = None
                self._retry_later()
            finally:
                self._wanted.clear()

    def _retry_later(self):
        with self._lock:
            self._near = None
            self._next_search = time.monotonic() + self.config["search_period_s"]

    def _track(self):
        """One tracker update: the registration follows the face, or the face is looked for again."""
        started, shown = time.perf_counter(), 0
        if isinstance(self.tracker, MeasurementTracker):
            with self._lock:
                frame, self._frame = self._frame, None
            registration, _, ok = self.tracker.follow(frame)
            if ok and self.tracker.wants_look:
                shown = self.tracker.look_again(None)
                self.counters["tracking_looks"] += 1
        else:
            registration, _, ok = self.tracker.update(None)
            shown = self.tracker.last_patterns
        display_ms = 1000.0 * self.locator.timing.frame_time(shown) if shown else 0.0
        if shown:
            self.cost.add_tracking(shown, display_ms)
        self.counters["tracking_updates"] += 1
        if not ok:
            self.counters["tracking_lost"] += 1
            with self._lock:
                self._near = self.tracked_box()
            return self._localise()
        self._request(registration, "track")
        self._publish_tracked(registration, shown, display_ms, 1000.0 * (time.perf_counter() - started))

    def _publish_tracked(self, registration, patterns: int, display_ms: float, compute_ms: float):
        """The face where the tracker has moved the grid: the localisation's box and landmarks carried
        along with it (stage ``track``)."""
        from lsi_ros.framing.field import carry_points

        located, resolution = self.located, self.locator.config.resolution
        landmarks = carry_points(
            located.landmarks, located.registration, registration, self.field_shape, resolution
        )
        out = FaceLocation(
            found=True,
            score=located.score,
            box=np.asarray(self.tracker.box(), dtype=np.float32),
            landmarks=np.asarray(landmarks, dtype=np.float32).ravel(),
            registration=framing.to_msg(registration, self.field_shape),
            patterns=patterns,
            display_ms=display_ms,
            compute_ms=compute_ms,
            stages=["track", *(["look"] if patterns else [])],
        )
        out.header.stamp = self.get_clock().now().to_msg()
        out.header.frame_id = self.config["frame_id"]
        self._face_pub.publish(out)

    def _new_tracker(self):
        """The tracker the parameters ask for (None: localisations only)."""
        if not self.config["track_every"]:
            return None
        if self.config["tracker"] == "walsh":
            return FaceTracker(self.locator)
        if self.pattern_set is None:
            self.error = "no pattern set announced on pattern_set: localisations only, no tracker"
            return None
        return MeasurementTracker(self.locator, self.pattern_set)

    def _request(self, registration, by: str):
        request = framing.to_msg(registration, self.field_shape)
        request.header.stamp = self.get_clock().now().to_msg()
        request.header.frame_id = self.config["frame_id"]
        with self._lock:
            self._requested, self._requested_at, self._requested_by = request, time.monotonic(), by
        self._request_pub.publish(request)

    def _localise(self):
        with self._lock:
            near, self._near = self._near, None
        held = near is not None and getattr(self.tracker, "still_holds", False)
        result = self.locator.locate(None, near=near, held=held)
        self.error = ""
        self.counters["localisations"] += 1
        self.cost.add_localisation(result.patterns, result.display_ms)
        out = FaceLocation(
            found=result.found,
            score=result.score,
            patterns=result.patterns,
            display_ms=result.display_ms,
            compute_ms=result.compute_ms,
            stages=list(result.stages),
        )
        out.header.stamp = self.get_clock().now().to_msg()
        out.header.frame_id = self.config["frame_id"]
        if result.found:
            self.counters["faces_found"] += 1
            out.box = np.asarray(result.box, dtype=np.float32)
            out.landmarks = np.asarray(result.landmarks, dtype=np.float32).ravel()
            out.registration = framing.to_msg(result.registration, self.field_shape)
            self.located = result
            self.tracker = self._new_tracker()
            if self.tracker is not None:
                self.tracker.start(result)
            self._request(result.registration, "locate")
        else:
            self.tracker = None
            self._retry_later()
        self.last = out
        self._face_pub.publish(out)

    # -- diagnostics -------------------------------------------------------------------------------

    def _report(self):
        values = {**self.counters, **{f"cost_{k}": v for k, v in self.cost.summary().items()}}
        if self.last is not None:
            values |= {
                "face": "found" if self.last.found else "none",
                "score": f"{self.last.score:.3f}",
                "box": ", ".join(f"{v:.1f}" for v in (self.tracked_box() if self.last.found else ())),
                "framing_registration_id": self._framing_id if self._framing_id is not None else "pending",
            }
        if self.locator is None:
            self._diagnostics.publish(diagnostics.ERROR, self.error, values)
        elif self.error:
            self._diagnostics.publish(diagnostics.WARN, self.error, values)
        elif self.last is None:
            self._diagnostics.publish(diagnostics.WARN, "waiting for dmd_driver (framing/applied)", values)
        else:
            level = diagnostics.OK if self.last.found else diagnostics.WARN
            self._diagnostics.publish(
                level, "face framed" if self.last.found else "no face in the field", values
            )

    def destroy_node(self):
        self._stop.set()
        self._probe_done.set()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def _same(a: Registration, b: Registration) -> bool:
    return all(
        np.isclose(getattr(a, k), getattr(b, k), atol=1e-9)
        for k in ("shift_row", "shift_col", "scale", "roll_deg")
    )


def main(args=None):
    return node_main.run(FaceLocatorNode, args)
