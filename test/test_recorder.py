"""bag_recorder writes a rosbag2 MCAP bag that reads back with every message, byte for byte."""

import signal
import subprocess
import sys
import time

import numpy as np
from conftest import node_command, wait_for
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader

from lsi_ros.msg import LatentCode
from lsi_ros.ros import latent, qos


def publish_codes(publisher, codes, subscribers: int = 1) -> None:
    """Once the recorder (and any other subscriber) listens, publish the codes stamped 0, 1, ... at
    ~100 per second, then give the last ones a second to arrive."""
    assert wait_for(lambda: publisher.get_subscription_count() >= subscribers, timeout=30), (
        "recorder did not subscribe"
    )
    for k, code in enumerate(codes):
        msg = latent.to_msg(code, model_id="bag-test", pattern_set_id="sha256:bag")
        msg.header.stamp.sec = k
        publisher.publish(msg)
        time.sleep(0.01)
    wait_for(lambda: False, timeout=1.0)


def test_recorded_bag_reads_back_with_the_published_count(tmp_path, ros_context, spin):
    bag = tmp_path / "bag"
    args = ["-p", f"output:={bag}", "-p", "topics:=['/latent:lsi_ros/msg/LatentCode']"]
    process = subprocess.Popen(node_command("bag_recorder", *args))
    node = Node("bag_feeder", context=ros_context)
    publisher = node.create_publisher(LatentCode, "/latent", qos.RECORDING)
    spin(node)
    codes = np.random.default_rng(0).standard_normal((50, 1, 512)).astype(np.float32)
    try:
        publish_codes(publisher, codes)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    with AnyReader([bag]) as reader:
        messages = [(c.msgtype, raw) for c, _, raw in reader.messages()]
    assert len(messages) == 50 and {t for t, _ in messages} == {"lsi_ros/msg/LatentCode"}
    decoded = [deserialize_message(raw, LatentCode) for _, raw in messages]
    assert [m.header.stamp.sec for m in decoded] == list(range(50))
    np.testing.assert_array_equal(latent.from_msg(decoded[7]), codes[7])


def test_a_recorder_killed_with_sigkill_leaves_a_bag_that_reindex_recovers(tmp_path, ros_context, spin):
    """kill -9 mid-file: the files before it are complete, `lsi bag reindex` recovers the open one,
    and rosbags reads all but (at most) the last flush interval of what the probe saw."""
    taken = tmp_path / "bag"
    taken.mkdir()
    (taken / "keep.txt").write_text("an earlier run")
    args = [
        "-p",
        f"output:={taken}",
        "-p",
        "topics:=['/latent:lsi_ros/msg/LatentCode']",
        "-p",
        "split_s:=2.0",
    ]
    process = subprocess.Popen(node_command("bag_recorder", *args))
    node = Node("bag_probe", context=ros_context)
    publisher = node.create_publisher(LatentCode, "/latent", qos.RECORDING)
    seen = []
    node.create_subscription(LatentCode, "/latent", lambda m: seen.append(m.header.stamp.sec), qos.RECORDING)
    spin(node)
    try:
        publish_codes(publisher, np.zeros((500, 1, 512), np.float32), subscribers=2)  # ~5 s: 2 files + 1 open
    finally:
        process.kill()
        process.wait(timeout=20)
    assert (taken / "keep.txt").read_text() == "an earlier run"
    (bag,) = [p for p in tmp_path.iterdir() if p.name.startswith("bag_")]
    assert (bag / "metadata.yaml").is_file(), "metadata.yaml is written when recording starts"
    result = subprocess.run(
        [sys.executable, "-m", "lsi_ros.cli", "bag", "reindex", str(bag)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "messages recovered" in result.stdout
    with AnyReader([bag]) as reader:
        stamps = [deserialize_message(raw, LatentCode).header.stamp.sec for _, _, raw in reader.messages()]
    assert len(seen) == 500
    assert len(stamps) >= 0.99 * len(seen) and set(stamps) <= set(seen)
    assert len(list(bag.glob("*.mcap"))) >= 3, "the recorder splits files every split_s"
