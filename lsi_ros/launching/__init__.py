"""Running the package's standard ROS 2 launch files on machines without ``launch``/``launch_ros``.

``compat/`` implements the small part of the launch and launch_ros Python API that our launch files
use (LaunchDescription, DeclareLaunchArgument, LaunchConfiguration, PathJoinSubstitution,
FindPackageShare, IfCondition, Node); ``runner`` evaluates a launch file against it and starts the
same executables with the same arguments and parameter files that ``ros2 launch`` would. On a
ROS 2 install, use ``ros2 launch`` and none of this is imported.
"""
