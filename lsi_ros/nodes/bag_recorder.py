"""bag_recorder: records topics to a rosbag2 (MCAP) bag from their raw CDR bytes.

For machines without rosbag2 (on a robot, ``ros2 bag record`` does the same). Topics are given as
``name:package/msg/Type`` strings; the bag is finalised when the node stops.
"""

import importlib

from ament_index_python.packages import get_package_share_directory
from rclpy.node import Node

from lsi_ros.recording import BagWriter, typestore_with
from lsi_ros.ros import node_main, qos
from lsi_ros.ros.parameters import Param, declare

SENSOR_TYPES = {"sensor_msgs/msg/Image", "lsi_ros/msg/Measurements"}

PARAMS = (
    Param("output", "runs/bag", "Folder of the bag to write (must not exist)."),
    Param(
        "topics",
        [
            "scene:sensor_msgs/msg/Image",
            "measurements:lsi_ros/msg/Measurements",
            "latent:lsi_ros/msg/LatentCode",
            "image:sensor_msgs/msg/Image",
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
        self.bag = BagWriter(self.config["output"], topics, typestore)
        for topic, msgtype in topics.items():
            profile = qos.SENSOR_DATA if msgtype in SENSOR_TYPES else qos.RECORDING
            self.create_subscription(
                message_class(msgtype), topic, lambda data, t=topic: self._record(t, data), profile, raw=True
            )
        self.get_logger().info(f"recording {sorted(topics)} to {self.config['output']}")

    def _record(self, topic: str, data: bytes):
        self.bag.write(topic, self.get_clock().now().nanoseconds, data)

    def destroy_node(self):
        self.bag.close()
        print(f"[bag_recorder] bag closed: {self.bag.counts}", flush=True)
        super().destroy_node()


def main(args=None):
    return node_main.run(BagRecorder, args)
