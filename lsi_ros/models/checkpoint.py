"""Model files: one ``.safetensors`` (bit-packed patterns + encoder weights) with JSON metadata.

Tensors: ``patterns.bits`` (uint8, the pattern-set format of lsi_ros.optics.patterns) and
``encoder.<name>`` (weights in fp16, normalisation buffers in fp32; an ensemble's members under
``encoder.members.<k>.``). With ``weight_format="int8"`` each matrix is stored as int8 with one fp32
scale per output row in ``encoder.<name>.row_scale`` (half the bytes; the latent estimate moves by far
less than its error) and is widened to fp32 on loading. Metadata: ``format``,
``version``, ``model_id``, ``pattern_set_id`` and ``info`` (JSON: M, resolution, generator id,
``latent_space`` ("w", or "w+" with ``architecture.num_ws`` layers), architecture, training data
seeds, metrics). A ``<name>.json`` copy of ``info`` sits beside the
file for people; loading reads only the safetensors file and never unpickles anything.
"""

import copy
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
WEIGHT_FORMATS = ("fp16", "int8")
ROW_SCALE = ".row_scale"


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


def quantised_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output row: ``weight ≈ q * scale[:, None]`` (an all-zero row gets scale 1)."""
    weight = weight.detach().float()
    peak = weight.abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def widened_rows(quantised: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``quantised_rows`` undone: the fp32 matrix ``q * scale[:, None]``."""
    return quantised.float() * scale.float()[:, None]


def encoder_tensors(encoder: torch.nn.Module, weight_format: str) -> dict:
    """The ``encoder.*`` tensors of a model file: latent normalisation in fp32, matrices in
    ``weight_format``, the rest in fp16."""
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight format {weight_format!r} is not one of {', '.join(WEIGHT_FORMATS)}")
    tensors = {}
    for name, tensor in encoder.state_dict().items():
        key = f"encoder.{name}"
        if name.rpartition(".")[2].startswith("latent_"):
            tensors[key] = tensor.detach().float()
        elif weight_format == "int8" and tensor.ndim == 2:
            tensors[key], tensors[key + ROW_SCALE] = quantised_rows(tensor)
        else:
            tensors[key] = tensor.detach().half()
    return tensors


def as_stored(encoder: torch.nn.Module, weight_format: str) -> torch.nn.Module:
    """A copy of ``encoder`` with the weights a file in ``weight_format`` gives back (to validate the
    model people will load, not the float one it came from)."""
    stored = copy.deepcopy(encoder)
    tensors = {k: v.cpu() for k, v in encoder_tensors(encoder, weight_format).items()}
    stored.load_state_dict(_widened(tensors, "(in memory)"), strict=True)
    return stored


def save_model(model: LsiModel, path, weight_format: str = "fp16") -> Path:
    path = Path(path)
    tensors = {"patterns.bits": torch.from_numpy(np.array(model.pattern_set.bits))}
    tensors |= encoder_tensors(model.encoder, weight_format)
    info = dict(model.info)
    info |= {
        "M": model.num_measurements,
        "resolution": list(model.pattern_set.resolution),
        "latent_space": model.encoder.latent_space,
        "architecture": {
            "latent_dim": model.encoder.latent_dim,
            "num_ws": model.encoder.num_ws,
            "width": model.encoder.width,
            "depth": model.encoder.depth,
            "members": len(model.encoder.members) if isinstance(model.encoder, EncoderEnsemble) else 1,
            "weights": weight_format,
        },
    }
    if model.encoder.offset_rank:
        info["architecture"]["offset_rank"] = model.encoder.offset_rank
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
            pattern_set.num_patterns,
            arch["latent_dim"],
            arch["width"],
            arch["depth"],
            arch.get("members", 1),
            arch.get("num_ws", 1),
            arch.get("offset_rank", 0),
        )
        if info.get("latent_space", "w") != encoder.latent_space:
            raise ModelFileError(
                f"{path}: latent space {info.get('latent_space')!r} but {encoder.num_ws} latent vectors"
            )
        encoder.load_state_dict(_widened(tensors, path), strict=True)
        if isinstance(encoder, EncoderEnsemble):
            encoder.check_members()
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, PatternSetError) as error:
        raise ModelFileError(f"{path}: inconsistent model file ({error})") from error
    encoder.eval().to(device)
    return LsiModel(model_id=metadata["model_id"], pattern_set=pattern_set, encoder=encoder, info=info)


def _widened(tensors: dict, path) -> dict:
    """The encoder's state dict in fp32, int8 matrices multiplied back by their row scales."""
    state = {}
    for key, value in tensors.items():
        if key.endswith(ROW_SCALE):
            continue
        scale = tensors.get(key + ROW_SCALE)
        if (value.dtype == torch.int8) != (scale is not None):
            raise ModelFileError(
                f"{path}: {key} is {value.dtype} with{'' if scale is not None else 'out'} row scales"
            )
        if scale is not None:
            if value.ndim != 2 or scale.shape != (value.shape[0],) or not torch.isfinite(scale).all():
                raise ModelFileError(f"{path}: {key}{ROW_SCALE} does not fit {key} {tuple(value.shape)}")
            value = widened_rows(value, scale)
        state[key.removeprefix("encoder.")] = value.float()
    orphans = [k for k in tensors if k.endswith(ROW_SCALE) and k.removesuffix(ROW_SCALE) not in tensors]
    if orphans:
        raise ModelFileError(f"{path}: row scales without their matrix: {', '.join(orphans)}")
    return state
