"""Jointly learning binary DMD patterns and the measurement encoder (``lsi train``).

Per step: a batch of generated faces -> channel sum (the photodiode sums R, G, B) -> straight-through
binary patterns -> ideal measurements -> the photodiode/ADC model at a random light level
(photon flux log-uniform in ``photon_flux_range``: one model from dim to bright scenes) -> encoder
-> latent loss against the known w of each face. Image losses through the generator are optional
(``image_loss_weight``; costly on a CPU). Deterministic from ``seed``; resumable from the run
folder's ``state.safetensors``.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from lsi_ros.models.checkpoint import LsiModel, save_model
from lsi_ros.models.encoder import BinaryPatterns, MeasurementEncoder
from lsi_ros.optics.patterns import learned_patterns
from lsi_ros.optics.photodiode import PhotodiodeModel
from lsi_ros.training import data


@dataclass
class TrainConfig:
    num_measurements: int = 128
    generator: str = "mobilestylegan"
    truncation_psi: float = data.DEFAULT_PSI
    train_faces: int = 8192
    validation_faces: int = 256
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    pattern_lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 1024
    depth: int = 2
    noise: bool = True
    photon_flux_range: tuple = (20.0, 2000.0)
    image_loss_weight: float = 0.0
    seed: int = 0
    checkpoint_every: int = 500
    data_dir: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"lsi-{self.generator}-m{self.num_measurements}"


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to 1 % of the peak."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    def __init__(self, config: TrainConfig, run_dir, device: str = "cpu"):
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        root = config.data_dir or None
        faces = data.load(
            config.generator, 0, config.train_faces + config.validation_faces, root, config.truncation_psi
        )
        self.generator_id = faces.generator_id
        self.resolution = faces.images.shape[1]
        # Channel sums as float16 keep 10k faces at 256² in ~1.3 GB; measurements only see the sum.
        sums = torch.from_numpy(faces.images.sum(axis=-1, dtype=np.uint16).reshape(len(faces.images), -1))
        split = config.train_faces
        self.train_x, self.val_x = sums[:split], sums[split:]
        latents = torch.from_numpy(faces.latents)
        self.train_w, self.val_w = latents[:split], latents[split:]
        self.train_seeds = (int(faces.seeds[0]), int(faces.seeds[split - 1]))

        self.rng = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self.patterns = BinaryPatterns(config.num_measurements, self.resolution, self.rng).to(self.device)
        self.encoder = MeasurementEncoder(
            config.num_measurements, latents.shape[1], config.width, config.depth
        ).to(self.device)
        self.encoder.latent_mean.copy_(self.train_w.mean(0))
        self.encoder.latent_std.copy_(self.train_w.std(0).clamp_min(1e-6))
        self.optimizer = torch.optim.AdamW(
            [
                {"params": self.encoder.parameters(), "lr": config.lr, "peak": config.lr},
                {
                    "params": self.patterns.parameters(),
                    "lr": config.pattern_lr,
                    "peak": config.pattern_lr,
                    "weight_decay": 0.0,
                },
            ],
            weight_decay=config.weight_decay,
        )
        self.step = 0
        self.history = []
        self._image_net = None
        self._resume()

    # -- one step -----------------------------------------------------------------------------
    def measure(self, x_sum, patterns, photon_flux: float | None, rng: torch.Generator) -> torch.Tensor:
        """Channel-summed images (B, H·W) in [0, 3] -> detector counts (B, M)."""
        y = x_sum @ patterns.T
        if photon_flux is None:
            return y
        return PhotodiodeModel().with_photon_flux(photon_flux).sample_torch(y, rng).counts

    def _photon_flux(self) -> float | None:
        if not self.config.noise:
            return None
        low, high = (math.log(v) for v in self.config.photon_flux_range)
        return math.exp(low + (high - low) * torch.rand((), generator=self.rng).item())

    def train_step(self) -> float:
        index = torch.randint(0, len(self.train_x), (self.config.batch_size,), generator=self.rng)
        x = self.train_x[index].to(self.device, torch.float32) / 255.0
        w = self.train_w[index].to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.config.steps, group["peak"])
        counts = self.measure(x, self.patterns(), self._photon_flux(), self.rng)
        target = (w - self.encoder.latent_mean) / self.encoder.latent_std
        predicted = self.encoder.normalised(counts)
        loss = torch.nn.functional.mse_loss(predicted, target)
        if self.config.image_loss_weight:
            loss = loss + self.config.image_loss_weight * self._image_loss(predicted, x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def _image_loss(self, predicted: torch.Tensor, x_sum: torch.Tensor) -> torch.Tensor:
        """Channel-sum image MSE through the frozen generator (the paper's image loss, on what we observe)."""
        if self._image_net is None:
            from lsi_ros.models.generators import get_generator

            self._image_net = get_generator(self.config.generator).torch_synthesis().to(self.device)
        w = self.encoder.latent_mean + self.encoder.latent_std * predicted
        image = self._image_net(w)
        image = torch.nn.functional.interpolate(image, size=(self.resolution, self.resolution), mode="area")
        return torch.nn.functional.mse_loss(image.sum(1).flatten(1), x_sum)

    @torch.no_grad()
    def validate(self, photon_flux: float | None = 200.0) -> float:
        """Latent MSE (normalised units) on the validation faces with the binary patterns.

        Its noise comes from a fixed generator: comparable across steps, and the training stream is
        untouched (a resumed run equals an uninterrupted one)."""
        self.encoder.eval()
        rng = torch.Generator().manual_seed(12345)
        binary = self.patterns.binary().float()
        losses = []
        for start in range(0, len(self.val_x), 256):
            x = self.val_x[start : start + 256].to(self.device, torch.float32) / 255.0
            w = self.val_w[start : start + 256].to(self.device)
            flux = photon_flux if self.config.noise else None
            predicted = self.encoder.normalised(self.measure(x, binary, flux, rng))
            target = (w - self.encoder.latent_mean) / self.encoder.latent_std
            losses.append(torch.nn.functional.mse_loss(predicted, target, reduction="sum").item())
        self.encoder.train()
        return sum(losses) / (len(self.val_x) * self.val_w.shape[1])

    # -- the loop, checkpoints, export ---------------------------------------------------------
    def fit(self) -> dict:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        with tqdm(
            total=self.config.steps, initial=self.step, desc=self.config.model_id, unit="step"
        ) as progress:
            while self.step < self.config.steps:
                loss = self.train_step()
                progress.update(1)
                if self.step % 50 == 0:
                    progress.set_postfix(loss=f"{loss:.4f}")
                if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                    val = self.validate()
                    self.history.append({"step": self.step, "train_loss": loss, "val_latent_mse": val})
                    progress.write(
                        f"step {self.step}: train loss {loss:.4f}, validation latent MSE {val:.4f}"
                    )
                    self._save_state()
        return self.history[-1] if self.history else {}

    def _save_state(self):
        tensors = {f"patterns.{k}": v for k, v in self.patterns.state_dict().items()}
        tensors |= {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        optimizer_state = self.optimizer.state_dict()
        for index, state in optimizer_state["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value)
        tensors["rng"] = self.rng.get_state()
        metadata = {
            "step": str(self.step),
            "history": json.dumps(self.history),
            "config": json.dumps(asdict(self.config)),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / "state.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        tmp.replace(self.run_dir / "state.safetensors")

    def _resume(self):
        path = self.run_dir / "state.safetensors"
        if not path.is_file():
            return
        with safe_open(str(path), "pt") as f:
            header = f.metadata()
        if json.loads(header["config"]) != json.loads(json.dumps(asdict(self.config))):
            raise ValueError(f"{path} was trained with another configuration; use a new run folder")
        tensors = load_file(str(path))
        self.patterns.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("patterns.")})
        self.encoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})
        state = self.optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state["state"].setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict(state)
        self.rng.set_state(tensors["rng"])
        self.step = int(header["step"])
        self.history = json.loads(header["history"])

    def export(self, path) -> Path:
        """The shipped model: binary patterns (bit-packed) + encoder, with provenance."""
        pattern_set = learned_patterns(
            self.patterns.binary().cpu().numpy().reshape(-1, self.resolution, self.resolution),
            model_id=self.config.model_id,
        )
        info = {
            "generator_id": self.generator_id,
            "truncation_psi": self.config.truncation_psi,
            "training_seeds": list(self.train_seeds),
            "validation_seeds": [
                self.config.train_faces,
                self.config.train_faces + self.config.validation_faces - 1,
            ],
            "steps": self.step,
            "noise_model": f"PhotodiodeModel, photon_flux log-uniform {list(self.config.photon_flux_range)}"
            if self.config.noise
            else "none",
            "history": self.history,
        }
        model = LsiModel(self.config.model_id, pattern_set, self.encoder.cpu().eval(), info)
        return save_model(model, path)
