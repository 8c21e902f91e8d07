"""bag_recorder: records topics to a rosbag2 (MCAP) bag from their raw CDR bytes.

For machines without rosbag2 (on a robot, ``ros2 bag record`` does the same). Topics are given as
``name:package/msg/Type`` strings. The bag survives a crash of the recorder: files of ``split_s``
seconds, metadata.yaml from the start, and at most ``flush_s`` of messages not yet on disk; after a
kill, ``lsi bag reindex`` recovers the file that was open (lsi_ros.recording). An ``output`` folder
that exists already is not touched: the bag goes to a sibling named after the time.
"""

import importlib

from ament_index_python.packages import get_package_share_directory
from rclpy.node import Node

from lsi_ros.recording import BagWriter, typestore_with
from lsi_ros.ros import node_main, qos
from lsi_ros.ros.parameters import Param, ParameterError, declare
from lsi_ros.ros.reference import Topic

SENSOR_TYPES = {"sensor_msgs/msg/Image", "lsi_ros/msg/Measurements"}

TOPICS = (Topic("sub", "<each of topics>", "<its type>", "Recorded from its raw CDR bytes."),)

PARAMS = (
    Param("output", "runs/bag", "Folder of the bag (if it exists: <output>_<date>T<time> instead)."),
    Param(
        "split_s",
        60.0,
        "Seconds per bag file; a crash leaves the files before it complete.",
        min=1.0,
        max=86400.0,
    ),
    Param(
        "flush_s",
        0.5,
        "Longest time a recorded message waits before it is written to disk.",
        min=0.01,
        max=60.0,
    ),
    Param(
        "topics",
        [
            "scene:sensor_msgs/msg/Image",
            "measurements:lsi_ros/msg/Measurements",
            "latent:lsi_ros/msg/LatentCode",
            "image_raw:sensor_msgs/msg/Image",
        ],
        "Topics to record, as name:package/msg/Type (relative names resolve in the node's namespace).",
    ),
)


def message_class(msgtype: str):
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class BagRecorder(Node):
    def __init__(self, **node_options):
        super().__init__("bag_recorder", **node_options)
        self.config = declare(self, PARAMS)
        topics = {
            self.resolve_topic_name(name): msgtype
            for name, msgtype in (entry.rsplit(":", 1) for entry in self.config["topics"])
        }
        typestore = typestore_with({"lsi_ros": f"{get_package_share_directory('lsi_ros')}/msg"})
        try:
            self.bag = BagWriter(
                self.config["output"],
                topics,
                typestore,
                split_s=self.config["split_s"],
                flush_s=self.config["flush_s"],
            )
        except OSError as error:
            raise ParameterError(
                f"cannot write a bag to output '{self.config['output']}': {error}"
            ) from error
        for topic, msgtype in topics.items():
            profile = qos.SENSOR_DATA if msgtype in SENSOR_TYPES else qos.RECORDING
            self.create_subscription(
                message_class(msgtype), topic, lambda data, t=topic: self._record(t, data), profile, raw=True
            )
        self.create_timer(self.config["flush_s"], self.bag.flush)
        moved = (
            "" if str(self.bag.path) == str(self.config["output"]) else f" ({self.config['output']} exists)"
        )
        self.get_logger().info(f"recording {sorted(topics)} to {self.bag.path}{moved}")

    def _record(self, topic: str, data: bytes):
        self.bag.write(topic, self.get_clock().now().nanoseconds, data)

    def destroy_node(self):
        # also runs (from rclpy's finaliser) for a node whose bag could not be opened
        if getattr(self, "bag", None) is not None:
            self.bag.close()
            print(f"[bag_recorder] bag {self.bag.path} closed: {self.bag.counts}", flush=True)
        super().destroy_node()


def main(args=None):
    return node_main.run(BagRecorder, args)
