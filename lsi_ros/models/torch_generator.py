"""MobileStyleGAN run by torch alone, on any device, from its graphs exported to safetensors.

``lsi_ros.models.generators.MobileStyleGAN`` needs OpenVINO to read the IR; a GPU machine may have torch
and nothing else. ``MobileStyleGAN.export_torch(folder)`` (on a machine with OpenVINO) writes the mapping
network, the 256² synthesis graph and the truncation centre; ``ExportedMobileStyleGAN(folder, device)``
renders the same faces from the same seeds with no OpenVINO (to float rounding of the device's kernels),
through the native networks of ``mobilestylegan_torch`` built from the exported graphs.
Research use only: the weights derive from NVIDIA StyleGAN2 / FFHQ (non-commercial licences).
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lsi_ros.models.mobilestylegan_torch import MappingNetwork, SynthesisNetwork
from lsi_ros.models.ov_torch import OpenVINOModule

MAPPING_FILE = "mapping.safetensors"
SYNTHESIS_FILE = "synthesis.safetensors"
INFO_FILE = "generator.json"


def latent_noise(seeds_or_n: int | Sequence[int], latent_dim: int, rng=None) -> np.ndarray:
    """z (N, latent_dim) float32: one z per seed from its own default_rng(seed), so a face depends on
    its seed alone; an int n draws n z's from ``rng``."""
    if isinstance(seeds_or_n, int | np.integer):
        z = np.random.default_rng(rng).standard_normal((int(seeds_or_n), latent_dim))
    else:
        z = np.stack([np.random.default_rng(s).standard_normal(latent_dim) for s in seeds_or_n])
    return z.astype(np.float32)


def truncate(w, w_avg, truncation_psi: float):
    """The truncation trick: w pulled towards the average latent, ``w_avg + psi · (w - w_avg)``."""
    if truncation_psi == 1.0:
        return w
    return w_avg + truncation_psi * (w - w_avg)


class ExportedMobileStyleGAN:
    """Seeds -> w -> uint8 faces at 256², all on ``device``; no OpenVINO."""

    def __init__(self, folder, device: str | torch.device = "cpu"):
        folder = Path(folder)
        info = json.loads((folder / INFO_FILE).read_text())
        self.device = torch.device(device)
        self.generator_id = info["generator_id"]
        self.latent_dim = info["latent_dim"]
        self.num_ws = info["num_ws"]
        self.resolution = info["resolution"]
        self.w_avg = torch.tensor(info["w_avg"], dtype=torch.float32, device=self.device)
        self.mapping = MappingNetwork(load_graph(folder, MAPPING_FILE)).to(self.device).eval()
        self.synthesis = SynthesisNetwork(load_graph(folder, SYNTHESIS_FILE)).to(self.device).eval()

    @torch.inference_mode()
    def sample_latents(self, seeds: Sequence[int], truncation_psi: float = 1.0) -> torch.Tensor:
        z = torch.from_numpy(latent_noise(seeds, self.latent_dim)).to(self.device)
        return truncate(self.mapping(z), self.w_avg, truncation_psi)

    @torch.inference_mode()
    def render(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, D) or W+ (N, num_ws, D) -> (N, R, R, 3) uint8 RGB, rounded as ``lsi data`` stores faces."""
        return to_uint8_faces(self.synthesis(as_w_plus(w, self.num_ws)))


def as_w_plus(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """w (N, D) repeated per layer to W+ (N, num_ws, D) (a view); W+ passes through."""
    return w[:, None].expand(-1, num_ws, -1) if w.dim() == 2 else w


def to_uint8_faces(image: torch.Tensor) -> torch.Tensor:
    """Synthesis output (N, 3, R, R) in about [-1, 1] -> (N, R, R, 3) uint8, as ``lsi data`` stores faces."""
    image = ((image.float() + 1.0) * 0.5).clamp(0.0, 1.0)
    return torch.round(image * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def load_graph(folder, name: str, device: str | torch.device = "cpu"):
    """An exported graph (``OpenVINOModule``'s file) as ``OpenVINOModule.graph()``."""
    return OpenVINOModule.load(Path(folder) / name, device).graph()


EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def write_export(
    folder,
    generator_id: str,
    mapping,
    synthesis,
    w_avg: np.ndarray,
    num_ws: int,
    resolution: int,
    dtype: str = "float32",
) -> Path:
    """Write the files ``ExportedMobileStyleGAN`` reads (mapping, synthesis: OpenVINOModule), their
    weights stored as ``dtype`` ("float16": half the size; they run in float32 either way, and a seed's
    latent and face come out a little different from the float32 weights')."""
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"an export stores its weights as one of {', '.join(EXPORT_DTYPES)}, not {dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mapping.save(folder / MAPPING_FILE, EXPORT_DTYPES[dtype])
    synthesis.save(folder / SYNTHESIS_FILE, EXPORT_DTYPES[dtype])
    info = {
        "generator_id": generator_id,
        "stored_as": dtype,
        "latent_dim": int(w_avg.shape[0]),
        "num_ws": num_ws,
        "resolution": resolution,
        "w_avg": [float(v) for v in w_avg],
    }
    (folder / INFO_FILE).write_text(json.dumps(info))
    return folder
