"""Model files: one ``.safetensors`` (bit-packed patterns + encoder weights) with JSON metadata.

Tensors: ``patterns.bits`` (uint8, the pattern-set format of lsi_ros.optics.patterns) and
``encoder.<name>`` (weights in fp16, normalisation buffers in fp32; an ensemble's members under
``encoder.members.<k>.``). Metadata: ``format``,
``version``, ``model_id``, ``pattern_set_id`` and ``info`` (JSON: M, resolution, generator id,
architecture, training data seeds, metrics). A ``<name>.json`` copy of ``info`` sits beside the
file for people; loading reads only the safetensors file and never unpickles anything.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lsi_ros.models.encoder import EncoderEnsemble, MeasurementEncoder, build_encoder
from lsi_ros.models.files import read_safetensors, stored_pattern_set, write_safetensors
from lsi_ros.optics.patterns import PatternSet, PatternSetError

FILE_FORMAT = "lsi_ros.model"
FILE_VERSION = "1"


class ModelFileError(ValueError):
    """A model file that is missing, corrupt, or inconsistent with itself."""


@dataclass
class LsiModel:
    """What the encoder node needs: the patterns the DMD shows and the encoder for their measurements."""

    model_id: str
    pattern_set: PatternSet
    encoder: MeasurementEncoder | EncoderEnsemble
    info: dict = field(default_factory=dict)

    @property
    def num_measurements(self) -> int:
        return self.pattern_set.num_patterns


def save_model(model: LsiModel, path) -> Path:
    path = Path(path)
    tensors = {"patterns.bits": torch.from_numpy(np.array(model.pattern_set.bits))}
    for name, tensor in model.encoder.state_dict().items():
        keep_fp32 = name.rpartition(".")[2].startswith("latent_")
        tensors[f"encoder.{name}"] = tensor.detach().float() if keep_fp32 else tensor.detach().half()
    info = dict(model.info)
    info |= {
        "M": model.num_measurements,
        "resolution": list(model.pattern_set.resolution),
        "architecture": {
            "latent_dim": model.encoder.latent_dim,
            "width": model.encoder.width,
            "depth": model.encoder.depth,
            "members": len(model.encoder.members) if isinstance(model.encoder, EncoderEnsemble) else 1,
        },
    }
    metadata = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "model_id": model.model_id,
        "pattern_set_id": model.pattern_set.pattern_set_id,
        "info": json.dumps(info),
    }
    write_safetensors(tensors, path, metadata)
    path.with_suffix(".json").write_text(
        json.dumps(
            {"model_id": model.model_id, "pattern_set_id": model.pattern_set.pattern_set_id, **info}, indent=2
        )
        + "\n"
    )
    return path


def load_model(path, device: str = "cpu") -> LsiModel:
    """Read and validate a model file; any defect raises ModelFileError naming the file."""
    metadata, tensors = read_safetensors(path, FILE_FORMAT, ModelFileError, "model")
    try:
        pattern_set, info = stored_pattern_set(tensors, metadata, path, ModelFileError)
        arch = info["architecture"]
        encoder = build_encoder(
            pattern_set.num_patterns, arch["latent_dim"], arch["width"], arch["depth"], arch.get("members", 1)
        )
        state = {k.removeprefix("encoder."): v.float() for k, v in tensors.items()}
        encoder.load_state_dict(state, strict=True)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, PatternSetError) as error:
        raise ModelFileError(f"{path}: inconsistent model file ({error})") from error
    encoder.eval().to(device)
    return LsiModel(model_id=metadata["model_id"], pattern_set=pattern_set, encoder=encoder, info=info)
