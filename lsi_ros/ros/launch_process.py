"""`ros2 launch` as a child process, for the offline tools (lsi run, lsi smoke, benchmarks) and tests.

The launch file runs under the real launch system, as on a robot. The child gets a process group of
its own, so that a Ctrl-C meant for the caller does not reach the nodes twice: stopping sends SIGINT
to `ros2 launch` alone, which stops its nodes, and waits for it. Temporary files of the launch system
(parameter files written from launch-file dicts) go to a folder of this run that is removed after.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path


def loopback_profile() -> Path | None:
    """The Fast DDS profile that keeps DDS on 127.0.0.1 (config/fastdds_localhost.xml), from the source
    tree or the install."""
    for root in (Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / "lsi_ros"):
        if (root / "config" / "fastdds_localhost.xml").is_file():
            return root / "config" / "fastdds_localhost.xml"
    return None


def ros_environment(base=None) -> dict:
    """The environment nodes run in here: loopback-only discovery and transports (unless a Fast DDS
    profile is set already) and the venv on the ament index."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = loopback_profile()
    if profile is not None:
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if (Path(sys.prefix) / "share" / "lsi_ros").is_dir() and sys.prefix not in prefixes:
        prefixes.append(sys.prefix)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(prefixes)
    return env


def adopt_ros_environment() -> None:
    """Give this process the environment of the nodes it launches, so that a DDS participant it starts
    itself (a monitor) uses the same discovery range and transports, and finds the same packages."""
    os.environ.update(ros_environment())


def ros2_command() -> str:
    """The `ros2` command of this interpreter's environment (the venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("ros2")
    if beside.is_file():
        return str(beside)
    found = shutil.which("ros2")
    if found is None:
        raise FileNotFoundError(
            "the ros2 command is not installed: run `make setup`, or source a ROS 2 install "
            "(/opt/ros/<distro>/setup.bash)"
        )
    return found


# Seconds launch waits for a node to stop on SIGINT before SIGTERM; SIGKILL follows 5 s later.
SIGTERM_TIMEOUT_S = 15


class LaunchProcess:
    """``ros2 launch <package> <launch_file> name:=value ...``; a context manager that stops it on exit.

    ``stdout``/``stderr`` are passed to subprocess.Popen (default: this process's own). The nodes get
    ``sigterm_timeout`` seconds to stop on SIGINT (launch's own default, 5 s, is short for a node that
    closes a recording on a loaded computer)."""

    def __init__(
        self, launch_file: str, arguments=None, package="lsi_ros", env=None, stdout=None, stderr=None
    ):
        self.command = [ros2_command(), "launch", package, launch_file]
        arguments = {"sigterm_timeout": SIGTERM_TIMEOUT_S} | dict(arguments or {})
        empty = [name for name, value in arguments.items() if str(value) == ""]
        if empty:
            raise ValueError(f"ros2 launch takes no empty argument values (leave them out): {empty}")
        self.command += [f"{name}:={value}" for name, value in arguments.items()]
        self.tmp_dir = tempfile.mkdtemp(prefix="lsi_ros_launch_")
        environment = ros_environment(env) | {"TMPDIR": self.tmp_dir}
        # A child inherits an ignored SIGINT (a caller started in the background), and launch would
        # then never see the SIGINT that stops it.
        ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN and _in_main_thread()
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            self.process = subprocess.Popen(
                self.command, env=environment, stdout=stdout, stderr=stderr, start_new_session=True
            )
        finally:
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.pid = self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def node_pids(self) -> dict:
        """{node name: pid} of the node processes launch has started (their ``-r __node:=`` name)."""
        import psutil

        pids = {}
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return pids
        for child in children:
            try:
                arguments = child.cmdline()
            except psutil.Error:
                continue
            for argument in arguments:
                if argument.startswith("__node:="):
                    pids[argument.removeprefix("__node:=")] = child.pid
        return pids

    def stop(self, timeout: float = SIGTERM_TIMEOUT_S + 15.0) -> int:
        """SIGINT to `ros2 launch` (as Ctrl-C), which stops its nodes; wait. Whatever is still in the
        process group after ``timeout`` is killed (SIGTERM would make launch exit without stopping its
        nodes). Returns the exit code of `ros2 launch`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"ros2 launch did not stop within {timeout:.0f} s; killing it", file=sys.stderr)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        return self.process.returncode

    def __enter__(self):
        self._previous_sigterm = None
        if _in_main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self

    def __exit__(self, *exc_info):
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self.stop()


def _raise_keyboard_interrupt(signum, frame):
    """SIGTERM (a supervisor, a test, systemd) stops the launch the same way Ctrl-C does."""
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    """Signal handlers can only be changed from the main thread."""
    return threading.current_thread() is threading.main_thread()
