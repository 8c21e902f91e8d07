"""What lowers m128's latent error on fixed patterns: more averaged encoders, more steps, more faces?

Each run is `lsi train`'s own ensemble training (``fit_members``) with m128's recipe
(``--recipe``, config/train-m128-ensemble.json: its patterns frozen, eight encoders of width 512 at
batch 256, photodiode in the loop at photon flux log-uniform 20–2000, each member exported at its
lowest validation error) but for one (training faces, steps) pair; validation on the 256 faces after
the training ones. Scored on the 2,048 held-out faces at photon flux 200 (detector
seed 0, as `lsi attributes`): latent error of the first member alone and of the mean of the first
2, 4, ... members (normalised by the spread of the first 8,448 training latents, as `lsi
attributes`), and the true latent's boundaries (models/attributes.safetensors) on the ensemble's
estimate. Needs the cached faces of `lsi data --train N+256` and the held-out labels of `lsi label`:

    .venv/bin/python experiments/ensemble_scaling.py   # 33 min on the 2-core CPU, 18.6 GB at most
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lsi_ros.evaluation import downstream, face_labels
from lsi_ros.evaluation.latent_imaging import encode_faces
from lsi_ros.models.attributes import load_boundaries
from lsi_ros.models.encoder import EncoderEnsemble
from lsi_ros.optics import PhotodiodeModel
from lsi_ros.training import data
from lsi_ros.training.train import TrainConfig, fit_members


def parse_run(text: str) -> tuple[int, int]:
    faces, steps = text.split(":")
    return int(faces), int(steps)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs",
        type=parse_run,
        nargs="+",
        default=[parse_run(r) for r in ("24576:1200", "24576:4000", "41216:4000")],
        metavar="FACES:STEPS",
        help="training faces and steps per member (default: 24576:1200, the previous m128's recipe, then "
        "24576:4000 and 41216:4000); a run folder that exists is resumed, as by `lsi train`",
    )
    parser.add_argument(
        "--recipe", default="config/train-m128-ensemble.json", help="TrainConfig JSON to vary"
    )
    parser.add_argument("--boundaries", default="models/attributes.safetensors")
    parser.add_argument("--run-root", default="runs/ensemble-scaling")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="docs/results/ensemble_scaling.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = TrainConfig(**json.loads(Path(args.recipe).read_text()))

    test = data.load("mobilestylegan", data.HELD_OUT_SEED_START, 2048)
    truth = face_labels.binary_attributes(face_labels.load_labels("mobilestylegan", test.seeds))
    scale = data.load("mobilestylegan", 0, 8448).latents.std(0)
    boundaries = load_boundaries(args.boundaries)
    images = test.images.astype(np.float32) / 255.0
    photodiode = PhotodiodeModel()
    rows = []
    for faces, steps in args.runs:
        start = time.perf_counter()
        config = replace(recipe, train_faces=faces, steps=steps)
        model = fit_members(config, Path(args.run_root) / f"faces{faces}-steps{steps}")
        seconds = time.perf_counter() - start
        members, errors = list(model.encoder.members), {}
        for count in sorted({1, 2, 4, config.members}):  # the last is the whole ensemble
            model.encoder = EncoderEnsemble(members[:count]) if count > 1 else members[0]
            latents = encode_faces(model, images, photodiode)
            errors[count] = round(downstream.latent_error(latents, test.latents, scale), 4)
        probabilities = boundaries.probabilities(latents)
        rows.append(
            {
                "training_faces": faces,
                "steps": steps,
                "members": config.members,
                "exported_steps": [m["exported_step"] for m in model.info["members"]],
                "val_latent_mse": round(model.info["val_latent_mse"], 4),
                "held_out_latent_mse_by_members": errors,
                "true_latent_boundaries_accuracy": {
                    name: round(downstream.accuracy(probabilities[:, k], truth[name]), 4)
                    for k, name in enumerate(boundaries.names)
                },
                "train_s": round(seconds, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    results = {
        "command": "python experiments/ensemble_scaling.py",
        "patterns": f"{recipe.patterns_from} (frozen)",
        "held_out_seeds": [int(test.seeds[0]), int(test.seeds[-1])],
        "noise": f"training: photon flux log-uniform {list(TrainConfig().photon_flux_range)}; test: "
        f"{photodiode.label}",
        "rows": rows,
    }
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.output}")


if __name__ == "__main__":
    main()
