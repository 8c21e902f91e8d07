"""A training checkpoint small enough to carry between machines, in files of bounded size.

A streamed run's full state at M = 128 and 256² holds float32 pattern weights (32 MiB), a float32
encoder and AdamW's two moments of each, and the best checkpoint beside them: far more than a GPU
slot that brings its checkpoint back in files of at most 16 MiB, and carries it to the next slot,
can move. The compact form keeps what going on needs, at the precision it needs:

- pattern weights in 8 bits (``round(255 · w)`` inside (0, 1), nudged so that each pixel still shows
  the bit it showed, and a code each for at or beyond 0 and 1, where a pixel no longer moves): a
  resumed run starts from the same binary patterns;
- the encoder's weight matrices in float16 (its other weights in float32);
- the encoder's AdamW moments in float8 (e4m3) with a float32 scale per row, the second moment as its
  square root (half the orders of magnitude); on loading, a second moment that rounded towards zero
  is raised to what its first moment needs, so no step is larger than Adam can take;
- the patterns' AdamW moments dropped: they start again at the next step;
- the best checkpoint's patterns bit-packed and its matrices as int8 rows with a scale each (as an
  int8 model file keeps them), or only a mark when it is the current state.

The tensors go into ``<stem>-<k>.safetensors`` files of at most ``limit`` bytes each; a tensor larger
than that is split by rows (``key@0``, ``key@1``, ...) and joined again on loading.
"""

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lsi_ros.models.checkpoint import ROW_SCALE, quantised_rows, widened_rows

SHARD_LIMIT = 15 * 2**20  # bytes per file: under a 16 MiB transfer limit, with room for the header
HEADER_RESERVE = 64 * 2**10  # the JSON header of a shard, generously
PIECE = "@"
PATTERN_CODES = "patterns.weight_q8"
BEST_IS_CURRENT = "best.is_current"
FLOAT8, SCALE, SHAPE, SQRT = ".f8", ".scale", ".shape", ".sqrt"  # a moment's codes, row scales, shape
FLOAT8_MAX = 448.0  # the largest float8 e4m3 value


def quantise_pattern_weights(weight: torch.Tensor) -> torch.Tensor:
    """Pattern weights (P, H·W) as uint8 codes: 1 … 254 for weights inside (0, 1) (``code / 255``,
    nudged to show the same bit), 0 and 255 for weights at or beyond 0 and 1, where the clamp passes
    no gradient and the pixel stays as it is."""
    weight = weight.detach().float()
    bits = weight.clamp(0.0, 1.0).round().to(torch.bool)
    code = torch.round(weight * 255.0).clamp(1, 254).to(torch.uint8)
    code = torch.where(bits & (code < 128), torch.full_like(code, 128), code)
    code = torch.where(~bits & (code > 127), torch.full_like(code, 127), code)
    code = torch.where(weight <= 0.0, torch.zeros_like(code), code)
    return torch.where(weight >= 1.0, torch.full_like(code, 255), code)


def pattern_weights(code: torch.Tensor) -> torch.Tensor:
    """The float32 weights of ``quantise_pattern_weights`` codes; codes 0 and 255 a step outside [0, 1],
    so such pixels stay where the clamp passes no gradient."""
    return (code.float() + (code == 255).float() - (code == 0).float()) / 255.0


def save_shards(tensors: dict[str, torch.Tensor], folder, stem: str, limit: int = SHARD_LIMIT) -> list[Path]:
    """Write ``tensors`` into ``folder/<stem>-<k>.safetensors``, each file at most ``limit`` bytes
    (tensors larger than a file are split by rows); older shards of ``stem`` beyond these are removed.
    Each file is written whole, then moved into place."""
    room = limit - HEADER_RESERVE
    pieces = []
    for key, value in tensors.items():
        value = value.detach().contiguous().cpu()
        size = value.numel() * value.element_size()
        if size <= room:
            pieces.append((key, value))
            continue
        row_bytes = size // max(len(value), 1) if value.dim() else size
        if value.dim() == 0 or row_bytes > room:
            raise ValueError(f"{key} has rows of {row_bytes} bytes, more than a file of {limit} holds")
        rows = room // row_bytes
        pieces += [(f"{key}{PIECE}{i}", part) for i, part in enumerate(torch.split(value, rows))]
    pieces.sort(key=lambda piece: -piece[1].numel() * piece[1].element_size())  # first fit, largest first
    shards: list[dict] = []
    for key, value in pieces:
        size = value.numel() * value.element_size()
        shard = next((s for s in shards if s["bytes"] + size <= room), None)
        if shard is None:
            shard = {"bytes": 0, "tensors": {}}
            shards.append(shard)
        shard["tensors"][key] = value.contiguous()
        shard["bytes"] += size
    if not shards:
        shards.append({"bytes": 0, "tensors": {}})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, shard in enumerate(shards):
        path = folder / f"{stem}-{index}.safetensors"
        tmp = path.with_name(path.name + ".tmp")
        save_file(shard["tensors"], str(tmp), metadata={"shard": str(index), "shards": str(len(shards))})
        tmp.replace(path)
        paths.append(path)
    for stale in folder.glob(f"{stem}-*.safetensors"):
        if stale not in paths:
            stale.unlink()
    return paths


def load_shards(folder, stem: str, count: int) -> dict[str, torch.Tensor]:
    """The tensors ``save_shards`` wrote as ``count`` files, split tensors joined again."""
    folder = Path(folder)
    pieces: dict[str, torch.Tensor] = {}
    for index in range(count):
        path = folder / f"{stem}-{index}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the checkpoint has {count} files")
        try:
            pieces |= load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path} is not a readable checkpoint file ({error}): copy it again") from error
    tensors, split = {}, {}
    for key, value in pieces.items():
        if PIECE in key:
            name, part = key.rsplit(PIECE, 1)
            split.setdefault(name, {})[int(part)] = value
        else:
            tensors[key] = value
    for name, parts in split.items():
        if sorted(parts) != list(range(len(parts))):
            raise ValueError(f"{folder}: pieces of {name} are missing")
        tensors[name] = torch.cat([parts[i] for i in range(len(parts))])
    return tensors


def pack_bits(weight: torch.Tensor) -> torch.Tensor:
    """Binary patterns (P, H·W) of 0/1 (or weights shown as them) bit-packed along each row."""
    binary = weight.detach().float().clamp(0.0, 1.0).round().to(torch.uint8).cpu()
    return torch.from_numpy(np.packbits(binary.numpy(), axis=1))


def unpack_bits(bits: torch.Tensor, pixels: int) -> torch.Tensor:
    """``pack_bits`` undone: (P, pixels) float32 of 0/1."""
    return torch.from_numpy(np.unpackbits(bits.numpy(), axis=1, count=pixels).astype(np.float32))


def as_float32(value: torch.Tensor) -> torch.Tensor:
    """A stored tensor back in float32 (the compact form keeps some in 16 bits); others as they are."""
    return value.float() if value.is_floating_point() else value


def best_tensors(best: dict, int8: bool = False) -> dict:
    """The best checkpoint's weights (``patterns.weight``, ``encoder.*``) as stored: ``best.*``, its
    patterns bit-packed (``best.patterns.bits``); ``int8``: its encoder's weight matrices as int8 rows
    with a scale each, as an int8 model file keeps them (``lsi_ros.models.checkpoint``)."""
    tensors = {"best.patterns.bits": pack_bits(best["patterns.weight"])}
    for key, value in best.items():
        if key == "patterns.weight":
            continue
        if int8 and value.dim() == 2 and value.is_floating_point():
            tensors[f"best.{key}"], tensors[f"best.{key}{ROW_SCALE}"] = quantised_rows(value)
        else:
            tensors[f"best.{key}"] = value
    return tensors


def optimizer_tensors(optimizer: torch.optim.Optimizer, skip=()) -> dict:
    """The optimizer's state per parameter index (``optimizer.<index>.<name>``), leaving out the
    parameters in ``skip``."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    skipped = {id(p) for p in skip}
    return {
        f"optimizer.{index}.{name}": torch.as_tensor(value)
        for index, state in optimizer.state_dict()["state"].items()
        if id(params[index]) not in skipped
        for name, value in state.items()
    }


def encode_moment(key: str, value: torch.Tensor) -> dict:
    """A moment tensor as float8 (e4m3) codes, one float32 scale per row (its largest value maps to
    448) and its shape."""
    value = value.detach().float().cpu()
    rows = value.reshape(len(value), -1) if value.dim() > 1 else value.reshape(1, -1)
    scale = rows.abs().amax(1, keepdim=True) / FLOAT8_MAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    code = (rows / scale).clamp(-FLOAT8_MAX, FLOAT8_MAX).to(torch.float8_e4m3fn)
    return {f"{key}{FLOAT8}": code, f"{key}{SCALE}": scale, f"{key}{SHAPE}": torch.tensor(value.shape)}


def decode_moment(tensors: dict, key: str) -> torch.Tensor:
    """``encode_moment``'s tensors of ``key`` (removed from ``tensors``) as the float32 moment."""
    code, scale = tensors.pop(f"{key}{FLOAT8}"), tensors.pop(f"{key}{SCALE}")
    return (code.float() * scale).reshape(tensors.pop(f"{key}{SHAPE}").tolist())


def compact_tensors(
    weights: dict, optimizer, pattern_weight: torch.Tensor, best: dict | None, best_is_current: bool
) -> dict:
    """The compact checkpoint of a run whose ``weights`` are ``patterns.weight`` and ``encoder.*``, with
    ``optimizer`` over both and ``best`` the best checkpoint's weights (or None; ``best_is_current``:
    they are ``weights``, which are then not stored twice)."""
    tensors = {
        k: v.to(torch.float16) if v.dim() == 2 and v.is_floating_point() else v
        for k, v in weights.items()
        if k != "patterns.weight"
    }
    tensors[PATTERN_CODES] = quantise_pattern_weights(weights["patterns.weight"])
    if best is not None and best_is_current:
        tensors[BEST_IS_CURRENT] = torch.ones(1, dtype=torch.uint8)
    elif best is not None:
        tensors |= best_tensors(best, int8=True)
    for key, value in optimizer_tensors(optimizer, skip=[pattern_weight]).items():
        if key.endswith(".step") or not value.is_floating_point():
            tensors[key] = value
            continue
        if key.endswith(".exp_avg_sq"):  # its square root spans half the orders of magnitude
            key, value = f"{key}{SQRT}", value.clamp_min(0).sqrt()
        tensors |= encode_moment(key, value)
    return tensors


def moment_ratio_bound(betas: tuple[float, float]) -> float:
    """The largest ``|m| / sqrt(v)`` Adam's moments can reach with these betas (Cauchy-Schwarz over the
    gradients' history): 7.3 at (0.9, 0.999)."""
    beta1, beta2 = betas
    return (1 - beta1) / math.sqrt((1 - beta2) * (1 - beta1**2 / beta2))


def expand_compact(tensors: dict, betas: tuple[float, float]) -> dict:
    """A compact checkpoint's tensors in the full form's names and float32 (the patterns' weights from
    their codes, the best checkpoint from the weights where it was them). A second moment rounded
    towards zero is raised to what its first moment needs (``moment_ratio_bound`` of the optimizer's
    ``betas``), so no step after resuming is larger than Adam can take."""
    tensors = dict(tensors)
    tensors["patterns.weight"] = pattern_weights(tensors.pop(PATTERN_CODES))
    if tensors.pop(BEST_IS_CURRENT, None) is not None:
        current = {k: v for k, v in tensors.items() if k.startswith(("patterns.", "encoder."))}
        tensors |= best_tensors(current)
    for key in [k for k in tensors if k.endswith(FLOAT8)]:
        name = key[: -len(FLOAT8)]
        value = decode_moment(tensors, name)
        if name.endswith(SQRT):
            name, value = name.removesuffix(SQRT), value.square()
        tensors[name] = value
    for key in [k for k in tensors if k.endswith(ROW_SCALE)]:
        name = key.removesuffix(ROW_SCALE)
        tensors[name] = widened_rows(tensors[name], tensors.pop(key))
    for key in [k for k in tensors if k.endswith(".exp_avg_sq")]:
        first = tensors.get(key.removesuffix("_sq"))
        if first is not None:
            tensors[key] = torch.maximum(tensors[key], (first / moment_ratio_bound(betas)).square())
    return {k: as_float32(v) if not k.endswith(".bits") else v for k, v in tensors.items()}


def one_step_state(
    num_measurements: int, num_ws: int = 1, offset_rank: int = 0, resolution: int = 256, width: int = 1024
) -> tuple[dict, torch.optim.Optimizer, torch.nn.Parameter]:
    """A run's weights (``patterns.weight``, ``encoder.*``), its AdamW and the pattern weight after one
    step: patterns at ``resolution``, an encoder of ``width`` and depth 2 (for measuring checkpoints)."""
    from lsi_ros.models.encoder import BinaryPatterns, MeasurementEncoder

    generator = torch.Generator().manual_seed(0)
    patterns = BinaryPatterns(num_measurements, resolution, generator)
    encoder = MeasurementEncoder(num_measurements, 512, width, 2, num_ws, offset_rank)
    groups = [{"params": encoder.parameters()}, {"params": patterns.parameters(), "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups)
    scenes = torch.rand(4, resolution * resolution, generator=generator)
    encoder(scenes @ patterns().T).square().mean().backward()
    optimizer.step()
    weights = {f"patterns.{k}": v for k, v in patterns.state_dict().items()}
    weights |= {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    return weights, optimizer, patterns.weight


def checkpoint_sizes(num_measurements: int, num_ws: int = 1, offset_rank: int = 0) -> dict:
    """Bytes of a run's full checkpoint and of its compact files (with the best checkpoint the current
    state, and an older one) at the shipped models' shape (``one_step_state``'s defaults)."""
    weights, optimizer, pattern_weight = one_step_state(num_measurements, num_ws, offset_rank)
    best = {k: v.detach().clone() for k, v in weights.items()}  # a copy, as a trainer keeps it
    full = weights | best_tensors(best) | optimizer_tensors(optimizer)
    sizes = {"full": sum(v.numel() * v.element_size() for v in full.values())}
    for current in (True, False):
        with tempfile.TemporaryDirectory() as folder:
            tensors = compact_tensors(weights, optimizer, pattern_weight, best, current)
            files = save_shards(tensors, folder, "checkpoint")
            sizes["best_is_current" if current else "older_best"] = [p.stat().st_size for p in files]
    return sizes
