"""Task models: binary DMD patterns + a tiny head that reads one binary attribute off M counts.

The paper's downstream claim at its extreme (M = 4, 1:16384): no latent, no image, the patterns are
learned for the task. A task model file is one ``.safetensors``: ``patterns.bits`` (the pattern-set
format of lsi_ros.optics.patterns) and ``head.<name>`` float32, with metadata ``format``,
``model_id``, ``attribute``, ``pattern_set_id`` and ``info`` (JSON: M, resolution, head width,
training and held-out metrics). A ``.json`` copy of ``info`` sits beside it.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from lsi_ros.models.files import read_safetensors, stored_pattern_set, write_safetensors
from lsi_ros.optics.patterns import PatternSet, PatternSetError

FILE_FORMAT = "lsi_ros.task_model"


class TaskHead(torch.nn.Module):
    """M counts -> logit. LayerNorm over the frame removes gain and offset (light level, dark level)."""

    def __init__(self, num_measurements: int, width: int = 32):
        super().__init__()
        self.num_measurements = num_measurements
        self.width = width
        self.net = torch.nn.Sequential(
            torch.nn.LayerNorm(num_measurements),
            torch.nn.Linear(num_measurements, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, 1),
        )

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        return self.net(counts)[..., 0]


@dataclass
class TaskModel:
    """The patterns the DMD shows and the head that turns their counts into p(attribute)."""

    attribute: str
    pattern_set: PatternSet
    head: TaskHead
    info: dict = field(default_factory=dict)

    @property
    def num_measurements(self) -> int:
        return self.pattern_set.num_patterns

    def probabilities(self, counts: np.ndarray) -> np.ndarray:
        """ADC counts (..., M) -> p(attribute) (...)."""
        with torch.inference_mode():
            return torch.sigmoid(self.head(torch.as_tensor(np.asarray(counts), dtype=torch.float32))).numpy()


def save_task_model(model: TaskModel, path) -> Path:
    path = Path(path)
    tensors = {"patterns.bits": torch.from_numpy(np.array(model.pattern_set.bits))}
    tensors |= {f"head.{k}": v.detach().float() for k, v in model.head.state_dict().items()}
    info = dict(model.info) | {
        "M": model.num_measurements,
        "resolution": list(model.pattern_set.resolution),
        "head_width": model.head.width,
    }
    metadata = {
        "format": FILE_FORMAT,
        "model_id": model.pattern_set.model_id,
        "attribute": model.attribute,
        "pattern_set_id": model.pattern_set.pattern_set_id,
        "info": json.dumps(info),
    }
    write_safetensors(tensors, path, metadata)
    summary = {k: metadata[k] for k in ("model_id", "attribute", "pattern_set_id")} | info
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return path


def is_task_model(path) -> bool:
    """Whether a ``.safetensors`` file says it is a task model (model files say otherwise)."""
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("format") == FILE_FORMAT
    except (SafetensorError, OSError):
        return False


def load_task_model(path) -> TaskModel:
    """Read and validate a task model file; any defect raises ValueError naming the file."""
    metadata, tensors = read_safetensors(
        path, FILE_FORMAT, ValueError, "task model", missing=FileNotFoundError
    )
    try:
        pattern_set, info = stored_pattern_set(tensors, metadata, path, ValueError)
        head = TaskHead(pattern_set.num_patterns, info["head_width"])
        head.load_state_dict({k.removeprefix("head."): v for k, v in tensors.items()}, strict=True)
    except (KeyError, TypeError, RuntimeError, PatternSetError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: inconsistent task model file ({error})") from error
    return TaskModel(metadata["attribute"], pattern_set, head.eval(), info)
