"""The robot side of the camera: DMD driver + photodiode sampler + latent encoder -> LatentCode.

ros2 launch lsi_ros capture.launch.py backend:=sim model:=m128
ros2 launch lsi_ros capture.launch.py dmd_backend:=dlpc900 detector_backend:=serial_adc \
    params_file:=my_camera.yaml   # a copy of config/capture.yaml with the port and calibration file
The DMD shows the model's learned patterns unless pattern_set:= names another set (the encoder then
refuses the frames, by design: its model only understands its own patterns). Every node runs in
namespace:= and is started again RESPAWN_DELAY_S after it dies (respawn:=false turns that off).

framing:=auto finds the face in the field with the camera itself and shows the model's patterns
registered onto it (face_locator, dmd_driver and photodiode_sampler with framing: docs/ros2.md), and
the model is m128-framed unless model:= names another (m128's encoder trained on the locator's framing
errors, same patterns); framing:=off (default) leaves the patterns where the calibration puts them.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from lsi_ros.models.registry import DEFAULT_MODEL, FRAMED_MODEL

# Seconds between a node's death and its restart (a USB device re-enumerates meanwhile).
RESPAWN_DELAY_S = 1.0


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    backend = LaunchConfiguration("backend")
    framing_on = PythonExpression(["'", LaunchConfiguration("framing"), "' == 'auto'"])
    # No model named: m128, or behind the locator the m128 encoder trained on its framing errors.
    model = PythonExpression(
        [
            "'",
            LaunchConfiguration("model"),
            "' or ('",
            FRAMED_MODEL,
            "' if ",
            framing_on,
            " else '",
            DEFAULT_MODEL,
            "')",
        ]
    )
    field_size = LaunchConfiguration("field_size")
    respawned = {
        "namespace": LaunchConfiguration("namespace"),
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
                default_value=PathJoinSubstitution([FindPackageShare("lsi_ros"), "config", "capture.yaml"]),
                description="Parameter file of the capture nodes.",
            ),
            DeclareLaunchArgument(
                "backend", default_value="sim", description="Default of dmd_backend and detector_backend."
            ),
            DeclareLaunchArgument(
                "dmd_backend",
                default_value=backend,
                description="dmd_driver backend: sim, dlpc900, alp4, video.",
            ),
            DeclareLaunchArgument(
                "detector_backend",
                default_value=backend,
                description="photodiode_sampler backend: sim, serial_adc, nidaqmx.",
            ),
            # Before model and pattern_set, whose defaults read it.
            DeclareLaunchArgument(
                "framing",
                default_value="off",
                choices=["auto", "off"],
                description="auto: find the face and register the patterns onto it; off: as calibrated.",
            ),
            DeclareLaunchArgument(
                "model",
                default_value="",
                description=f"Model name or file (m32 ... m256; m32-real, m128-real for real people; "
                f"default {DEFAULT_MODEL}, with framing:=auto {FRAMED_MODEL}).",
            ),
            DeclareLaunchArgument(
                "pattern_set",
                default_value=["model:", model],
                description="What the DMD shows: model:<name>, a pattern-set file, hadamard-split:<P>, ...",
            ),
            DeclareLaunchArgument(
                "field_size",
                default_value="1024",
                description="framing: side of the scene field in pixels (boxes; the simulated field).",
            ),
            Node(
                package="lsi_ros",
                executable="dmd_driver",
                name="dmd_driver",
                parameters=[
                    params_file,
                    {
                        "backend": LaunchConfiguration("dmd_backend"),
                        "pattern_set": LaunchConfiguration("pattern_set"),
                        "framing": framing_on,
                    },
                ],
                **respawned,
            ),
            Node(
                package="lsi_ros",
                executable="photodiode_sampler",
                name="photodiode_sampler",
                parameters=[
                    params_file,
                    {
                        "backend": LaunchConfiguration("detector_backend"),
                        "framing": framing_on,
                        "field_size": field_size,
                    },
                ],
                **respawned,
            ),
            Node(
                package="lsi_ros",
                executable="face_locator",
                name="face_locator",
                parameters=[params_file, {"field_size": field_size}],
                condition=IfCondition(framing_on),
                **respawned,
            ),
            Node(
                package="lsi_ros",
                executable="latent_encoder",
                name="latent_encoder",
                parameters=[params_file, {"model": model}],
                **respawned,
            ),
        ]
    )
