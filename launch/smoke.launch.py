"""Smoke test of a ROS 2 setup: latent_source publishes LatentCode, latent_monitor receives it."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([FindPackageShare("lsi_ros"), "config", "smoke.yaml"]),
                description="Parameter file of both nodes.",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes."),
            DeclareLaunchArgument("rate_hz", default_value="30.0", description="Latent codes per second."),
            DeclareLaunchArgument(
                "summary_path", default_value="", description="Where latent_monitor writes its JSON summary."
            ),
            Node(
                package="lsi_ros",
                executable="latent_source",
                name="latent_source",
                namespace=LaunchConfiguration("namespace"),
                parameters=[params_file, {"rate_hz": LaunchConfiguration("rate_hz")}],
                output="screen",
            ),
            Node(
                package="lsi_ros",
                executable="latent_monitor",
                name="latent_monitor",
                namespace=LaunchConfiguration("namespace"),
                parameters=[params_file, {"summary_path": LaunchConfiguration("summary_path")}],
                output="screen",
            ),
        ]
    )
