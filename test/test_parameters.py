"""Parameter files load into the nodes; bad values are refused with a message naming them."""

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import node_command
from rclpy.exceptions import InvalidParameterValueException
from rclpy.parameter import Parameter

from lsi_ros.nodes.latent_monitor import LatentMonitor
from lsi_ros.nodes.latent_source import LatentSource
from lsi_ros.ros.parameters import Param, ParameterError

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.mark.parametrize("config_file", sorted(CONFIG.glob("*.yaml")), ids=lambda p: p.name)
def test_parameter_files_are_valid_ros_yaml(config_file):
    document = yaml.safe_load(config_file.read_text())
    assert document, config_file
    for node_name, section in document.items():
        assert set(section) == {"ros__parameters"}, f"{config_file.name}: {node_name}"
        # Keyed for any namespace: a bare node name would not apply under namespace:=robot1.
        assert node_name == "/**" or node_name.startswith("/**/"), f"{config_file.name}: {node_name}"


@pytest.mark.parametrize("namespace", ["/", "/robot1", "/fleet/robot2"])
def test_params_file_loads_into_the_node(ros_context, namespace):
    path = CONFIG / "smoke.yaml"
    expected = yaml.safe_load(path.read_text())["/**/latent_source"]["ros__parameters"]
    node = LatentSource(
        context=ros_context,
        cli_args=["--ros-args", "-r", f"__ns:={namespace}", "--params-file", str(path)],
    )
    try:
        assert node.get_namespace() == namespace
        assert {name: node.config[name] for name in expected} == expected
        assert node.config["seed"] == 7  # not the default: the file was read
    finally:
        node.destroy_node()


def test_out_of_range_parameter_is_refused(ros_context):
    with pytest.raises(InvalidParameterValueException, match="rate_hz"):
        LatentSource(context=ros_context, parameter_overrides=[Parameter("rate_hz", value=-1.0)])
    with pytest.raises(InvalidParameterValueException, match="report_period_s"):
        LatentMonitor(context=ros_context, parameter_overrides=[Parameter("report_period_s", value=0.0)])


def test_choices_are_checked():
    param = Param("backend", "sim", "Detector backend.", choices=("sim", "serial_adc"))
    assert param.check("serial_adc") == "serial_adc"
    with pytest.raises(ParameterError, match="'backend' = 'usb' is not one of"):
        param.check("usb")
    assert "One of: sim, serial_adc." in param.descriptor().description


def test_node_executable_exits_with_a_clear_error_on_a_bad_parameter():
    result = subprocess.run(
        node_command("latent_source", "-p", "rate_hz:=-5.0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "rate_hz" in result.stderr
