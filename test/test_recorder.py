"""bag_recorder writes a rosbag2 MCAP bag that reads back with every message, byte for byte."""

import signal
import subprocess
import time

import numpy as np
from conftest import node_command, wait_for
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader

from lsi_ros.msg import LatentCode
from lsi_ros.ros import latent, qos


def test_recorded_bag_reads_back_with_the_published_count(tmp_path, ros_context, spin):
    bag = tmp_path / "bag"
    args = ["-p", f"output:={bag}", "-p", "topics:=['/latent:lsi_ros/msg/LatentCode']"]
    process = subprocess.Popen(node_command("bag_recorder", *args))
    node = Node("bag_feeder", context=ros_context)
    publisher = node.create_publisher(LatentCode, "/latent", qos.RECORDING)
    spin(node)
    try:
        assert wait_for(lambda: publisher.get_subscription_count() > 0, timeout=30), (
            "recorder did not subscribe"
        )
        codes = np.random.default_rng(0).standard_normal((50, 1, 512)).astype(np.float32)
        for k, code in enumerate(codes):
            msg = latent.to_msg(code, model_id="bag-test", pattern_set_id="sha256:bag")
            msg.header.stamp.sec = k
            publisher.publish(msg)
            time.sleep(0.01)
        wait_for(lambda: False, timeout=1.0)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    with AnyReader([bag]) as reader:
        messages = [(c.msgtype, raw) for c, _, raw in reader.messages()]
    assert len(messages) == 50 and {t for t, _ in messages} == {"lsi_ros/msg/LatentCode"}
    decoded = [deserialize_message(raw, LatentCode) for _, raw in messages]
    assert [m.header.stamp.sec for m in decoded] == list(range(50))
    np.testing.assert_array_equal(latent.from_msg(decoded[7]), codes[7])
