"""Stand-in for the ``launch_ros`` package (subset), used only by lsi_ros.launching.runner."""

from launch_ros import actions, substitutions

__all__ = ["actions", "substitutions"]
