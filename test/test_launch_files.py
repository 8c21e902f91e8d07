"""Every launch file evaluates, and its executables and parameter files resolve in the install."""

import os
from pathlib import Path

import pytest
import yaml

from lsi_ros.launching import runner

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def test_there_is_a_capture_launch_file():
    assert "capture.launch.py" in {p.name for p in LAUNCH_FILES}


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_resolves(launch_file, tmp_path):
    installed = runner.find_launch_file("lsi_ros", launch_file.name)
    assert installed.read_text() == launch_file.read_text(), "installed launch file is stale: run make setup"
    nodes = runner.plan(installed, tmp_dir=str(tmp_path))
    assert nodes, f"{launch_file.name} starts no node"
    for node in nodes:
        assert os.access(node.executable, os.X_OK), node.executable
        assert node.command[node.command.index("--ros-args") + 2] == f"__node:={node.name}"
        for path in node.parameter_files:
            document = yaml.safe_load(Path(path).read_text())
            keys = [k for k in document if k in (node.name, "/**", f"/{node.name}")]
            assert keys, f"{path} has no parameters for node {node.name}"
            assert all("ros__parameters" in document[k] for k in keys)


def test_dict_parameters_become_a_params_file_like_launch_ros(tmp_path):
    smoke = runner.find_launch_file("lsi_ros", "smoke.launch.py")
    nodes = runner.plan(smoke, {"rate_hz": "12.5", "summary_path": "/tmp/x.json"}, tmp_dir=str(tmp_path))
    source = next(n for n in nodes if n.name == "latent_source")
    overrides = yaml.safe_load(Path(source.parameter_files[-1]).read_text())
    assert overrides == {"/**": {"ros__parameters": {"rate_hz": 12.5}}}
    assert source.parameter_files[0].endswith("share/lsi_ros/config/smoke.yaml")


def test_unknown_or_malformed_launch_arguments_are_refused(tmp_path):
    smoke = runner.find_launch_file("lsi_ros", "smoke.launch.py")
    with pytest.raises(runner.LaunchError, match="unknown launch arguments"):
        runner.plan(smoke, {"no_such_argument": "1"}, tmp_dir=str(tmp_path))
    with pytest.raises(runner.LaunchError, match="name:=value"):
        runner.parse_launch_arguments(["model=m128"])
    with pytest.raises(runner.LaunchError, match="not found"):
        runner.plan(smoke, {"params_file": str(tmp_path / "missing.yaml")}, tmp_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("arguments", "dmd", "detector"),
    [
        ({}, "sim", "sim"),
        ({"backend": "sim"}, "sim", "sim"),
        ({"dmd_backend": "dlpc900", "detector_backend": "serial_adc"}, "dlpc900", "serial_adc"),
    ],
)
def test_capture_backends_default_to_backend_and_can_be_chosen_per_device(tmp_path, arguments, dmd, detector):
    capture = runner.find_launch_file("lsi_ros", "capture.launch.py")
    nodes = {n.name: n for n in runner.plan(capture, arguments, tmp_dir=str(tmp_path))}

    def backend(name):
        return yaml.safe_load(Path(nodes[name].parameter_files[-1]).read_text())["/**"]["ros__parameters"][
            "backend"
        ]

    assert (backend("dmd_driver"), backend("photodiode_sampler")) == (dmd, detector)
