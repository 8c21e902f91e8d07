"""latent_source: publishes latent codes from a file or a seeded normal distribution, at a set rate.

For exercising the base station (decoder, classifier, links) without optics.

Publishes: ``latent`` (lsi_ros/LatentCode).
Parameters: see PARAMS.
"""

import numpy as np
from rclpy.node import Node

from lsi_ros.ros import latent, node_main, qos
from lsi_ros.ros.parameters import Param, declare
from lsi_ros.ros.reference import Topic

TOPICS = (Topic("pub", "latent", "lsi_ros/msg/LatentCode", "Seeded normal latent codes at rate_hz."),)

PARAMS = (
    Param("rate_hz", 10.0, "Publishing rate.", min=0.1, max=10000.0, applies="live"),
    Param(
        "count",
        0,
        "Publish no more than this many codes (0: forever).",
        min=0,
        max=2**31 - 1,
        applies="live",
    ),
    Param("latent_dim", 512, "Width of one latent vector.", min=1, max=65536),
    Param("latent_layers", 1, "Rows of the latent: 1 for W, n for W+.", min=1, max=64),
    Param("seed", 0, "Seed of the normal distribution the codes are drawn from.", min=0, max=2**31 - 1),
    Param("model_id", "", "model_id written into every message.", applies="live"),
    Param("frame_id", "lsi_camera", "header.frame_id written into every message.", applies="live"),
)


class LatentSource(Node):
    def __init__(self, **node_options):
        super().__init__("latent_source", **node_options)
        self.config = declare(self, PARAMS, apply=self._apply)
        self._rng = np.random.default_rng(self.config["seed"])
        self._sent = 0
        self._publisher = self.create_publisher(latent.LatentCode, "latent", qos.CODES)
        self._timer = self.create_timer(1.0 / self.config["rate_hz"], self._tick)

    def _apply(self, changes: dict):
        if "rate_hz" in changes:
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / changes["rate_hz"], self._tick)

    def _tick(self):
        if self.config["count"] and self._sent >= self.config["count"]:
            return
        code = self._rng.standard_normal((self.config["latent_layers"], self.config["latent_dim"]))
        msg = latent.to_msg(code, model_id=self.config["model_id"], pattern_set_id="")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.config["frame_id"]
        self._publisher.publish(msg)
        self._sent += 1


def main(args=None):
    return node_main.run(LatentSource, args)
