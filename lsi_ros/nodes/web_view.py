"""web_view: the base station's live page in a browser, and MJPEG/JPEG endpoints for any image topic.

For operators without RViz. Serves (on ``host``:``port``, 127.0.0.1 by default) the page at ``/``,
its state at ``/api/state``, ``/stream?topic=…`` (MJPEG) and ``/snapshot?topic=…`` (JPEG).
Subscribes: ``image_topic`` and ``scene_topic`` (sensor_msgs/Image), ``attributes``,
``measurements``, ``latent``, ``pattern_set``, ``/diagnostics``, and any image topic a client asks
for. Publishes: ``/diagnostics``. Callbacks only keep references; HTTP runs in its own thread.
"""

import concurrent.futures
import ipaddress
import re
import threading
from collections import OrderedDict

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.serialization import serialize_message

from lsi_ros.msg import Attributes, LatentCode, Measurements, PatternSetInfo
from lsi_ros.ros import diagnostics, image, node_main, qos
from lsi_ros.ros.parameters import Param, ParameterError, declare
from lsi_ros.ros.reference import Topic
from lsi_ros.web.live import ImageChannel, PipelineState
from lsi_ros.web.server import TopicNameError, UnknownTopicError, WebView

IMAGE_TYPE = "sensor_msgs/msg/Image"
SCENES_KEPT = 64  # scenes waiting for their decoded image: seconds of latency at the scene rate
TOPIC_NAME = re.compile(r"^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")

TOPICS = (
    Topic("sub", "image_raw", "sensor_msgs/msg/Image", "image_topic: the decoded image (best effort)."),
    Topic("sub", "scene", "sensor_msgs/msg/Image", "scene_topic: shown beside it (best effort)."),
    Topic("sub", "measurements", "lsi_ros/msg/Measurements", "The newest frame's values, plotted."),
    Topic("sub", "latent", "lsi_ros/msg/LatentCode", "Code rate and bytes per frame."),
    Topic("sub", "attributes", "lsi_ros/msg/Attributes", "Shown as bars with their probabilities."),
    Topic("sub", "pattern_set", "lsi_ros/msg/PatternSetInfo", "The pattern set in use (transient-local)."),
    Topic("sub", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "Dropped and refused counts."),
    Topic("pub", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "The served URL and image topics."),
)

PARAMS = (
    Param(
        "host",
        "127.0.0.1",
        "Address the HTTP server binds. 127.0.0.1 serves this computer only; another address "
        "(0.0.0.0: every interface) shows the camera to that network: the operator's explicit choice.",
    ),
    Param("port", 8080, "TCP port of the HTTP server (0: any free port).", min=0, max=65535),
    Param("image_topic", "image_raw", "Decoded image shown on the page."),
    Param("scene_topic", "scene", "Scene shown beside it when published (simulation); empty: none."),
    Param(
        "stale_after_s",
        3.0,
        "Seconds without a new image after which the page shows 'no signal'.",
        min=0.1,
        max=3600.0,
    ),
)


class WebViewNode(Node):
    def __init__(self, **node_options):
        super().__init__("web_view", **node_options)
        self.config = declare(self, PARAMS)
        self.state = PipelineState()
        self._lock = threading.Lock()
        self._channels: dict[str, ImageChannel] = {}
        self._requests: list = []  # (topic, future): subscriptions asked for by HTTP threads
        self._subscribe_guard = self.create_guard_condition(self._subscribe_requested)
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        page_channels = {}
        if self.config["image_topic"]:
            page_channels["decoded"] = self._subscribe_image(self.config["image_topic"], self._on_image)
        # The page shows the scene each decoded image came from (same stamp), not the newest scene,
        # which runs ahead of the decoder by its latency.
        self._scenes = OrderedDict()  # stamp_ns -> Image, the last SCENES_KEPT
        self._paired_scene = None
        if self.config["scene_topic"]:
            scene_topic = self._subscribe_image(self.config["scene_topic"], self._on_scene).topic
            self._paired_scene = page_channels["scene"] = ImageChannel(scene_topic)
        self.create_subscription(Measurements, "measurements", self._on_measurements, qos.SENSOR_DATA)
        self.create_subscription(LatentCode, "latent", self._on_latent, qos.RELIABLE)
        self.create_subscription(Attributes, "attributes", self._on_attributes, qos.RELIABLE)
        self.create_subscription(PatternSetInfo, "pattern_set", self._on_pattern_set, qos.LATCHED)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.server = WebView(
            self.state,
            page_channels,
            self.open_channel,
            self.image_topics,
            stale_after_s=self.config["stale_after_s"],
        )
        try:
            host, port = self.server.start(self.config["host"], self.config["port"])
        except OSError as error:
            raise ParameterError(
                f"cannot serve on host '{self.config['host']}' port {self.config['port']}: {error}"
            ) from error
        self.url = f"http://{host}:{port}/"
        self.get_logger().info(f"serving the live page on {self.url}")
        if not ipaddress.ip_address(host).is_loopback:
            self.get_logger().warning(
                f"host '{self.config['host']}': the page is reachable from the network, without login "
                "or encryption"
            )
        self.create_timer(1.0, self._report)

    # Image topics ------------------------------------------------------------------------------

    def _subscribe_image(self, topic: str, on_message=None) -> ImageChannel:
        """A channel fed by a best-effort subscription: the viewer never holds up the publisher."""
        name = self.resolve_topic_name(topic)
        channel = ImageChannel(name)

        def on_image(msg):
            channel.put(_stamp_ns(msg.header), msg.width, msg.height, lambda: image.to_rgb_float(msg))
            if on_message is not None:
                on_message(msg)

        self.create_subscription(image.Image, name, on_image, qos.SENSOR_DATA)
        with self._lock:
            self._channels[name] = channel
        return channel

    def open_channel(self, topic: str) -> ImageChannel:
        """From an HTTP thread: the channel of an Image topic of the graph, subscribing on first use."""
        if not TOPIC_NAME.match(topic):
            raise TopicNameError(f"'{topic}' is not a valid ROS topic name")
        name = self.resolve_topic_name(topic)
        with self._lock:
            channel = self._channels.get(name)
        if channel is not None:
            return channel
        if name not in self.image_topics():
            raise UnknownTopicError(f"no {IMAGE_TYPE} topic '{name}' in the ROS graph (see /api/topics)")
        future = concurrent.futures.Future()
        with self._lock:
            self._requests.append((name, future))
        self._subscribe_guard.trigger()
        return future.result(timeout=5.0)

    def _subscribe_requested(self):
        """On the executor's thread: create the subscriptions HTTP threads asked for."""
        with self._lock:
            requests, self._requests = self._requests, []
        for name, future in requests:
            with self._lock:
                channel = self._channels.get(name)
            future.set_result(channel or self._subscribe_image(name))

    def image_topics(self) -> list:
        return sorted(name for name, types in self.get_topic_names_and_types() if IMAGE_TYPE in types)

    # Pipeline messages -------------------------------------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_scene(self, msg):
        stamp = _stamp_ns(msg.header)
        self.state.scene(stamp, len(msg.data))
        self._scenes[stamp] = msg
        while len(self._scenes) > SCENES_KEPT:
            self._scenes.popitem(last=False)

    def _on_image(self, msg):
        stamp = _stamp_ns(msg.header)
        self.state.image(stamp, self._now_ns(), len(msg.data))
        scene = self._scenes.get(stamp)
        if scene is not None and self._paired_scene is not None:
            self._paired_scene.put(stamp, scene.width, scene.height, lambda: image.to_rgb_float(scene))

    def _on_measurements(self, msg):
        self.state.measurements(
            _stamp_ns(msg.header),
            msg.sequence,
            msg.values,
            len(serialize_message(msg)),
            msg.saturated_count,
        )

    def _on_latent(self, msg):
        self.state.latent(
            _stamp_ns(msg.header),
            self._now_ns(),
            msg.model_id,
            msg.pattern_set_id,
            len(serialize_message(msg)),
        )

    def _on_attributes(self, msg):
        self.state.attributes(_stamp_ns(msg.header), msg.names, msg.scores, msg.model_id)

    def _on_pattern_set(self, msg):
        self.state.pattern_set(msg.pattern_set_id, msg.kind, msg.model_id, msg.num_patterns, msg.resolution)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name != diagnostics.status_name(self):
                self.state.diagnostics(status.name, {kv.key: kv.value for kv in status.values})

    def _report(self):
        with self._lock:
            topics = sorted(self._channels)
        self._diagnostics.publish(diagnostics.OK, f"serving {self.url}", {"image_topics": ", ".join(topics)})

    def destroy_node(self):
        if getattr(self, "server", None) is not None:
            self.server.stop()
        super().destroy_node()


def _stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def main(args=None):
    return node_main.run(WebViewNode, args)
