"""``lsi train``: learn binary patterns + encoder for M measurements, export a model file."""

import json
import os
import sys
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when training, so that `lsi train --help` is instant
    from lsi_ros.training.train import TrainConfig


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="jointly learn DMD patterns and the measurement encoder (resumable), export models/<name>",
        description="Trains on faces from `lsi data`. The run folder keeps config.json and "
        "state.safetensors; running the same command again resumes. Uses CUDA when present. "
        "--nproc N trains data-parallel in N processes on this machine (gloo on CPU, nccl on CUDA; "
        "rendezvous on 127.0.0.1); for several machines start `torchrun --nnodes ... -m "
        "lsi_ros.cli train ...` on each yourself. --stream renders fresh faces inside the loop instead "
        "(each seen once; --budget-s, --resume, --out: a bounded GPU run that evaluates itself).",
    )
    parser.add_argument(
        "--config",
        help='JSON file of TrainConfig fields (command-line flags override it); a "recipe" field names '
        "a JSON file, beside it, of the fields it shares with other configurations",
    )
    parser.add_argument("-M", "--measurements", type=int, dest="num_measurements", help="patterns per frame")
    parser.add_argument("--generator", choices=("mobilestylegan", "dcgan"))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size", help="whole batch, over all processes")
    parser.add_argument("--train-faces", type=int, dest="train_faces")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--no-noise", action="store_const", const=False, dest="noise", help="noiseless training"
    )
    parser.add_argument(
        "--last",
        action="store_const",
        const=False,
        dest="keep_best",
        help="export the last checkpoint (default: the one with the lowest validation latent error, "
        "i.e. early stopping)",
    )
    parser.add_argument(
        "--image-loss-weight",
        type=float,
        dest="image_loss_weight",
        help="weight of the image loss through the frozen generator (default 0: off; slow on a CPU)",
    )
    parser.add_argument(
        "--image-loss",
        dest="image_loss",
        help="image loss terms, one of l1, l2, ms-ssim or a sum like l1+ms-ssim (default l2)",
    )
    parser.add_argument(
        "--latent-space",
        dest="latent_space",
        choices=("w", "w+"),
        help="encode into W (default) or W+ (one latent per generator layer)",
    )
    parser.add_argument(
        "--offset-rank",
        dest="offset_rank",
        type=int,
        help="W+: pass the per-layer offsets through this many features (two small matrices instead of "
        "one of width x 23 x 512; default 0, the full head)",
    )
    parser.add_argument(
        "--losses",
        help="the paper's weighted terms instead of the latent MSE: 'paper' (latent L1 1, image L2 1, "
        "identity 0.5, perceptual 0.1 through face-api) or e.g. 'latent=1,l2=1,identity=0.5'",
    )
    parser.add_argument(
        "--patterns-from",
        dest="patterns_from",
        help="model file, or pattern set file from `lsi patterns`, whose DMD patterns stay as they are; "
        "only the encoder is trained",
    )
    parser.add_argument(
        "--members",
        type=int,
        help="encoders trained one after another on the --patterns-from patterns (seeds --seed, "
        "--seed + 1, ...), exported as one model that averages their estimates (default 1)",
    )
    parser.add_argument(
        "--framing-jitter",
        dest="framing_jitter",
        type=float,
        nargs="+",
        metavar="V",
        help="measure training faces through a grid off by a random framing error, as a located face is: "
        "SHIFT_PX SCALE ROLL_DEG [FRACTION] (e.g. 3 0.05 3 0.5: within 3 sampling pixels, 5 %%, 3 degrees, "
        "half of the faces; default none)",
    )
    parser.add_argument("--width", type=int, help="encoder width (default 1024)")
    parser.add_argument("--name", help="the model's name in its model_id (default m<M>)")
    stream = parser.add_argument_group("streamed faces (--stream)")
    stream.add_argument(
        "--stream",
        action="store_const",
        const=True,
        help="render fresh faces inside the loop with the generator on the training device, each seen "
        "once (seeds from 10,000,000, a cursor that only moves forward); no `lsi data` cache",
    )
    stream.add_argument(
        "--budget-s",
        type=float,
        dest="budget_s",
        help="stop, validate and checkpoint before this many seconds (with --out: the whole command's)",
    )
    stream.add_argument("--chunk-faces", type=int, dest="chunk_faces", help="faces rendered at a time")
    stream.add_argument("--validation-faces", type=int, dest="validation_faces")
    stream.add_argument("--checkpoint-every", type=int, dest="checkpoint_every", help="steps")
    stream.add_argument(
        "--resume",
        default=None,
        help="run folder to go on from, full or compact (say, one carried to a GPU machine)",
    )
    stream.add_argument(
        "--generator-export",
        default=None,
        help="`lsi data --export-torch` folder: render with torch alone (a GPU machine without OpenVINO)",
    )
    stream.add_argument(
        "--out",
        default=None,
        help="write the run folder as a compact checkpoint (OUT/run: files of at most 15 MiB to carry to "
        "the next run), the model (OUT/m<M>.safetensors) and OUT/results.json with the latent error on "
        "--eval-faces held-out faces (beside models/m<M>.safetensors of the same generator, if present)",
    )
    stream.add_argument(
        "--eval-faces", type=int, default=512, help="held-out faces evaluated with --out (default 512)"
    )
    parser.add_argument(
        "--weight-format",
        dest="weight_format",
        choices=("fp16", "int8"),
        help="how the model file stores the encoder's matrices (default fp16; int8 with a scale per row "
        "halves the file); changing it on a finished run only re-exports",
    )
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--run-dir", default=None, help="run folder (default runs/train/<model id>)")
    parser.add_argument(
        "--export", default=None, help="model file to write (default models/m<M>.safetensors)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads per process (default: torch's)"
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine (default 1)",
    )
    parser.set_defaults(func=main)


def build_config(args) -> "TrainConfig":
    from lsi_ros.training.train import TrainConfig

    values = json.loads(Path(args.config).read_text()) if args.config else {}
    if "recipe" in values:
        values = json.loads((Path(args.config).parent / values.pop("recipe")).read_text()) | values
    for f in fields(TrainConfig):
        if getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    for name in ("photon_flux_range", "framing_jitter"):
        if name in values:
            values[name] = tuple(values[name])
    return TrainConfig(**values)


def launch(args, config: "TrainConfig", run_dir: Path, export: str) -> int:
    """Start ``args.nproc`` ranks of this command on this machine, every socket on 127.0.0.1."""
    from lsi_ros.training.distributed import run_local_ranks

    with tempfile.TemporaryDirectory(prefix="lsi_train_") as folder:
        config_path = Path(folder) / "config.json"
        config_path.write_text(json.dumps(asdict(config)))
        command = ["-m", "lsi_ros.cli", "train", "--config", str(config_path)]
        command += ["--run-dir", str(run_dir), "--export", export]
        if args.device:
            command += ["--device", args.device]
        if args.threads:
            command += ["--threads", str(args.threads)]
        ranks = run_local_ranks(args.nproc, command)
        return next((r.returncode for r in ranks if r.returncode), 0)


def fit_and_export(config: "TrainConfig", run_dir: Path, device: str, export: str) -> None:
    """Train this rank (every member in turn); rank 0 exports the chosen weights and says which."""
    from lsi_ros.models.checkpoint import save_model
    from lsi_ros.training.train import fit_members

    model = fit_members(config, run_dir, device)
    if model is None:
        return
    path = save_model(model, export, config.weight_format)
    if "members" in model.info:
        chosen = (
            f"{len(model.info['members'])} encoders averaged (steps "
            f"{', '.join(str(m['exported_step']) for m in model.info['members'])}), validation latent "
            f"MSE {model.info['val_latent_mse']:.4f}"
        )
    else:
        chosen = summary(model.info)
    print(f"exported {path} ({path.stat().st_size / 2**20:.1f} MiB): {chosen}")


def train_streamed(args, config: "TrainConfig", run_dir: Path, device: str, export: str) -> None:
    """``lsi train --stream``: train, export, and with ``--out`` evaluate and write results.json."""
    from lsi_ros.training.stream import StreamTrainer, run_slot

    if args.out:
        command = "lsi train " + " ".join(sys.argv[2:])
        compare = f"models/m{config.num_measurements}.safetensors"
        results = run_slot(
            config, args.out, device, args.resume, args.generator_export, args.eval_faces, compare, command
        )
        print(json.dumps({k: results[k] for k in ("steps", "faces_seen", "this_run", "held_out")}))
        return
    trainer = StreamTrainer(config, run_dir, device, args.resume, args.generator_export)
    trainer.fit()
    path = trainer.export(export)
    print(f"exported {path}: {summary(trainer.exported_model().info)}; {trainer.rates()}")


def summary(info: dict) -> str:
    """Which step a model file holds, and its validation error."""
    from lsi_ros.training.train import exported_record

    chosen = f"step {info['exported_step']} of {info['steps']}"
    record = exported_record(info)
    if record is not None:
        chosen += f", validation latent MSE {record['val_latent_mse']:.4f}"
    return chosen


def main(args) -> int:
    import torch

    from lsi_ros.training.distributed import join_process_group, leave_process_group

    config = build_config(args)
    run_dir = Path(args.run_dir or f"runs/train/{config.model_id}")
    export = args.export or f"models/m{config.num_measurements}.safetensors"
    if config.stream and args.nproc != 1:
        print("lsi train: --stream trains in one process (--nproc 1)", file=sys.stderr)
        return 2
    if (args.resume or args.out or args.generator_export) and not config.stream:
        print("lsi train: --resume, --out and --generator-export go with --stream", file=sys.stderr)
        return 2
    if args.nproc < 1:
        print("lsi train: --nproc must be at least 1", file=sys.stderr)
        return 2
    if args.nproc > 1 and "RANK" not in os.environ:
        if config.batch_size % args.nproc:
            print(
                f"lsi train: batch size {config.batch_size} does not split over {args.nproc} processes",
                file=sys.stderr,
            )
            return 2
        return launch(args, config, run_dir, export)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = join_process_group(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        if config.stream:
            train_streamed(args, config, run_dir, device, export)
        else:
            fit_and_export(config, run_dir, device, export)
    finally:
        leave_process_group()  # the trainer went with fit_and_export's frame
    return 0
