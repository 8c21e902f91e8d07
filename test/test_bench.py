"""Benchmark plumbing (not the timings: those live in bench/ and docs/results/bench.json)."""

import json
import subprocess
import sys
import time

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message

from lsi_ros.msg import LatentCode, Measurements
from lsi_ros.pipeline_monitor import PipelineMonitor
from lsi_ros.ros import image


def test_bench_only_reruns_the_named_suites_and_keeps_the_other_rows(tmp_path):
    output = tmp_path / "bench.json"
    kept = {"what": "encoder", "M": 32, "p50_ms": 0.5, "p95_ms": 0.6, "threads": 1}
    stale = {"what": "bytes_per_frame", "M": 999}
    output.write_text(json.dumps({"rows": [stale, kept], "machine": "x", "command": "y"}))
    result = subprocess.run(
        [sys.executable, "-m", "lsi_ros.cli", "bench", "--only", "bytes", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(output.read_text())["rows"]
    assert rows[0] == kept, "suites stay in their documented order, untouched rows as they were"
    measured = [row for row in rows if row["what"] == "bytes_per_frame"]
    assert [row["M"] for row in measured] == [32, 64, 128, 256]
    for row in measured:
        assert row["image_rgb8"] > 100 * row["measurements"], "the link carries < 1/100 of the image"


def test_a_pipeline_run_replaces_only_the_row_of_its_own_model():
    from lsi_ros.commands.bench import _replaced

    m128 = {"what": "pipeline", "model": "m128"}
    m64 = {"what": "pipeline", "model": "m64"}
    soak = {"what": "soak", "model": "m128"}
    encoder = {"what": "encoder", "M": 64}
    assert _replaced(m64, {"pipeline"}, "m64") and not _replaced(m128, {"pipeline"}, "m64")
    assert not _replaced(soak, {"pipeline"}, "m128") and _replaced(soak, {"soak"}, "m128")
    assert _replaced(encoder, {"encoder"}, "m128") and not _replaced(encoder, {"pipeline"}, "m128")


def _stamp(seconds: int, nanosec: int = 0) -> Time:
    return Time(sec=seconds, nanosec=nanosec)


def test_monitor_summary_counts_only_scenes_stamped_inside_the_window(ros_context):
    monitor = PipelineMonitor(keep_images=False, context=ros_context)
    try:
        for second in range(10):
            scene = image.array_to_image(np.zeros((8, 8, 3), np.uint8), "rgb8")
            scene.header.stamp = _stamp(second)
            monitor._on_scene_stamp(serialize_message(scene))  # what its raw subscription receives
            frame = Measurements(values=np.zeros(4, np.float32), sequence=second)
            frame.header.stamp = _stamp(second)
            if second != 0:  # the monitor's best-effort subscription misses frame 0; the encoder got it
                monitor._on_measurements(frame)
            if second != 5:  # scene 5's frame never becomes a latent code
                code = LatentCode()
                code.header.stamp = _stamp(second)
                monitor._on_latent(code)
        unseen_scene = LatentCode()  # a code for a scene the monitor's subscription missed
        unseen_scene.header.stamp = _stamp(7, nanosec=500)
        monitor._on_latent(unseen_scene)
        window = monitor.summary(since_ns=3 * 10**9, until_ns=8 * 10**9)
        everything = monitor.summary()
    finally:
        monitor.destroy_node()
    assert (window["scenes"], window["latent_messages"], window["dropped_frames"]) == (5, 5, 1)
    assert window["sequence_gaps"] == 0
    assert (everything["scenes"], everything["dropped_frames"]) == (10, 1)
    assert (window["measurement_frames_unseen"], everything["measurement_frames_unseen"]) == (1, 2)
    assert (everything["measurement_frames"], everything["latent_messages"]) == (9, 10)
    assert monitor.scenes and all(rgb is None for rgb in monitor.scenes.values()), "no images kept"


def test_the_monitor_reads_a_scene_stamp_off_the_serialized_message():
    from lsi_ros.pipeline_monitor import _stamp_of_serialized

    scene = image.array_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    scene.header.stamp = _stamp(1_733_000_000, nanosec=999_999_999)
    scene.header.frame_id = "dmd"
    assert _stamp_of_serialized(serialize_message(scene)) == (1_733_000_000, 999_999_999)


def test_soak_timeline_slices_drops_and_node_latency_per_sample(ros_context):
    """Every sample of the soak gets the scenes stamped in its slice, their drops and the time each
    node added (arrival differences of the same stamp), next to the RSS/CPU the watch took."""
    from types import SimpleNamespace

    from bench.pipeline import _soak_timeline

    monitor = PipelineMonitor(keep_images=False, context=ros_context)
    try:
        for second in range(60):
            key = (second, 0)
            monitor.scenes[key] = None
            monitor.events["measurements"][key] = 10.0
            if second != 40:  # one frame lost in the second slice
                monitor.events["latent"][key] = 13.0
                monitor.events["image"][key] = 63.0
        nodes = {"latent_encoder": {"rss_mb": 300.0, "cpu_percent_of_one_core": 20.0}}
        watch = SimpleNamespace(timeline=[{"t_s": 30, "nodes": nodes}, {"t_s": 60, "nodes": nodes}])
        timeline = _soak_timeline(monitor, watch, start_ns=0)
    finally:
        monitor.destroy_node()
    assert [(s["t_s"], s["scenes"], s["frames_dropped"]) for s in timeline] == [(30, 30, 0), (60, 30, 1)]
    assert timeline[0]["node_latency_p50_ms"] == {
        "photodiode_sampler": 10.0,
        "latent_encoder": 3.0,
        "latent_decoder": 50.0,
    }
    assert timeline[1]["nodes"] == nodes


def test_node_counts_say_where_frames_were_lost():
    from bench.pipeline import counted_by_nodes

    start = {"scenes_published": 100, "frames_published": 90, "codes_encoded": 80}
    end = {"scenes_published": 1100, "frames_published": 1088, "codes_encoded": 1077}
    assert counted_by_nodes(start, end) == {
        "scenes_published": 1000,
        "frames_published": 998,
        "codes_encoded": 997,
        "lost_scene_to_frame": 2,
        "lost_frame_to_code": 1,
    }


def test_the_monitor_pauses_a_running_scene_source_and_reads_its_count(tmp_path, ros_context, spin):
    """What the benchmark does at both ends of its window, against a real scene_source process:
    paused, its published count stops; resumed, it rises again."""
    import subprocess

    import cv2
    from conftest import node_command, wait_for

    for index in range(3):
        cv2.imwrite(str(tmp_path / f"{index}.png"), np.full((16, 16, 3), 40 * index, np.uint8))
    monitor = PipelineMonitor(keep_images=False, context=ros_context)
    stop = spin(monitor)
    wanted = {"published": ("scene_source", "published")}
    process = subprocess.Popen(
        node_command("scene_source", "-p", "source:=folder", "-p", f"path:={tmp_path}", "-p", "rate_hz:=20.0")
    )
    try:
        assert wait_for(lambda: monitor.counters.get("scene_source", (0, {}))[1].get("published", 0) > 5, 60)
        monitor.set_scene_rate(0.01)
        time.sleep(0.5)
        paused = monitor.counts_after(time.monotonic(), wanted)
        time.sleep(1.5)
        assert monitor.counts_after(time.monotonic(), wanted) == paused
        monitor.set_scene_rate(20.0)
        time.sleep(1.0)
        assert monitor.counts_after(time.monotonic(), wanted)["published"] > paused["published"]
    finally:
        process.terminate()
        process.wait(timeout=20)
        stop()
        monitor.destroy_node()
