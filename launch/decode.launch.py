"""The base station: latent codes -> images (latent_decoder) and attributes (latent_classifier), and RViz
or the browser page (web_view).

ros2 launch lsi_ros decode.launch.py rviz:=true
ros2 launch lsi_ros decode.launch.py web:=true    # then open http://127.0.0.1:8080/
Every node runs in namespace:= (RViz's topics are relative to it); the decoder, the classifier and the
web view are started again RESPAWN_DELAY_S after they die (respawn:=false turns that off).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# Seconds between a node's death and its restart.
RESPAWN_DELAY_S = 1.0


def generate_launch_description():
    share = FindPackageShare("lsi_ros")
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    respawned = {
        "namespace": namespace,
        "respawn": LaunchConfiguration("respawn"),
        "respawn_delay": RESPAWN_DELAY_S,
        "output": "screen",
    }
    return LaunchDescription(
        [
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes."),
            DeclareLaunchArgument(
                "respawn", default_value="true", description="Restart a node that dies (true/false)."
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "decode.yaml"]),
                description="Parameter file of the base-station nodes.",
            ),
            DeclareLaunchArgument(
                "generator", default_value="mobilestylegan", description="Decoder generator."
            ),
            DeclareLaunchArgument(
                "rviz", default_value="false", description="Start RViz with rviz/lsi.rviz."
            ),
            DeclareLaunchArgument(
                "web", default_value="false", description="Serve the live page (web_view)."
            ),
            DeclareLaunchArgument(
                "web_host",
                default_value="127.0.0.1",
                description="Address web_view binds; anything but 127.0.0.1 exposes the camera to a network.",
            ),
            DeclareLaunchArgument("web_port", default_value="8080", description="TCP port of web_view."),
            DeclareLaunchArgument(
                "decoder_threads",
                default_value="0",
                description="CPU threads of the decoder (0: all; 1 when capture shares the computer).",
            ),
            DeclareLaunchArgument(
                "decoder_max_rate_hz",
                default_value="0.0",
                description="Decoded images per second at most, of the newest code (0.0: every code).",
            ),
            Node(
                package="lsi_ros",
                executable="latent_decoder",
                name="latent_decoder",
                parameters=[
                    params_file,
                    {
                        "generator": LaunchConfiguration("generator"),
                        "threads": LaunchConfiguration("decoder_threads"),
                        "max_rate_hz": LaunchConfiguration("decoder_max_rate_hz"),
                    },
                ],
                **respawned,
            ),
            Node(
                package="lsi_ros",
                executable="latent_classifier",
                name="latent_classifier",
                parameters=[params_file],
                **respawned,
            ),
            Node(
                package="lsi_ros",
                executable="web_view",
                name="web_view",
                parameters=[
                    params_file,
                    {"host": LaunchConfiguration("web_host"), "port": LaunchConfiguration("web_port")},
                ],
                condition=IfCondition(LaunchConfiguration("web")),
                **respawned,
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=namespace,
                arguments=["-d", PathJoinSubstitution([share, "rviz", "lsi.rviz"])],
                condition=IfCondition(LaunchConfiguration("rviz")),
            ),
        ]
    )
