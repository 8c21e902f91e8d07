"""latent_encoder: measurement frames -> latent codes, with the model whose patterns were displayed.

A frame is refused (no output, counted and reported) when its pattern set is not the model's,
when it holds the wrong number of values, when a value is not finite or outside what a detector
can read (lsi_ros.ros.checks); a code or probability that comes out non-finite is not published.
The node keeps running and reports a missing or corrupt model file as an ERROR.

Frames are encoded on a worker thread, in arrival order: when several wait (a busy CPU delayed the
node), they go through the encoder as one batch, which reads the model's weights once for all of
them (the M = 128 ensemble's weights are 44 MB: one frame at a time is bound by memory, not by
arithmetic). Each frame still becomes its own code, stamped as its frame. On the CPU the matrices
run as int8 rows (``int8_kernels``, lsi_ros.models.int8_encoder): a quarter of the bytes per frame.

Task mode: given a task model (``model:=task-male-m4``: patterns learned for one attribute and a
tiny head, no latent), the same frames become that attribute's probability on ``attributes``.

Subscribes: ``measurements`` (lsi_ros/Measurements, best effort, 100 deep). Publishes: ``latent``
(lsi_ros/LatentCode, reliable) or, in task mode, ``attributes`` (lsi_ros/Attributes, reliable);
``/diagnostics``.
"""

import queue
import threading
import time
from collections import deque

import numpy as np
import torch
from rclpy.node import Node

from lsi_ros.models.checkpoint import ModelFileError, load_model
from lsi_ros.models.int8_encoder import Int8Encoder, inference_encoder
from lsi_ros.models.registry import find_model
from lsi_ros.models.task import TaskModel, is_task_model, load_task_model
from lsi_ros.msg import Attributes, LatentCode, Measurements
from lsi_ros.ros import checks, diagnostics, latent, node_main, qos
from lsi_ros.ros.parameters import Param, declare
from lsi_ros.ros.reference import Topic

TOPICS = (
    Topic("sub", "measurements", "lsi_ros/msg/Measurements", "Measurement frames (best effort, 100 deep)."),
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
    Param(
        "int8_kernels",
        True,
        "CPU: run the encoder's matrices as int8 rows (as an int8 model file stores them; an fp16 "
        "file's are rounded so on loading) through int8 weight kernels with bf16 activations: over "
        "twice as fast per frame, the latent within 1 % of its standard deviation of the fp32 "
        "one (docs/results.md). false: fp32, as lsi eval scores it.",
    ),
)


# Most frames encoded together; the queue between the subscription and the worker holds as many
# frames as the subscription's own queue (qos.FRAMES_IN), beyond that DDS keeps the newest.
MAX_BATCH = 32
QUEUED_FRAMES = qos.FRAMES_IN.depth


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
        self.model = self.encoder = None
        try:
            path = find_model(self.config["model"])
            is_task = is_task_model(path)
            self.model = load_task_model(path) if is_task else load_model(path, device=self.device)
        except (FileNotFoundError, ModelFileError, ValueError) as error:
            self.error = f"cannot load model '{self.config['model']}': {error}"
            self.get_logger().error(self.error)
        else:
            mode = f"task mode: p({self.task.attribute})" if self.task else f"on {self.device}"
            if self.task is None:
                self.encoder = inference_encoder(self.model, self.config["int8_kernels"])
                mode += ", int8 kernels" if isinstance(self.encoder, Int8Encoder) else ""
            self.get_logger().info(
                f"model {self.model.pattern_set.model_id}: M = {self.model.num_measurements}, "
                f"pattern set {self.model.pattern_set.pattern_set_id}, {mode}"
            )
        self._diagnostics = diagnostics.DiagnosticsReporter(self)
        msg_type, topic = (LatentCode, "latent") if self.task is None else (Attributes, "attributes")
        self._publisher = checks.CheckedPublisher(self, msg_type, topic, qos.CODES, self.refusals)
        self._frames = queue.Queue(maxsize=QUEUED_FRAMES)
        self._worker = threading.Thread(target=self._encode_queued, name="encoder", daemon=True)
        self._worker.start()
        self.create_subscription(Measurements, "measurements", self._on_frame, qos.FRAMES_IN)
        self.create_timer(1.0, self._report)

    @property
    def task(self) -> TaskModel | None:
        """The task model in task mode (frames -> one attribute's probability), else None."""
        return self.model if isinstance(self.model, TaskModel) else None

    def _on_frame(self, frame: Measurements):
        self._frames.put(frame)

    def _encode_queued(self):
        """Worker: every frame waiting (up to MAX_BATCH) at once, until destroy_node() sends None."""
        while True:
            frames = [self._frames.get()]
            while len(frames) < MAX_BATCH and frames[-1] is not None:
                try:
                    frames.append(self._frames.get_nowait())
                except queue.Empty:
                    break
            stop = frames[-1] is None
            try:
                self._encode([f for f in frames if f is not None])
            except RuntimeError:  # rclpy's RCLError once Ctrl-C has shut the context down
                if self.context.ok():
                    raise
                return
            if stop:
                return

    def destroy_node(self):
        self._frames.put(None)
        self._worker.join(timeout=5.0)
        return super().destroy_node()

    def _checked(self, frame: Measurements) -> np.ndarray | None:
        """The frame's values if the model can encode them, else None (refused and counted)."""
        expected = self.model.pattern_set.pattern_set_id
        if frame.pattern_set_id != expected:
            self.refusals.refuse(
                "refused_pattern_set",
                f"frame {frame.sequence} was measured with pattern set {frame.pattern_set_id}; "
                f"model {self.model.pattern_set.model_id} needs {expected}",
            )
            return None
        values = np.asarray(frame.values, dtype=np.float32)
        if values.size != self.model.num_measurements:
            self.refusals.refuse(
                "refused_count",
                f"frame {frame.sequence} has {values.size} values, model needs {self.model.num_measurements}",
            )
            return None
        source = checks.describe(frame.header, frame.sequence)
        for kind, problem in (
            ("refused_nonfinite", checks.array_problem(values=values)),
            ("refused_out_of_range", checks.reading_problem(values)),
        ):
            if problem:
                self.refusals.refuse(kind, f"{source} refused: {problem}")
                return None
        return values

    def _encode(self, frames: list):
        if self.model is None or not frames:
            return
        checked = [(frame, self._checked(frame)) for frame in frames]
        checked = [(frame, values) for frame, values in checked if values is not None]
        if not checked:
            return
        start = time.perf_counter()
        values = np.stack([v for _, v in checked])
        if self.task is not None:
            outputs = np.atleast_2d(self.task.probabilities(values).reshape(len(checked), -1)).astype(
                np.float32
            )
        else:
            with torch.inference_mode():
                outputs = self.encoder(torch.from_numpy(values).to(self.device)).cpu().numpy()
        per_frame_ms = 1e3 * (time.perf_counter() - start) / len(checked)
        for (frame, _), output in zip(checked, outputs, strict=True):
            self.latencies_ms.append(per_frame_ms)
            if self.task is not None:
                msg = Attributes(
                    header=frame.header,
                    model_id=self.task.pattern_set.model_id,
                    names=[self.task.attribute],
                    scores=output,
                )
            else:
                msg = latent.to_msg(
                    output,
                    header=frame.header,
                    model_id=self.model.model_id,
                    pattern_set_id=frame.pattern_set_id,
                )
            self._publisher.publish(msg, checks.describe(frame.header, frame.sequence), output=output)

    def _report(self):
        values = {"encoded": self._publisher.published, **self.refusals.values()}
        if self.encoder is not None:
            values["kernels"] = "int8" if isinstance(self.encoder, Int8Encoder) else "fp32"
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
