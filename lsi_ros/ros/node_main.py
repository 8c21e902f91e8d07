"""The one main loop every lsi_ros node uses (portable across Jazzy and Kilted rclpy)."""

import signal
import sys
import threading

import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation

from lsi_ros.ros.parameters import ParameterError

RCLError = rclpy_implementation.RCLError  # the C extension's error type, the same on Jazzy and Kilted


def run(node_factory, args=None) -> int:
    """Init rclpy, build the node, spin until Ctrl-C or shutdown; exit 2 on a bad parameter.

    Ctrl-C can land between the executor's check that the context is alive and its building of the
    next wait set; rclpy then raises RCLError ("the given context is not valid") instead of
    ExternalShutdownException. With the context shut down that is a normal stop, not a failure.
    Ctrl-C while rclpy starts or the node is built is a normal stop too."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    node = None
    try:
        rclpy.init(args=args)
        node = node_factory()
        rclpy.spin(node)
    except (ParameterError, InvalidParameterValueException) as error:
        print(f"[lsi_ros] refusing to start: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
