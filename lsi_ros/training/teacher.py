"""A latent teacher for real images: GAN inversion of each image into the frozen generator's latent w.

Real photos have no known latent, so fine-tuning needs a target: the w whose decoded face is
closest to the photo. Found by optimisation through the generator's differentiable torch twin
(pixel L2 + L1 + (MS-)SSIM, a small pull towards the mean latent to stay in distribution),
starting from the model's own encoding of the photo's noiseless simulated measurements (or the
mean latent). The best step per image is kept. Results are cached per image content (and teacher
settings) in safetensors files, so a folder or a bag is inverted once.

The step size is constant, or follows StyleGAN2's projector ("cosine": a short warm-up, then a cosine
ramp to zero over the last quarter), which settles in fewer steps. ``checkpoints`` keeps the best
latent found after each of those step counts too: the convergence of one run, without rerunning it.
"""

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm import tqdm

from lsi_ros.evaluation.latent_imaging import encode_faces, score_image
from lsi_ros.optics import PhotodiodeModel
from lsi_ros.training.data import default_data_dir
from lsi_ros.training.losses import image_loss


@dataclass(frozen=True)
class TeacherConfig:
    steps: int = 100
    lr: float = 0.05  # Adam step in units of the latent's per-dimension std
    l2_weight: float = 1.0
    l1_weight: float = 0.5
    ssim_weight: float = 0.5  # on 1 - MS-SSIM (window shrunk to fit small images)
    prior_weight: float = 1e-3  # mean squared offset from the mean latent, normalised units
    init: str = "encoder"  # "encoder": the model's noiseless encoding; "mean": the mean latent
    batch_size: int = 4
    space: str = "w"  # "w": one latent (N, D); "w+": one per style layer (N, num_ws, D), started at w
    schedule: str = "constant"  # "constant" or "cosine" (warm-up over 5 %, cosine down over the last 25 %)
    checkpoints: tuple[int, ...] = ()  # step counts at which the best latent so far is kept as well


SCHEDULES = ("constant", "cosine")
# Settings added after caches were written enter the cache key only when they differ from the default,
# so the earlier inversions stay valid.
_LATER_SETTINGS = {"schedule": "constant", "checkpoints": ()}


@dataclass
class TeacherResult:
    """Per image: the teacher latent, where it started, and image quality before/after inversion."""

    latents: np.ndarray  # (N, D) float32, or (N, num_ws, D) in W+
    initial_latents: np.ndarray  # (N, D) float32
    quality: list[dict]  # {"psnr", "ssim", "psnr_rgb", "initial_psnr", ...} per image
    cached: int  # images read from the cache
    history: dict[int, np.ndarray]  # checkpoint step -> the best latents (like ``latents``) up to it
    # wall time per image and step, as measured when the images were inverted (kept in the cache with them)
    seconds_per_step: float | None = None


def content_hash(image: np.ndarray, context: dict) -> str:
    """sha256 of the image's float32 pixels and shape, and of the teacher settings that shape its answer."""
    digest = hashlib.sha256(json.dumps(context, sort_keys=True).encode())
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    digest.update(str(pixels.shape).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def _encoder_digest(model) -> str:
    """Identifies the encoder that gives the starting point: its pattern set and weights."""
    digest = hashlib.sha256(model.pattern_set.pattern_set_id.encode())
    for name, tensor in model.encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    return default_data_dir().parent / "teacher"


class LatentTeacher:
    """Inverts images (N, R, R, 3) in [0, 1] at the generator's resolution into latents w (N, D).

    ``model`` (an LsiModel) supplies the normalisation (latent mean/std) and the encoder start; without
    one the teacher starts at the generator's mean latent with unit scale.
    """

    def __init__(self, generator, model=None, config: TeacherConfig = TeacherConfig(), cache_dir=None):
        if config.init not in ("encoder", "mean"):
            raise ValueError(f"teacher init must be 'encoder' or 'mean', not {config.init!r}")
        if config.init == "encoder" and model is None:
            raise ValueError("teacher init 'encoder' needs a model")
        if config.space not in ("w", "w+"):
            raise ValueError(f"teacher latent space must be 'w' or 'w+', not {config.space!r}")
        if config.schedule not in SCHEDULES:
            raise ValueError(f"teacher schedule must be one of {SCHEDULES}, not {config.schedule!r}")
        if any(not 0 <= k <= config.steps for k in config.checkpoints):
            raise ValueError(f"teacher checkpoints {config.checkpoints} must lie in 0..{config.steps} steps")
        self.generator = generator
        self.model = model
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if model is not None:
            self.latent_mean = model.encoder.latent_mean.detach().float().cpu()
            self.latent_std = model.encoder.latent_std.detach().float().cpu()
        else:
            self.latent_mean = torch.from_numpy(generator.mean_latent())
            self.latent_std = torch.ones_like(self.latent_mean)
        self.context = {
            "generator_id": generator.generator_id,
            "config": {k: v for k, v in asdict(config).items() if _LATER_SETTINGS.get(k, object()) != v},
            "start": _encoder_digest(model) if config.init == "encoder" else "mean",
            "normalisation": hashlib.sha256(self.latent_std.numpy().tobytes()).hexdigest()[:16],
        }

    # -- the optimisation ---------------------------------------------------------------------
    def _initial(self, images: np.ndarray) -> np.ndarray:
        if self.config.init == "mean":
            return np.repeat(self.latent_mean.numpy()[None], len(images), axis=0)
        from lsi_ros.optics.objective import scene_on_dmd

        side = self.model.pattern_set.resolution[0]
        on_dmd = np.stack([scene_on_dmd(image, side) for image in images])
        return encode_faces(self.model, on_dmd, PhotodiodeModel.noiseless())

    def _image_loss(self, decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss per image (N,)."""
        c = self.config
        return image_loss(decoded, target, {"l2": c.l2_weight, "l1": c.l1_weight, "ms-ssim": c.ssim_weight})

    def learning_rate(self, step: int) -> float:
        """The Adam step size before update ``step`` (0-based) of ``config.steps``."""
        c = self.config
        if c.schedule == "constant":
            return c.lr
        t = step / c.steps
        ramp = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / 0.25) * math.pi)
        return c.lr * ramp * min(1.0, (step + 1) / max(1.0, 0.05 * c.steps))

    def _invert(self, images: np.ndarray, start: np.ndarray, bar) -> tuple[np.ndarray, dict]:
        """The best latents per image over all steps, and over the first ``k`` steps per checkpoint k."""
        net = self.generator.torch_synthesis()
        target = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32))
        offset = (torch.from_numpy(start) - self.latent_mean) / self.latent_std
        if self.config.space == "w+":
            offset = offset[:, None].repeat(1, self.generator.num_ws, 1)
        offset = offset.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([offset], lr=self.config.lr)
        best = offset.detach().clone()
        best_loss = torch.full((len(images),), float("inf"))
        history = {}
        for step in range(self.config.steps + 1):
            with torch.set_grad_enabled(step < self.config.steps):  # the last look needs no gradient
                decoded = net(self.latent_mean + self.latent_std * offset)
                per_image = self._image_loss(decoded, target)
                per_image = per_image + self.config.prior_weight * offset.pow(2).flatten(1).mean(1)
            improved = per_image.detach() < best_loss
            best[improved] = offset.detach()[improved]
            best_loss = torch.where(improved, per_image.detach(), best_loss)
            if step in self.config.checkpoints:
                history[step] = (self.latent_mean + self.latent_std * best).numpy().astype(np.float32)
            if step == self.config.steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate(step)
            optimizer.zero_grad(set_to_none=True)
            per_image.sum().backward()
            optimizer.step()
            bar.update(len(images))
            bar.set_postfix(loss=f"{float(per_image.detach().mean()):.4f}")
        return (self.latent_mean + self.latent_std * best).numpy().astype(np.float32), history

    def step_seconds(self, batch: int = 1) -> float:
        """Wall time of one inversion step (decode, loss, backward, Adam) per image at ``batch``, on
        random images after an untimed warm-up run: (three steps - one step) / 2, so the set-up and
        the last look cancel out."""
        rng = np.random.default_rng(0)
        res = self.generator.resolution
        images = rng.random((batch, res, res, 3), dtype=np.float32)
        start = np.repeat(self.latent_mean.numpy()[None], batch, axis=0)
        config, seconds = self.config, []
        try:
            for steps in (1, 1, 3):
                self.config = replace(config, steps=steps, checkpoints=())
                began = time.perf_counter()
                with tqdm(disable=True) as bar:
                    self._invert(images, start, bar)
                seconds.append(time.perf_counter() - began)
        finally:
            self.config = config
        return (seconds[2] - seconds[1]) / 2 / batch

    # -- the public call, with the cache ------------------------------------------------------
    def invert(
        self, images: np.ndarray, progress: bool = True, start: np.ndarray | None = None
    ) -> TeacherResult:
        """``start``: latents (N, D) to start from instead of ``config.init`` (e.g. W+ from a W inversion)."""
        images = np.asarray(images, dtype=np.float32)
        resolution = self.generator.resolution
        if images.ndim != 4 or images.shape[1:] != (resolution, resolution, 3):
            raise ValueError(
                f"teacher images must be (N, {resolution}, {resolution}, 3) at the generator's "
                f"resolution, got {images.shape}"
            )
        if start is not None:
            start = np.asarray(start, dtype=np.float32)
            if start.shape != (len(images), self.latent_mean.shape[0]):
                raise ValueError(
                    f"teacher start must be ({len(images)}, {self.latent_mean.shape[0]}), got {start.shape}"
                )
            contexts = [self.context | {"start": hashlib.sha256(s.tobytes()).hexdigest()[:16]} for s in start]
        else:
            contexts = [self.context] * len(images)
        keys = [content_hash(image, context) for image, context in zip(images, contexts, strict=True)]
        latents, initial = [None] * len(images), [None] * len(images)
        history = {k: [None] * len(images) for k in self.config.checkpoints}
        seconds = [None] * len(images)  # per image step, as measured when the image was inverted
        missing = []
        for i, key in enumerate(keys):
            hit = self._read_cache(key)
            if hit is None:
                missing.append(i)
            else:
                latents[i], initial[i], found_history, seconds[i] = hit
                for k in history:
                    history[k][i] = found_history[k]
        if missing:
            start = self._initial(images[missing]) if start is None else start[missing]
            size = self.config.batch_size
            total = self.config.steps * len(missing)
            with tqdm(
                total=total, desc="teacher (GAN inversion)", unit="img·step", disable=not progress
            ) as bar:
                for first in range(0, len(missing), size):
                    chunk = missing[first : first + size]
                    began = time.perf_counter()
                    found, found_history = self._invert(images[chunk], start[first : first + size], bar)
                    per_step = (time.perf_counter() - began) / max(1, self.config.steps * len(chunk))
                    for k, i in enumerate(chunk):
                        latents[i], initial[i], seconds[i] = found[k], start[first + k], per_step
                        for step in history:
                            history[step][i] = found_history[step][k]
                        kept = {step: found_history[step][k] for step in history}
                        self._write_cache(keys[i], found[k], start[first + k], kept, per_step)
        known = [s for s in seconds if s is not None]
        seconds_per_step = float(np.mean(known)) if known else None
        latents, initial = np.stack(latents), np.stack(initial)
        quality = []
        decoded, decoded_initial = self.generator.synthesize(latents), self.generator.synthesize(initial)
        for image, after, before in zip(images, decoded, decoded_initial, strict=True):
            scores = score_image(image, after)
            scores |= {f"initial_{k}": v for k, v in score_image(image, before).items()}
            quality.append({k: round(float(v), 4) for k, v in scores.items()})
        history = {k: np.stack(v) for k, v in history.items()}
        return TeacherResult(latents, initial, quality, len(images) - len(missing), history, seconds_per_step)

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.safetensors" if self.cache_dir else None

    def _read_cache(self, key: str):
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        with safe_open(str(path), "np") as f:
            history = {k: f.get_tensor(f"latent_at_{k}") for k in self.config.checkpoints}
            seconds = (f.metadata() or {}).get("seconds_per_step")
            latent, initial = f.get_tensor("latent"), f.get_tensor("initial_latent")
            return latent, initial, history, None if seconds is None else float(seconds)

    def _write_cache(
        self, key: str, latent: np.ndarray, initial: np.ndarray, history: dict, seconds_per_step: float
    ) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        metadata = {"context": json.dumps(self.context), "seconds_per_step": repr(seconds_per_step)}
        tensors = {"latent": latent, "initial_latent": np.ascontiguousarray(initial)}
        tensors |= {f"latent_at_{k}": np.ascontiguousarray(v) for k, v in history.items()}
        save_file(tensors, str(tmp), metadata)
        tmp.replace(path)
