"""latent_classifier: latent codes -> attribute probabilities, through linear boundaries.

Subscribes: ``latent`` (lsi_ros/LatentCode). Publishes: ``attributes`` (lsi_ros/Attributes,
reliable), ``/diagnostics``. Without a boundaries file it says so (WARN) and publishes nothing; a
code of another width than the boundaries' is refused and counted.
"""

import numpy as np
from rclpy.node import Node

from lsi_ros.models.attributes import BoundariesError, load_boundaries
from lsi_ros.models.registry import find_model
from lsi_ros.msg import Attributes, LatentCode
from lsi_ros.ros import diagnostics, latent, node_main, qos
from lsi_ros.ros.parameters import Param, declare

PARAMS = (
    Param(
        "boundaries",
        "",
        "Attribute boundaries: a file (.safetensors) or a shipped name ('attributes'); empty: none.",
    ),
)


class LatentClassifier(Node):
    def __init__(self, **node_options):
        super().__init__("latent_classifier", **node_options)
        self.config = declare(self, PARAMS)
        self.classified = 0
        self.refused = 0
        self.boundaries = None
        self.status = "no boundaries file configured: publishing nothing"
        if self.config["boundaries"]:
            try:
                self.boundaries = load_boundaries(find_model(self.config["boundaries"]))
                self.status = f"attributes: {', '.join(self.boundaries.names)}"
            except (BoundariesError, FileNotFoundError) as error:
                self.status = f"cannot load boundaries: {error}"
        if self.boundaries is None:
            self.get_logger().warning(self.status)
        else:
            self.get_logger().info(self.status)
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self._publisher = self.create_publisher(Attributes, "attributes", qos.RELIABLE)
        self.create_subscription(LatentCode, "latent", self._on_latent, qos.RELIABLE)
        self.create_timer(1.0, self._report)

    def _on_latent(self, msg: LatentCode):
        if self.boundaries is None:
            return
        try:
            code = latent.from_msg(msg)
            if code.shape[-1] != self.boundaries.latent_dim:
                raise latent.LatentCodeError(
                    f"latent width {code.shape[-1]} is not the boundaries' {self.boundaries.latent_dim}"
                )
        except latent.LatentCodeError as error:
            self.refused += 1
            self.get_logger().warning(f"latent code refused: {error}", throttle_duration_sec=5.0)
            return
        # W+ codes: the boundaries live in W, so the layers' mean stands for the code.
        scores = self.boundaries.probabilities(code.mean(axis=0))
        out = Attributes(
            model_id=msg.model_id, names=list(self.boundaries.names), scores=scores.astype(np.float32)
        )
        out.header = msg.header
        self._publisher.publish(out)
        self.classified += 1

    def _report(self):
        values = {"classified": self.classified, "refused": self.refused}
        level = diagnostics.OK if self.boundaries is not None and not self.refused else diagnostics.WARN
        self._diagnostics.publish(level, self.status, values)


def main(args=None):
    return node_main.run(LatentClassifier, args)
