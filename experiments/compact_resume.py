"""What does going on from the compact checkpoint cost a streamed run, and how small is it?

A bounded GPU slot (`lsi train --out`) saves the compact checkpoint (``lsi_ros.training.compact``):
pattern weights in 8 bits, encoder matrices in float16, the encoder's AdamW moments in float8, the
patterns' moments dropped. A model trained over several slots goes on from it at every slot. This
experiment trains the same streamed run four ways on the DCGAN test double (64², rendered on the CPU
in the loop, so the whole run fits a CPU): uninterrupted; interrupted and resumed from the full
checkpoint every ``--every`` steps; the same with the encoder's weight matrices scaled by 1 + 1e-6 at
each resume, far below the compact form's rounding (how far such a run moves from any nudge at all);
and interrupted and resumed from the compact checkpoint as often. It reports each run's validation
latent error along the way and the exported model's latent error on held-out faces (photon flux
200), and how many pattern pixels end up different from the uninterrupted run's.

It also measures the checkpoint files at the shipped models' size (256² patterns, encoder width
1024, depth 2, after one AdamW step): the full form's tensors and the compact form's files, for
M = 32 … 256 in W and M = 128 in W+ with rank-64 offsets, with the best checkpoint being the
current state (the common case while validation still improves) or an older one.

    .venv/bin/python experiments/compact_resume.py   # about 8 min on the 2-core CPU
"""

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lsi_ros.models.checkpoint import load_model
from lsi_ros.training.compact import checkpoint_sizes
from lsi_ros.training.seeds import HELD_OUT_SEED_START
from lsi_ros.training.stream import FaceRenderer, StreamTrainer, held_out_latent_mse
from lsi_ros.training.train import TrainConfig

MIB = 2**20
NUDGE = 1e-6  # how far a run moves from a perturbation far below any stored precision
CONFIG = TrainConfig(
    generator="dcgan",
    stream=True,
    num_measurements=64,
    width=256,
    depth=2,
    steps=600,
    batch_size=64,
    chunk_faces=640,
    validation_faces=512,
    checkpoint_every=50,
)


def train(config: TrainConfig, folder: Path, every: int, compact: bool | None, nudge: float = 0.0):
    """One run to ``config.steps``: straight through (``compact`` None), or a new trainer every
    ``every`` steps going on from the last one's folder, in the full or the compact form, its encoder's
    weight matrices scaled by ``1 + nudge`` after each resume."""
    if compact is None:
        trainer = StreamTrainer(config, folder)
        trainer.fit()
        return trainer
    trainer = None
    while trainer is None or trainer.step < config.steps:
        trainer = StreamTrainer(config, folder, compact=compact)
        if nudge and trainer.step:
            with torch.no_grad():
                for weight in (p for p in trainer.encoder.parameters() if p.dim() == 2):
                    weight.mul_(1.0 + nudge)
        trainer.fit(max_steps=every)
    return trainer


def run_arms(args) -> dict:
    torch.manual_seed(0)
    arms = {  # name: (compact, nudge)
        "uninterrupted": (None, 0.0),
        "resumed from the full checkpoint": (False, 0.0),
        f"resumed from the full checkpoint, encoder matrices scaled by 1 + {NUDGE:g}": (False, NUDGE),
        "resumed from the compact checkpoint": (True, 0.0),
    }
    config = replace(CONFIG, steps=args.steps)
    renderer = FaceRenderer("dcgan", "cpu", config.truncation_psi)
    held_out = np.arange(HELD_OUT_SEED_START, HELD_OUT_SEED_START + args.held_out)
    test_w, test_faces = renderer(held_out)
    rows, models, patterns = [], {}, {}
    with tempfile.TemporaryDirectory() as root:
        for index, (name, (compact, nudge)) in enumerate(arms.items()):
            began = time.perf_counter()
            trainer = train(config, Path(root) / str(index), args.every, compact, nudge)
            path = trainer.export(Path(root) / f"{index}.safetensors")
            models[name] = load_model(path)
            patterns[name] = trainer.patterns.binary()
            rows.append(
                {
                    "run": name,
                    "steps": trainer.step,
                    "faces_seen": trainer.faces_seen,
                    "validation_latent_mse": {
                        record["step"]: round(record["val_latent_mse"], 5) for record in trainer.history
                    },
                    "exported_step": trainer.best["step"],
                    "seconds": round(time.perf_counter() - began, 1),
                }
            )
            print(f"{name}: validation {rows[-1]['validation_latent_mse']}")
    scale = test_w.std(0)
    errors = held_out_latent_mse(models, test_w, test_faces, scale)
    straight = patterns["uninterrupted"]
    for row in rows:
        row["held_out_latent_mse"] = round(errors[row["run"]], 5)
        row["pattern_pixels"] = straight.numel()
        row["pattern_pixels_differing_from_uninterrupted"] = int((patterns[row["run"]] != straight).sum())
    return {"config": {k: v for k, v in vars(config).items() if k != "data_dir"}, "rows": rows}


def size_rows() -> list[dict]:
    """Full and compact checkpoints at the shipped models' size (``compact.checkpoint_sizes``), MiB."""
    rows = []
    for num_measurements, num_ws, rank in [(32, 1, 0), (64, 1, 0), (128, 1, 0), (256, 1, 0), (128, 23, 64)]:
        sizes = checkpoint_sizes(num_measurements, num_ws, rank)
        row = {
            "M": num_measurements,
            "latent_space": "w" if num_ws == 1 else f"w+ (offset rank {rank})",
            "full_mib": round(sizes["full"] / MIB, 1),
        }
        for key in ("best_is_current", "older_best"):
            files = sizes[key]
            largest = round(max(files) / MIB, 2)
            row[key] = {"files": len(files), "mib": round(sum(files) / MIB, 1), "largest_mib": largest}
        rows.append(row)
        print(row)
    return rows


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--steps", type=int, default=CONFIG.steps)
    parser.add_argument("--every", type=int, default=100, help="steps between resumes")
    parser.add_argument("--held-out", type=int, default=1024, help="held-out faces the exports are scored on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("docs/results/compact_resume.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "command": "python experiments/compact_resume.py",
        "generator": "dcgan (the test double, 64²)",
        "resume_every_steps": args.every,
        "photon_flux": 200.0,
        "held_out_seeds": [HELD_OUT_SEED_START, HELD_OUT_SEED_START + args.held_out - 1],
        **run_arms(args),
        "checkpoint_sizes_at_256": size_rows(),
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
