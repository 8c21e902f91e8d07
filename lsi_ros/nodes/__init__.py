"""ROS 2 nodes: one module per executable, each a thin wrapper over the core library.

Every module here that defines ``main()`` becomes an executable of the package of the same name
(CMakeLists.txt installs lib/lsi_ros/<name>; setup.py makes a console script).
"""

import signal
import sys
from pathlib import Path


def _exit_quietly_on_interrupt(signum, frame):
    sys.exit(0)


# A node executable interrupted while it still imports (torch alone takes seconds) exits 0 without
# a traceback; lsi_ros.ros.node_main.run restores Ctrl-C handling before rclpy starts.
if (Path(__file__).parent / f"{Path(sys.argv[0]).name}.py").is_file():
    signal.signal(signal.SIGINT, _exit_quietly_on_interrupt)
