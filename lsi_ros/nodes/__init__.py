"""ROS 2 nodes: one module per executable, each a thin wrapper over the core library.

Every module here that defines ``main()`` becomes an executable of the package of the same name
(CMakeLists.txt installs lib/lsi_ros/<name>; setup.py makes a console script).
"""

import os
import signal
import sys
from pathlib import Path


def _exit_quietly_on_interrupt(signum, frame):
    # os._exit, not sys.exit: SystemExit raised inside torch's import unwinds through its C++ start-up
    # code, which then aborts (SIGABRT). Nothing is open yet that needs closing.
    os._exit(0)


# A node executable interrupted while it still imports (torch alone takes seconds) exits 0 without
# a traceback; lsi_ros.ros.node_main.run restores Ctrl-C handling before rclpy starts.
if (Path(__file__).parent / f"{Path(sys.argv[0]).name}.py").is_file():
    signal.signal(signal.SIGINT, _exit_quietly_on_interrupt)
