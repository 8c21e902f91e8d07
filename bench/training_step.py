"""Time per training step on this machine: 1 process vs 2 data-parallel processes (gloo), and the
cost of the image loss through MobileStyleGAN's torch path. Writes docs/results/training_bench.json.

    nice .venv/bin/python -m bench.training_step            # ~5 min on the shared 2-core CPU, ~4 GB

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

COMMAND = "nice .venv/bin/python -m bench.training_step"
OUT = Path("docs/results/training_bench.json")
NOTE = (
    "2 cores shared with other people's jobs (load_average_1min of each row, before and after it): "
    "timings are this busy machine's, not an idle one's. M=128 at 256², MobileStyleGAN faces, "
    "encoder width 1024 depth 2; ms_per_step is the median step time on rank 0."
)


def bench_config(image_loss: bool, batch_size: int, steps: int):
    from lsi_ros.training.train import TrainConfig

    return TrainConfig(
        num_measurements=128,
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

    from lsi_ros.training.train import TrainConfig, Trainer, join_process_group

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


def measure(processes: int, threads: int, image_loss: bool, batch_size: int, steps: int, warmup: int) -> dict:
    from lsi_ros.commands.train import free_loopback_port

    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "config.json"
        config_path.write_text(json.dumps(asdict(bench_config(image_loss, batch_size, steps))))
        args = ["-m", "bench.training_step", "--worker", "--config", str(config_path)]
        args += ["--threads", str(threads), "--steps", str(steps), "--warmup", str(warmup)]
        if processes > 1:
            launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
            launcher += ["--master-addr", "127.0.0.1", "--master-port", str(free_loopback_port())]
            args = launcher + args
        env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": str(threads)}
        load_before = os.getloadavg()[0]
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    row = {
        "what": "train-step",
        "processes": processes,
        "threads_per_process": threads,
        "image_loss": "l1+ms-ssim" if image_loss else None,
        "M": 128,
        "batch_size": batch_size,
        "steps_timed": steps,
        **result,
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # before, after
        "device": "cpu",
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=30, help="timed latent-loss steps per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-steps", type=int, default=2, help="timed steps with the image loss on")
    parser.add_argument(
        "--image-batch", type=int, default=2, help="batch of the image-loss rows (~1.5 GB a face)"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    from bench.core import machine

    rows = [
        measure(1, 1, False, 64, args.steps, args.warmup),
        measure(1, 2, False, 64, args.steps, args.warmup),
        measure(2, 1, False, 64, args.steps, args.warmup),
        measure(1, 1, False, args.image_batch, args.steps, args.warmup),
        measure(1, 1, True, args.image_batch, args.image_steps, 1),
    ]
    results = {"rows": rows, "machine": machine(), "command": COMMAND, "note": NOTE}
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
