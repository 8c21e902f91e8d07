"""launch_ros.actions.Node (subset): what to start; the runner turns it into a command line."""

from launch.actions import Action


class Node(Action):
    def __init__(
        self,
        *,
        package,
        executable,
        name=None,
        namespace=None,
        parameters=None,
        remappings=None,
        arguments=None,
        output="log",
        ros_arguments=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.package = package
        self.executable = executable
        self.name = name
        self.namespace = namespace
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.arguments = list(arguments or [])
        self.ros_arguments = list(ros_arguments or [])
        self.output = output
