"""latent_classifier: latent codes -> attribute probabilities, through linear boundaries.

Subscribes: ``latent`` (lsi_ros/LatentCode). Publishes: ``attributes`` (lsi_ros/Attributes,
reliable), ``/diagnostics``. Without a boundaries file it says so (WARN) and publishes nothing; a
code of another width than the boundaries', empty or non-finite is refused and counted, and so are
scores that come out non-finite (lsi_ros.ros.checks). Boundaries fitted on one LSI
model's own estimates (``estimate_boundaries``) read the codes that model made (``model_id``; a
fine-tune with the same patterns is another model); every other code goes to ``boundaries``
(lsi_ros.models.attributes.AttributeReader).
"""

import numpy as np
from rclpy.node import Node

from lsi_ros.models.attributes import AttributeReader, BoundariesError, load_boundaries
from lsi_ros.models.registry import find_model
from lsi_ros.msg import Attributes, LatentCode
from lsi_ros.ros import checks, diagnostics, latent, node_main, qos
from lsi_ros.ros.parameters import Param, declare
from lsi_ros.ros.reference import Topic

TOPICS = (
    Topic("sub", "latent", "lsi_ros/msg/LatentCode", "Latent codes to classify."),
    Topic("pub", "attributes", "lsi_ros/msg/Attributes", "Attribute probabilities, the code's header."),
    Topic(
        "pub",
        "/diagnostics",
        "diagnostic_msgs/msg/DiagnosticArray",
        "Counts of classified and refused codes.",
    ),
)

PARAMS = (
    Param(
        "boundaries",
        "",
        "Attribute boundaries: a file (.safetensors) or a shipped name ('attributes'); empty: none.",
    ),
    Param(
        "estimate_boundaries",
        "",
        "Boundaries fitted on LSI models' own latent estimates, comma-separated files or shipped names "
        "('attributes-m128', ...): a code whose model_id is theirs is read by them instead.",
    ),
)


class LatentClassifier(Node):
    def __init__(self, **node_options):
        super().__init__("latent_classifier", **node_options)
        self.config = declare(self, PARAMS)
        self.refusals = checks.Refusals(self)
        self.by_estimate = 0
        self.status = "no boundaries file configured: publishing nothing"
        self.reader = AttributeReader()
        if self.config["boundaries"]:
            try:
                self.reader.general = load_boundaries(find_model(self.config["boundaries"]))
                self.status = f"attributes: {', '.join(self.reader.general.names)}"
            except (BoundariesError, FileNotFoundError) as error:
                self.status = f"cannot load boundaries: {error}"
        for name in filter(None, (n.strip() for n in self.config["estimate_boundaries"].split(","))):
            try:
                self.reader.add_estimate_boundaries(load_boundaries(find_model(name)))
            except (BoundariesError, FileNotFoundError) as error:
                self.status = f"cannot load estimate boundaries {name}: {error}"
        if self.reader.general is None or self.status.startswith("cannot"):
            self.get_logger().warning(self.status)
        else:
            self.get_logger().info(self.status)
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self._publisher = checks.CheckedPublisher(self, Attributes, "attributes", qos.CODES, self.refusals)
        self.create_subscription(LatentCode, "latent", self._on_latent, qos.CODES)
        self.create_timer(1.0, self._report)

    def _on_latent(self, msg: LatentCode):
        boundaries = self.reader.boundaries_for(msg.model_id)
        if boundaries is None:
            return
        try:
            code = latent.from_msg(msg)
            if code.shape[-1] != boundaries.latent_dim:
                raise latent.LatentCodeError(
                    f"latent width {code.shape[-1]} is not the boundaries' {boundaries.latent_dim}"
                )
        except latent.LatentCodeError as error:
            self.refusals.refuse("refused", f"latent code ({checks.describe(msg.header)}) refused: {error}")
            return
        scores = boundaries.read(code)
        out = Attributes(
            model_id=msg.model_id, names=list(boundaries.names), scores=scores.astype(np.float32)
        )
        out.header = msg.header
        if self._publisher.publish(out, checks.describe(msg.header), scores=scores):
            self.by_estimate += boundaries is not self.reader.general

    def _report(self):
        values = {
            "classified": self._publisher.published,
            "read_by_estimate_boundaries": self.by_estimate,
            **self.refusals.values(),
        }
        refused = self.refusals.recent()
        healthy = self.reader.general is not None and not refused and not self.status.startswith("cannot")
        level = diagnostics.OK if healthy else diagnostics.WARN
        self._diagnostics.publish(level, self.refusals.last_message if refused else self.status, values)


def main(args=None):
    return node_main.run(LatentClassifier, args)
