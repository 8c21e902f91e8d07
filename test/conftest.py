"""Test environment: ROS traffic on loopback only (discovery range and the Fast DDS profile
config/fastdds_localhost.xml), a DDS domain of this run's own, logs in log/.

Set before anything imports rclpy; child processes inherit it.
"""

import contextlib
import os
import random
import re
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
# Node and launch logs in the checkout's log/ folder (as the Makefile sets it), not a temporary folder.
os.environ.setdefault("ROS_LOG_DIR", str(Path(__file__).resolve().parents[1] / "log"))

import pytest  # noqa: E402

from lsi_ros.cli import retain_freed_memory  # noqa: E402
from lsi_ros.ros.launch_process import ros_environment  # noqa: E402

retain_freed_memory()  # the training and evaluation in tests run as `lsi` runs them

# The venv's install (share/lsi_ros, lib/lsi_ros) on the ament index and the loopback Fast DDS
# profile, as the Makefile sets them.
for name in ("AMENT_PREFIX_PATH", "FASTDDS_DEFAULT_PROFILES_FILE"):
    os.environ[name] = ros_environment()[name]


def node_command(executable: str, *ros_args: str) -> list:
    """The command line of one of the package's installed executables (lib/lsi_ros/<executable>)."""
    from ament_index_python.packages import get_package_prefix

    path = f"{get_package_prefix('lsi_ros')}/lib/lsi_ros/{executable}"
    return [sys.executable, path, *(["--ros-args", *ros_args] if ros_args else [])]


def wait_for(predicate, timeout=10.0, period=0.02):
    """Poll until predicate() is truthy or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(period)
        value = predicate()
    return value


@contextlib.contextmanager
def publishing(publisher, msg, period: float):
    """Publish msg every period seconds on a background thread while the block runs."""
    stop = threading.Event()

    def stream():
        while not stop.wait(period):
            publisher.publish(msg)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        yield
    finally:
        stop.set()
        streamer.join(timeout=5)


@pytest.fixture
def one_torch_thread():
    """One torch thread for training tests: on a 2-core machine more threads only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ros_context():
    """A private rclpy context for one test, shut down afterwards."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture
def spin(ros_context):
    """spin(*nodes): spin the nodes in a SingleThreadedExecutor on a background thread until teardown.

    It returns ``stop``: after it no callback runs, so a node can be destroyed and what the probes
    received read without a message arriving in between."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=ros_context)
    thread = None

    def stop():
        executor.shutdown(timeout_sec=2.0)
        if thread is not None:
            thread.join(timeout=5.0)
            assert not thread.is_alive(), "the executor did not stop spinning"

    def start(*nodes):
        nonlocal thread
        for node in nodes:
            executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        return stop

    yield start
    stop()


@pytest.fixture(scope="session")
def dcgan_data(tmp_path_factory):
    """Training and held-out faces of the DCGAN test double (fast), in a folder of this session."""
    from lsi_ros.models.generators import get_generator
    from lsi_ros.training import data

    root = tmp_path_factory.mktemp("faces")
    generator = get_generator("dcgan")
    data.generate(generator, "dcgan", 0, 1024, root)
    data.generate(generator, "dcgan", data.HELD_OUT_SEED_START, 256, root)
    return root


def dcgan_config(dcgan_data, **changes):
    """A small training run on the DCGAN test double's faces (M = 16, one step unless changed)."""
    from lsi_ros.training.train import TrainConfig

    values = dict(
        num_measurements=16,
        generator="dcgan",
        train_faces=256,
        validation_faces=64,
        steps=1,
        batch_size=16,
        width=64,
        depth=1,
        checkpoint_every=1,
        data_dir=str(dcgan_data),
    )
    return TrainConfig(**values | changes)


@pytest.fixture(scope="session")
def dcgan_model(dcgan_data):
    """A small M = 32 model trained on the DCGAN faces for a few hundred steps (~15 s)."""
    from lsi_ros.training.train import Trainer

    config = dcgan_config(
        dcgan_data,
        num_measurements=32,
        train_faces=896,
        validation_faces=128,
        steps=400,
        batch_size=64,
        width=256,
        checkpoint_every=400,
    )
    trainer = Trainer(config, dcgan_data / "run")
    trainer.fit()
    return trainer.export(dcgan_data / "m32.safetensors")


# What a GPU machine with torch alone offers the GPU commands (docs/training.md): torch (with what it
# requires), numpy, safetensors, tqdm and pytorch-msssim.
GPU_MACHINE_PACKAGES = ("torch", "numpy", "safetensors", "tqdm", "pytorch-msssim")


def installed_with_needs(names) -> set[str]:
    """The distributions ``names`` and everything they require, as installed here."""
    found, todo = set(), list(names)
    while todo:
        try:
            dist = metadata.distribution(todo.pop())
        except metadata.PackageNotFoundError:  # a platform's optional need (CUDA libraries on a CPU wheel)
            continue
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name not in found:
            found.add(name)
            todo += [re.match(r"[A-Za-z0-9_.-]+", r)[0] for r in dist.requires or () if "extra ==" not in r]
    return found


@pytest.fixture
def bare_gpu_python(tmp_path):
    """(command, environment) of an interpreter that sees the repository and GPU_MACHINE_PACKAGES
    alone: links to their installed files in a folder of their own, no site-packages (-S)."""
    site = Path(metadata.distribution("torch").locate_file(""))
    folder = tmp_path / "gpu-machine-site"
    folder.mkdir()
    for name in installed_with_needs(GPU_MACHINE_PACKAGES):
        for top in {f.parts[0] for f in metadata.distribution(name).files or ()} - {"..", "bin"}:
            if (site / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(site / top)
    command = [sys.executable, "-S"]
    env = {**os.environ, "PYTHONPATH": f"{Path(__file__).resolve().parents[1]}{os.pathsep}{folder}"}
    missing = subprocess.run([*command, "-c", "import openvino"], env=env, capture_output=True, text=True)
    assert "ModuleNotFoundError" in missing.stderr  # the interpreter really lacks the rest
    return command, env
