"""``lsi run``: the main job. The whole simulated camera, end to end, in separate processes."""

import argparse
import json
import shlex
import shutil
import socket
import sys
import threading
import time
from pathlib import Path


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "run",
        help="run the simulated pipeline (scene -> DMD + photodiode -> latent -> image) and report",
        description="Runs `ros2 launch lsi_ros sim.launch.py record:=true` (every node its own process, "
        "a bag recorder), watches the topics for --duration seconds once latent codes flow, stops the "
        "launch as Ctrl-C would and writes --output/{bag, frames.png, summary.json}.",
    )
    parser.add_argument(
        "--model", default="", help="model name or file (default m128; with --framing auto m128-framed)"
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds to run once latent codes flow (default 30)"
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=180.0, help="give up if no latent code arrives by then"
    )
    parser.add_argument(
        "--source", default="demo", help="scene source: demo, faces, portraits, folder, video"
    )
    parser.add_argument("--generator", default="mobilestylegan", help="generator of the model and the faces")
    parser.add_argument("--path", default="", help="image folder or video file for --source folder/video")
    parser.add_argument("--scene-rate", type=float, default=2.0, help="scenes per second (default 2)")
    parser.add_argument(
        "--framing",
        choices=("off", "auto"),
        default="off",
        help="auto: find the face in the field and register the patterns onto it (sources unframed, "
        "walking); writes --output/framing.png, fields beside their decoded images (default off)",
    )
    parser.add_argument(
        "--field-size",
        type=int,
        default=1024,
        help="framing: side of the scene field in pixels, one a mirror (default 1024, the DLP6500's "
        "active area for 256² patterns; a face narrower than 256 mirrors is undersampled)",
    )
    parser.add_argument(
        "--figure",
        default="",
        help="framing: also write the figure here, with its numbers beside it (.json), e.g. "
        "docs/results/framing_sequence.png",
    )
    parser.add_argument(
        "--decode-rate",
        type=float,
        default=0.0,
        help="images the decoder draws per second at most, of the newest code (default 0: every code, "
        "so that the report's decoded-vs-scene quality covers every scene rather than a subset that "
        "changes from run to run; sim.launch.py's own default is 1.0)",
    )
    parser.add_argument("--output", default="runs/latest", help="output folder (replaced)")
    parser.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve the live page (web_view) on 127.0.0.1 while it runs (default on)",
    )
    parser.add_argument(
        "--web-port", type=int, default=8080, help="its port (default 8080; if busy, a free one)"
    )
    parser.set_defaults(func=main)


def main(args) -> int:
    import signal

    import cv2
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from lsi_ros.pipeline_monitor import PipelineMonitor
    from lsi_ros.ros.launch_process import LaunchProcess, adopt_ros_environment

    # SIGINT stops the run as Ctrl-C does, also when the caller started it with SIGINT ignored (a
    # background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    output = Path(args.output)
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    web_port = _free_port(args.web_port) if args.web else args.web_port
    if args.web:
        print(f"live page: http://127.0.0.1:{web_port}/", flush=True)
    from lsi_ros.models.registry import DEFAULT_MODEL, FRAMED_MODEL

    args.model = args.model or (FRAMED_MODEL if args.framing == "auto" else DEFAULT_MODEL)
    arguments = {
        "model": args.model,
        "generator": args.generator,
        "source": args.source,
        "scene_rate_hz": str(args.scene_rate),
        "record": "true",
        "bag": str((output / "bag").resolve()),
        "web": str(args.web).lower(),
        "web_port": str(web_port),
    }
    if args.framing == "auto":
        arguments |= {"framing": "auto", "field_size": str(args.field_size)}
    if args.path:
        arguments["path"] = args.path
    arguments["decoder_max_rate_hz"] = str(args.decode_rate)
    adopt_ros_environment()
    context = rclpy.Context()
    rclpy.init(context=context)
    monitor = PipelineMonitor(context=context, framing=args.framing == "auto")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(monitor)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:

        def enough():
            started = monitor.first_latent_time
            return started is not None and time.monotonic() - started >= args.duration

        deadline = time.monotonic() + args.duration + args.startup_timeout
        with LaunchProcess("sim.launch.py", arguments) as launch:
            try:
                while launch.running() and not enough() and time.monotonic() < deadline:
                    time.sleep(0.1)
            except KeyboardInterrupt:
                pass
            stopped_early = not launch.running()
        code = launch.process.returncode
    finally:
        executor.shutdown(timeout_sec=2.0)
        summary = monitor.summary()
        strip = monitor.frame_strip() if monitor.pairs else None
        if monitor.framing:
            summary["framing"] = monitor.framing_summary()
            if monitor.framed:
                figures = [output / "framing.png", *([Path(args.figure)] if args.figure else [])]
                for figure in figures:
                    monitor.framing_figure(figure)
        monitor.destroy_node()
        rclpy.try_shutdown(context=context)
    summary |= {"model": args.model, "source": args.source, "duration_s": args.duration}
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.figure:
        command = {"command": shlex.join(["lsi", *sys.argv[1:]])}
        Path(args.figure).with_suffix(".json").write_text(json.dumps(summary | command, indent=2) + "\n")
    if strip is not None:
        cv2.imwrite(str(output / "frames.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    latency = summary["latency_ms"]
    sizes = summary["bytes_per_frame"]
    quality = summary["quality_rgb"]
    print(
        f"\nlsi run ({args.duration:.0f} s, model {args.model}): {summary['scenes']} scenes -> "
        f"{summary['measurement_frames']} measurement frames -> {summary['latent_messages']} latent codes -> "
        f"{summary['decoded_images']} images; dropped {summary['dropped_frames']} (measurement frames the "
        f"monitor missed but the encoder got: {summary['measurement_frames_unseen']})\n"
        f"latency scene->latent p50 {latency['scene_to_latent']['p50']} ms, scene->image p50 "
        f"{latency['scene_to_image']['p50']} ms\n"
        f"bytes per frame: {sizes}\n"
        f"decoded vs scene (RGB): PSNR {quality['psnr_db']} dB, SSIM {quality['ssim']}\n"
        f"wrote {output}/summary.json, frames.png, bag/"
    )
    if stopped_early:
        print(f"ros2 launch ended by itself (exit code {code})")
    ok = code == 0 and not stopped_early and summary["latent_messages"] > 0 and summary["decoded_images"] > 0
    return 0 if ok else 1


def _free_port(port: int) -> int:
    """``port`` if nothing listens on it on 127.0.0.1, else one the system picks as free."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            probe.bind(("127.0.0.1", 0))
            print(f"port {port} is busy: the live page takes {probe.getsockname()[1]}", flush=True)
        return probe.getsockname()[1]
