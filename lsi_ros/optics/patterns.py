"""Binary DMD pattern sets: construction, bit-packed storage and validated loading.

A pattern set is ``P`` binary patterns at a sampling resolution ``H × W`` (one sampling pixel is a
block of mirrors, see :mod:`lsi_ros.optics.dmd`). The bits are stored packed with ``np.packbits``
along the flattened pixel axis (row-major, big bit order), one row per pattern, so a 256² set costs
8 KiB per pattern. The identity of a set is a content hash over its resolution and packed bits, so
a measurement frame can name the exact patterns it was taken with.

On disk a pattern set is one ``.safetensors`` file: tensor ``bits`` (uint8, ``P × ceil(H·W/8)``)
and string metadata ``format``, ``version``, ``pattern_set_id``, ``resolution`` (JSON ``[H, W]``),
``num_patterns``, ``kind``, ``model_id`` and ``meta`` (JSON object).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from lsi_ros.optics import hadamard

KINDS = ("learned", "hadamard-split", "hadamard-reference", "bernoulli")
FILE_FORMAT = "lsi_ros.pattern_set"
FILE_VERSION = "1"


class PatternSetError(ValueError):
    """A pattern set is malformed, or its file is missing, corrupt or fails its content hash."""


def _resolution(resolution: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(resolution, int | np.integer):
        resolution = (int(resolution), int(resolution))
    h, w = (int(v) for v in resolution)
    if h < 1 or w < 1:
        raise PatternSetError(f"resolution must be positive, got {resolution}")
    return h, w


def compute_pattern_set_id(bits: np.ndarray, resolution: tuple[int, int]) -> str:
    """Content hash ``"sha256:" + 16 hex digits`` over the resolution and the packed bits."""
    digest = hashlib.sha256(f"{resolution[0]}x{resolution[1]}:".encode())
    digest.update(np.ascontiguousarray(bits, dtype=np.uint8).tobytes())
    return "sha256:" + digest.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class PatternSet:
    """``P`` binary patterns at a sampling resolution, bit-packed, with their provenance.

    ``bits`` has shape ``(P, ceil(H·W/8))``; ``pattern_set_id`` is derived from the content and
    cannot be set. ``meta`` carries family details (e.g. the Walsh coefficient order).
    """

    bits: np.ndarray
    resolution: tuple[int, int]
    kind: str
    model_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    pattern_set_id: str = field(init=False)

    def __post_init__(self) -> None:
        resolution = _resolution(self.resolution)
        bits = np.asarray(self.bits)
        if self.kind not in KINDS:
            raise PatternSetError(f"unknown pattern set kind {self.kind!r}, expected one of {KINDS}")
        if bits.dtype != np.uint8 or bits.ndim != 2:
            raise PatternSetError(f"packed bits must be a 2-D uint8 array, got {bits.dtype} {bits.shape}")
        pixels = resolution[0] * resolution[1]
        if bits.shape[1] != (pixels + 7) // 8:
            raise PatternSetError(f"packed row length {bits.shape[1]} does not fit {resolution}")
        if pixels % 8 and np.any(bits[:, -1] & ((1 << (8 - pixels % 8)) - 1)):
            raise PatternSetError("padding bits after the last pixel are not zero")
        bits = bits.copy()
        bits.setflags(write=False)
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "resolution", resolution)
        object.__setattr__(self, "meta", dict(self.meta))
        object.__setattr__(self, "pattern_set_id", compute_pattern_set_id(bits, resolution))

    @classmethod
    def from_dense(
        cls, patterns: np.ndarray, kind: str, model_id: str = "", meta: dict[str, Any] | None = None
    ) -> PatternSet:
        """Pack a ``(P, H, W)`` array of 0/1 values (bool or numeric exactly 0 or 1)."""
        patterns = np.asarray(patterns)
        if patterns.ndim != 3:
            raise PatternSetError(f"dense patterns must have shape (P, H, W), got {patterns.shape}")
        if patterns.dtype != bool and not np.isin(patterns, (0, 1)).all():
            raise PatternSetError("dense patterns must be binary (0/1); binarise learned weights first")
        p, h, w = patterns.shape
        bits = np.packbits(patterns.reshape(p, h * w).astype(bool), axis=1)
        return cls(bits=bits, resolution=(h, w), kind=kind, model_id=model_id, meta=meta or {})

    @property
    def num_patterns(self) -> int:
        return int(self.bits.shape[0])

    @property
    def num_pixels(self) -> int:
        return self.resolution[0] * self.resolution[1]

    def dense(self) -> np.ndarray:
        """Patterns as a ``(P, H, W)`` uint8 array of 0/1."""
        flat = np.unpackbits(self.bits, axis=1, count=self.num_pixels)
        return flat.reshape(self.num_patterns, *self.resolution)

    def matrix(self) -> np.ndarray:
        """Measurement matrix ``(P, H·W)`` float32, row ``m`` is pattern ``m`` flattened row-major."""
        return np.unpackbits(self.bits, axis=1, count=self.num_pixels).astype(np.float32)


def learned_patterns(
    weights: np.ndarray, model_id: str = "", meta: dict[str, Any] | None = None
) -> PatternSet:
    """Binarise learned mask weights ``(P, H, W)`` the way training does: ``round(clamp(w, 0, 1))``.

    ``torch.round`` rounds half to even, so a weight of exactly 0.5 maps to 0; bool input is taken
    as is.
    """
    weights = np.asarray(weights)
    binary = weights if weights.dtype == bool else weights > 0.5
    return PatternSet.from_dense(binary, kind="learned", model_id=model_id, meta=meta)


def _walsh_meta(indices: np.ndarray, layout: str) -> dict[str, Any]:
    return {"order": "zigzag-sequency", "layout": layout, "coefficients": indices.tolist()}


def hadamard_split_patterns(num_patterns: int, resolution: int = 256) -> PatternSet:
    """Low-frequency Walsh–Hadamard set as ± split pairs, ``num_patterns / 2`` signed coefficients.

    Pattern ``2k`` is ``(1 + H_k) / 2`` and ``2k + 1`` is ``(1 − H_k) / 2`` for the ``k``-th Walsh
    function in zig-zag sequency order, so ``y[2k] − y[2k+1] = Σ H_k·x``: ambient light and the
    dark level cancel in the difference.
    """
    if num_patterns < 2 or num_patterns % 2:
        raise PatternSetError(f"a split set needs an even number of patterns >= 2, got {num_patterns}")
    indices = hadamard.zigzag_order(resolution)[: num_patterns // 2]
    walsh = np.stack([hadamard.walsh_pattern(resolution, u, v) for u, v in indices])
    dense = np.empty((num_patterns, resolution, resolution), dtype=bool)
    dense[0::2] = walsh > 0
    dense[1::2] = walsh < 0
    return PatternSet.from_dense(dense, kind="hadamard-split", meta=_walsh_meta(indices, "split-pairs"))


def hadamard_reference_patterns(num_patterns: int, resolution: int = 256) -> PatternSet:
    """Walsh–Hadamard set of ``(1 + H_k) / 2`` patterns with an all-on reference.

    Pattern 0 is the all-on reference (it is also ``(1 + H_0) / 2``, the DC Walsh function); pattern
    ``k >= 1`` is ``(1 + H_k) / 2``, so ``Σ H_k·x = 2·y[k] − y[0]``. Any offset ``b`` common to
    all patterns (ambient light, dark level) leaves a bias of ``b`` on every coefficient: half the
    patterns of the split set for the same coefficients, but offsets must be calibrated away.
    """
    if num_patterns < 1:
        raise PatternSetError(f"need at least one pattern, got {num_patterns}")
    indices = hadamard.zigzag_order(resolution)[:num_patterns]
    dense = np.stack([hadamard.walsh_pattern(resolution, u, v) > 0 for u, v in indices])
    return PatternSet.from_dense(
        dense, kind="hadamard-reference", meta=_walsh_meta(indices, "reference-first")
    )


def bernoulli_patterns(
    num_patterns: int, resolution: int | tuple[int, int] = 256, fill: float = 0.5, seed: int = 0
) -> PatternSet:
    """Random binary patterns, each mirror on with probability ``fill`` (reproducible from ``seed``)."""
    if not 0.0 <= fill <= 1.0:
        raise PatternSetError(f"fill must be in [0, 1], got {fill}")
    h, w = _resolution(resolution)
    dense = np.random.default_rng(seed).random((num_patterns, h, w)) < fill
    return PatternSet.from_dense(dense, kind="bernoulli", meta={"fill": fill, "seed": seed})


def save_pattern_set(pattern_set: PatternSet, path: str | os.PathLike) -> Path:
    """Write a pattern set as one ``.safetensors`` file; returns the path."""
    path = Path(path)
    metadata = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "pattern_set_id": pattern_set.pattern_set_id,
        "resolution": json.dumps(list(pattern_set.resolution)),
        "num_patterns": str(pattern_set.num_patterns),
        "kind": pattern_set.kind,
        "model_id": pattern_set.model_id,
        "meta": json.dumps(pattern_set.meta),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"bits": np.ascontiguousarray(pattern_set.bits)}, str(path), metadata=metadata)
    return path


def _read_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its JSON header."""
    with path.open("rb") as f:
        size_field = f.read(8)
        if len(size_field) != 8:
            raise PatternSetError(f"{path}: too short for a safetensors file")
        size = int.from_bytes(size_field, "little")
        if size > path.stat().st_size - 8:
            raise PatternSetError(f"{path}: header length {size} exceeds the file")
        header = json.loads(f.read(size))
    return header.get("__metadata__") or {}


def is_pattern_set_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` says it holds a pattern set (and not, say, a model with its patterns)."""
    try:
        return _read_metadata(Path(path)).get("format") == FILE_FORMAT
    except (PatternSetError, OSError, ValueError, UnicodeDecodeError):
        return False


def load_pattern_set(path: str | os.PathLike) -> PatternSet:
    """Read and validate a pattern set file; raises :class:`PatternSetError` on any defect."""
    path = Path(path)
    if not path.is_file():
        raise PatternSetError(f"pattern set file not found: {path}")
    try:
        metadata = _read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as err:
        raise PatternSetError(f"{path}: not a readable safetensors file ({err})") from err
    if metadata.get("format") != FILE_FORMAT:
        raise PatternSetError(f"{path}: metadata format is {metadata.get('format')!r}, not {FILE_FORMAT}")
    if set(tensors) != {"bits"}:
        raise PatternSetError(f"{path}: expected one tensor 'bits', found {sorted(tensors)}")
    try:
        pattern_set = PatternSet(
            bits=tensors["bits"],
            resolution=tuple(json.loads(metadata["resolution"])),
            kind=metadata["kind"],
            model_id=metadata.get("model_id", ""),
            meta=json.loads(metadata.get("meta", "{}")),
        )
        num_patterns = int(metadata["num_patterns"])
        stored_id = metadata["pattern_set_id"]
    except PatternSetError as err:
        raise PatternSetError(f"{path}: {err}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise PatternSetError(f"{path}: incomplete or malformed metadata ({err!r})") from err
    if num_patterns != pattern_set.num_patterns:
        raise PatternSetError(
            f"{path}: metadata says {num_patterns} patterns, tensor has {pattern_set.num_patterns}"
        )
    if stored_id != pattern_set.pattern_set_id:
        raise PatternSetError(
            f"{path}: content hash {pattern_set.pattern_set_id} does not match stored id {stored_id}"
        )
    return pattern_set
