"""Generated training data: (latent w, image) pairs from fixed seeds, cached outside git.

Faces come from seeds, so a dataset is reproducible from (generator, truncation psi, seed range).
Training uses seeds [0, n); evaluation uses the disjoint held-out range starting at
HELD_OUT_SEED_START. Pairs are written in shards of SHARD_SIZE faces (safetensors: ``w`` float32,
``image`` uint8 RGB, ``seed`` int64); generation resumes by skipping complete shards.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm import tqdm

from lsi_ros.training.seeds import (  # noqa: F401  (re-exported: data.HELD_OUT_SEED_START, ...)
    DEFAULT_PSI,
    HELD_OUT_SEED_START,
    SHARD_SIZE,
    default_data_dir,
)


@dataclass(frozen=True)
class FaceData:
    """Seeds, latents (N, D) and images (N, R, R, 3) uint8 of a seed range."""

    seeds: np.ndarray
    latents: np.ndarray
    images: np.ndarray
    generator_id: str
    truncation_psi: float


def dataset_dir(root, generator_name: str, truncation_psi: float) -> Path:
    return Path(root) / f"{generator_name}-psi{truncation_psi:g}"


def _shard_path(folder: Path, first_seed: int) -> Path:
    return folder / f"seeds_{first_seed:08d}.safetensors"


def generate(
    generator, generator_name: str, seed_start: int, count: int, root=None, truncation_psi=DEFAULT_PSI
):
    """Make sure faces for seeds [seed_start, seed_start + count) exist on disk; returns the folder."""
    folder = dataset_dir(root or default_data_dir(), generator_name, truncation_psi)
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "generator_id": generator.generator_id,
        "truncation_psi": truncation_psi,
        "shard_size": SHARD_SIZE,
    }
    info_path = folder / "info.json"
    if info_path.is_file() and json.loads(info_path.read_text())["generator_id"] != generator.generator_id:
        raise ValueError(f"{folder} holds faces of another generator; use another --data-dir")
    info_path.write_text(json.dumps(info, indent=2))
    starts = range(seed_start - seed_start % SHARD_SIZE, seed_start + count, SHARD_SIZE)
    missing = [s for s in starts if not _shard_path(folder, s).is_file()]
    with tqdm(total=len(missing) * SHARD_SIZE, desc=f"faces ({generator_name})", unit="face") as progress:
        for start in missing:
            seeds = np.arange(start, start + SHARD_SIZE)
            latents, images = [], []
            for chunk in np.array_split(seeds, SHARD_SIZE // 32):
                w = generator.sample_latents(chunk.tolist(), truncation_psi=truncation_psi)
                latents.append(w)
                images.append(np.rint(generator.synthesize(w) * 255).astype(np.uint8))
                progress.update(len(chunk))
            tmp = _shard_path(folder, start).with_suffix(".tmp")
            tensors = {
                "seed": seeds.astype(np.int64),
                "w": np.concatenate(latents),
                "image": np.concatenate(images),
            }
            # safetensors writes an array's memory as it lies: make every array C-ordered first.
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
            tmp.replace(_shard_path(folder, start))
    return folder


def load(generator_name: str, seed_start: int, count: int, root=None, truncation_psi=DEFAULT_PSI) -> FaceData:
    """Read faces for seeds [seed_start, seed_start + count) (generated before with ``generate``).

    Each shard's rows are copied straight into arrays sized for the whole range, so reading 50k
    faces (10 GB of pixels) holds them once, not once per shard list and once concatenated."""
    folder = dataset_dir(root or default_data_dir(), generator_name, truncation_psi)
    info_path = folder / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"no generated faces in {folder}: run `lsi data` first")
    info = json.loads(info_path.read_text())
    if count < 1:
        raise ValueError(f"no faces asked for (count {count})")
    seeds = latents = images = None
    filled = 0
    for start in range(seed_start - seed_start % SHARD_SIZE, seed_start + count, SHARD_SIZE):
        path = _shard_path(folder, start)
        if not path.is_file():
            raise FileNotFoundError(
                f"missing {path}: run `lsi data` for seeds {seed_start}..{seed_start + count}"
            )
        with safe_open(str(path), framework="numpy") as shard:
            shard_seeds = shard.get_tensor("seed")  # ascending
            first, last = np.searchsorted(shard_seeds, [seed_start, seed_start + count])
            w = shard.get_slice("w")[first:last]
            image = shard.get_slice("image")[first:last]
        if images is None:
            seeds = np.empty(count, shard_seeds.dtype)
            latents = np.empty((count, *w.shape[1:]), w.dtype)
            images = np.empty((count, *image.shape[1:]), image.dtype)
        rows = slice(filled, filled + last - first)
        seeds[rows], latents[rows], images[rows] = shard_seeds[first:last], w, image
        filled = rows.stop
    return FaceData(seeds[:filled], latents[:filled], images[:filled], info["generator_id"], truncation_psi)
