"""capture.launch.py end to end: dmd_driver + photodiode_sampler as separate processes, real DDS.

A scene published here comes back as a measurement frame that equals the optics core's forward
model of that scene (noiseless detector), stamped with the scene's time; bad scenes and bad
pattern sets are reported in diagnostics while the nodes keep running.
"""

import functools
import subprocess

import numpy as np
import pytest
import yaml
from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import Image

from lsi_ros.msg import Measurements, PatternSetInfo
from lsi_ros.optics.calibration import DetectorCalibration
from lsi_ros.optics.forward import ForwardModel
from lsi_ros.optics.objective import scene_on_dmd
from lsi_ros.optics.patterns import load_pattern_set
from lsi_ros.ros import image, qos
from lsi_ros.ros.launch_process import LaunchProcess

CAPTURE_NODES = {"dmd_driver", "photodiode_sampler", "latent_encoder"}


def start_capture(tmp_path, sampler_params=None, **overrides) -> LaunchProcess:
    """`ros2 launch lsi_ros capture.launch.py`, nodes not respawned: a node that dies stays dead."""
    sampler = {"noise": False, "frame_trigger": "per_scene", **(sampler_params or {})}
    params = {
        "/**/dmd_driver": {"ros__parameters": {"cache_dir": str(tmp_path / "patterns"), "resolution": 64}},
        "/**/photodiode_sampler": {"ros__parameters": sampler},
    }
    params_file = tmp_path / "capture_test.yaml"
    params_file.write_text(yaml.safe_dump(params))
    return LaunchProcess("capture.launch.py", {"params_file": params_file, "respawn": "false", **overrides})


def assert_all_nodes_alive(launch: LaunchProcess):
    running = set(launch.node_pids())
    assert running == CAPTURE_NODES, f"a node died: running {sorted(running)}"


@pytest.fixture
def probe(ros_context, spin):
    node = Node("capture_probe", context=ros_context)
    received = {"frames": [], "info": [], "diagnostics": []}
    node.create_subscription(Measurements, "measurements", received["frames"].append, qos.SENSOR_DATA)
    node.create_subscription(PatternSetInfo, "pattern_set", received["info"].append, qos.LATCHED)
    node.create_subscription(DiagnosticArray, "/diagnostics", received["diagnostics"].append, 50)
    scenes = node.create_publisher(Image, "scene", qos.SENSOR_DATA)
    spin(node)
    return node, scenes, received


def at_least(items, count):
    return len(items) >= count


def statuses(received, name):
    return [s for array in received["diagnostics"] for s in array.status if s.name == name]


def test_scene_to_measurement_frame_matches_the_forward_model(tmp_path, probe):
    """framing:=off (the default, given here) measures the scene resized to the grid, as ever."""
    node, scenes, received = probe
    launch = start_capture(tmp_path, pattern_set="hadamard-split:32", framing="off")
    try:
        assert wait_for(lambda: received["info"], timeout=30), "dmd_driver announced no pattern set"
        assert_all_nodes_alive(launch)  # no face_locator
        assert not node.get_publishers_info_by_topic("/framing/applied")
        assert not node.get_subscriptions_info_by_topic("/framing/registration")
        info = received["info"][0]
        assert (info.num_patterns, info.resolution, info.kind) == (32, 64, "hadamard-split")
        assert wait_for(lambda: statuses(received, "photodiode_sampler"), timeout=30)
        rng = np.random.default_rng(0)
        sent = []
        for _ in range(40):
            if len(received["frames"]) >= 5:
                break
            rgb = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
            msg = image.array_to_image(rgb, "rgb8")
            msg.header.stamp = node.get_clock().now().to_msg()
            scenes.publish(msg)
            sent.append((msg.header.stamp, rgb))
            wait_for(functools.partial(at_least, received["frames"], len(sent)), timeout=1.0)
        assert len(received["frames"]) >= 5, "no measurement frames"
    finally:
        launch.stop()

    pattern_set = load_pattern_set(info.uri)
    forward = ForwardModel(pattern_set)
    by_stamp = {(s.sec, s.nanosec): rgb for s, rgb in sent}
    for frame in received["frames"]:
        assert frame.pattern_set_id == info.pattern_set_id and len(frame.values) == 32
        assert frame.registration_id == 0
        rgb = by_stamp[(frame.header.stamp.sec, frame.header.stamp.nanosec)]
        expected = forward.measure(scene_on_dmd(rgb.astype(np.float32) / 255.0, 64))
        np.testing.assert_allclose(frame.values, expected, rtol=1e-5)
    sequences = [f.sequence for f in received["frames"]]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


def test_bad_scene_and_bad_pattern_set_are_reported_and_nodes_keep_running(tmp_path, probe):
    node, scenes, received = probe
    launch = start_capture(tmp_path, pattern_set=str(tmp_path / "missing.safetensors"))
    try:
        assert wait_for(
            lambda: any(
                s.level == DiagnosticStatus.ERROR and "missing.safetensors" in s.message
                for s in statuses(received, "dmd_driver")
            ),
            timeout=30,
        ), "dmd_driver did not report the missing pattern set"
        bad = Image(height=2, width=2, encoding="yuv422", step=4, data=b"\0" * 8)
        scenes.publish(bad)
        assert_all_nodes_alive(launch)
    finally:
        launch.stop()
    assert not received["frames"]


def test_sampler_rejects_unknown_encodings_without_dying(tmp_path, probe):
    node, scenes, received = probe
    launch = start_capture(tmp_path, pattern_set="bernoulli:16:3")
    try:
        assert wait_for(lambda: received["info"], timeout=30)
        assert wait_for(lambda: statuses(received, "photodiode_sampler"), timeout=30)

        def rejected():
            scenes.publish(Image(height=2, width=2, encoding="yuv422", step=4, data=b"\0" * 8))
            values = [{kv.key: kv.value for kv in s.values} for s in statuses(received, "photodiode_sampler")]
            return any(int(v.get("rejected_scenes", 0)) > 0 for v in values)

        assert wait_for(rejected, timeout=20, period=0.3), "rejected scene not counted in diagnostics"
        assert not received["frames"]
        good = image.array_to_image(np.full((64, 64, 3), 128, np.uint8), "rgb8")
        assert wait_for(lambda: scenes.publish(good) or received["frames"], timeout=20, period=0.3)
        assert_all_nodes_alive(launch)
    finally:
        launch.stop()


CALIBRATION = DetectorCalibration(
    dark_level=0.0, read_noise=0.0, gain=0.5, ambient=10.0, full_scale=65535.0, photon_flux=1.0
)


@pytest.mark.parametrize("calibration_file", ["good", "corrupt"])
def test_sampler_applies_a_calibration_file_or_reports_why_not(tmp_path, probe, calibration_file):
    node, scenes, received = probe
    path = tmp_path / "detector_calibration.json"
    if calibration_file == "good":
        CALIBRATION.save(path)
    else:
        path.write_text('{"format": "lsi_ros.detector_calibration", "gain": -1')
    launch = start_capture(tmp_path, {"calibration": str(path)}, pattern_set="bernoulli:16:3")
    try:
        assert wait_for(lambda: received["info"], timeout=30)
        assert wait_for(lambda: statuses(received, "photodiode_sampler"), timeout=30)
        rgb = np.full((64, 64, 3), 128, np.uint8)
        good = image.array_to_image(rgb, "rgb8")
        assert wait_for(lambda: scenes.publish(good) or received["frames"], timeout=20, period=0.3)
        sampler = statuses(received, "photodiode_sampler")[-1]
    finally:
        launch.stop()
    raw = ForwardModel(load_pattern_set(received["info"][0].uri)).measure(rgb.astype(np.float32) / 255.0)
    values = np.asarray(received["frames"][0].values)
    if calibration_file == "good":
        np.testing.assert_allclose(values, raw / 0.5 - 10.0, rtol=1e-5)
    else:
        np.testing.assert_allclose(values, raw, rtol=1e-5)
        assert sampler.level == DiagnosticStatus.WARN and "calibration not applied" in sampler.message


def test_task_model_runs_through_the_same_nodes(tmp_path, probe):
    """model:=task-male-m4: the DMD shows its 4 patterns, the encoder reads p(male) off the counts."""
    from lsi_ros.models.registry import find_model
    from lsi_ros.models.task import load_task_model
    from lsi_ros.msg import Attributes

    node, scenes, received = probe
    attributes = []
    node.create_subscription(Attributes, "attributes", attributes.append, qos.RELIABLE)
    task = load_task_model(find_model("task-male-m4"))
    launch = start_capture(tmp_path, model="task-male-m4")
    try:
        assert wait_for(lambda: received["info"], timeout=30)
        assert received["info"][0].pattern_set_id == task.pattern_set.pattern_set_id
        face = np.random.default_rng(5).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        scene = image.array_to_image(face, "rgb8")
        assert wait_for(lambda: scenes.publish(scene) or attributes, timeout=30, period=0.3)
    finally:
        launch.stop()
    frames = {(f.header.stamp.sec, f.header.stamp.nanosec): f for f in received["frames"]}
    published = attributes[0]
    frame = frames[(published.header.stamp.sec, published.header.stamp.nanosec)]
    assert len(frame.values) == 4 and list(published.names) == ["male"]
    np.testing.assert_allclose(published.scores, [task.probabilities(np.asarray(frame.values))], rtol=1e-5)


def test_a_re_announced_identical_pattern_set_keeps_the_frame_sequence(tmp_path, probe):
    """A restarted dmd_driver announces the same set again: frame numbers go on, counters stay."""
    from conftest import node_command

    from lsi_ros.optics.patterns import bernoulli_patterns, save_pattern_set

    node, scenes, received = probe
    pattern_set = bernoulli_patterns(16, 32, seed=3)
    info = PatternSetInfo(
        pattern_set_id=pattern_set.pattern_set_id,
        kind=pattern_set.kind,
        resolution=32,
        num_patterns=16,
        pattern_rate_hz=9500.0,
        uri=str(save_pattern_set(pattern_set, tmp_path / "set.safetensors")),
    )
    announce = node.create_publisher(PatternSetInfo, "pattern_set", qos.LATCHED)
    process = subprocess.Popen(node_command("photodiode_sampler", "-p", "noise:=false"))
    scene = image.array_to_image(np.full((32, 32, 3), 128, np.uint8), "rgb8")
    try:
        announce.publish(info)

        def frames_after(count):
            scenes.publish(scene)
            return len(received["frames"]) >= count

        assert wait_for(lambda: frames_after(5), timeout=30, period=0.1)
        announce.publish(info)
        seen = len(received["frames"])
        assert wait_for(lambda: frames_after(seen + 5), timeout=30, period=0.1)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)
    sequences = [frame.sequence for frame in received["frames"]]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences), sequences
