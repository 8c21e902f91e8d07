"""The serial_adc chain as separate processes: simulated device (pty) + dmd_driver + photodiode_sampler,
with a probe counting the published measurement frames and printing the sampler's last diagnostics.

    .venv/bin/python experiments/serial_adc_e2e.py --pattern-rate-hz 9500
    .venv/bin/python experiments/serial_adc_e2e.py --pattern-rate-hz 1000 --faults
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))

from lsi_ros.ros.launch_process import ros_environment  # noqa: E402

os.environ["AMENT_PREFIX_PATH"] = ros_environment()["AMENT_PREFIX_PATH"]


def node(executable: str, *parameters: str) -> subprocess.Popen:
    from ament_index_python.packages import get_package_prefix

    path = f"{get_package_prefix('lsi_ros')}/lib/lsi_ros/{executable}"
    args = [arg for parameter in parameters for arg in ("-p", parameter)]
    return subprocess.Popen([sys.executable, path, "--ros-args", *args])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patterns", default="model:m32")
    parser.add_argument("--pattern-rate-hz", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--faults", action="store_true", help="garbage, drops, disconnect every 6 s")
    args = parser.parse_args()

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node

    from lsi_ros.msg import Measurements
    from lsi_ros.ros import qos

    link = Path(tempfile.mkdtemp(prefix="lsi_serial_adc_e2e_")) / "tty"
    device = [sys.executable, "-m", "lsi_ros.hardware.serial_adc_device", "--patterns", args.patterns]
    device += ["--link", str(link), "--pattern-rate-hz", str(args.pattern_rate_hz)]
    if args.faults:
        device += ["--garbage-rate", "0.001", "--drop-rate", "0.0005", "--disconnect-every", "6"]
    processes = [subprocess.Popen(device, stdout=subprocess.PIPE, text=True)]
    print(processes[0].stdout.readline().strip())
    rate = f"pattern_rate_hz:={args.pattern_rate_hz}"
    processes.append(node("dmd_driver", f"pattern_set:={args.patterns}", rate))
    processes.append(
        node("photodiode_sampler", "backend:=serial_adc", f"port:={link}", "reconnect_max_backoff_s:=0.5")
    )
    rclpy.init()
    probe = Node("serial_adc_e2e_probe")
    arrivals, statuses = [], []
    probe.create_subscription(
        Measurements, "measurements", lambda _: arrivals.append(time.monotonic()), qos.SENSOR_DATA
    )
    probe.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda array: statuses.extend(s for s in array.status if s.name == "photodiode_sampler"),
        50,
    )
    try:
        start = time.monotonic()
        while time.monotonic() - start < args.seconds:
            rclpy.spin_once(probe, timeout_sec=0.1)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=20)
        rclpy.try_shutdown()
    if len(arrivals) > 1:
        span = arrivals[-1] - arrivals[0]
        print(f"{len(arrivals)} frames, {len(arrivals) / span:.1f} frames/s over {span:.1f} s")
    if statuses:
        last = statuses[-1]
        print(f"level {int.from_bytes(last.level, 'little')}: {last.message}")
        print({kv.key: kv.value for kv in last.values})
    return 0 if arrivals else 1


if __name__ == "__main__":
    sys.exit(main())
