"""latent_monitor: watches a LatentCode topic: rate, latency, validity; reports on /diagnostics.

``ros2 topic hz``/``delay`` for latent codes, which also checks that every code is well formed,
and (``summary_path``) writes a JSON summary when it stops, for scripts and smoke runs.

Subscribes: ``latent`` (lsi_ros/LatentCode). Publishes: ``/diagnostics``.
"""

import json
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node

from lsi_ros.ros import diagnostics, latent, node_main, qos
from lsi_ros.ros.parameters import Param, declare
from lsi_ros.ros.reference import Topic

TOPICS = (
    Topic("sub", "latent", "lsi_ros/msg/LatentCode", "The codes watched."),
    Topic("pub", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "Rate, latency, invalid codes."),
)

PARAMS = (
    Param("summary_path", "", "Write a JSON summary here when the node stops (empty: don't)."),
    Param("report_period_s", 1.0, "Period of the /diagnostics report.", min=0.05, max=3600.0, applies="live"),
)


class LatentMonitor(Node):
    def __init__(self, **node_options):
        super().__init__("latent_monitor", **node_options)
        self.config = declare(self, PARAMS, apply=self._apply)
        self.received = 0
        self.invalid = 0
        self.shapes = set()
        self.latencies_ms = []
        self._first_time = None
        self._last_time = None
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        self.create_subscription(latent.LatentCode, "latent", self._on_latent, qos.RELIABLE)
        self._report_timer = self.create_timer(self.config["report_period_s"], self._report)

    def _apply(self, changes: dict):
        if "report_period_s" in changes:
            self.destroy_timer(self._report_timer)
            self._report_timer = self.create_timer(changes["report_period_s"], self._report)

    def _on_latent(self, msg):
        now = self.get_clock().now()
        self._first_time = self._first_time or time.monotonic()
        self._last_time = time.monotonic()
        try:
            code = latent.from_msg(msg)
        except latent.LatentCodeError as error:
            self.invalid += 1
            self.get_logger().warning(f"invalid latent code: {error}", throttle_duration_sec=5.0)
            return
        self.received += 1
        self.shapes.add(code.shape)
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if stamp_ns:
            self.latencies_ms.append((now.nanoseconds - stamp_ns) / 1e6)

    def summary(self) -> dict:
        span = (self._last_time - self._first_time) if self.received > 1 else 0.0
        lat = np.asarray(self.latencies_ms)
        return {
            "received": self.received,
            "invalid": self.invalid,
            "shapes": sorted(list(s) for s in self.shapes),
            "rate_hz": (self.received - 1) / span if span > 0 else 0.0,
            "latency_ms": {
                "p50": float(np.percentile(lat, 50)) if lat.size else None,
                "p95": float(np.percentile(lat, 95)) if lat.size else None,
            },
        }

    def _report(self):
        summary = self.summary()
        self._write_summary(summary)
        level = diagnostics.OK if self.received and not self.invalid else diagnostics.WARN
        message = "receiving" if self.received else "no latent codes yet"
        if self.invalid:
            message = f"{self.invalid} invalid latent codes"
        self._diagnostics.publish(level, message, {k: v for k, v in summary.items() if k != "shapes"})

    def _write_summary(self, summary: dict):
        """Rewritten at every report and at shutdown, so scripts can watch it while the node runs."""
        if self.config["summary_path"]:
            path = Path(self.config["summary_path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(summary, indent=2))
            tmp.replace(path)

    def destroy_node(self):
        self._write_summary(self.summary())
        super().destroy_node()


def main(args=None):
    return node_main.run(LatentMonitor, args)
