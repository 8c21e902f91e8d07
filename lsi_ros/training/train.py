"""Jointly learning binary DMD patterns and the measurement encoder (``lsi train``).

Per step: a batch of generated faces -> channel sum (the photodiode sums R, G, B) -> straight-through
binary patterns -> ideal measurements -> the photodiode/ADC model at a random light level
(photon flux log-uniform in ``photon_flux_range``: one model from dim to bright scenes) -> encoder
-> latent loss against the known w of each face. Image losses through the frozen generator are optional
(``image_loss_weight`` × ``image_loss``: L1, L2 and/or MS-SSIM of the decoded face's grayscale against
the observed one; costly on a CPU, off by default). Deterministic from ``seed``; resumable from the run
folder's ``state.safetensors``. With ``keep_best`` (the default; ``lsi train --last`` turns it off)
the export is the checkpoint of lowest validation latent error: early stopping without cutting the
learning-rate schedule short.

``latent_space="w+"`` trains an encoder with one latent per generator layer (``MeasurementEncoder``
with ``num_ws``). ``losses`` replaces the loss with the paper's weighted terms (``losses.loss_terms``:
latent L1, image L2, identity and perceptual through face-api's descriptor network; "paper" for the
defaults, or ``"latent=1,l2=1,identity=0.5"``); the image the camera saw is then the generator's RGB
render of the true latent.

With ``patterns_from`` the patterns of a model file (or of a pattern set file) are shown as they are
and only the encoder learns; ``members`` > 1 then trains that many encoders one after another (seeds
``seed``, ``seed + 1``, ...) and exports one model that averages their estimates (``EncoderEnsemble``):
an encoder overfits the faces it learns from, each in its own way, and the mean of several has a lower
latent error than any of them (``fit_members``). Fixed patterns are applied to the faces once, before
the first step: a step then draws detector noise on those values and trains the encoder alone, and the
members of an ensemble share the values.

Data-parallel across processes (``lsi train --nproc N``, lsi_ros.training.distributed): every rank draws
the same batch from the shared seed and keeps its own slice, DistributedDataParallel averages the
gradients, and rank 0 alone validates, writes the state and exports. One process trains exactly as
before; with N processes (or on CUDA) the detector noise of a step comes from a generator of
(seed, step, rank).
"""

import copy
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load, save_file
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from lsi_ros.models.checkpoint import LsiModel, as_stored, load_model, save_model
from lsi_ros.models.encoder import (
    LATENT_SPACES,
    BinaryPatterns,
    EncoderEnsemble,
    MeasurementEncoder,
    normalised_error,
)
from lsi_ros.optics.patterns import is_pattern_set_file, learned_patterns, load_pattern_set
from lsi_ros.optics.photodiode import PhotodiodeModel
from lsi_ros.training import data, losses
from lsi_ros.training.augment import FramingJitter


@dataclass
class TrainConfig:
    num_measurements: int = 128
    generator: str = "mobilestylegan"
    truncation_psi: float = data.DEFAULT_PSI
    train_faces: int = 24576
    validation_faces: int = 256
    steps: int = 8000
    batch_size: int = 64
    lr: float = 1e-3
    pattern_lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 1024
    depth: int = 2
    noise: bool = True
    photon_flux_range: tuple = (20.0, 2000.0)
    image_loss_weight: float = 0.0
    image_loss: str = "l2"  # "l1", "l2", "ms-ssim" or a sum such as "l1+ms-ssim"
    seed: int = 0
    checkpoint_every: int = 500
    keep_best: bool = True  # export the checkpoint with the lowest validation latent MSE (early stopping)
    data_dir: str = ""
    patterns_from: str = (
        ""  # a model or pattern set file whose patterns stay as they are: only the encoder learns
    )
    name: str = ""  # the model's name in its id (default m<M>)
    members: int = 1  # encoders trained one after another on fixed patterns, their estimates averaged
    weight_format: str = "fp16"  # how the exported file stores the encoder's matrices: fp16 or int8
    stream: bool = False  # faces rendered inside the loop, each seen once (lsi_ros.training.stream)
    budget_s: float = 0.0  # streamed training: stop, validate and checkpoint within this (0: none)
    chunk_faces: int = 4096  # streamed training: faces rendered at a time (a multiple of batch_size)
    latent_space: str = "w"  # "w", or "w+": one latent per generator layer
    offset_rank: int = 0  # "w+": features the per-layer offset head passes through (0: a full head)
    losses: str = ""  # "": latent MSE (+ image_loss); "paper" or "latent=1,l2=1,identity=0.5,...": loss_terms
    framing_jitter: tuple = ()  # (shift_px, scale, roll_deg[, fraction]): lsi_ros.training.augment
    extra: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"lsi-{self.generator}-{self.name or f'm{self.num_measurements}'}"


# fields that change the exported file or how a run is cut into pieces, not what it learns: resumable
RUN_ONLY = ("weight_format", "budget_s", "chunk_faces")


def log_uniform_flux(flux_range: tuple, generator: torch.Generator) -> float:
    """A photon flux drawn log-uniformly from ``flux_range``: one model for dim to bright scenes."""
    low, high = (math.log(v) for v in flux_range)
    return math.exp(low + (high - low) * torch.rand((), generator=generator).item())


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to 1 % of the peak."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def detect(ideal, photon_flux: float | None, rng: torch.Generator) -> torch.Tensor:
    """Noise-free detector values (B, M) -> counts at ``photon_flux`` (None: no detector noise)."""
    if photon_flux is None:
        return ideal
    return PhotodiodeModel().with_photon_flux(photon_flux).sample_torch(ideal, rng).counts


def measure(x_sum, patterns, photon_flux: float | None, rng: torch.Generator) -> torch.Tensor:
    """Channel-summed images (B, H·W) in [0, 3] -> detector counts (B, M)."""
    return detect(x_sum @ patterns.T, photon_flux, rng)


def channel_sums(images) -> torch.Tensor:
    """Faces (N, H, W, 3) uint8, numpy or torch -> (N, H·W) channel sums where they lie: 16-bit
    integers keep 10k faces at 256² in ~1.3 GB, and the photodiode sees only the sum."""
    if not isinstance(images, torch.Tensor):
        return torch.from_numpy(images.sum(axis=-1, dtype=np.uint16).reshape(len(images), -1))
    sums = torch.empty(
        (len(images), images.shape[1] * images.shape[2]), dtype=torch.int16, device=images.device
    )
    for start in range(0, len(images), 4096):  # chunk by chunk: the sums are the only copy
        sums[start : start + 4096] = images[start : start + 4096].sum(-1, dtype=torch.int16).flatten(1)
    return sums


def ideal_measurements(images, patterns: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Faces (N, H, W, 3) uint8 -> the noise-free detector values (N, M) of fixed binary ``patterns``
    (M, H·W), chunk by chunk where the patterns lie (no channel sums of all faces at once)."""
    parts = [
        (channel_sums(images[start : start + chunk]).to(patterns.device, torch.float32) / 255.0) @ patterns.T
        for start in range(0, len(images), chunk)
    ]
    return torch.cat(parts)


class LatentSpaceImager(torch.nn.Module):
    """Straight-through binary patterns, detector and encoder: the part that learns (what DDP wraps).

    ``measured``: the batch holds the patterns' noise-free values already (fixed patterns)."""

    def __init__(self, patterns: BinaryPatterns, encoder: MeasurementEncoder):
        super().__init__()
        self.patterns = patterns
        self.encoder = encoder

    def forward(
        self, batch, photon_flux: float | None, rng: torch.Generator, measured: bool = False
    ) -> torch.Tensor:
        ideal = batch if measured else batch @ self.patterns().T
        return self.encoder.normalised(detect(ideal, photon_flux, rng))


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        run_dir,
        device: str = "cpu",
        faces: data.FaceData | None = None,
        measurements: torch.Tensor | None = None,
    ):
        """``faces``: the training then validation faces in memory (say, rendered on a GPU); by default
        seeds [0, train_faces + validation_faces) are read from the ``lsi data`` cache.

        Fixed patterns (``patterns_from``, no image loss) are applied to every face once, here, and
        training draws detector noise on those values: the step is then the encoder's alone (one
        256²-pixel product per face in all instead of one per face and step). ``measurements``: those
        values from an earlier trainer on the same faces and patterns (``self.measurements``)."""
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.rank, self.world_size = (
            (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        )
        if config.batch_size % self.world_size:
            raise ValueError(
                f"batch size {config.batch_size} does not split over {self.world_size} processes"
            )
        unknown = set(config.image_loss.split("+")) - set(losses.IMAGE_LOSSES)
        if unknown:
            raise ValueError(
                f"unknown image loss {sorted(unknown)}; choose from {losses.IMAGE_LOSSES}, joined by +"
            )
        count = config.train_faces + config.validation_faces
        if faces is None:
            faces = data.load(config.generator, 0, count, config.data_dir or None, config.truncation_psi)
        if len(faces.seeds) != count:
            raise ValueError(f"{len(faces.seeds)} faces given, the configuration needs {count}")
        self.generator_id = faces.generator_id
        self.resolution = faces.images.shape[1]
        split = config.train_faces
        latents = torch.as_tensor(faces.latents)
        self.train_w, self.val_w = latents[:split], latents[split:]
        self.train_seeds = (int(faces.seeds[0]), int(faces.seeds[split - 1]))
        self.validation_seeds = (int(faces.seeds[split]), int(faces.seeds[-1]))
        self._build(self.train_w)
        self.measurements = None  # (faces, M) noise-free values of the fixed patterns
        fixed = self.patterns_source is not None and self.jitter is None
        if fixed and not config.image_loss_weight and not config.losses:
            if measurements is None:
                measurements = ideal_measurements(faces.images, self.patterns.binary().float())
            if measurements.shape != (count, config.num_measurements):
                raise ValueError(
                    f"measurements of shape {tuple(measurements.shape)} given, the faces and patterns "
                    f"need {(count, config.num_measurements)}"
                )
            self.measurements = measurements.to(self.device)
            self.train_x, self.val_x = self.measurements[:split], self.measurements[split:]
        else:
            sums = channel_sums(faces.images)
            self.train_x, self.val_x = sums[:split], sums[split:]
        self.step = 0
        self.history = []
        self.best: dict | None = None  # {"step", "val_latent_mse", "tensors"}: the best checkpoint so far
        self._resume()
        self.imager = LatentSpaceImager(self.patterns, self.encoder)
        self.model = self.imager
        if self.world_size > 1:
            self.model = DistributedDataParallel(
                self.imager,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False,  # the latent mean and std never change
            )

    def _build(self, latents: torch.Tensor):
        """The training stream ``rng`` from the seed, the patterns drawn from it (or fixed), the encoder
        normalised by the spread of ``latents`` (N, D), and their optimiser."""
        config = self.config
        if config.latent_space not in LATENT_SPACES:
            raise ValueError(f"latent space must be one of {LATENT_SPACES}, not {config.latent_space!r}")
        self.paper_losses = losses.LossWeights.parse(config.losses) if config.losses else None
        if self.paper_losses and self.paper_losses.contrast:
            raise ValueError("the contrast term tells real people apart: use it in `lsi finetune --utkface`")
        self.rng = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self.patterns = BinaryPatterns(config.num_measurements, self.resolution, self.rng).to(self.device)
        self.patterns_source = self._fix_patterns(config.patterns_from) if config.patterns_from else None
        num_ws = 1
        if config.latent_space == "w+":
            from lsi_ros.models.generators import generator_num_ws

            num_ws = generator_num_ws(config.generator)
            if num_ws == 1:
                raise ValueError(f"generator {config.generator} takes one latent per image: W+ is its W")
        self.encoder = MeasurementEncoder(
            config.num_measurements, latents.shape[1], config.width, config.depth, num_ws, config.offset_rank
        ).to(self.device)
        self.encoder.latent_mean.copy_(latents.mean(0))
        self.encoder.latent_std.copy_(latents.std(0).clamp_min(1e-6))
        groups = [{"params": self.encoder.parameters(), "lr": config.lr, "peak": config.lr}]
        if self.patterns_source is None:
            groups.append(
                {
                    "params": self.patterns.parameters(),
                    "lr": config.pattern_lr,
                    "peak": config.pattern_lr,
                    "weight_decay": 0.0,
                }
            )
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self._image_net = None
        self._face_loss = None

    def _fix_patterns(self, path) -> dict:
        """Show the binary patterns of a model file or a pattern set file (``lsi patterns``) and freeze
        them; returns where they came from."""
        if is_pattern_set_file(path):
            pattern_set = load_pattern_set(path)
            origin = {"model_id": pattern_set.model_id, "learnt": pattern_set.meta}
        else:
            source = load_model(path)
            pattern_set = source.pattern_set
            origin = {
                "model_id": source.model_id,
                # the faces the patterns learnt from: a source that took its own patterns from another
                # model passes that model's seeds on, not its encoders'
                "training_seeds": source.info.get("patterns_from", {}).get("training_seeds")
                or source.info.get("training_seeds"),
            }
        if pattern_set.num_patterns != self.config.num_measurements:
            raise ValueError(
                f"{path} has {pattern_set.num_patterns} patterns, the configuration "
                f"{self.config.num_measurements}"
            )
        if tuple(pattern_set.resolution) != (self.resolution, self.resolution):
            raise ValueError(
                f"{path} has patterns at {pattern_set.resolution}, the faces are {self.resolution}²"
            )
        with torch.no_grad():
            self.patterns.weight.copy_(torch.from_numpy(pattern_set.matrix()))
        self.patterns.weight.requires_grad_(False)
        return {"file": str(path), "pattern_set_id": pattern_set.pattern_set_id, **origin}

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process): validates, writes state and exports, shows progress."""
        return self.rank == 0

    # -- one step -----------------------------------------------------------------------------
    @property
    def jitter(self) -> FramingJitter | None:
        """The framing errors the training faces are measured through (None: none)."""
        return FramingJitter.from_config(self.config.framing_jitter)

    def _photon_flux(self) -> float | None:
        if not self.config.noise:
            return None
        return log_uniform_flux(self.config.photon_flux_range, self.rng)

    def _noise_rng(self, device=None) -> torch.Generator:
        """The random draws of this step (detector noise, framing jitter) on ``device`` (default the
        training device): the training stream itself for one CPU process; else a generator of (seed,
        step, rank), so ranks differ and a resume needs no state."""
        device = self.device if device is None else torch.device(device)
        if self.world_size == 1 and device.type == "cpu":
            return self.rng
        key = np.random.SeedSequence([self.config.seed, self.step, self.rank]).generate_state(1)[0]
        return torch.Generator(device).manual_seed(int(key))

    def train_step(self) -> float:
        """One optimiser step; returns the loss over the whole batch (all ranks)."""
        index = torch.randint(0, len(self.train_x), (self.config.batch_size,), generator=self.rng)
        share = self.config.batch_size // self.world_size
        index = index[self.rank * share : (self.rank + 1) * share]
        return self.learn(self._batch(self.train_x[index]), self.train_w[index].to(self.device))

    @property
    def loss_weights(self) -> dict[str, float]:
        """The weight of each ``losses.training_terms`` term in the loss."""
        return {"latent": 1.0, "image": self.config.image_loss_weight}

    def learn(self, x: torch.Tensor, w: torch.Tensor, rendered: torch.Tensor | None = None) -> float:
        """One optimiser step on a batch on the device: ``x`` channel sums in [0, 3] (or the fixed
        patterns' values), ``w`` the true latents, ``rendered`` the true faces (N, C, H, W) in [0, 1]
        (default: the grayscale of ``x``); the terms come from ``losses.training_terms``."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.config.steps, group["peak"])
        if self.jitter is not None:
            # the face as a grid off by a framing error sees it; its latent and image stay its own
            rendered = self.observed(x) if rendered is None else rendered
            x = self.jitter(x, self.resolution, self._noise_rng("cpu")).to(x.device)
        predicted = self.model(x, self._photon_flux(), self._noise_rng(), self.measurements is not None)
        target = (w - self.encoder.latent_mean) / self.encoder.latent_std
        if self.paper_losses is not None:
            loss = self.weighted_loss(predicted, target)["total"]
        else:
            decoded = None
            if self.config.image_loss_weight:
                rendered = self.observed(x) if rendered is None else rendered
                decoded = self.decode(predicted)
            terms = losses.training_terms(predicted, target, rendered, decoded, self.image_terms)
            loss = sum(self.loss_weights[name] * value for name, value in terms.items())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        loss = loss.detach()
        if self.world_size > 1:
            dist.all_reduce(loss)
            loss /= self.world_size
        return float(loss)

    def _batch(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows of ``train_x`` / ``val_x`` on the device: channel sums scaled to [0, 3], or the fixed
        patterns' values as they are."""
        if self.measurements is not None:
            return rows
        return rows.to(self.device, torch.float32) / 255.0

    def image_net(self) -> torch.nn.Module:
        """The frozen generator's differentiable torch path (loaded on first use)."""
        if self._image_net is None:
            from lsi_ros.models.generators import get_generator

            self._image_net = get_generator(self.config.generator).torch_synthesis().to(self.device)
        return self._image_net

    @property
    def image_terms(self) -> dict[str, float]:
        return dict.fromkeys(self.config.image_loss.split("+"), 1.0)

    def decode(self, predicted: torch.Tensor) -> torch.Tensor:
        """The generator's faces (N, 3, R, R) in [0, 1] of normalised latents, at the training resolution.

        The generator is frozen; the gradient reaches the encoder and, through the straight-through
        patterns, the DMD patterns."""
        w = self.encoder.latent_mean + self.encoder.latent_std * predicted
        decoded = self.image_net()(w)
        size = (self.resolution, self.resolution)
        if decoded.shape[-2:] != size:
            decoded = torch.nn.functional.interpolate(decoded, size=size, mode="area")
        return decoded

    def observed(self, x_sum: torch.Tensor) -> torch.Tensor:
        """Channel sums (N, H·W) in [0, 3] -> the grayscale faces (N, 1, R, R) in [0, 1]."""
        return (x_sum / 3.0).reshape(len(x_sum), 1, self.resolution, self.resolution)

    def weighted_loss(self, predicted: torch.Tensor, target: torch.Tensor) -> dict:
        """``losses.loss_terms`` of normalised latents: the decoded face against the generator's RGB
        render of the true latent (what the camera saw), identity and perceptual terms through face-api."""
        net = self.image_net()
        mean, std = self.encoder.latent_mean, self.encoder.latent_std
        with torch.no_grad():
            rendered = net(mean + std * target)
        if self.paper_losses.needs_faces and self._face_loss is None:
            attributes = bool(self.paper_losses.attributes)
            self._face_loss = losses.FaceLoss(device=self.device, attributes=attributes)
        decoded = net(mean + std * predicted)
        return losses.loss_terms(self.paper_losses, predicted, target, rendered, decoded, self._face_loss)

    @torch.no_grad()
    def validate(self, photon_flux: float | None = 200.0, encoder=None) -> float:
        """Latent MSE (normalised units) on the validation faces with the binary patterns, of the
        encoder in training or of ``encoder`` (an ensemble of several runs, say).

        Its noise comes from a fixed generator: comparable across steps, and the training stream is
        untouched (a resumed run equals an uninterrupted one)."""
        encoder = self.encoder if encoder is None else encoder.to(self.device)
        was_training = encoder.training
        encoder.eval()
        rng = torch.Generator(self.device).manual_seed(12345)
        binary = self.patterns.binary().float()
        squared_errors = []
        for start in range(0, len(self.val_x), 256):
            x = self._batch(self.val_x[start : start + 256])
            w = self.val_w[start : start + 256].to(self.device)
            flux = photon_flux if self.config.noise else None
            ideal = x if self.measurements is not None else x @ binary.T
            predicted = encoder.normalised(detect(ideal, flux, rng))
            target = (w - encoder.latent_mean) / encoder.latent_std
            error = normalised_error(predicted, target, 1.0).pow(2).flatten(1).mean(1)
            squared_errors.append(error.sum().item())
        encoder.train(was_training)
        return sum(squared_errors) / len(self.val_x)

    @torch.no_grad()
    def validate_image(self, faces: int = 64, photon_flux: float | None = 200.0) -> float:
        """The image loss (``image_loss`` terms) on the first validation faces with the binary patterns."""
        self.encoder.eval()
        rng = torch.Generator(self.device).manual_seed(12345)
        x = self.val_x[:faces].to(self.device, torch.float32) / 255.0
        w = self.val_w[:faces].to(self.device)
        flux = photon_flux if self.config.noise else None
        predicted = self.encoder.normalised(measure(x, self.patterns.binary().float(), flux, rng))
        self.encoder.train()
        target = (w - self.encoder.latent_mean) / self.encoder.latent_std
        rendered, decoded = self.observed(x), self.decode(predicted)
        return float(losses.training_terms(predicted, target, rendered, decoded, self.image_terms)["image"])

    # -- the loop, checkpoints, export ---------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``steps``, validating and saving every ``checkpoint_every`` (rank 0); the last record."""
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        with tqdm(
            total=self.config.steps,
            initial=self.step,
            desc=self.config.model_id,
            unit="step",
            disable=not self.is_main,
        ) as progress:
            while self.step < self.config.steps:
                loss = self.train_step()
                progress.update(1)
                if self.step % 50 == 0:
                    progress.set_postfix(loss=f"{loss:.4f}")
                at_checkpoint = (
                    self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps
                )
                if at_checkpoint and self.is_main:
                    record = {"step": self.step, "train_loss": loss, "val_latent_mse": self.validate()}
                    if self.config.image_loss_weight:
                        record["val_image_loss"] = self.validate_image()
                    self.history.append(record)
                    self._remember_if_best(record)
                    message = f"step {self.step}: train loss {loss:.4f}, validation latent MSE "
                    message += f"{record['val_latent_mse']:.4f}"
                    if "val_image_loss" in record:
                        message += f", validation image loss {record['val_image_loss']:.4f}"
                    progress.write(message)
                    self._save_state()
        return self.history[-1] if self.history else {}

    def _weights(self, copy: bool = False) -> dict:
        """Patterns and encoder as one flat dict of tensors (what a checkpoint or an export needs);
        ``copy``: detached CPU copies that later steps leave alone."""
        tensors = {f"patterns.{k}": v for k, v in self.patterns.state_dict().items()}
        tensors |= {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        return {k: v.detach().cpu().clone() for k, v in tensors.items()} if copy else tensors

    def _load_weights(self, tensors: dict):
        self.patterns.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("patterns.")})
        self.encoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})

    def _remember_if_best(self, record: dict):
        """Early stopping: with ``keep_best``, hold on to the weights of the lowest validation error."""
        if not self.config.keep_best:
            return
        if self.best is None or record["val_latent_mse"] < self.best["val_latent_mse"]:
            self.best = {
                "step": record["step"],
                "val_latent_mse": record["val_latent_mse"],
                "tensors": self._weights(copy=True),
            }

    def _save_state(self):
        """Rank 0 writes the run's state (replicas are identical, so one copy is the state)."""
        if not self.is_main:
            return
        tensors = self._weights()
        if self.best is not None:
            tensors |= {f"best.{k}": v for k, v in self.best["tensors"].items()}
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
        if self.best is not None:
            metadata["best"] = json.dumps({k: self.best[k] for k in ("step", "val_latent_mse")})
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / "state.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        tmp.replace(self.run_dir / "state.safetensors")

    def _state_bytes(self) -> bytes | None:
        """The saved state file's bytes; with several processes rank 0 reads it and sends it to all,
        so only rank 0's machine needs the run folder."""
        path = self.run_dir / "state.safetensors"
        if self.world_size == 1:
            return path.read_bytes() if path.is_file() else None
        raw = path.read_bytes() if self.is_main and path.is_file() else b""
        size = torch.tensor([len(raw)], dtype=torch.int64, device=self.device)
        dist.broadcast(size, 0)
        if not size.item():
            return None
        buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        if self.is_main:
            buffer.copy_(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
        dist.broadcast(buffer, 0)
        return raw if self.is_main else buffer.cpu().numpy().tobytes()

    def _resume(self):
        raw = self._state_bytes()
        if raw is None:
            return
        header_size = int.from_bytes(raw[:8], "little")  # safetensors: u64 header length, JSON header
        header = json.loads(raw[8 : 8 + header_size])["__metadata__"]
        saved = {**json.loads(json.dumps(asdict(TrainConfig()))), **json.loads(header["config"])}
        saved |= {k: getattr(self.config, k) for k in RUN_ONLY}  # these may change between runs
        if saved != json.loads(json.dumps(asdict(self.config))):
            raise ValueError(
                f"{self.run_dir / 'state.safetensors'} was trained with another configuration; "
                "use a new run folder"
            )
        tensors = load(raw)
        self._load_weights(tensors)
        if "best" in header:
            best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
            self.best = json.loads(header["best"]) | {"tensors": best}
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
        """The shipped model file: binary patterns (bit-packed) + encoder, with provenance."""
        return save_model(self.exported_model(), path, self.config.weight_format)

    def exported_model(self) -> LsiModel:
        """The model to ship, apart from the training state: with ``keep_best`` the checkpoint of
        lowest validation error; the training state is left as is."""
        last = None
        if self.best is not None:  # only kept with keep_best
            last = self._weights(copy=True)
            self._load_weights(self.best["tensors"])
        try:
            return self._model()
        finally:
            if last is not None:
                self._load_weights(last)

    def _model(self) -> LsiModel:
        exported_step = self.best["step"] if self.best is not None else self.step
        pattern_set = learned_patterns(
            self.patterns.binary().cpu().numpy().reshape(-1, self.resolution, self.resolution),
            model_id=self.config.model_id,
        )
        info = {
            "generator_id": self.generator_id,
            "truncation_psi": self.config.truncation_psi,
            "training_seeds": list(self.train_seeds),
            "validation_seeds": list(self.validation_seeds),
            "steps": self.step,
            "exported_step": exported_step,
            "noise_model": f"PhotodiodeModel, photon_flux log-uniform {list(self.config.photon_flux_range)}"
            if self.config.noise
            else "none",
            "history": self.history,
        }
        if self.patterns_source is not None:
            info["patterns_from"] = self.patterns_source
        encoder = copy.deepcopy(self.encoder).cpu().eval()
        return LsiModel(self.config.model_id, pattern_set, encoder, info)


def exported_record(info: dict) -> dict | None:
    """The validation record of the step a model file was exported at (None if it was not validated)."""
    return next((r for r in info.get("history", []) if r["step"] == info.get("exported_step")), None)


def fit_members(config: TrainConfig, run_dir, device: str = "cpu") -> LsiModel | None:
    """Train ``config.members`` encoders one after another (seeds ``seed``, ``seed + 1``, ...; run
    folders ``member-<k>``) on the fixed patterns of ``config.patterns_from``, and average their
    estimates; one member is plain ``Trainer`` training. Returns the model on rank 0, else None."""
    if config.members < 1:
        raise ValueError("members must be at least 1")
    if config.members > 1 and not config.patterns_from:
        raise ValueError("an ensemble needs fixed patterns (patterns_from): each run would learn its own")
    run_dir = Path(run_dir)
    faces = None
    if config.members > 1:  # read once for every member
        count = config.train_faces + config.validation_faces
        faces = data.load(config.generator, 0, count, config.data_dir or None, config.truncation_psi)
    models, measurements = [], None
    for member in range(config.members):
        member_config = replace(config, seed=config.seed + member) if config.members > 1 else config
        member_dir = run_dir / f"member-{member}" if config.members > 1 else run_dir
        trainer = Trainer(member_config, member_dir, device, faces, measurements)
        measurements = trainer.measurements  # same faces, same patterns: measured once for all
        trainer.fit()
        if trainer.is_main:
            models.append(trainer.exported_model())
    if not trainer.is_main:
        return None
    if len(models) == 1:
        return models[0]
    ensemble = EncoderEnsemble([model.encoder for model in models])
    info = {k: v for k, v in models[0].info.items() if k not in ("steps", "exported_step", "history")}
    info["members"] = [
        {
            "seed": config.seed + member,
            "exported_step": model.info["exported_step"],
            "val_latent_mse": (exported_record(model.info) or {}).get("val_latent_mse"),
            "history": model.info["history"],
        }
        for member, model in enumerate(models)
    ]
    info["val_latent_mse"] = trainer.validate(encoder=as_stored(ensemble, config.weight_format))
    return LsiModel(config.model_id, models[0].pattern_set, ensemble.cpu().eval(), info)
