"""Frozen face generators behind one interface, so the camera pipeline can swap backends.

- ``mobilestylegan``: MobileStyleGAN-FFHQ (random-face wheel) served at 256x256 by a rewritten IR (see
  mobilestylegan_ir): through OpenVINO f32 on the CPU (the faster backend there), through the native
  torch network (mobilestylegan_torch) on any other device and for the differentiable path.
- ``dcgan``: the 64x64 DCGAN of gan-face-generate, a pure-torch stand-in that keeps tests fast.

Latents are numpy float32. ``synthesize`` takes w (N, latent_dim) or W+ (N, num_ws, latent_dim) and
returns RGB (N, resolution, resolution, 3) float32 in [0, 1].
"""

import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from lsi_ros.models import mobilestylegan_ir
from lsi_ros.models._packages import wheel_dir
from lsi_ros.models.mobilestylegan_torch import SynthesisNetwork
from lsi_ros.models.ov_torch import OpenVINOModule
from lsi_ros.models.torch_generator import latent_noise, truncate, write_export

SeedsOrN = int | Sequence[int]


def _unit_range(x):
    """Generator output in [-1, 1] to [0, 1]; works on numpy arrays and torch tensors."""
    return ((x + 1.0) * 0.5).clip(0.0, 1.0)


class Generator(ABC):
    """A frozen latent -> image generator. Subclasses set the attributes and implement the hooks."""

    generator_id: str
    latent_dim: int
    resolution: int
    num_ws: int  # style vectors per image accepted as W+ (1: plain latents only)

    def sample_latents(
        self,
        seeds_or_n: SeedsOrN,
        truncation_psi: float = 1.0,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """Latents (N, latent_dim). A seed list gives one z per seed from its own default_rng(seed), so a
        face depends on its seed alone; an int n draws n z's from ``rng``. Truncation pulls w towards
        mean_latent(): w_avg + psi * (w - w_avg)."""
        w = self._map(latent_noise(seeds_or_n, self.latent_dim, rng))
        if truncation_psi != 1.0:
            w = truncate(w, self.mean_latent(), np.float32(truncation_psi))
        return w.astype(np.float32)

    def synthesize(self, w: np.ndarray) -> np.ndarray:
        """Images (N, resolution, resolution, 3) float32 in [0, 1] from w or W+ latents."""
        return self._synthesize(self._as_w_plus(w))

    def _as_w_plus(self, w: np.ndarray) -> np.ndarray:
        """A fresh writable (N, num_ws, latent_dim) float32 copy; plain w is repeated per layer."""
        w = np.asarray(w, dtype=np.float32)
        if w.ndim == 2 and w.shape[1] == self.latent_dim:
            return np.repeat(w[:, None], self.num_ws, axis=1)
        if w.ndim == 3 and w.shape[1:] == (self.num_ws, self.latent_dim):
            return w.copy()
        raise ValueError(
            f"{self.generator_id}: latents must be (N, {self.latent_dim}) or "
            f"(N, {self.num_ws}, {self.latent_dim}), got {w.shape}"
        )

    @abstractmethod
    def mean_latent(self) -> np.ndarray:
        """The average latent (latent_dim,): the truncation centre and the encoder's zero point."""

    @abstractmethod
    def torch_synthesis(self) -> torch.nn.Module:
        """Frozen differentiable module: w (N, D) or W+ (N, num_ws, D) tensor -> (N, 3, R, R) in [0, 1]."""

    @abstractmethod
    def _map(self, z: np.ndarray) -> np.ndarray:
        """z (N, latent_dim) -> untruncated latents."""

    @abstractmethod
    def _synthesize(self, w_plus: np.ndarray) -> np.ndarray:
        """W+ (N, num_ws, latent_dim) -> images (N, R, R, 3) in [0, 1]."""


class _WPlusToUnitImage(torch.nn.Module):
    """Adapts a W+ -> [-1, 1] image network to the torch_synthesis contract."""

    def __init__(self, net: torch.nn.Module, num_ws: int, latent_dim: int):
        super().__init__()
        self.net = net.requires_grad_(False).eval()
        self.num_ws = num_ws
        self.latent_dim = latent_dim

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if w.dim() == 2:
            w = w[:, None].expand(-1, self.num_ws, -1)
        return _unit_range(self.net(w))


class MobileStyleGAN(Generator):
    """MobileStyleGAN-FFHQ at 256x256 (early exit "exact" or "fast", see mobilestylegan_ir).

    ``synthesize`` runs on ``device`` through ``backend``: "openvino" (f32, CPU only), "torch" (the native
    network) or "auto": OpenVINO on the CPU, where it measures faster (docs/generator.md), torch elsewhere.
    Research use only: the weights derive from NVIDIA StyleGAN2 / FFHQ (non-commercial licences).
    """

    latent_dim = 512
    resolution = 256
    num_ws = mobilestylegan_ir.NUM_WS
    MEAN_SAMPLES = 4096
    MEAN_SEED = 20250611  # fixed z set for w_avg, so every process shares one truncation centre

    def __init__(
        self,
        early_exit: str = "exact",
        batch_size: int = 8,
        threads: int = 0,
        device: str = "cpu",
        backend: str = "auto",
    ):
        self.early_exit = early_exit
        self.batch_size = batch_size
        self.device = torch.device(device)
        if backend == "auto":
            backend = "openvino" if self.device.type == "cpu" else "torch"
        if backend not in ("openvino", "torch") or (backend == "openvino" and self.device.type != "cpu"):
            raise ValueError(
                f"backend must be auto, torch or (on the CPU) openvino, got {backend!r} on {device}"
            )
        self.backend = backend
        version = mobilestylegan_ir.package_version()
        variant = "" if early_exit == "exact" else f"-{early_exit}256"
        self.generator_id = f"mobilestylegan-ffhq{variant}@{mobilestylegan_ir.PACKAGE}=={version}"
        self._core = ov.Core()
        self._config = mobilestylegan_ir.f32_config()
        if threads:
            self._config[ov.properties.inference_num_threads] = threads
        self._synthesis = mobilestylegan_ir.build_synthesis_256(self._core, early_exit)
        self._mapping = self._core.compile_model(
            mobilestylegan_ir.read_mapping(self._core), "CPU", self._config
        )
        self._compiled: dict[int, ov.CompiledModel] = {}
        self._w_avg: np.ndarray | None = None
        self._torch: torch.nn.Module | None = None

    def mean_latent(self) -> np.ndarray:
        if self._w_avg is None:
            z = np.random.default_rng(self.MEAN_SEED).standard_normal((self.MEAN_SAMPLES, self.latent_dim))
            self._w_avg = self._map(z.astype(np.float32)).mean(axis=0)
        return self._w_avg.copy()

    def _map(self, z: np.ndarray) -> np.ndarray:
        return self._mapping(z)[0]

    def _compiled_for(self, batch: int) -> ov.CompiledModel:
        """Static-shape compile per batch size (faster than a dynamic batch on the CPU plugin)."""
        if batch not in self._compiled:
            model = self._synthesis.clone()
            model.reshape({model.inputs[0]: ov.PartialShape([batch, self.num_ws, self.latent_dim])})
            self._compiled[batch] = self._core.compile_model(model, "CPU", self._config)
        return self._compiled[batch]

    def _synthesize(self, w_plus: np.ndarray) -> np.ndarray:
        if self.backend == "torch":
            return self._synthesize_torch(w_plus)
        return self._synthesize_openvino(w_plus)

    def _synthesize_torch(self, w_plus: np.ndarray) -> np.ndarray:
        net = self.torch_synthesis().to(self.device)
        images = []
        with torch.inference_mode():
            for first in range(0, len(w_plus), self.batch_size):
                chunk = torch.from_numpy(w_plus[first : first + self.batch_size]).to(self.device)
                images.append(net(chunk).permute(0, 2, 3, 1).cpu().numpy())
        if not images:
            return np.zeros((0, self.resolution, self.resolution, 3), np.float32)
        return np.concatenate(images).astype(np.float32)

    def _synthesize_openvino(self, w_plus: np.ndarray) -> np.ndarray:
        """Full chunks of batch_size, then the rest one by one: two compiled shapes at most."""
        n_full = len(w_plus) // self.batch_size * self.batch_size
        chunks = [w_plus[i : i + self.batch_size] for i in range(0, n_full, self.batch_size)]
        chunks += [w_plus[i : i + 1] for i in range(n_full, len(w_plus))]
        images = [self._compiled_for(len(c))(c)[0] for c in chunks]
        if not images:
            return np.zeros((0, self.resolution, self.resolution, 3), np.float32)
        return _unit_range(np.concatenate(images).transpose(0, 2, 3, 1)).astype(np.float32)

    def export_torch(self, folder, dtype: str = "float32") -> Path:
        """Mapping, 256² synthesis and truncation centre as files torch alone can run
        (``torch_generator.ExportedMobileStyleGAN``): rendering on a GPU machine without OpenVINO.
        ``dtype``: how the weights are stored (``torch_generator.write_export``)."""
        mapping = OpenVINOModule.from_openvino(mobilestylegan_ir.read_mapping(self._core))
        synthesis = OpenVINOModule.from_openvino(self._synthesis)
        shape = (self.mean_latent(), self.num_ws, self.resolution)
        return write_export(folder, self.generator_id, mapping, synthesis, *shape, dtype)

    def torch_synthesis(self) -> torch.nn.Module:
        """The native torch network (mobilestylegan_torch), weights read from the exact-exit IR."""
        if self._torch is None:
            exact = self._synthesis
            if self.early_exit != "exact":
                exact = mobilestylegan_ir.build_synthesis_256(self._core, "exact")
            net = SynthesisNetwork(OpenVINOModule.from_openvino(exact).graph(), self.early_exit)
            self._torch = _WPlusToUnitImage(net, self.num_ws, self.latent_dim)
        return self._torch


class _DCGANFromWPlus(torch.nn.Module):
    """(N, 1, 100) -> the DCGAN's (N, 100, 1, 1) input."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        return self.net(w_plus.reshape(len(w_plus), -1, 1, 1))


class DCGAN(Generator):
    """64x64 DCGAN from gan-face-generate (MIT code; trained on synthetic DigiFace-1M, non-commercial data).

    The latent is z itself (no mapping network), so the mean latent is the prior mean, zero.
    """

    PACKAGE = "gan-face-generate"
    latent_dim = 100
    resolution = 64
    num_ws = 1

    def __init__(self, threads: int = 0):
        from gan_face_generate.models import Generator as DCGANNet

        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has no per-model thread pool

        version = importlib.metadata.version(self.PACKAGE)
        self.generator_id = f"dcgan-digiface@{self.PACKAGE}=={version}"
        net = DCGANNet(0, 3, self.latent_dim, self.resolution)
        weights = wheel_dir("gan_face_generate", self.PACKAGE) / "weights.tar"
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["netG_state_dict"])
        self._torch = _WPlusToUnitImage(_DCGANFromWPlus(net), self.num_ws, self.latent_dim)

    def mean_latent(self) -> np.ndarray:
        return np.zeros(self.latent_dim, np.float32)

    def _map(self, z: np.ndarray) -> np.ndarray:
        return z

    def _synthesize(self, w_plus: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            images = self._torch(torch.from_numpy(w_plus))
        return images.permute(0, 2, 3, 1).numpy().astype(np.float32)

    def torch_synthesis(self) -> torch.nn.Module:
        return self._torch


_BACKENDS = {"mobilestylegan": MobileStyleGAN, "dcgan": DCGAN}


def generator_num_ws(name: str) -> int:
    """Style vectors per image of a backend (W+ layers), without loading it."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown generator {name!r}; choose from {sorted(_BACKENDS)}")
    return _BACKENDS[name].num_ws


def get_generator(name: str, **kwargs) -> Generator:
    """Build a backend by name: "mobilestylegan" (kwargs early_exit, batch_size, threads, device,
    backend) or "dcgan" (threads). ``threads=0`` uses every core."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown generator {name!r}; choose from {sorted(_BACKENDS)}")
    return _BACKENDS[name](**kwargs)
