"""dmd_driver and photodiode_sampler as lifecycle nodes, driven through the lifecycle_msgs services
`ros2 lifecycle set` calls (real rclpy and DDS, sim backends): configure / activate / deactivate /
cleanup do what they say, nothing is published while a node is not active, and configure-time
parameters change only while the node is unconfigured."""

import time

import numpy as np
import pytest
from conftest import publishing, wait_for
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter

from lsi_ros.msg import Measurements, PatternSetInfo
from lsi_ros.nodes.dmd_driver import DmdDriver
from lsi_ros.nodes.photodiode_sampler import PhotodiodeSampler
from lsi_ros.ros import image, qos


class Lifecycle:
    """The lifecycle and parameter services of one node, called from the probe."""

    def __init__(self, probe: Node, node_name: str):
        self.change = probe.create_client(ChangeState, f"/{node_name}/change_state")
        self.get = probe.create_client(GetState, f"/{node_name}/get_state")
        self.set_parameters = probe.create_client(SetParameters, f"/{node_name}/set_parameters")
        for client in (self.change, self.get, self.set_parameters):
            assert client.wait_for_service(timeout_sec=10), client.srv_name

    @staticmethod
    def _call(client, request):
        future = client.call_async(request)
        assert wait_for(future.done, timeout=20), f"no answer from {client.srv_name}"
        return future.result()

    def set(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state(self) -> int:
        return self._call(self.get, GetState.Request()).current_state.id

    def set_parameter(self, name: str, value):
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self._call(self.set_parameters, request).results[0]


def dmd_params(tmp_path, **changes):
    values = {
        "autostart": False,
        "pattern_set": "hadamard-split:16",
        "resolution": 16,
        "pattern_rate_hz": 1600,
        "cache_dir": str(tmp_path),
    }
    return [Parameter(name, value=value) for name, value in (values | changes).items()]


@pytest.fixture
def probe(ros_context):
    node = Node("lifecycle_probe", context=ros_context)
    yield node
    node.destroy_node()


def test_dmd_driver_transitions(tmp_path, ros_context, spin, probe):
    announced = []
    probe.create_subscription(PatternSetInfo, "pattern_set", announced.append, qos.LATCHED)
    driver = DmdDriver(context=ros_context, parameter_overrides=dmd_params(tmp_path))
    spin(driver, probe)
    lifecycle = Lifecycle(probe, "dmd_driver")
    try:
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and driver.projector is None

        assert lifecycle.set(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
        status = driver.projector.status()
        assert driver.uploaded and status["running"] is False and driver.pattern_set.num_patterns == 16
        time.sleep(1.0)
        assert announced == []  # uploaded, not shown: nothing announced

        assert lifecycle.set(Transition.TRANSITION_ACTIVATE)
        assert wait_for(lambda: announced, timeout=10)
        assert driver.projector.status()["running"] and announced[0].num_patterns == 16

        assert lifecycle.set(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
        assert driver.projector.status()["running"] is False

        # configure-time parameters are refused while configured, accepted once cleaned up
        refused = lifecycle.set_parameter("pattern_set", "hadamard-split:32")
        assert not refused.successful and "configure" in refused.reason
        assert lifecycle.set(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and driver.projector is None
        assert lifecycle.set_parameter("pattern_set", "hadamard-split:32").successful
        assert lifecycle.set(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.set(Transition.TRANSITION_ACTIVATE)
        assert wait_for(lambda: len(announced) >= 2, timeout=10)
        assert announced[-1].num_patterns == 32
    finally:
        driver.destroy_node()


def test_dmd_driver_configure_fails_on_a_bad_pattern_set_and_can_be_retried(
    tmp_path, ros_context, spin, probe
):
    params = dmd_params(tmp_path, pattern_set=str(tmp_path / "missing.safetensors"))
    driver = DmdDriver(context=ros_context, parameter_overrides=params)
    spin(driver, probe)
    lifecycle = Lifecycle(probe, "dmd_driver")
    try:
        assert not lifecycle.set(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and "missing" in driver.error
        assert lifecycle.set_parameter("pattern_set", "hadamard-split:16").successful
        assert lifecycle.set(Transition.TRANSITION_CONFIGURE) and driver.error == ""
    finally:
        driver.destroy_node()


def test_photodiode_sampler_publishes_only_while_active(tmp_path, ros_context, spin, probe):
    frames = []
    probe.create_subscription(Measurements, "measurements", frames.append, qos.SENSOR_DATA)
    scenes = probe.create_publisher(image.Image, "scene", qos.SENSOR_DATA)
    driver = DmdDriver(context=ros_context, parameter_overrides=dmd_params(tmp_path, autostart=True))
    sampler = PhotodiodeSampler(
        context=ros_context,
        parameter_overrides=[Parameter("autostart", value=False), Parameter("photon_flux", value=200)],
    )
    stop = spin(driver, sampler, probe)
    lifecycle = Lifecycle(probe, "photodiode_sampler")
    gray = image.array_to_image(np.full((16, 16, 3), 128, np.uint8), "rgb8")
    try:
        with publishing(scenes, gray, 0.02):
            time.sleep(1.0)
            assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and frames == []

            assert lifecycle.set(Transition.TRANSITION_CONFIGURE)
            assert wait_for(lambda: sampler.assembler is not None, timeout=10)  # the latched set arrived
            time.sleep(1.0)
            assert frames == [], "published while inactive"

            assert lifecycle.set(Transition.TRANSITION_ACTIVATE)
            assert wait_for(lambda: len(frames) >= 5, timeout=10)
            assert len(frames[0].values) == 16

            assert lifecycle.set(Transition.TRANSITION_DEACTIVATE)
            time.sleep(0.5)  # frames already in flight
            count = len(frames)
            time.sleep(1.0)
            assert len(frames) == count, "published while inactive"

            # live: photon_flux applies at once, even while inactive
            assert lifecycle.set_parameter("photon_flux", 400).successful
            assert sampler.detector.model == sampler._photodiode_model({"noise": True, "photon_flux": 400.0})

            assert lifecycle.set(Transition.TRANSITION_CLEANUP)
            assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
            assert sampler.detector is None and sampler.assembler is None
    finally:
        stop()
        sampler.destroy_node()
        driver.destroy_node()


def test_autostart_brings_both_nodes_up(tmp_path, ros_context):
    driver = DmdDriver(context=ros_context, parameter_overrides=dmd_params(tmp_path, autostart=True))
    sampler = PhotodiodeSampler(context=ros_context)
    try:
        assert driver.active and driver.projector.status()["running"]
        assert sampler.active and sampler.detector is not None
    finally:
        sampler.destroy_node()
        driver.destroy_node()
