"""latent_decoder: latent codes -> images (rgb8) for RViz, through the frozen generator. Base station.

Subscribes: ``latent`` (lsi_ros/LatentCode). Publishes: ``image`` (sensor_msgs/Image rgb8, reliable),
``/diagnostics``. Codes of the wrong width, empty or with non-finite values are refused and counted;
a code the generator turns into non-finite pixels gives no image (lsi_ros.ros.checks).
"""

import time
from collections import deque

import numpy as np
from rclpy.node import Node

from lsi_ros.models.generators import get_generator
from lsi_ros.msg import LatentCode
from lsi_ros.ros import checks, diagnostics, image, latent, node_main, qos
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
        self.refusals = checks.Refusals(self)
        self.decode_ms = deque(maxlen=100)
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self._publisher = checks.CheckedPublisher(self, image.Image, "image", qos.RELIABLE, self.refusals)
        self.create_subscription(LatentCode, "latent", self._on_latent, qos.LATEST)
        self.create_timer(1.0, self._report)
        self.get_logger().info(f"decoding with {self.generator.generator_id}")

    def _on_latent(self, msg: LatentCode):
        try:
            code = latent.from_msg(msg)
            start = time.perf_counter()
            rgb = self.generator.synthesize(code if code.shape[0] == 1 else code[None])[0]
        except (latent.LatentCodeError, ValueError) as error:
            self.refusals.refuse("refused", f"latent code ({checks.describe(msg.header)}) refused: {error}")
            return
        self.decode_ms.append(1e3 * (time.perf_counter() - start))
        self._publisher.publish(lambda: self._image(rgb, msg.header), checks.describe(msg.header), image=rgb)

    def _image(self, rgb: np.ndarray, header) -> image.Image:
        out = image.array_to_image(np.rint(rgb * 255).astype(np.uint8), "rgb8", header=header)
        if self.config["frame_id"]:
            out.header.frame_id = self.config["frame_id"]
        return out

    def _report(self):
        values = {
            "decoded": self._publisher.published,
            **self.refusals.values(),
            "generator": self.generator.generator_id,
        }
        if self.decode_ms:
            values["decode_ms_p50"] = f"{np.percentile(self.decode_ms, 50):.1f}"
        level = diagnostics.WARN if self.refusals.recent() else diagnostics.OK
        self._diagnostics.publish(level, self.refusals.last_message if level else "decoding", values)


def main(args=None):
    return node_main.run(LatentDecoder, args)
