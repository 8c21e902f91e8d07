"""The one main loop every lsi_ros node uses (portable across Jazzy and Kilted rclpy)."""

import sys

import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException

from lsi_ros.ros.parameters import ParameterError


def run(node_factory, args=None) -> int:
    """Init rclpy, build the node, spin until Ctrl-C or shutdown; exit 2 on a bad parameter."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        rclpy.spin(node)
    except (ParameterError, InvalidParameterValueException) as error:
        print(f"[lsi_ros] refusing to start: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
