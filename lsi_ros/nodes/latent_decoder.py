"""latent_decoder: latent codes -> camera images (rgb8) through the frozen generator. Base station.

The decoded face is published as a camera's image, so RViz, image_view and image_transport treat
it as one: the raw image, its CameraInfo (an ideal pinhole of ``horizontal_fov_deg``), image_transport's
``compressed`` JPEG and a static TF from ``parent_frame_id`` to the optical ``frame_id``.

Subscribes: ``latent`` (lsi_ros/LatentCode). Publishes: ``image_raw`` (sensor_msgs/Image rgb8,
reliable), ``camera_info`` (sensor_msgs/CameraInfo), ``image_raw/compressed``
(sensor_msgs/CompressedImage, "rgb8; jpeg compressed bgr8"), ``/tf_static`` (tf2_msgs/TFMessage),
``/diagnostics``. Codes of the wrong width, empty or with non-finite values are refused and counted;
a code the generator turns into non-finite pixels gives no image (lsi_ros.ros.checks).

Decoding a code takes far longer than a DMD frame (hundreds of ms on one CPU thread), so the decoder
shows the newest code rather than a backlog. ``max_rate_hz`` caps the images per second: a display
needs a few, and a decoder on the capture computer then leaves the CPU to the measurement path. With
it, a code that a newer one replaces before its turn is counted as ``superseded``; every code is
still produced and published by the encoder.
"""

import time
from collections import deque

import numpy as np
from rclpy.node import Node

from lsi_ros.models.generators import get_generator
from lsi_ros.msg import LatentCode
from lsi_ros.ros import camera, checks, diagnostics, image, latent, node_main, qos
from lsi_ros.ros.parameters import Param, declare
from lsi_ros.ros.reference import Topic

TOPICS = (
    Topic("sub", "latent", "lsi_ros/msg/LatentCode", "Latent codes (newest only)."),
    Topic("pub", "image_raw", "sensor_msgs/msg/Image", "The decoded face, rgb8, stamped as its code."),
    Topic("pub", "camera_info", "sensor_msgs/msg/CameraInfo", "Ideal pinhole matching image_raw."),
    Topic(
        "pub",
        "image_raw/compressed",
        "sensor_msgs/msg/CompressedImage",
        'image_transport\'s compressed format: JPEG, "rgb8; jpeg compressed bgr8".',
    ),
    Topic("pub", "/tf_static", "tf2_msgs/msg/TFMessage", "parent_frame_id -> frame_id (optical rotation)."),
    Topic(
        "pub",
        "/diagnostics",
        "diagnostic_msgs/msg/DiagnosticArray",
        "Decoded and refused counts, decode time.",
    ),
)

PARAMS = (
    Param(
        "generator", "mobilestylegan", "Generator the codes belong to.", choices=("mobilestylegan", "dcgan")
    ),
    Param(
        "frame_id", "lsi_camera_optical_frame", "Optical frame of the images (z forward, x right, y down)."
    ),
    Param("parent_frame_id", "lsi_camera", "Camera body frame the optical frame hangs off (static TF)."),
    Param("publish_tf", True, "Publish the static transform parent_frame_id -> frame_id."),
    Param(
        "horizontal_fov_deg",
        30.0,
        "Horizontal field of view of the pinhole in camera_info.",
        min=1.0,
        max=179.0,
        applies="live",
    ),
    Param("jpeg_quality", 90, "JPEG quality of image_raw/compressed.", min=1, max=100, applies="live"),
    Param(
        "max_rate_hz",
        0.0,
        "Decode at most this many codes per second, always the newest (0: every code as it arrives, "
        "as fast as the generator allows).",
        min=0.0,
        max=1000.0,
    ),
    Param(
        "threads",
        0,
        "CPU threads of the generator (0: all cores). 1 leaves the other cores to capture nodes "
        "running on the same computer.",
        min=0,
        max=256,
    ),
)


class LatentDecoder(Node):
    def __init__(self, **node_options):
        super().__init__("latent_decoder", **node_options)
        self.config = declare(self, PARAMS)
        self.generator = get_generator(self.config["generator"], threads=self.config["threads"])
        self.refusals = checks.Refusals(self)
        self.decode_ms = deque(maxlen=100)
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self._image = checks.CheckedPublisher(self, image.Image, "image_raw", qos.RELIABLE, self.refusals)
        self._info = self.create_publisher(camera.CameraInfo, "camera_info", qos.RELIABLE)
        self._compressed = self.create_publisher(image.CompressedImage, "image_raw/compressed", qos.RELIABLE)
        if self.config["publish_tf"]:
            self._tf = camera.StaticTransforms(self)
            self._tf.send(
                [
                    camera.optical_transform(
                        self.config["parent_frame_id"],
                        self.config["frame_id"],
                        self.get_clock().now().to_msg(),
                    )
                ]
            )
        self.superseded = 0
        self._pending = None
        self._last_decode = -float("inf")
        if self.config["max_rate_hz"] > 0:
            self._period_s = 1.0 / self.config["max_rate_hz"]
            self.create_subscription(LatentCode, "latent", self._keep_newest, qos.LATEST)
            self.create_timer(self._period_s / 4, self._decode_pending)
        else:
            self.create_subscription(LatentCode, "latent", self._on_latent, qos.LATEST)
        self.create_timer(1.0, self._report)
        self.get_logger().info(f"decoding with {self.generator.generator_id}")

    def _keep_newest(self, msg: LatentCode):
        """max_rate_hz: decode the code now if its turn has come, else keep it as the newest."""
        self.superseded += self._pending is not None
        self._pending = msg
        self._decode_pending()

    def _decode_pending(self):
        if self._pending is None or time.monotonic() - self._last_decode < self._period_s:
            return
        msg, self._pending = self._pending, None
        self._last_decode = time.monotonic()
        self._on_latent(msg)

    def _on_latent(self, msg: LatentCode):
        try:
            code = latent.from_msg(msg)
            start = time.perf_counter()
            rgb = self.generator.synthesize(code if code.shape[0] == 1 else code[None])[0]
        except (latent.LatentCodeError, ValueError) as error:
            self.refusals.refuse("refused", f"latent code ({checks.describe(msg.header)}) refused: {error}")
            return
        self.decode_ms.append(1e3 * (time.perf_counter() - start))
        header = msg.header
        header.frame_id = self.config["frame_id"]
        if not self._image.publish(
            lambda: image.array_to_image(np.rint(rgb * 255).astype(np.uint8), "rgb8", header=header),
            checks.describe(msg.header),
            image=rgb,
        ):
            return
        height, width = rgb.shape[:2]
        self._info.publish(camera.camera_info(width, height, self.config["horizontal_fov_deg"], header))
        if self._compressed.get_subscription_count():
            pixels = np.rint(rgb * 255).astype(np.uint8)
            self._compressed.publish(
                image.array_to_compressed(pixels, "rgb8", self.config["jpeg_quality"], header)
            )

    def _report(self):
        values = {
            "decoded": self._image.published,
            "superseded": self.superseded,
            **self.refusals.values(),
            "generator": self.generator.generator_id,
        }
        if self.decode_ms:
            values["decode_ms_p50"] = f"{np.percentile(self.decode_ms, 50):.1f}"
        level = diagnostics.WARN if self.refusals.recent() else diagnostics.OK
        self._diagnostics.publish(level, self.refusals.last_message if level else "decoding", values)


def main(args=None):
    return node_main.run(LatentDecoder, args)
