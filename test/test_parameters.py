"""Parameter files load into the nodes; bad values are refused with a message naming them."""

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import node_command, wait_for
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
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


def _set_parameters(probe, node_name: str, *parameters: Parameter):
    """A real SetParameters service call, as `ros2 param set` makes it; returns the results."""
    from rcl_interfaces.srv import SetParameters

    client = probe.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(SetParameters.Request(parameters=[p.to_parameter_msg() for p in parameters]))
    assert wait_for(future.done, timeout=10), "no answer from the set_parameters service"
    return future.result().results


def test_an_integer_is_accepted_for_a_float_parameter(ros_context):
    node = LatentSource(context=ros_context, parameter_overrides=[Parameter("rate_hz", value=30)])
    try:
        assert node.config["rate_hz"] == 30.0 and isinstance(node.config["rate_hz"], float)
        assert node.get_parameter("rate_hz").type_ == Parameter.Type.DOUBLE
    finally:
        node.destroy_node()


def test_node_executable_takes_an_integer_for_a_float_on_the_command_line(ros_context, spin):
    from lsi_ros.ros import latent, qos

    probe = Node("int_for_float_probe", context=ros_context)
    received = []
    probe.create_subscription(latent.LatentCode, "latent", received.append, qos.RELIABLE)
    spin(probe)
    process = subprocess.Popen(
        node_command("latent_source", "-p", "rate_hz:=30"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: len(received) >= 5 or process.poll() is not None, timeout=30)
        assert process.poll() is None, process.stderr.read()
        assert len(received) >= 5
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_read_only_parameter_is_refused_with_a_reason(ros_context, spin):
    node = LatentSource(context=ros_context)
    probe = Node("read_only_probe", context=ros_context)
    spin(node, probe)
    (result,) = _set_parameters(probe, "latent_source", Parameter("seed", value=3))
    assert not result.successful and "read-only" in result.reason and "seed" in result.reason
    assert node.config["seed"] == 0 and node.get_parameter("seed").value == 0
    assert node.describe_parameter("seed").read_only
    assert "Read-only" in node.describe_parameter("seed").description


def test_a_live_parameter_takes_effect(ros_context, spin):
    from lsi_ros.ros import latent

    node = LatentSource(context=ros_context, parameter_overrides=[Parameter("rate_hz", value=2.0)])
    probe = Node("live_probe", context=ros_context)
    arrivals = []
    probe.create_subscription(latent.LatentCode, "latent", lambda m: arrivals.append(time.monotonic()), 100)
    spin(node, probe)
    assert wait_for(lambda: len(arrivals) >= 3, timeout=10)
    slow = np.median(np.diff(arrivals))
    (result,) = _set_parameters(probe, "latent_source", Parameter("rate_hz", value=50))  # an int, too
    assert result.successful, result.reason
    assert node.config["rate_hz"] == 50.0 and node.get_parameter("rate_hz").value == 50.0
    count = len(arrivals)
    assert wait_for(lambda: len(arrivals) >= count + 20, timeout=10)
    fast = np.median(np.diff(arrivals[count + 1 :]))
    assert slow > 0.3 and fast < 0.1, (slow, fast)


def test_a_live_parameter_out_of_range_is_refused(ros_context, spin):
    node = LatentSource(context=ros_context)
    probe = Node("live_range_probe", context=ros_context)
    spin(node, probe)
    (result,) = _set_parameters(probe, "latent_source", Parameter("rate_hz", value=-1.0))
    assert not result.successful and "rate_hz" in result.reason
    assert node.config["rate_hz"] == 10.0


def test_every_parameter_is_described_and_read_only_or_applied():
    from lsi_ros.ros.reference import node_modules

    for module in node_modules():
        for param in module.PARAMS:
            descriptor = param.descriptor()
            assert param.description and descriptor.description, (module.__name__, param.name)
            assert descriptor.read_only == (param.applies == "startup"), (module.__name__, param.name)
