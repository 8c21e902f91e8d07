"""latent_decoder: latent codes -> images (rgb8) for RViz, through the frozen generator. Base station.

Subscribes: ``latent`` (lsi_ros/LatentCode). Publishes: ``image`` (sensor_msgs/Image rgb8, reliable),
``/diagnostics``. Codes of the wrong width or with non-finite values are refused and counted.
"""

import time

import numpy as np
from rclpy.node import Node

from lsi_ros.models.generators import get_generator
from lsi_ros.msg import LatentCode
from lsi_ros.ros import diagnostics, image, latent, node_main, qos
from lsi_ros.ros.parameters import Param, declare

PARAMS = (
    Param(
        "generator", "mobilestylegan", "Generator the codes belong to.", choices=("mobilestylegan", "dcgan")
    ),
    Param("frame_id", "", "header.frame_id of the images (empty: copy the code's)."),
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
        self.decoded = 0
        self.refused = 0
        self.last_error = ""
        self.decode_ms = []
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self._publisher = self.create_publisher(image.Image, "image", qos.RELIABLE)
        self.create_subscription(LatentCode, "latent", self._on_latent, qos.LATEST)
        self.create_timer(1.0, self._report)
        self.get_logger().info(f"decoding with {self.generator.generator_id}")

    def _on_latent(self, msg: LatentCode):
        try:
            code = latent.from_msg(msg)
            start = time.perf_counter()
            rgb = self.generator.synthesize(code if code.shape[0] == 1 else code[None])[0]
        except (latent.LatentCodeError, ValueError) as error:
            self.refused += 1
            self.last_error = f"latent code refused: {error}"
            self.get_logger().warning(self.last_error, throttle_duration_sec=5.0)
            return
        self.decode_ms.append(1e3 * (time.perf_counter() - start))
        out = image.array_to_image(np.rint(rgb * 255).astype(np.uint8), "rgb8", header=msg.header)
        if self.config["frame_id"]:
            out.header.frame_id = self.config["frame_id"]
        self._publisher.publish(out)
        self.decoded += 1

    def _report(self):
        values = {"decoded": self.decoded, "refused": self.refused, "generator": self.generator.generator_id}
        if self.decode_ms:
            values["decode_ms_p50"] = f"{np.percentile(self.decode_ms[-100:], 50):.1f}"
        level = diagnostics.WARN if self.refused else diagnostics.OK
        self._diagnostics.publish(level, self.last_error or "decoding", values)


def main(args=None):
    return node_main.run(LatentDecoder, args)
