"""End to end through ROS, every node its own process, at the frame rate the DMD allows.

The scene source publishes at the DMD-limited frame rate (pattern rate / M: 74.2 fps for M = 128 at
9.5 kHz) and the sampler measures one frame per scene, so every frame the optics could deliver is
offered to the pipeline. After start-up, a window of ``duration_s`` is measured: frames that never
became a LatentCode, latency from the scene's stamp, decoded images, and each node's CPU and memory.
The simulated sampler computes a frame at once; real optics add the frame time (M / pattern rate)
between the first pattern and the last sample, which the latency here does not include.
"""

import os
import tempfile
import threading
import time

import cv2
import psutil

from lsi_ros.optics import DLPC900_1080P

WARMUP_S = 5.0
DRAIN_S = 3.0
# What the camera's own nodes count (their /diagnostics), read with the scene source paused and the
# pipeline drained at both ends of the window: exact, and blind to what the observer itself misses.
NODE_COUNTERS = {
    "scenes_published": ("scene_source", "published"),
    "frames_published": ("photodiode_sampler", "frames_published"),
    "codes_encoded": ("latent_encoder", "encoded"),
}
PAUSED_RATE_HZ = 0.01


def counted_by_nodes(start: dict, end: dict) -> dict:
    """Scenes, frames and codes the nodes counted between two drained moments, and where the
    missing ones went: lost between the scene and its frame, or between the frame and its code."""
    delta = {label: end[label] - start[label] for label in NODE_COUNTERS}
    return {
        **delta,
        "lost_scene_to_frame": delta["scenes_published"] - delta["frames_published"],
        "lost_frame_to_code": delta["frames_published"] - delta["codes_encoded"],
    }


class ProcessWatch:
    """CPU (share of one core) and resident memory of each node process, sampled once a second;
    with ``every_s``, also a timeline of both every ``every_s`` seconds (the soak)."""

    def __init__(self, every_s: float | None = None):
        self.processes = {}
        self.cpu_start = {}
        self.cpu_end = {}
        self.rss_peak_mb = {}
        self.every_s = every_s
        self.timeline = []
        self._stop = threading.Event()

    def attach(self, pids: dict):
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def start_window(self):
        self.window_start = time.monotonic()
        self.cpu_start = {name: self._cpu_s(p) for name, p in self.processes.items()}
        self.rss_peak_mb = dict.fromkeys(self.processes, 0.0)
        threading.Thread(target=self._sample, daemon=True).start()

    def end_window(self) -> dict:
        self._stop.set()
        wall = time.monotonic() - self.window_start
        return {
            name: {
                "cpu_percent_of_one_core": round(100 * (self._cpu_s(p) - self.cpu_start[name]) / wall, 1),
                "rss_peak_mb": round(self.rss_peak_mb[name], 1),
            }
            for name, p in self.processes.items()
        }

    def _sample(self):
        rss_mb = dict.fromkeys(self.processes, 0.0)
        last, last_cpu = self.window_start, dict(self.cpu_start)
        stopped = False
        while not stopped:
            stopped = self._stop.wait(1.0)
            for name, process in self.processes.items():
                try:
                    rss_mb[name] = process.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.rss_peak_mb[name] = max(self.rss_peak_mb[name], rss_mb[name])
            now = time.monotonic()
            if self.every_s and (now - last >= self.every_s or (stopped and now - last >= 1.0)):
                # a failed read (_cpu_s gives 0.0) keeps the previous total: that slice shows None
                read = {name: self._cpu_s(p) for name, p in self.processes.items()}
                cpu = {name: read[name] or last_cpu[name] for name in self.processes}
                nodes = {
                    name: {
                        "rss_mb": round(rss_mb[name], 1),
                        "cpu_percent_of_one_core": round(100 * (cpu[name] - last_cpu[name]) / (now - last), 1)
                        if read[name]
                        else None,
                    }
                    for name in self.processes
                }
                self.timeline.append({"t_s": round(now - self.window_start), "nodes": nodes})
                last, last_cpu = now, cpu

    @staticmethod
    def _cpu_s(process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system


def _write_scenes(folder: str, count: int) -> None:
    """Held-out generated faces written as PNGs: the scene source replays them without a generator."""
    from lsi_ros.scenes import face_scenes

    for index, (_, rgb) in zip(range(count), face_scenes(), strict=False):
        cv2.imwrite(f"{folder}/{index:03d}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _stage_latency_ms(monitor, since_ns: int, until_ns: int) -> dict:
    """Median time each node adds, from the arrival times the monitor saw per scene stamp: sampler
    (scene -> Measurements, with scene transport), encoder (-> LatentCode), decoder (-> Image)."""
    import numpy as np

    def in_window(key):
        return since_ns <= key[0] * 10**9 + key[1] < until_ns

    events = monitor.events
    stages = {
        "photodiode_sampler": [ms for key, ms in events["measurements"].items() if in_window(key)],
        "latent_encoder": [
            ms - events["measurements"][key]
            for key, ms in events["latent"].items()
            if in_window(key) and key in events["measurements"]
        ],
        "latent_decoder": [
            ms - events["latent"][key]
            for key, ms in events["image"].items()
            if in_window(key) and key in events["latent"]
        ],
    }
    return {name: _round(float(np.percentile(v, 50))) if v else None for name, v in stages.items()}


def _soak_timeline(monitor, watch, start_ns: int) -> list:
    """Per ``watch.every_s`` slice of the window: scenes, drops, latency per node, RSS and CPU per node."""
    timeline = []
    previous_s = 0
    for sample in watch.timeline:
        since, until = start_ns + previous_s * 10**9, start_ns + sample["t_s"] * 10**9
        summary = monitor.summary(since, until)
        timeline.append(
            {
                "t_s": sample["t_s"],
                "scenes": summary["scenes"],
                "frames_dropped": summary["dropped_frames"],
                "scene_to_latent_p95_ms": _round(summary["latency_ms"]["scene_to_latent"]["p95"]),
                "node_latency_p50_ms": _stage_latency_ms(monitor, since, until),
                "nodes": sample["nodes"],
            }
        )
        previous_s = sample["t_s"]
    return timeline


def pipeline_rows(
    model: str = "m128", duration_s: float = 60.0, timing=DLPC900_1080P, soak_every_s: float | None = None
) -> list:
    """One "pipeline" row; with ``soak_every_s`` a "soak" row that adds, every that many seconds,
    scenes, drops, latency per node and RSS/CPU per node (and each node's RSS growth)."""
    with tempfile.TemporaryDirectory(prefix="lsi_bench_scenes_") as scenes:
        _write_scenes(scenes, 16)
        return _pipeline_rows(model, duration_s, timing, scenes, soak_every_s)


def _pipeline_rows(model, duration_s, timing, scenes, soak_every_s) -> list:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.registry import find_model
    from lsi_ros.pipeline_monitor import PipelineMonitor
    from lsi_ros.ros.launch_process import LaunchProcess, adopt_ros_environment

    num_patterns = load_model(find_model(model)).num_measurements
    frame_rate = 1.0 / timing.frame_time(num_patterns)
    arguments = {"model": model, "source": "folder", "path": scenes, "scene_rate_hz": f"{frame_rate:.3f}"}
    adopt_ros_environment()
    context = rclpy.Context()
    rclpy.init(context=context)
    monitor = PipelineMonitor(keep_images=False, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(monitor)
    threading.Thread(target=executor.spin, daemon=True).start()
    watch = ProcessWatch(every_s=soak_every_s)
    window = {}

    def paused_counts() -> dict:
        """Pause the scene source, let every scene in flight become a code, read the nodes' counts."""
        monitor.set_scene_rate(PAUSED_RATE_HZ)
        time.sleep(DRAIN_S)
        return monitor.counts_after(time.monotonic(), NODE_COUNTERS)

    def measured(launch) -> bool:
        """Start the window WARMUP_S after the first decoded image; the source is paused around it."""
        now = time.monotonic()
        if monitor.first_latent_time is None or monitor.first_image_time is None:
            return False
        if "start_ns" not in window and now - monitor.first_image_time >= WARMUP_S:
            window["counts_start"] = paused_counts()
            monitor.set_scene_rate(frame_rate)
            now = time.monotonic()
            window["start_ns"] = monitor.get_clock().now().nanoseconds
            window["load"] = [os.getloadavg()[0]]
            # the observer shares the two cores: its CPU is shown beside the nodes'
            watch.attach({**launch.node_pids(), "benchmark_observer": os.getpid()})
            watch.start_window()
            window["started"] = now
        if "started" in window and "end_ns" not in window and now - window["started"] >= duration_s:
            window["end_ns"] = monitor.get_clock().now().nanoseconds
            window["resources"] = watch.end_window()
            window["load"].append(os.getloadavg()[0])
            window["counts_end"] = paused_counts()
            return True
        return False

    deadline = time.monotonic() + duration_s + 240.0
    try:
        with LaunchProcess("sim.launch.py", arguments) as launch:
            while launch.running() and not measured(launch) and time.monotonic() < deadline:
                time.sleep(0.1)
        code = launch.process.returncode
    finally:
        executor.shutdown(timeout_sec=2.0)
        summary = monitor.summary(window.get("start_ns"), window.get("end_ns")) if "end_ns" in window else {}
        monitor.destroy_node()
        rclpy.try_shutdown(context=context)
    if code != 0 or not summary:
        raise RuntimeError(f"the pipeline did not run through the measurement window (exit code {code})")
    latency = summary["latency_ms"]
    seconds = (window["end_ns"] - window["start_ns"]) / 1e9
    counted = counted_by_nodes(window["counts_start"], window["counts_end"])
    soak = {}
    if soak_every_s:
        timeline = _soak_timeline(monitor, watch, window["start_ns"])
        first, last = timeline[0]["nodes"], timeline[-1]["nodes"]
        soak = {
            "sample_every_s": soak_every_s,
            "rss_growth_mb": {name: round(last[name]["rss_mb"] - first[name]["rss_mb"], 1) for name in first},
            "timeline": timeline,
        }
    return [
        {
            "what": "soak" if soak_every_s else "pipeline",
            "M": num_patterns,
            "model": model,
            "pattern_rate_hz": timing.pattern_rate_hz,
            "offered_fps": round(frame_rate, 2),
            "duration_s": round(seconds, 1),
            "scenes": summary["scenes"],
            "measurement_frames": summary["measurement_frames"],
            "latent_codes": summary["latent_messages"],
            "latent_fps": round(summary["latent_messages"] / seconds, 2),
            **counted,
            # scenes published in the window that never became a code, as the nodes count them
            "frames_dropped": counted["scenes_published"] - counted["codes_encoded"],
            # scenes the observer saw with no code it saw (it can miss codes the camera made)
            "frames_dropped_seen_by_observer": summary["dropped_frames"],
            "measurement_sequence_gaps": summary["sequence_gaps"],
            "scene_to_latent_p50_ms": _round(latency["scene_to_latent"]["p50"]),
            "scene_to_latent_p95_ms": _round(latency["scene_to_latent"]["p95"]),
            "decoded_images": summary["decoded_images"],
            "decoded_fps": round(summary["decoded_images"] / seconds, 2),
            "scene_to_image_p50_ms": _round(latency["scene_to_image"]["p50"]),
            "scene_to_image_p95_ms": _round(latency["scene_to_image"]["p95"]),
            "nodes": _per_scene(window["resources"], summary["scenes"] / seconds),
            "processes": "one per node (launch/sim.launch.py), monitor in the benchmark process",
            # other work on the computer shows up as dropped frames: the 1-minute load at start and end
            "load_average_1min": [round(load, 2) for load in window["load"]],
            **soak,
        }
    ]


def _per_scene(resources: dict, scenes_per_s: float) -> dict:
    """Each node's CPU also as ms per scene offered: what the node costs a frame, whatever the rate."""
    return {
        name: {**node, "cpu_ms_per_scene": _round(10 * node["cpu_percent_of_one_core"] / scenes_per_s)}
        for name, node in resources.items()
    }


def _round(value):
    return None if value is None else round(value, 2)


def soak_figure(row: dict, path) -> None:
    """The soak over time: each node's resident memory and CPU, the time each stage adds and the
    frames dropped per sample (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = row["timeline"]
    minutes = [sample["t_s"] / 60 for sample in timeline]
    figure, axes = plt.subplots(1, 4, figsize=(18, 4))
    for name in timeline[0]["nodes"]:
        axes[0].plot(minutes, [s["nodes"][name]["rss_mb"] for s in timeline], label=name)
        axes[1].plot(minutes, [s["nodes"][name]["cpu_percent_of_one_core"] for s in timeline], label=name)
    stages = dict.fromkeys(stage for s in timeline for stage in s["node_latency_p50_ms"])
    for stage in stages:
        axes[2].plot(minutes, [s["node_latency_p50_ms"].get(stage) for s in timeline], label=stage)
    axes[3].bar(minutes, [s["frames_dropped"] for s in timeline], width=0.8 * row["sample_every_s"] / 60)
    titles = ("resident memory, MB", "CPU, % of one core", "time the stage adds, p50 ms", "frames dropped")
    for axis, title in zip(axes, titles, strict=True):
        axis.set_title(title)
        axis.set_xlabel("minutes")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    figure.suptitle(
        f"{row['duration_s'] / 60:.0f} min at {row['offered_fps']:.1f} scenes/s, M = {row['M']}: "
        f"{row['scenes']:,} scenes, {row['frames_dropped']:,} dropped"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
