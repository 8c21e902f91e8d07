"""Camera conventions of the decoded image: a pinhole CameraInfo and the static TF of its frames.

The decoded face is the scene as the DMD sampled it through the objective, so it is published like
a camera's image: ``image_raw`` in an optical frame (z forward, x right, y down, REP 103) that hangs
off the camera body frame by the fixed rotation below, with a distortion-free CameraInfo.
"""

import math

from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

# Body frame (x forward, y left, z up) -> optical frame (z forward, x right, y down): x, y, z, w.
OPTICAL_ROTATION = (-0.5, 0.5, -0.5, 0.5)

# What tf2_ros.StaticTransformBroadcaster uses on /tf_static: every transform of the node in one
# latched message.
STATIC_TF_QOS = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def camera_info(width: int, height: int, horizontal_fov_deg: float, header=None) -> CameraInfo:
    """An ideal pinhole (no distortion, square pixels, principal point at the centre) of that size."""
    focal = (width / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    info = CameraInfo(width=int(width), height=int(height), distortion_model="plumb_bob")
    if header is not None:
        info.header = header
    info.d = [0.0] * 5
    info.k = [focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def optical_transform(parent_frame: str, optical_frame: str, stamp) -> TransformStamped:
    """The fixed transform from the camera body frame to its optical frame (same origin)."""
    transform = TransformStamped()
    transform.header.stamp = stamp
    transform.header.frame_id = parent_frame
    transform.child_frame_id = optical_frame
    rotation = transform.transform.rotation
    rotation.x, rotation.y, rotation.z, rotation.w = OPTICAL_ROTATION
    return transform


class StaticTransforms:
    """Publishes static transforms: tf2_ros's StaticTransformBroadcaster where tf2_ros is installed,
    else the same TFMessage on /tf_static with the same latched QoS."""

    def __init__(self, node):
        try:
            from tf2_ros import StaticTransformBroadcaster
        except ImportError:
            from tf2_msgs.msg import TFMessage

            publisher = node.create_publisher(TFMessage, "/tf_static", STATIC_TF_QOS)
            self._send = lambda transforms: publisher.publish(TFMessage(transforms=transforms))
        else:
            self._send = StaticTransformBroadcaster(node).sendTransform

    def send(self, transforms: list) -> None:
        self._send(list(transforms))
