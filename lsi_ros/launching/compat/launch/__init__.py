"""Stand-in for the ``launch`` package (subset), used only by lsi_ros.launching.runner."""

from launch import actions, conditions, launch_description_sources, substitutions
from launch.launch_description import LaunchDescription

__all__ = ["LaunchDescription", "actions", "conditions", "launch_description_sources", "substitutions"]
