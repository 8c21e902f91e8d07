"""``lsi launch``: run one of the package's ROS 2 launch files where ``ros2 launch`` is unavailable."""

import sys

from lsi_ros.launching import runner


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "launch",
        help="run a ROS 2 launch file without ros2 launch (same executables, arguments, parameter files)",
        description="Like `ros2 launch PACKAGE FILE name:=value ...`. On a ROS 2 install, use ros2 launch.",
    )
    parser.add_argument("package_or_file", help="package name (lsi_ros), or a path to a .launch.py file")
    parser.add_argument("launch_file", nargs="?", help="launch file name inside <package>/share/launch")
    parser.add_argument("arguments", nargs="*", help="launch arguments, name:=value")
    parser.add_argument("--duration", type=float, default=None, help="stop all nodes after this many seconds")
    parser.add_argument("--print", action="store_true", help="print the command lines instead of running")
    parser.set_defaults(func=main)


def main(args) -> int:
    launch_file, extra = args.launch_file, list(args.arguments)
    if launch_file is not None and ":=" in launch_file:
        launch_file, extra = None, [launch_file, *extra]
    try:
        path = runner.find_launch_file(args.package_or_file, launch_file)
        nodes = runner.plan(path, runner.parse_launch_arguments(extra))
    except runner.LaunchError as error:
        print(f"lsi launch: {error}", file=sys.stderr)
        return 2
    if args.print:
        for node in nodes:
            print(" ".join(node.command))
        return 0
    return runner.run(nodes, duration_s=args.duration)
