"""``lsi train``: learn binary patterns + encoder for M measurements, export a model file."""

import json
from dataclasses import fields
from pathlib import Path

from lsi_ros.training.train import TrainConfig


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="jointly learn DMD patterns and the measurement encoder (resumable), export models/<name>",
        description="Trains on faces from `lsi data`. The run folder keeps config.json and "
        "state.safetensors; running the same command again resumes. Uses CUDA when present.",
    )
    parser.add_argument("--config", help="JSON file of TrainConfig fields (command-line flags override it)")
    parser.add_argument("-M", "--measurements", type=int, dest="num_measurements", help="patterns per frame")
    parser.add_argument("--generator", choices=("mobilestylegan", "dcgan"))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--train-faces", type=int, dest="train_faces")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--no-noise", action="store_const", const=False, dest="noise", help="noiseless training"
    )
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--run-dir", default=None, help="run folder (default runs/train/<model id>)")
    parser.add_argument(
        "--export", default=None, help="model file to write (default models/m<M>.safetensors)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.set_defaults(func=main)


def build_config(args) -> TrainConfig:
    values = json.loads(Path(args.config).read_text()) if args.config else {}
    for f in fields(TrainConfig):
        if getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    if "photon_flux_range" in values:
        values["photon_flux_range"] = tuple(values["photon_flux_range"])
    return TrainConfig(**values)


def main(args) -> int:
    import torch

    from lsi_ros.training.train import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    config = build_config(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run_dir = Path(args.run_dir or f"runs/train/{config.model_id}")
    trainer = Trainer(config, run_dir, device=device)
    result = trainer.fit()
    path = trainer.export(args.export or f"models/m{config.num_measurements}.safetensors")
    print(f"exported {path} ({path.stat().st_size / 2**20:.1f} MiB); last validation: {result}")
    return 0
