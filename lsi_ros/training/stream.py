"""Training on streamed faces (``lsi train --stream``): rendered inside the loop, each seen once.

A seed cursor only moves forward: training faces are the seeds from ``STREAM_SEED_START`` on, rendered
``chunk_faces`` at a time by the generator on the training device, and each step learns from the next
``batch_size`` of them (through the patterns and the photodiode model, as ``Trainer`` does), so no
face is shown twice and a resumed run goes on where the cursor stands. Validation faces are a fixed
block from ``STREAM_VALIDATION_SEED_START``, apart from the training seeds, the ``lsi data`` cache
(seeds from 0) and the held-out evaluation seeds (``HELD_OUT_SEED_START``). Only the current and
the next chunk are in memory. On CUDA the next chunk renders on a side stream in a worker thread
while the current one trains; on a CPU rendering and training take turns.

``budget_s`` bounds a run: before a chunk or a step would leave too little time to validate and
write the checkpoint (the longest one so far, half as much again as margin), the run stops,
validates and saves; running again goes on. The run folder holds ``model.safetensors`` (patterns,
encoder; the best checkpoint with its patterns bit-packed, all an export needs),
``optimizer.safetensors`` and ``state.json`` (step, faces seen, seed cursor, RNG state, history,
configuration): no pickles. A bounded slot (``run_slot``) saves the compact form instead
(``lsi_ros.training.compact``: ``checkpoint-<k>.safetensors`` files of at most 15 MiB), which a later
slot on another machine goes on from.
"""

import base64
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from lsi_ros.models.checkpoint import LsiModel
from lsi_ros.training.compact import (
    best_tensors,
    compact_tensors,
    expand_compact,
    load_shards,
    optimizer_tensors,
    save_shards,
    unpack_bits,
)
from lsi_ros.training.seeds import STREAM_SEED_START, STREAM_VALIDATION_SEED_START
from lsi_ros.training.train import (
    RUN_ONLY,
    LatentSpaceImager,
    TrainConfig,
    Trainer,
    channel_sums,
    detect,
)

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
CHECKPOINT_STEM = "checkpoint"  # the compact form's files: checkpoint-<k>.safetensors


class FaceRenderer:
    """Seeds -> true latents w (N, D) float32 and faces (N, R, R, 3) uint8 on ``device``, rounded as
    ``lsi data`` stores them. ``export``: a ``lsi data --export-torch`` folder, rendered by torch alone
    (a GPU machine without OpenVINO); otherwise the named generator of ``lsi_ros.models.generators``."""

    def __init__(self, generator: str, device, truncation_psi: float, export: str | None = None):
        self.device = torch.device(device)
        self.truncation_psi = truncation_psi
        if self.device.type == "cuda":  # faces as the CPU renders them, to float rounding (no TF32)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        if export:
            from lsi_ros.models.torch_generator import ExportedMobileStyleGAN

            if generator != "mobilestylegan":
                raise ValueError(f"a torch export renders mobilestylegan faces, not {generator}")
            self._net = ExportedMobileStyleGAN(export, self.device)
        else:
            from lsi_ros.models.generators import get_generator

            options = {"device": str(self.device)} if generator == "mobilestylegan" else {}
            self._generator = get_generator(generator, **options)
        source = getattr(self, "_net", None) or self._generator
        self.generator_id = source.generator_id
        self.resolution = source.resolution

    def __call__(self, seeds: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self, "_net"):
            w = self._net.sample_latents(seeds.tolist(), self.truncation_psi)
            return w.clone(), self._net.render(w).clone()  # plain tensors, not inference-mode ones
        w = self._generator.sample_latents(seeds.tolist(), truncation_psi=self.truncation_psi)
        faces = np.rint(self._generator.synthesize(w) * 255).astype(np.uint8)
        return torch.from_numpy(w).to(self.device), torch.from_numpy(faces).to(self.device)


class ChunkStream:
    """Chunks of rendered faces in seed order. On CUDA ``prefetch`` renders the next chunk on a side
    stream in a worker thread while the caller trains on the current one."""

    def __init__(self, renderer: FaceRenderer, device: torch.device):
        self.renderer = renderer
        self.device = device
        self.overlap = device.type == "cuda"
        self._pool = ThreadPoolExecutor(1) if self.overlap else None
        self._pending: tuple[int, int, Future] | None = None

    def _render(self, first: int, count: int):
        seeds = np.arange(first, first + count, dtype=np.int64)
        if not self.overlap:
            return self.renderer(seeds), None
        stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream):
            return self.renderer(seeds), stream

    def take(self, first: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, faces) of seeds [first, first + count): the prefetched chunk if it is that one."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[:2] == (first, count):
            (w, faces), stream = pending[2].result()
        else:
            (w, faces), stream = self._render(first, count)
        if stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(stream)
            w.record_stream(current)
            faces.record_stream(current)
        return w, faces

    def prefetch(self, first: int, count: int):
        if self.overlap and count > 0:
            self._pending = (first, count, self._pool.submit(self._render, first, count))

    def close(self):
        """Drop a prefetched chunk; one still rendering finishes on its own (the run does not wait)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class StreamTrainer(Trainer):
    """``Trainer`` on streamed faces: its step, validation, best checkpoint and export, fed from a
    forward-only seed cursor instead of a fixed face set; one process."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir,
        device: str = "cpu",
        resume_from=None,
        generator_export: str | None = None,
        compact: bool = False,
    ):
        """``resume_from``: a run folder to go on from (say, carried to a GPU machine); by default the
        run folder itself, when it holds a checkpoint (either form). ``compact``: save the compact
        checkpoint (``lsi_ros.training.compact``) instead of the full one."""
        if config.members > 1:
            raise ValueError("streamed training trains one encoder (members 1)")
        if config.chunk_faces < config.batch_size or config.chunk_faces % config.batch_size:
            raise ValueError(
                f"chunk_faces {config.chunk_faces} must be a multiple of batch_size {config.batch_size}"
            )
        self.config = config
        self.run_dir = Path(run_dir)
        self.compact = compact
        self.device = torch.device(device)
        self.rank, self.world_size = 0, 1
        self.renderer = FaceRenderer(config.generator, self.device, config.truncation_psi, generator_export)
        self.generator_id = self.renderer.generator_id
        self.resolution = self.renderer.resolution
        first = STREAM_VALIDATION_SEED_START
        self.validation_seeds = (first, first + config.validation_faces - 1)
        began = time.perf_counter()
        val_w, val_faces = self.renderer(np.arange(first, first + config.validation_faces))
        self.val_w, self.val_x = val_w, channel_sums(val_faces)
        del val_faces
        # this run's rendering and stepping, timed: the budget's estimates and the run's rates
        self.timing = {"faces_rendered": 0, "render_s": 0.0, "steps": 0, "step_s": 0.0}
        self.render_rate = config.validation_faces / (time.perf_counter() - began)  # faces/s
        self._build(self.val_w)  # the latent spread of the validation block normalises the encoder
        self.measurements = None
        self.step = 0
        self.faces_seen = 0
        self.history = []
        self.best = None
        self.seconds = 0.0  # training time of the runs before this one (rendering included)
        self._began: float | None = None
        source = Path(resume_from) if resume_from else self.run_dir
        if (source / STATE_FILE).is_file():
            self._load_checkpoint(source)
        elif resume_from:
            raise FileNotFoundError(f"no {STATE_FILE} in {source} to resume from")
        self.imager = self.model = LatentSpaceImager(self.patterns, self.encoder)

    @property
    def seed_cursor(self) -> int:
        """The first training seed not yet shown."""
        return STREAM_SEED_START + self.faces_seen

    @property
    def train_seeds(self) -> tuple[int, int]:
        return STREAM_SEED_START, self.seed_cursor - 1

    def learn_faces(self, w: torch.Tensor, faces: torch.Tensor) -> float:
        """One step on rendered faces (B, R, R, 3) uint8 and their latents; moves the cursor past them."""
        x = faces.sum(-1, dtype=torch.float32).flatten(1) / 255.0
        rendered = faces.permute(0, 3, 1, 2).float() / 255.0 if self.config.image_loss_weight else None
        loss = self.learn(x, w, rendered)
        self.faces_seen += len(faces)
        return loss

    def fit(self, max_steps: int | None = None) -> dict:
        """Train to ``steps`` (at most ``max_steps`` more in this call) or until ``budget_s`` would run
        out, validating and saving every ``checkpoint_every`` steps and at the end; the last record."""
        config = self.config
        until = config.steps if max_steps is None else min(config.steps, self.step + max_steps)
        began = self._began = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.compact:  # state.json holds the configuration too; a slot's folder saves the file
            (self.run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
        self._finish_s = 0.0  # the longest validation + checkpoint so far: what the end of a run needs
        self._checkpoint(None)
        chunks = ChunkStream(self.renderer, self.device)
        step_s, loss, stopped = 0.0, None, False
        try:
            with tqdm(total=config.steps, initial=self.step, desc=config.model_id, unit="step") as progress:
                while self.step < until and not stopped:
                    left = (until - self.step) * config.batch_size
                    count = min(config.chunk_faces, left)
                    if self._out_of_time(began, count / self.render_rate):
                        break
                    render_began = time.perf_counter()
                    w, faces = chunks.take(self.seed_cursor, count)
                    chunks.prefetch(self.seed_cursor + count, min(config.chunk_faces, left - count))
                    render_s = time.perf_counter() - render_began
                    self.render_rate = count / max(render_s, 1e-6)
                    self.timing["faces_rendered"] += count
                    self.timing["render_s"] += render_s
                    for start in range(0, count, config.batch_size):
                        if self._out_of_time(began, step_s):
                            stopped = True
                            break
                        step_began = time.perf_counter()
                        end = start + config.batch_size
                        loss = self.learn_faces(w[start:end], faces[start:end])
                        took = time.perf_counter() - step_began
                        step_s = max(step_s, took)
                        self.timing["steps"] += 1
                        self.timing["step_s"] += took
                        progress.update(1)
                        progress.set_postfix(loss=f"{loss:.4f}", faces=self.faces_seen, refresh=False)
                        if self.step % config.checkpoint_every == 0 and self.step < config.steps:
                            self._checkpoint(loss, progress)
                    del w, faces
                if loss is not None and self.history and self.history[-1]["step"] == self.step:
                    self._save_state()  # the last step was validated already: the timing only
                elif loss is not None:
                    self._checkpoint(loss, progress)
        finally:
            chunks.close()
        return self.history[-1] if self.history else {}

    def _out_of_time(self, began: float, needed_s: float) -> bool:
        """Would work of ``needed_s`` seconds, then the closing validation and checkpoint (each with
        half as much again as margin), end past the budget?"""
        budget = self.config.budget_s
        return bool(budget) and time.perf_counter() - began + 1.5 * (needed_s + self._finish_s) > budget

    def _checkpoint(self, loss: float | None, progress=None):
        """Validate (a record when a step was trained), remember the best and save the state; timed."""
        began = time.perf_counter()
        if loss is not None:
            record = {
                "step": self.step,
                "faces_seen": self.faces_seen,
                "train_loss": loss,
                "val_latent_mse": self.validate(),
            }
            if self.config.image_loss_weight:
                record["val_image_loss"] = self.validate_image()
            self.history.append(record)
            self._remember_if_best(record)
            if progress is not None:
                progress.write(
                    f"step {self.step} ({self.faces_seen} faces): train loss {loss:.4f}, "
                    f"validation latent MSE {record['val_latent_mse']:.4f}"
                )
        else:
            self.validate()  # timed with the save: what the end of a run costs
        self._save_state()
        self._finish_s = max(self._finish_s, time.perf_counter() - began)

    # -- the run folder --------------------------------------------------------------------------
    def _save_state(self):
        """The checkpoint (full, or compact: ``lsi_ros.training.compact``) and state.json, each file
        written whole then moved into place; the other form's files are removed."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.compact:
            paths = save_shards(self._compact_tensors(), self.run_dir, CHECKPOINT_STEM)
            stale = [self.run_dir / MODEL_FILE, self.run_dir / OPTIMIZER_FILE]
        else:
            paths = []
            for name, content in zip((MODEL_FILE, OPTIMIZER_FILE), self._full_tensors(), strict=True):
                tmp = self.run_dir / f"{name}.tmp"
                save_file({k: v.detach().contiguous().cpu() for k, v in content.items()}, str(tmp))
                tmp.replace(self.run_dir / name)
            stale = list(self.run_dir.glob(f"{CHECKPOINT_STEM}-*.safetensors"))
        state = {
            "step": self.step,
            "faces_seen": self.faces_seen,
            "seed_cursor": self.seed_cursor,
            "training_seeds": list(self.train_seeds) if self.faces_seen else [],
            "validation_seeds": list(self.validation_seeds),
            "generator_id": self.generator_id,
            "seconds": round(self.seconds_total, 3),
            "last_run": self.rates(),
            "rng": base64.b64encode(self.rng.get_state().numpy().tobytes()).decode(),
            "history": self.history,
            "best": {k: self.best[k] for k in ("step", "val_latent_mse")} if self.best else None,
            "config": asdict(self.config),
            "checkpoint": {"form": "compact" if self.compact else "full", "files": len(paths)},
        }
        tmp = self.run_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.run_dir / STATE_FILE)
        for path in stale:
            path.unlink(missing_ok=True)

    def _full_tensors(self) -> tuple[dict, dict]:
        """model.safetensors (weights, best checkpoint) and optimizer.safetensors, all as trained."""
        tensors = self._weights()
        if self.best is not None:
            tensors |= best_tensors(self.best["tensors"])
        return tensors, optimizer_tensors(self.optimizer)

    def _compact_tensors(self) -> dict:
        best = self.best["tensors"] if self.best is not None else None
        current = self.best is not None and self.best["step"] == self.step
        return compact_tensors(self._weights(), self.optimizer, self.patterns.weight, best, current)

    @property
    def seconds_total(self) -> float:
        """Training time of every run so far, this one included."""
        return self.seconds + (time.perf_counter() - self._began if self._began is not None else 0.0)

    def rates(self) -> dict:
        """This run's rendering and training speed: faces/s of the generator, steps/s of the step alone."""
        timing = self.timing
        return timing | {
            "faces_per_s": round(timing["faces_rendered"] / timing["render_s"], 2)
            if timing["render_s"]
            else None,
            "steps_per_s": round(timing["steps"] / timing["step_s"], 2) if timing["step_s"] else None,
        }

    def _load_checkpoint(self, folder: Path):
        state = json.loads((folder / STATE_FILE).read_text())
        saved = {**json.loads(json.dumps(asdict(TrainConfig()))), **state["config"]}
        saved |= {k: getattr(self.config, k) for k in RUN_ONLY}
        if saved != json.loads(json.dumps(asdict(self.config))):
            raise ValueError(f"{folder} was trained with another configuration; use a new run folder")
        if state["generator_id"] != self.generator_id:
            raise ValueError(
                f"{folder} learnt from {state['generator_id']}, this run renders {self.generator_id}"
            )
        form = state.get("checkpoint", {"form": "full"})
        if form["form"] == "compact":
            compact = load_shards(folder, CHECKPOINT_STEM, form["files"])
            tensors = expand_compact(compact, self.optimizer.defaults["betas"])
        else:
            tensors = load_file(str(folder / MODEL_FILE)) | load_file(str(folder / OPTIMIZER_FILE))
        self._load_weights({k: v for k, v in tensors.items() if k.startswith(("patterns.", "encoder."))})
        if state["best"] is not None:
            best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.") and not k.endswith(".bits")}
            pixels = self.patterns.weight.shape[1]
            best["patterns.weight"] = unpack_bits(tensors["best.patterns.bits"], pixels)  # the 0/1 it showed
            self.best = state["best"] | {"tensors": best}
        optimizer = self.optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                optimizer["state"].setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict(optimizer)
        rng = np.frombuffer(base64.b64decode(state["rng"]), dtype=np.uint8).copy()
        self.rng.set_state(torch.from_numpy(rng))
        self.step, self.faces_seen = state["step"], state["faces_seen"]
        self.history, self.seconds = state["history"], state["seconds"]

    def _model(self) -> LsiModel:
        model = super()._model()
        model.info |= {
            "training_faces": "streamed, each seen once",
            "faces_seen": self.faces_seen,
            "training_seconds": round(self.seconds_total, 1),
        }
        return model


@torch.no_grad()
def held_out_latent_mse(
    models: dict[str, LsiModel], w: torch.Tensor, faces: torch.Tensor, scale: torch.Tensor, photon_flux=200.0
) -> dict[str, float]:
    """Latent MSE of each model on faces (N, R, R, 3) uint8 and their latents w (N, D), all on one
    device, through the model's binary patterns and the photodiode at ``photon_flux`` (the same noise
    for every model), in units of ``scale`` (D,): one yardstick for models of other encoders."""
    x = faces.sum(-1, dtype=torch.float32).flatten(1) / 255.0
    errors = {}
    for name, model in models.items():
        patterns = torch.from_numpy(model.pattern_set.matrix()).to(x.device)
        encoder = model.encoder.to(x.device).eval()
        rng = torch.Generator(x.device).manual_seed(12345)
        predicted = torch.cat(
            [
                encoder(detect(x[start : start + 256] @ patterns.T, photon_flux, rng))
                for start in range(0, len(x), 256)
            ]
        )
        errors[name] = float((((predicted - w) / scale) ** 2).mean())
    return errors


EVAL_RESERVE_S = 10.0  # what a bounded run keeps back for exporting and evaluating after training


def run_slot(
    config: TrainConfig,
    out,
    device: str,
    resume_from=None,
    generator_export: str | None = None,
    eval_faces: int = 512,
    compare=None,
    command: str = "",
) -> dict:
    """One bounded run (a GPU slot): held-out faces rendered first, then streamed training for what
    is left of ``config.budget_s`` (the whole call's; 0: no bound), the export, and the latent error
    on the held-out faces of the new model and of ``compare`` (a model file of the same generator).
    Writes OUT/run (the compact checkpoint to go on from), OUT/m<M>.safetensors (+ .json) and
    OUT/results.json: files that a slot can bring back and carry on to the next one."""
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.training.seeds import HELD_OUT_SEED_START

    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = config.budget_s
    trainer = StreamTrainer(config, out / "run", device, resume_from, generator_export, compact=True)
    results = {"command": command, "generator_id": trainer.generator_id, "budget_s": budget}
    if trainer.device.type == "cuda":
        results["device_name"] = torch.cuda.get_device_name(trainer.device)
    held_out = np.arange(HELD_OUT_SEED_START, HELD_OUT_SEED_START + eval_faces)
    test_w, test_faces = trainer.renderer(held_out)
    if budget:
        left = budget - (time.perf_counter() - began) - EVAL_RESERVE_S
        if left <= 0:
            raise ValueError(f"a budget of {budget} s leaves no time to train after setting up")
        trainer.config = replace(config, budget_s=left)
    trainer.fit()
    path = trainer.export(out / f"m{config.num_measurements}.safetensors")
    models = {"new": load_model(path)}
    if compare and Path(compare).is_file():
        shipped = load_model(compare)
        if shipped.info.get("generator_id") == trainer.generator_id:
            models[str(compare)] = shipped
    scale = models["new"].encoder.latent_std.to(test_w.device)
    info = models["new"].info
    results |= {
        "config": asdict(trainer.config) | {"budget_s": config.budget_s},
        "steps": trainer.step,
        "faces_seen": trainer.faces_seen,
        "training_seeds": info["training_seeds"],
        "validation_seeds": info["validation_seeds"],
        "exported_step": info["exported_step"],
        "this_run": trainer.rates(),
        "training_seconds": info["training_seconds"],
        "history": trainer.history,
        "held_out": {
            "seeds": [int(held_out[0]), int(held_out[-1])],
            "photon_flux": 200.0,
            "latent_mse": held_out_latent_mse(models, test_w, test_faces, scale),
        },
        "seconds": round(time.perf_counter() - began, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
