"""latent_encoder: measurement frames -> latent codes, with the model whose patterns were displayed.

A frame is refused (no output, counted and reported) when its pattern set is not the model's,
when it holds the wrong number of values, when a value is not finite or outside what a detector
can read (lsi_ros.ros.checks); a code or probability that comes out non-finite is not published.
The node keeps running and reports a missing or corrupt model file as an ERROR.

Task mode: given a task model (``model:=task-male-m4``: patterns learned for one attribute and a
tiny head, no latent), the same frames become that attribute's probability on ``attributes``.

Subscribes: ``measurements`` (lsi_ros/Measurements, reliable, 100 deep). Publishes: ``latent``
(lsi_ros/LatentCode, reliable) or, in task mode, ``attributes`` (lsi_ros/Attributes, reliable);
``/diagnostics``.
"""

import time
from collections import deque

import numpy as np
import torch
from rclpy.node import Node

from lsi_ros.models.checkpoint import ModelFileError, load_model
from lsi_ros.models.registry import find_model
from lsi_ros.models.task import TaskModel, is_task_model, load_task_model
from lsi_ros.msg import Attributes, LatentCode, Measurements
from lsi_ros.ros import checks, diagnostics, latent, node_main, qos
from lsi_ros.ros.parameters import Param, declare
from lsi_ros.ros.reference import Topic

TOPICS = (
    Topic("sub", "measurements", "lsi_ros/msg/Measurements", "Measurement frames (reliable, 100 deep)."),
    Topic("pub", "latent", "lsi_ros/msg/LatentCode", "One latent code per frame (latent mode)."),
    Topic("pub", "attributes", "lsi_ros/msg/Attributes", "The task attribute's probability (task mode)."),
    Topic(
        "pub", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "Encoded and refused counts, latency."
    ),
)

PARAMS = (
    Param(
        "model",
        "m128",
        "Model name (looked up in models/ and share/lsi_ros/models) or file; a task model "
        "(task-male-m4) switches to task mode.",
    ),
    Param("device", "auto", "Torch device for the encoder.", choices=("auto", "cpu", "cuda")),
    Param(
        "threads",
        1,
        "CPU threads for the encoder (one frame is small; 1 keeps latency steady).",
        min=1,
        max=64,
    ),
)


class LatentEncoder(Node):
    def __init__(self, **node_options):
        super().__init__("latent_encoder", **node_options)
        self.config = declare(self, PARAMS)
        torch.set_num_threads(self.config["threads"])
        device = self.config["device"]
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.refusals = checks.Refusals(self)
        self.latencies_ms = deque(maxlen=1000)
        self.error = ""
        self.model = None
        try:
            path = find_model(self.config["model"])
            is_task = is_task_model(path)
            self.model = load_task_model(path) if is_task else load_model(path, device=self.device)
        except (FileNotFoundError, ModelFileError, ValueError) as error:
            self.error = f"cannot load model '{self.config['model']}': {error}"
            self.get_logger().error(self.error)
        else:
            mode = f"task mode: p({self.task.attribute})" if self.task else f"on {self.device}"
            self.get_logger().info(
                f"model {self.model.pattern_set.model_id}: M = {self.model.num_measurements}, "
                f"pattern set {self.model.pattern_set.pattern_set_id}, {mode}"
            )
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        msg_type, topic = (LatentCode, "latent") if self.task is None else (Attributes, "attributes")
        self._publisher = checks.CheckedPublisher(self, msg_type, topic, qos.RELIABLE, self.refusals)
        self.create_subscription(Measurements, "measurements", self._on_frame, qos.FRAMES)
        self.create_timer(1.0, self._report)

    @property
    def task(self) -> TaskModel | None:
        """The task model in task mode (frames -> one attribute's probability), else None."""
        return self.model if isinstance(self.model, TaskModel) else None

    def _on_frame(self, frame: Measurements):
        if self.model is None:
            return
        expected = self.model.pattern_set.pattern_set_id
        if frame.pattern_set_id != expected:
            self.refusals.refuse(
                "refused_pattern_set",
                f"frame {frame.sequence} was measured with pattern set {frame.pattern_set_id}; "
                f"model {self.model.pattern_set.model_id} needs {expected}",
            )
            return
        values = np.asarray(frame.values, dtype=np.float32)
        if values.size != self.model.num_measurements:
            self.refusals.refuse(
                "refused_count",
                f"frame {frame.sequence} has {values.size} values, model needs {self.model.num_measurements}",
            )
            return
        source = checks.describe(frame.header, frame.sequence)
        for kind, problem in (
            ("refused_nonfinite", checks.array_problem(values=values)),
            ("refused_out_of_range", checks.reading_problem(values)),
        ):
            if problem:
                self.refusals.refuse(kind, f"{source} refused: {problem}")
                return
        start = time.perf_counter()
        if self.task is not None:
            output = np.atleast_1d(self.task.probabilities(values)).astype(np.float32)
            msg = Attributes(
                header=frame.header,
                model_id=self.task.pattern_set.model_id,
                names=[self.task.attribute],
                scores=output,
            )
        else:
            with torch.inference_mode():
                output = self.model.encoder(torch.from_numpy(values).to(self.device)[None])[0].cpu().numpy()
            msg = latent.to_msg(
                output, header=frame.header, model_id=self.model.model_id, pattern_set_id=frame.pattern_set_id
            )
        self.latencies_ms.append(1e3 * (time.perf_counter() - start))
        self._publisher.publish(msg, source, output=output)

    def _report(self):
        values = {"encoded": self._publisher.published, **self.refusals.values()}
        if self.latencies_ms:
            values["encode_ms_p50"] = f"{np.percentile(self.latencies_ms, 50):.3f}"
        refused = self.refusals.recent()
        if self.error:
            self._diagnostics.publish(diagnostics.ERROR, self.error, values)
        elif refused:
            message = (
                f"{refused} refused in the last {self.refusals.window_s:g} s: {self.refusals.last_message}"
            )
            self._diagnostics.publish(diagnostics.WARN, message, values)
        else:
            self._diagnostics.publish(diagnostics.OK, "encoding", values)


def main(args=None):
    return node_main.run(LatentEncoder, args)
