"""dmd_driver: loads a pattern set, sequences it on the DMD backend, announces it to the pipeline.

Publishes: ``pattern_set`` (lsi_ros/PatternSetInfo, transient-local: late joiners get it),
``/diagnostics``. A pattern set that cannot be loaded is reported (ERROR) and the node keeps
running, so a fixed file or parameter can be retried without restarting the robot.
"""

from rclpy.node import Node

from lsi_ros.hardware import pattern_sources, projector_backends
from lsi_ros.msg import PatternSetInfo
from lsi_ros.optics import dmd as dmd_geometry
from lsi_ros.ros import diagnostics, node_main, qos
from lsi_ros.ros.parameters import Param, declare

PARAMS = (
    Param("backend", "sim", "DMD backend.", choices=("sim",)),
    Param(
        "device",
        "DLP6500",
        "Mirror array the patterns are placed on.",
        choices=tuple(dmd_geometry.MIRROR_ARRAYS),
    ),
    Param(
        "pattern_set",
        "hadamard-split:128",
        "A pattern-set file (.safetensors) or a generated family: hadamard-split:<P>, "
        "hadamard-reference:<P>, bernoulli:<P>[:seed].",
    ),
    Param("resolution", 256, "Sampling resolution of generated pattern sets.", min=8, max=1024),
    Param("pattern_rate_hz", 9500.0, "Binary pattern rate of the DMD.", min=1.0, max=50000.0),
    Param("cache_dir", "", "Where generated pattern sets are written (empty: ~/.cache/lsi_ros/patterns)."),
    Param("frame_id", "lsi_camera", "header.frame_id of the announcement."),
)


class DmdDriver(Node):
    def __init__(self, **node_options):
        super().__init__("dmd_driver", **node_options)
        self.config = declare(self, PARAMS)
        self._diagnostics = diagnostics.DiagnosticsReporter(self, hardware_id=self.config["device"])
        self._publisher = self.create_publisher(PatternSetInfo, "pattern_set", qos.LATCHED)
        self.projector = projector_backends()[self.config["backend"]](
            device=self.config["device"], pattern_rate_hz=self.config["pattern_rate_hz"]
        )
        self.error = ""
        self._start()
        self.create_timer(1.0, self._report)

    def _start(self):
        try:
            pattern_set, path = pattern_sources.resolve(
                self.config["pattern_set"], self.config["resolution"], self.config["cache_dir"] or None
            )
            self.projector.upload(pattern_set)
            self.projector.start()
        except (ValueError, OSError) as error:
            self.error = f"cannot display pattern set '{self.config['pattern_set']}': {error}"
            self.get_logger().error(self.error)
            return
        info = PatternSetInfo(
            pattern_set_id=pattern_set.pattern_set_id,
            kind=pattern_set.kind,
            model_id=pattern_set.model_id,
            resolution=pattern_set.resolution[0],
            num_patterns=pattern_set.num_patterns,
            pattern_rate_hz=self.config["pattern_rate_hz"],
            uri=str(path),
        )
        info.header.stamp = self.get_clock().now().to_msg()
        info.header.frame_id = self.config["frame_id"]
        self._publisher.publish(info)
        self.get_logger().info(
            f"displaying {pattern_set.kind} pattern set {pattern_set.pattern_set_id} "
            f"({pattern_set.num_patterns} patterns at {self.config['pattern_rate_hz']:.0f} Hz)"
        )

    def _report(self):
        if self.error:
            self._diagnostics.publish(diagnostics.ERROR, self.error, self.projector.status())
        else:
            self._diagnostics.publish(diagnostics.OK, "displaying", self.projector.status())

    def destroy_node(self):
        self.projector.stop()
        super().destroy_node()


def main(args=None):
    return node_main.run(DmdDriver, args)
