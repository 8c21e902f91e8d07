"""scene_source: publishes scene images from a folder, a video, held-out generated faces or portraits.

``unframed`` and ``walking`` put held-out faces into a larger field (``field_size`` pixels a side) for
the framing camera (``framing:=auto``): faces anywhere, at any size and roll, every fifth field empty;
or one person walking across the field and towards the camera in ``walking_frames`` scenes.

For simulation and demos: feeds photodiode_sampler's sim backend like a camera driver would.

Publishes: ``scene`` (sensor_msgs/Image, rgb8, sensor-data QoS), ``/diagnostics``. An image larger
than the message limit (lsi_ros.ros.checks.MAX_MESSAGE_BYTES) is refused with a WARN, not sent.

With ``loop``, a folder, video or the portraits replay their first pass from memory when it fits in
``REPLAY_BUDGET_BYTES``: decoding an image file per scene costs more than publishing it at the DMD's
frame rate.
"""

import itertools

from rclpy.node import Node

from lsi_ros import scenes
from lsi_ros.ros import checks, diagnostics, image, node_main, qos
from lsi_ros.ros.parameters import Param, declare
from lsi_ros.ros.reference import Topic

# Largest first pass (decoded RGB bytes) a looping finite source keeps for its replays.
REPLAY_BUDGET_BYTES = 64 * 2**20
FINITE_SOURCES = ("folder", "video", "portraits")

TOPICS = (
    Topic("pub", "scene", "sensor_msgs/msg/Image", "rgb8 scenes at rate_hz (sensor-data QoS)."),
    Topic("pub", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "Published count, source errors."),
)

PARAMS = (
    Param(
        "source",
        "portraits",
        "Where scenes come from.",
        choices=("folder", "video", "faces", "portraits", "demo", "unframed", "walking"),
    ),
    Param("path", "", "Image folder or video file (source folder/video)."),
    Param(
        "generator",
        "mobilestylegan",
        "faces: generator of the held-out faces.",
        choices=("mobilestylegan", "dcgan"),
    ),
    Param(
        "first_seed",
        -1,
        "faces, unframed, walking: first seed (-1: the start of the held-out range).",
        min=-1,
        max=2**31 - 1,
    ),
    Param("field_size", 1024, "unframed, walking: side of the field in pixels.", min=64, max=4096),
    Param("walking_frames", 60, "walking: scenes of one walk.", min=2, max=100_000),
    Param("rate_hz", 5.0, "Scenes per second.", min=0.01, max=1000.0, applies="live"),
    Param("loop", True, "Start over at the end of the source.", applies="live"),
    Param("frame_id", "lsi_scene", "header.frame_id of the images.", applies="live"),
)


class SceneSource(Node):
    def __init__(self, **node_options):
        super().__init__("scene_source", **node_options)
        self.config = declare(self, PARAMS, apply=self._apply)
        self.error = ""
        self._replay = None
        self.refusals = checks.Refusals(self)
        self._scenes = self._open()
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self._publisher = checks.CheckedPublisher(self, image.Image, "scene", qos.SENSOR_DATA, self.refusals)
        self._tick_timer = self.create_timer(1.0 / self.config["rate_hz"], self._tick)
        self.create_timer(1.0, self._report)

    def _apply(self, changes: dict):
        if "rate_hz" in changes:
            self.destroy_timer(self._tick_timer)
            self._tick_timer = self.create_timer(1.0 / changes["rate_hz"], self._tick)

    def _open(self):
        source, path = self.config["source"], self.config["path"]
        first_seed = None if self.config["first_seed"] < 0 else self.config["first_seed"]
        make = {
            "folder": lambda: scenes.folder_scenes(path),
            "video": lambda: scenes.video_scenes(path),
            "faces": lambda: scenes.face_scenes(self.config["generator"], first_seed),
            "portraits": scenes.portrait_scenes,
            "demo": lambda: scenes.demo_scenes(self.config["generator"]),
            "unframed": lambda: scenes.unframed_face_scenes(
                self.config["generator"], first_seed, self.config["field_size"]
            ),
            "walking": lambda: scenes.walking_scenes(
                self.config["generator"], first_seed, self.config["field_size"], self.config["walking_frames"]
            ),
        }[source]
        try:
            stream = make()
            first = next(stream, None)
        except scenes.SceneSourceError as error:
            self.error = str(error)
            self.get_logger().error(self.error)
            return iter(())
        if first is None:
            self.error = f"{source} source '{path}' holds no readable images"
            self.get_logger().error(self.error)
            return iter(())
        first_pass = itertools.chain([first], stream)
        if source in FINITE_SOURCES:
            first_pass = self._kept(first_pass)
        return itertools.chain(first_pass, self._repeat(make))

    def _kept(self, first_pass):
        """The first pass, kept for the replays while it fits REPLAY_BUDGET_BYTES."""
        kept, size = [], 0
        for scene in first_pass:
            size += scene[1].nbytes
            kept = kept if kept is not None and size <= REPLAY_BUDGET_BYTES else None
            if kept is not None:
                kept.append(scene)
            yield scene
        self._replay = kept

    def _repeat(self, make):
        while self.config["loop"]:
            yield from self._replay if self._replay is not None else make()

    def _tick(self):
        scene = next(self._scenes, None)
        if scene is None:
            return
        name, rgb = scene
        msg = image.array_to_image(rgb, "rgb8")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.config["frame_id"]
        self._publisher.publish(msg, f"scene {name}", image=rgb)

    def _report(self):
        values = {"published": self._publisher.published, **self.refusals.values()}
        if self.error:
            self._diagnostics.publish(diagnostics.ERROR, self.error, values)
        elif self.refusals.recent():
            self._diagnostics.publish(diagnostics.WARN, self.refusals.last_message, values)
        else:
            self._diagnostics.publish(diagnostics.OK, "publishing", values)


def main(args=None):
    return node_main.run(SceneSource, args)
