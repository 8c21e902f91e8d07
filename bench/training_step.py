"""Training cost on this machine: time per step in 1 process vs 2 data-parallel processes (gloo),
the cost of the image loss through MobileStyleGAN's torch path, and the wall time the shipped
models' training and data took. Rows for docs/results/bench.json:

    lsi bench --only training            # ~5 min on the 2-core CPU, ~4 GB

Each configuration runs warm-up steps, then times ``--steps`` steps one by one on rank 0 (median:
the machine is shared, and other jobs' bursts land on a few steps; the mean is kept too). Faces:
the first 1024 of the `lsi data` cache (the step does not depend on how many). The latent-loss
step at batch 2 shows the part of a step that does not shrink with the batch (the 128 × 65,536
pattern weights, AdamW), which every data-parallel rank repeats.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np


def bench_config(image_loss: bool, batch_size: int, steps: int, num_measurements: int = 128):
    from lsi_ros.training.train import TrainConfig

    return TrainConfig(
        num_measurements=num_measurements,
        generator="mobilestylegan",
        train_faces=1024,
        validation_faces=256,
        steps=10_000,  # only the schedule's shape: the run stops after `steps`
        batch_size=batch_size,
        image_loss_weight=1.0 if image_loss else 0.0,
        image_loss="l1+ms-ssim",
        checkpoint_every=10_000,
    )


def worker(args) -> None:
    """One rank: time ``args.steps`` steps after ``args.warmup``; rank 0 prints a JSON line."""
    import torch
    import torch.distributed as dist

    from lsi_ros.training.distributed import join_process_group
    from lsi_ros.training.train import TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    join_process_group("cpu")
    values = json.loads(Path(args.config).read_text())
    config = TrainConfig(**values | {"photon_flux_range": tuple(values["photon_flux_range"])})
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir)
        if config.image_loss_weight:
            trainer.image_net()
        for _ in range(args.warmup):
            trainer.train_step()
        if dist.is_initialized():
            dist.barrier()
        times = []
        for _ in range(args.steps):  # the gradient all-reduce keeps the ranks in step
            start = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - start)
    if trainer.is_main:
        ms = 1000 * np.array(times)
        print(
            json.dumps({"ms_per_step": round(float(np.median(ms)), 1), "mean_ms": round(float(ms.mean()), 1)})
        )
    if dist.is_initialized():
        dist.destroy_process_group()


def measure(
    processes: int,
    threads: int,
    image_loss: bool,
    batch_size: int,
    steps: int,
    warmup: int,
    num_measurements: int = 128,
) -> dict:
    from lsi_ros.training.distributed import run_local_ranks

    config = bench_config(image_loss, batch_size, steps, num_measurements)
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "config.json"
        config_path.write_text(json.dumps(asdict(config)))
        args = ["-m", "bench.training_step", "--worker", "--config", str(config_path)]
        args += ["--threads", str(threads), "--steps", str(steps), "--warmup", str(warmup)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        load_before = os.getloadavg()[0]
        repo = Path(__file__).resolve().parents[1]
        if processes > 1:
            ranks = run_local_ranks(processes, args, env=env, cwd=repo, capture_output=True)
        else:
            ranks = [
                subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=repo)
            ]
        for rank in ranks:
            if rank.returncode:
                raise subprocess.CalledProcessError(rank.returncode, rank.args, rank.stdout, rank.stderr)
        done = ranks[0]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    row = {
        "what": "train-step",
        "processes": processes,
        "threads_per_process": threads,
        "image_loss": "l1+ms-ssim" if image_loss else None,
        "M": num_measurements,
        "batch_size": batch_size,
        "steps_timed": steps,
        **result,
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # before, after
        "device": "cpu",
    }
    print(json.dumps(row), flush=True)
    return row


def data_generation_row(faces: int = 32) -> dict:
    """Faces per second of `lsi data` (mapping + 256² synthesis, batches of 8) on this CPU."""
    from lsi_ros.models.generators import get_generator

    generator = get_generator("mobilestylegan")
    w = generator.sample_latents(list(range(3_000_000, 3_000_000 + faces)), truncation_psi=0.7)
    generator.synthesize(w[:8])
    start = time.perf_counter()
    generator.synthesize(w)
    rate = faces / (time.perf_counter() - start)
    return {
        "what": "data-generation",
        "generator": "mobilestylegan",
        "faces_per_s": round(rate, 2),
        "device": "cpu",
    }


SHIPPED = ("m32", "m64", "m128", "m256")


def shipped_training_row(name: str, meta: dict, step_ms: float, faces_per_s: float) -> dict:
    """The wall time of a shipped model's training (its metadata's steps at the measured step time,
    its M, batch 64, 1 process, 1 thread) and of generating its faces, on this machine."""
    faces = meta["validation_seeds"][1] + 1
    return {
        "what": "training",
        "model": name,
        "M": meta["M"],
        "steps": meta["steps"],
        "ms_per_step": step_ms,
        "projected_train_min": round(meta["steps"] * step_ms / 60_000, 1),
        "data_faces": faces,
        "projected_data_min": round(faces / faces_per_s / 60, 1),
        "final_val_latent_mse": round(meta["history"][-1]["val_latent_mse"], 3),
        "hardware": "this CPU, 1 process, 1 thread",
    }


def rows(steps: int = 30, warmup: int = 3, image_steps: int = 2, image_batch: int = 2) -> list:
    """Step times (median on rank 0; the machine may be shared, so each row keeps the load average
    before and after it): one process and thread at each shipped M, then at M = 128 two threads, two
    processes, batch 2 and the image loss; then the shipped models' projected training and data time."""
    from lsi_ros.models.registry import find_model

    metas = {name: json.loads(find_model(name).with_suffix(".json").read_text()) for name in SHIPPED}
    per_model = {
        name: measure(1, 1, False, 64, steps, warmup, num_measurements=meta["M"])
        for name, meta in metas.items()
    }
    step_rows = [
        *per_model.values(),
        measure(1, 2, False, 64, steps, warmup),
        measure(2, 1, False, 64, steps, warmup),
        measure(1, 1, False, image_batch, steps, warmup),
        measure(1, 1, True, image_batch, image_steps, 1),
    ]
    data = data_generation_row()
    training = [
        shipped_training_row(name, metas[name], row["ms_per_step"], data["faces_per_s"])
        for name, row in per_model.items()
    ]
    return [*step_rows, data, *training]


def main() -> int:
    """Entry of each rank started by :func:`measure`."""
    parser = argparse.ArgumentParser(description="one rank of a timed training run (see lsi bench)")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--config", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    worker(parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
