"""Everything in simulation: scene_source -> capture.launch.py (robot) -> decode.launch.py (base station).

ros2 launch lsi_ros sim.launch.py model:=m128 source:=portraits
ros2 launch lsi_ros sim.launch.py namespace:=robot1   # every node and topic under /robot1
ros2 launch lsi_ros sim.launch.py framing:=auto source:=walking   # a person walking across the field
Each included file runs in its own scope (GroupAction), so that its arguments (params_file, ...) do
not leak into the next one.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# Seconds between the scene source's death and its restart.
RESPAWN_DELAY_S = 1.0


def included(file_name: str, arguments: dict) -> GroupAction:
    """One of the package's launch files in a scope of its own: its arguments do not leak out."""
    source = PythonLaunchDescriptionSource(
        PathJoinSubstitution([FindPackageShare("lsi_ros"), "launch", file_name])
    )
    return GroupAction([IncludeLaunchDescription(source, launch_arguments=arguments.items())])


def generate_launch_description():
    namespace = LaunchConfiguration("namespace")
    respawn = LaunchConfiguration("respawn")
    return LaunchDescription(
        [
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes."),
            DeclareLaunchArgument(
                "respawn",
                default_value="true",
                description="Restart a node that dies (true/false); the recorder is never restarted.",
            ),
            DeclareLaunchArgument(
                "model",
                default_value="",
                description="Model name or file (default m128, with framing:=auto m128-framed).",
            ),
            DeclareLaunchArgument(
                "generator",
                default_value="mobilestylegan",
                description="Generator of the model and the faces.",
            ),
            DeclareLaunchArgument(
                "source",
                default_value="demo",
                description="folder, video, faces, portraits, demo; unframed or walking (faces in a field).",
            ),
            DeclareLaunchArgument(
                "framing",
                default_value="off",
                choices=["auto", "off"],
                description="auto: find the face in the field and register the patterns onto it.",
            ),
            DeclareLaunchArgument(
                "field_size",
                default_value="1024",
                description="framing, unframed/walking: side of the simulated scene field in pixels, one "
                "a mirror (a face narrower than the 256 sampling pixels is undersampled).",
            ),
            DeclareLaunchArgument("path", default_value="", description="Image folder or video file."),
            DeclareLaunchArgument("scene_rate_hz", default_value="5.0", description="Scenes per second."),
            DeclareLaunchArgument("rviz", default_value="false", description="Start RViz."),
            DeclareLaunchArgument("web", default_value="false", description="Serve the live page."),
            DeclareLaunchArgument("web_port", default_value="8080", description="TCP port of web_view."),
            DeclareLaunchArgument(
                "decoder_threads",
                default_value="1",
                description="Decoder CPU threads: 1 keeps a core for the capture nodes on this one computer.",
            ),
            DeclareLaunchArgument(
                "decoder_max_rate_hz",
                default_value="1.0",
                description="Decoded images per second at most (0.0: every code): decoding one takes "
                "~0.3 s of a core, which the capture nodes on this one computer need.",
            ),
            DeclareLaunchArgument(
                "record", default_value="false", description="Record a bag (bag_recorder)."
            ),
            DeclareLaunchArgument(
                "bag", default_value="runs/latest/bag", description="Folder of the recorded bag."
            ),
            Node(
                package="lsi_ros",
                executable="scene_source",
                name="scene_source",
                namespace=namespace,
                parameters=[
                    {
                        "source": LaunchConfiguration("source"),
                        "path": LaunchConfiguration("path"),
                        "rate_hz": LaunchConfiguration("scene_rate_hz"),
                        "generator": LaunchConfiguration("generator"),
                        "field_size": LaunchConfiguration("field_size"),
                    }
                ],
                respawn=respawn,
                respawn_delay=RESPAWN_DELAY_S,
                output="screen",
            ),
            included(
                "capture.launch.py",
                {
                    "namespace": namespace,
                    "respawn": respawn,
                    "backend": "sim",
                    "model": LaunchConfiguration("model"),
                    "framing": LaunchConfiguration("framing"),
                    "field_size": LaunchConfiguration("field_size"),
                },
            ),
            included(
                "decode.launch.py",
                {
                    "namespace": namespace,
                    "respawn": respawn,
                    "rviz": LaunchConfiguration("rviz"),
                    "web": LaunchConfiguration("web"),
                    "web_port": LaunchConfiguration("web_port"),
                    "generator": LaunchConfiguration("generator"),
                    "decoder_threads": LaunchConfiguration("decoder_threads"),
                    "decoder_max_rate_hz": LaunchConfiguration("decoder_max_rate_hz"),
                },
            ),
            Node(
                package="lsi_ros",
                executable="bag_recorder",
                name="bag_recorder",
                namespace=namespace,
                parameters=[{"output": LaunchConfiguration("bag")}],
                condition=IfCondition(LaunchConfiguration("record")),
                output="screen",
            ),
        ]
    )
