"""The launch files under the real launch system, as on a robot: `ros2 launch --show-args`, the whole
simulated camera under a namespace with its parameter files applied, and every long-running node
coming back after a SIGKILL with the pipeline resuming (capture.launch.py and decode.launch.py run
here as sim.launch.py includes them; smoke.launch.py runs in test_cli's `lsi smoke`)."""

import collections
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for

from lsi_ros.ros.launch_process import LaunchProcess, ros2_command, ros_environment

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
NAMESPACE = "/robot1"
# Each long-running node of sim.launch.py and the output that shows it is back at work (the
# classifier's boundaries do not read the DCGAN test double's codes: it reports, under its namespaced
# name, and publishes nothing).
RESPAWNED = {
    "scene_source": "latent",
    "dmd_driver": "latent",
    "photodiode_sampler": "latent",
    "latent_encoder": "latent",
    "latent_decoder": "image_raw",
    "latent_classifier": f"diagnostics/{NAMESPACE.strip('/')}/latent_classifier",
}
MAX_OUTAGE_S = 10.0


def ros2(*arguments, timeout=60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ros2_command(), *arguments], env=ros_environment(), capture_output=True, text=True, timeout=timeout
    )


def declared_arguments(launch_file: Path) -> list:
    """The names the launch file declares, read by the real launch API."""
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    description = PythonLaunchDescriptionSource(str(launch_file)).try_get_launch_description_without_context()
    return [argument.name for argument in description.get_launch_arguments()]


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_show_args_lists_every_argument(launch_file):
    result = ros2("launch", "lsi_ros", launch_file.name, "--show-args")
    assert result.returncode == 0, result.stderr
    shown = re.findall(r"^    '(\w+)':$", result.stdout, flags=re.MULTILINE)
    own = declared_arguments(launch_file)
    assert "namespace" in own
    assert set(own) <= set(shown), result.stdout
    if launch_file.name != "smoke.launch.py":
        assert "respawn" in own


def test_installed_launch_and_config_files_are_current():
    """`ros2 launch` reads the installed copies (share/lsi_ros): `make setup` refreshes them."""
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("lsi_ros"))
    for source in [*LAUNCH_FILES, *(REPO / "config").glob("*.yaml"), *(REPO / "rviz").glob("*.rviz")]:
        installed = share / source.parent.name / source.name
        assert installed.read_text() == source.read_text(), f"{installed} is stale: run make setup"


def test_pkg_executables_lists_every_node():
    result = ros2("pkg", "executables", "lsi_ros")
    assert result.returncode == 0, result.stderr
    nodes = {p.stem for p in (REPO / "lsi_ros" / "nodes").glob("[a-z]*.py")}
    assert set(result.stdout.split()) - {"lsi_ros"} == nodes


class Probe:
    """Arrival times (monotonic) of the namespaced pipeline outputs and of each node's diagnostics."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image

        from lsi_ros.msg import LatentCode
        from lsi_ros.ros import qos

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("launch_probe", namespace=NAMESPACE, context=self.context)
        self.arrivals = collections.defaultdict(list)
        for topic, kind in (("latent", LatentCode), ("image_raw", Image)):
            self.node.create_subscription(
                kind, topic, lambda _, t=topic: self.arrivals[t].append(time.monotonic()), qos.RELIABLE
            )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_diagnostics(self, array):
        for status in array.status:
            self.arrivals[f"diagnostics/{status.name}"].append(time.monotonic())

    def first_after(self, topic: str, moment: float):
        return next((t for t in self.arrivals[topic] if t > moment), None)

    def close(self):
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture(scope="module")
def sim(dcgan_model):
    """`ros2 launch lsi_ros sim.launch.py namespace:=robot1` with the DCGAN test double, and a probe."""
    arguments = {
        "namespace": NAMESPACE.strip("/"),
        "model": dcgan_model,
        "generator": "dcgan",
        "source": "faces",
        "scene_rate_hz": 4.0,
    }
    probe = Probe()
    launch = LaunchProcess("sim.launch.py", arguments)
    try:
        assert wait_for(lambda: probe.arrivals["latent"] or not launch.running(), timeout=240, period=0.2)
        assert probe.arrivals["latent"], "no latent code arrived"
        yield launch, probe
    finally:
        launch.stop()
        probe.close()


def test_nodes_and_topics_live_in_the_namespace(sim):
    expected = {f"{NAMESPACE}/{name}" for name in RESPAWNED}

    def nodes():
        return set(ros2("node", "list", "--no-daemon", "--spin-time", "2").stdout.split())

    wanted = {f"{NAMESPACE}/{t}" for t in ("scene", "measurements", "latent", "image_raw", "camera_info")}
    seen = set()

    def all_topics_seen():
        seen.update(ros2("topic", "list", "--no-daemon", "--spin-time", "2").stdout.split())
        return seen >= wanted

    assert wait_for(lambda: nodes() >= expected, timeout=60, period=1.0), nodes()
    # Endpoints are discovered after their participants: ask again until all have been seen.
    assert wait_for(all_topics_seen, timeout=30, period=1.0), sorted(wanted - seen)
    assert not {"/latent", "/image_raw", "/measurements"} & seen


@pytest.mark.parametrize(
    ("node", "parameter", "expected"),
    [
        # config/capture.yaml: 200.0, the node's default is 5000.0.
        ("photodiode_sampler", "photon_flux", "Double value is: 200.0"),
        # config/decode.yaml names the boundaries; the node's default is none.
        ("latent_classifier", "boundaries", "String value is: attributes"),
        # A launch argument over the file: sim.launch.py's decoder_threads 1 over decode.yaml's 0.
        ("latent_decoder", "threads", "Integer value is: 1"),
    ],
)
def test_parameter_files_apply_under_the_namespace(sim, node, parameter, expected):
    def get():
        return ros2("param", "get", "--no-daemon", "--spin-time", "3", f"{NAMESPACE}/{node}", parameter)

    result = wait_for(lambda: (answer := get()).returncode == 0 and answer, timeout=60, period=1.0)
    assert result, get().stderr
    assert result.stdout.strip() == expected


def outage_after_sigkill(launch, probe, name: str, topic: str) -> float:
    """SIGKILL one node; seconds until its topic has output again from the restarted pipeline."""
    pid = launch.node_pids()[name]
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    restarted = wait_for(lambda: launch.node_pids().get(name, pid) != pid, timeout=MAX_OUTAGE_S)
    assert restarted, f"{name} was not restarted within {MAX_OUTAGE_S} s"
    restarted_at = time.monotonic()
    resumed = wait_for(lambda: probe.first_after(topic, restarted_at), timeout=30, period=0.05)
    assert resumed, f"no {topic} after {name} came back"
    return resumed - killed_at


def test_each_node_comes_back_after_sigkill_and_the_pipeline_resumes(sim):
    launch, probe = sim
    outages = {
        name: round(outage_after_sigkill(launch, probe, name, topic), 2) for name, topic in RESPAWNED.items()
    }
    print(f"outage from SIGKILL to the next output, seconds: {outages}")
    assert max(outages.values()) <= MAX_OUTAGE_S, outages


def test_launch_stops_cleanly_on_sigint(sim):
    launch, _ = sim
    pids = launch.node_pids()
    assert set(pids) == set(RESPAWNED)
    assert launch.stop() == 0
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not Path(launch.tmp_dir).exists(), "the launch left its temporary folder behind"
