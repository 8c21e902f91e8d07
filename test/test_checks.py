"""lsi_ros.ros.checks: what may be published, and refusals that count for the last seconds only."""

import time

import numpy as np
from conftest import wait_for
from rclpy.node import Node

from lsi_ros.msg import LatentCode
from lsi_ros.ros import checks, latent, qos


def test_empty_and_non_finite_arrays_are_named():
    assert checks.array_problem(code=np.zeros((1, 512), np.float32), image=np.zeros(3, np.uint8)) == ""
    assert "empty" in checks.array_problem(code=np.zeros((0, 512), np.float32))
    assert checks.array_problem(scores=np.array([0.5, np.nan, np.inf])).startswith("scores holds 2 NaN")


def test_readings_outside_what_a_detector_reads_are_named():
    assert checks.reading_problem(np.array([0.0, 200.0, 65535.0], np.float32)) == ""
    assert checks.reading_problem(np.array([-3000.0, 1e6], np.float32)) == ""  # calibrated, read noise
    assert "outside" in checks.reading_problem(np.full(4, 1e30, np.float32))
    assert "outside" in checks.reading_problem(np.array([5.0, -1e9], np.float32))


def test_recent_increase_forgets_what_is_older_than_the_window():
    recent = checks.RecentIncrease(window_s=0.3)
    assert recent(0) == 0 and recent(4) == 4
    time.sleep(0.35)
    assert recent(4) == 0
    assert recent(5) == 1


def test_checked_publisher_refuses_counts_and_sends_the_rest(ros_context, spin):
    node = Node("checks_probe", context=ros_context)
    received = []
    node.create_subscription(LatentCode, "checked", received.append, qos.RELIABLE)
    refusals = checks.Refusals(node, window_s=0.5)
    publisher = checks.CheckedPublisher(node, LatentCode, "checked", qos.RELIABLE, refusals, max_bytes=4096)
    spin(node)
    assert wait_for(lambda: publisher.get_subscription_count() > 0)
    good = np.ones((1, 8), np.float32)
    built = []

    def build():
        built.append(1)
        return latent.to_msg(good, model_id="m", pattern_set_id="p")

    assert not publisher.publish(build, "frame 3 (stamp 1.0)", output=np.full((1, 8), np.nan, np.float32))
    assert not publisher.publish(build, "frame 4", output=np.zeros((2048, 8), np.float32))
    assert not built, "a refused message is never built"
    assert publisher.publish(build, "frame 5", output=good)
    assert wait_for(lambda: received)
    assert len(received) == 1 and publisher.published == 1
    assert refusals.totals["refused_output"] == 2 and refusals.recent() == 2
    assert (
        "message limit" in refusals.last_message
        and "/checked: not published for frame 4" in refusals.last_message
    )
    time.sleep(0.55)
    assert refusals.recent() == 0 and refusals.values()["refused_output"] == 2


def test_a_scene_over_the_message_limit_is_refused_at_its_publisher(tmp_path, ros_context, spin):
    """A 4,100 x 4,100 rgb8 scene (48 MiB) would vanish on the best-effort sensor QoS: scene_source
    says so in its diagnostics instead and sends nothing."""
    import subprocess

    import cv2
    from conftest import node_command
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from sensor_msgs.msg import Image

    cv2.imwrite(str(tmp_path / "huge.png"), np.zeros((4100, 4100, 3), np.uint8))
    node = Node("scene_probe", context=ros_context)
    scenes, statuses = [], []
    node.create_subscription(Image, "scene", scenes.append, qos.SENSOR_DATA)
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda a: statuses.extend(s for s in a.status if s.name == "scene_source"),
        50,
    )
    spin(node)
    process = subprocess.Popen(
        node_command("scene_source", "-p", "source:=folder", "-p", f"path:={tmp_path}", "-p", "rate_hz:=2.0")
    )
    try:
        assert wait_for(lambda: any(s.level == DiagnosticStatus.WARN for s in statuses), timeout=30)
        warn = next(s for s in statuses if s.level == DiagnosticStatus.WARN)
        assert "exceeds the 16 MiB message limit" in warn.message and "huge.png" in warn.message
        assert not scenes and process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_diagnostics_of_nodes_in_two_namespaces_do_not_share_a_name(ros_context, spin):
    """Two cameras on one robot (namespaces cam1 and cam2) report as cam1/... and cam2/...; a node in
    the root namespace keeps its bare name."""
    from diagnostic_msgs.msg import DiagnosticArray

    from lsi_ros.ros import diagnostics

    nodes = [Node("latent_encoder", namespace=ns, context=ros_context) for ns in ("cam1", "cam2", "/")]
    reporters = [diagnostics.DiagnosticsReporter(node) for node in nodes]
    probe = Node("diagnostics_probe", context=ros_context)
    names = set()
    probe.create_subscription(
        DiagnosticArray, "/diagnostics", lambda a: names.update(s.name for s in a.status), 50
    )
    spin(probe, *nodes)
    expected = {"cam1/latent_encoder", "cam2/latent_encoder", "latent_encoder"}

    def published():
        for reporter in reporters:
            reporter.publish(diagnostics.OK, "running", {})
        return expected <= names

    assert wait_for(published, timeout=10)
    assert names == expected
