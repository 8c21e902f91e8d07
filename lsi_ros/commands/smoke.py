"""``lsi smoke``: two nodes in two processes exchange LatentCode messages over DDS; checks and reports."""

import json
import sys
import time
from pathlib import Path


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "smoke",
        help="check the ROS 2 setup: publish latent codes in one process, receive them in another",
        description="Runs `ros2 launch lsi_ros smoke.launch.py` (latent_source -> latent_monitor) and "
        "checks that the codes arrived intact.",
    )
    parser.add_argument(
        "--count", type=int, default=60, help="stop once this many codes arrived (default 60)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    parser.add_argument("--rate", type=float, default=30.0, help="latent codes per second (default 30)")
    parser.add_argument("--output", default="runs/smoke/summary.json", help="where to write the summary")
    parser.set_defaults(func=main)


def main(args) -> int:
    from lsi_ros.ros.launch_process import LaunchProcess

    summary_path = Path(args.output).resolve()
    summary_path.unlink(missing_ok=True)
    deadline = time.monotonic() + args.timeout
    arguments = {"summary_path": str(summary_path), "rate_hz": str(args.rate)}
    with LaunchProcess("smoke.launch.py", arguments) as launch:
        while launch.running() and _received(summary_path) < args.count and time.monotonic() < deadline:
            time.sleep(0.1)
    code = launch.process.returncode
    if code != 0 or not summary_path.is_file():
        print("smoke run FAILED: a node failed or wrote no summary", file=sys.stderr)
        return 1
    summary = json.loads(summary_path.read_text())
    latency = summary["latency_ms"]
    print(
        f"\nsmoke run: {summary['received']} LatentCode messages received across processes "
        f"({summary['rate_hz']:.1f} Hz, shapes {summary['shapes']}, {summary['invalid']} invalid), "
        f"latency p50 {latency['p50']} ms / p95 {latency['p95']} ms\nsummary: {summary_path}"
    )
    return 0 if summary["received"] >= args.count and summary["invalid"] == 0 else 1


def _received(summary_path: Path) -> int:
    try:
        return json.loads(summary_path.read_text())["received"]
    except (OSError, ValueError, KeyError):
        return 0
