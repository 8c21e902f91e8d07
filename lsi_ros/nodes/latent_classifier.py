"""latent_classifier: latent codes -> attribute probabilities, through linear boundaries.

Subscribes: ``latent`` (lsi_ros/LatentCode). Publishes: ``attributes`` (lsi_ros/Attributes,
reliable), ``/diagnostics``. Without a boundaries file it says so (WARN) and publishes nothing; a
code of another width than the boundaries', empty or non-finite is refused and counted, and so are
scores that come out non-finite (lsi_ros.ros.checks). Boundaries fitted on one LSI
model's own estimates (``estimate_boundaries``) read the codes of that model's pattern set; every
other code goes to ``boundaries``.
"""

import numpy as np
from rclpy.node import Node

from lsi_ros.models.attributes import BoundariesError, load_boundaries
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
        "('attributes-m128', ...): a code whose pattern_set_id is theirs is read by them instead.",
    ),
)


class LatentClassifier(Node):
    def __init__(self, **node_options):
        super().__init__("latent_classifier", **node_options)
        self.config = declare(self, PARAMS)
        self.refusals = checks.Refusals(self)
        self.by_estimate = 0
        self.boundaries = None
        self.status = "no boundaries file configured: publishing nothing"
        if self.config["boundaries"]:
            try:
                self.boundaries = load_boundaries(find_model(self.config["boundaries"]))
                self.status = f"attributes: {', '.join(self.boundaries.names)}"
            except (BoundariesError, FileNotFoundError) as error:
                self.status = f"cannot load boundaries: {error}"
        self.estimate_boundaries = {}  # pattern_set_id -> boundaries fitted on that model's estimates
        for name in filter(None, (n.strip() for n in self.config["estimate_boundaries"].split(","))):
            try:
                fitted = load_boundaries(find_model(name))
                if not fitted.pattern_set_id:
                    raise BoundariesError(f"{name} was fitted on true latents: it names no pattern set")
                self.estimate_boundaries[fitted.pattern_set_id] = fitted
            except (BoundariesError, FileNotFoundError) as error:
                self.status = f"cannot load estimate boundaries: {error}"
        if self.boundaries is None or self.status.startswith("cannot"):
            self.get_logger().warning(self.status)
        else:
            self.get_logger().info(self.status)
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self._publisher = checks.CheckedPublisher(self, Attributes, "attributes", qos.CODES, self.refusals)
        self.create_subscription(LatentCode, "latent", self._on_latent, qos.CODES)
        self.create_timer(1.0, self._report)

    def _on_latent(self, msg: LatentCode):
        boundaries = self.estimate_boundaries.get(msg.pattern_set_id, self.boundaries)
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
        # W+ codes: the boundaries live in W, so the layers' mean stands for the code.
        scores = boundaries.probabilities(code.mean(axis=0))
        out = Attributes(
            model_id=msg.model_id, names=list(boundaries.names), scores=scores.astype(np.float32)
        )
        out.header = msg.header
        if self._publisher.publish(out, checks.describe(msg.header), scores=scores):
            self.by_estimate += boundaries is not self.boundaries

    def _report(self):
        values = {
            "classified": self._publisher.published,
            "read_by_estimate_boundaries": self.by_estimate,
            **self.refusals.values(),
        }
        refused = self.refusals.recent()
        healthy = self.boundaries is not None and not refused and not self.status.startswith("cannot")
        level = diagnostics.OK if healthy else diagnostics.WARN
        self._diagnostics.publish(level, self.refusals.last_message if refused else self.status, values)


def main(args=None):
    return node_main.run(LatentClassifier, args)
