"""Does training on framing errors close the identity gap between located and hand framing?

The shipped m128 ensemble (patterns frozen) is fine-tuned on training-range faces (seeds 0 to
``--faces``, which its encoders learnt from), once without and once with each ``--jitter``
(``lsi_ros.training.augment.FramingJitter``: the faces measured through a grid off by a random
shift, scale and roll), with the same batches, light levels, detector noise, steps and schedule, so
the variants differ only by the framing errors. The held-out generated faces of `lsi eval --scenes
unframed` (seeds from 1,000,000, one per textured field, photon flux 200) are located once; the same
measurement frames, taken through the hand framing, the hand framing moved 2 face pixels, and the
located framing, are decoded by every variant and scored as `lsi eval` scores them (same person:
face-api descriptor distance below 0.6 to the hand-framed face; SSIM against it). Needs the cached
faces of `lsi data --train 6144` and face-api's weights:

    .venv/bin/python experiments/framing_jitter.py   # about 35 min on the 2-core CPU, 6 GB at most
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lsi_ros.commands.eval import _face_analyzer
from lsi_ros.evaluation import framing, quality
from lsi_ros.evaluation.identity import SAME_PERSON_DISTANCE, uint8_images
from lsi_ros.evaluation.latent_imaging import score_image
from lsi_ros.framing.finder import load_face_finder
from lsi_ros.framing.localize import FaceLocator
from lsi_ros.framing.unframed import generated_faces
from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.generators import get_generator
from lsi_ros.models.registry import find_model
from lsi_ros.training import data, finetune
from lsi_ros.training.augment import FramingJitter

FRAMINGS = ("hand", "moved", "located")


def fine_tune(model, faces: data.FaceData, jitter: FramingJitter | None, steps: int, lr: float):
    """A copy of ``model``'s encoder, every member trained on the latent MSE for ``steps`` batches of
    256 (``finetune.finetune_for_framing``: the draws seeded alike for every variant)."""
    config = finetune.FramingFinetuneConfig(
        steps=steps, lr=lr, jitter=() if jitter is None else tuple(vars(jitter).values())
    )
    return finetune.finetune_for_framing(model, faces, config)[0].encoder


def scores(encoder, frames: dict, truth, truth_descriptors, generator, analyzer) -> dict:
    rows = {}
    for name in FRAMINGS:
        counts = frames[name]
        taken = ~np.isnan(counts).any(axis=1)
        with torch.inference_mode():
            latents = encoder(torch.from_numpy(counts[taken].astype(np.float32))).numpy()
        decoded = np.concatenate(
            [generator.synthesize(latents[i : i + 8]) for i in range(0, len(latents), 8)]
        )
        distance = np.linalg.norm(analyzer.describe(uint8_images(decoded)) - truth_descriptors[taken], axis=1)
        same = distance < SAME_PERSON_DISTANCE
        rows[name] = {
            "scenes": int(taken.sum()),
            "same_person_rate": round(float(same.mean()), 4),
            # a face the locator missed counts as a failure
            "same_person_rate_all_scenes": round(float(same.sum() / len(truth)), 4),
            "median_distance": round(float(np.median(distance)), 4),
            "ssim": round(
                float(
                    np.mean([score_image(t, d)["ssim"] for t, d in zip(truth[taken], decoded, strict=True)])
                ),
                4,
            ),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="m128")
    parser.add_argument("--scenes", type=int, default=200, help="held-out generated faces, one scene each")
    parser.add_argument("--faces", type=int, default=6144, help="training-range faces to fine-tune on")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument(
        "--jitter",
        nargs="+",
        default=["3,0.05,3,0.5"],
        metavar="SHIFT,SCALE,ROLL,FRACTION",
        help="framing jitter of each variant beside the one without (default 3,0.05,3,0.5)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="docs/results/framing_jitter.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()

    photodiode = quality.default_photodiodes()[1]
    generator = get_generator("mobilestylegan")
    analyzer = _face_analyzer()
    model = load_model(find_model(args.model))
    locator = FaceLocator(load_face_finder(find_model("face-finder")), analyzer, photodiode=photodiode)
    imaging = framing.FramedImaging(model, generator, photodiode)
    first = data.HELD_OUT_SEED_START
    faces = generated_faces(generator, first, args.scenes)
    names = [f"seed {first + i}" for i in range(args.scenes)]
    summary, records = framing.evaluate_scenes(locator, imaging, analyzer, faces, names, 0, 0, "generated")
    truth = np.stack([r["truth"] for r in records])
    frames = {
        name: np.stack([r.get(f"{name}_counts", np.full(model.num_measurements, np.nan)) for r in records])
        for name in FRAMINGS
    }
    truth_descriptors = analyzer.describe(uint8_images(truth))

    training = data.load("mobilestylegan", 0, args.faces)
    variants = {"shipped": None, "fine-tuned": None}
    variants |= {
        f"fine-tuned, jitter {text}": FramingJitter(*map(float, text.split(","))) for text in args.jitter
    }
    rows = []
    for name, jitter in variants.items():
        encoder = (
            model.encoder.eval()
            if name == "shipped"
            else fine_tune(model, training, jitter, args.steps, args.lr)
        )
        row = {"variant": name, "framing_jitter": None if jitter is None else list(vars(jitter).values())}
        rows.append(row | scores(encoder, frames, truth, truth_descriptors, generator, analyzer))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": f"python experiments/framing_jitter.py --model {args.model} --scenes {args.scenes} "
        f"--faces {args.faces} --steps {args.steps} --lr {args.lr:g} --jitter {' '.join(args.jitter)}",
        "model": args.model,
        "fine_tuning": {
            "faces": f"training-range seeds 0-{args.faces - 1}",
            "steps": args.steps,
            "batch_size": 256,
            "lr": args.lr,
            "photon_flux": "log-uniform 20-2000",
            "members": len(model.encoder.members),
        },
        "scenes": {
            "faces": f"held-out generated, seeds {first}-{first + args.scenes - 1}, one per unframed field",
            "photodiode": "photons=200",
            "found": summary["detection_rate"],
            "located_centre_error_face_px_median": summary["located"]["centre_error_face_px_median"],
            "moved": f"hand framing moved {framing.MOVED_BY_FACE_PX:g} face sampling pixels",
        },
        "rows": rows,
        "seconds": round(time.time() - started),
    }
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
