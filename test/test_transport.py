"""Messages cross process boundaries over Fast DDS (loopback) intact."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import node_command, wait_for
from rclpy.node import Node

from lsi_ros.msg import Attributes, LatentCode, Measurements
from lsi_ros.ros import latent, qos

PUBLISHER = textwrap.dedent(
    """
    import sys, time, rclpy
    from rclpy.node import Node
    from lsi_ros.msg import Attributes, Measurements
    from lsi_ros.ros import qos
    rclpy.init()
    node = Node("test_publisher")
    meas = node.create_publisher(Measurements, "measurements", qos.RELIABLE)
    attrs = node.create_publisher(Attributes, "attributes", qos.RELIABLE)
    end = time.monotonic() + float(sys.argv[1])
    seq = 0
    while time.monotonic() < end:
        values = [seq + 0.5 * i for i in range(128)]
        m = Measurements(pattern_set_id="sha256:test", sequence=seq, values=values, saturated_count=3)
        m.header.frame_id = "lsi_camera"
        meas.publish(m)
        attrs.publish(Attributes(model_id="m", names=["smiling", "male"], scores=[0.25, 0.75]))
        seq += 1
        time.sleep(0.02)
    node.destroy_node()
    rclpy.shutdown()
    """
)


@pytest.fixture
def publisher_process():
    process = subprocess.Popen([sys.executable, "-c", PUBLISHER, "20"])
    yield process
    process.terminate()
    process.wait(timeout=10)


def test_measurements_and_attributes_cross_processes(ros_context, spin, publisher_process):
    node = Node("test_subscriber", context=ros_context)
    frames, attributes = [], []
    node.create_subscription(Measurements, "measurements", frames.append, qos.RELIABLE)
    node.create_subscription(Attributes, "attributes", attributes.append, qos.RELIABLE)
    spin(node)
    assert wait_for(lambda: len(frames) >= 10 and attributes, timeout=15), (
        "no messages from the other process"
    )
    frame = frames[-1]
    assert frame.pattern_set_id == "sha256:test" and frame.header.frame_id == "lsi_camera"
    np.testing.assert_allclose(frame.values, [frame.sequence + 0.5 * i for i in range(128)])
    assert frame.saturated_count == 3
    sequences = [f.sequence for f in frames]
    assert sequences == sorted(sequences)
    assert list(attributes[-1].names) == ["smiling", "male"]
    np.testing.assert_allclose(attributes[-1].scores, [0.25, 0.75])


def test_latent_codes_from_the_latent_source_node(ros_context, spin):
    """latent_source (its installed executable, another process) -> a subscriber here."""
    args = [
        "-p",
        "seed:=3",
        "-p",
        "rate_hz:=50.0",
        "-p",
        "latent_layers:=2",
        "-p",
        "model_id:=t",
    ]
    process = subprocess.Popen(node_command("latent_source", *args))
    try:
        node = Node("test_latent_subscriber", context=ros_context)
        codes = []
        node.create_subscription(LatentCode, "latent", codes.append, qos.RELIABLE)
        spin(node)
        assert wait_for(lambda: len(codes) >= 5, timeout=15), "no LatentCode from latent_source"
    finally:
        process.terminate()
        process.wait(timeout=10)
    first = latent.from_msg(codes[0])
    assert first.shape == (2, 512) and codes[0].model_id == "t"
    # A reliable subscriber that joined late may miss the first codes; each must be one of the seeded draws.
    draws = np.random.default_rng(3).standard_normal((200, 2, 512)).astype(np.float32)
    index = next(i for i in range(200) if np.array_equal(draws[i], first))
    np.testing.assert_array_equal(latent.from_msg(codes[1]), draws[index + 1])
