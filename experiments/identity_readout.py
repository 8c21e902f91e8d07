"""What do M = 128 measurements carry of who a person is, and does fitting them bring the person back?

Three checks on the held-out UTKFace people at photon flux 200 (face-api descriptors of the framed
photos are the truth, as in `lsi eval --real`):

1. **The average descriptor.** face-api's rule calls two faces the same person below a descriptor
   distance of 0.6. The mean descriptor of the training-split photos, a "face like everyone", is
   scored against each held-out person: how often it passes says how far the same-person rate alone
   can be trusted, and why rank-1 stands beside it.
2. **Identity read straight off the measurements.** A small network maps the measurements to
   face-api's 128-number descriptor, trained on the training-split photos and their mirror images
   (squared descriptor distance plus a contrastive term over the batch). A second network on the
   same measurements maps the model's own generated training faces to their latents (the encoder's
   task, in its normalised units). Three runs: m128's patterns fixed; the patterns learning from
   the identity loss alone; and from both losses (started from m128's, shown binary with a
   straight-through gradient). A ridge regression on m128's measurements is the linear reference.
   Rank-1 among the held-out people is how much of who they are the patterns pass on, with no
   generator in the way; the latent error on held-out generated faces is what the patterns still
   pass on of the faces the generator draws.
3. **Fitting the measurements.** m128-real's W+ codes of the first ``--refine-faces`` people are
   refined by Adam steps through the generator (the fast exit) until the face's simulated
   measurements match the measured ones, in units of their photon noise (compressed sensing with a
   generative prior, started from the encoder). Identity and image quality before and after.

Needs generated faces in the data cache (`lsi data --train 6144 --held-out 512`: the model's training
faces and the held-out ones `lsi eval` scores) and the shared real-face photos.

    .venv/bin/python experiments/identity_readout.py   # about an hour on the 2-core CPU, 10 GB peak
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from lsi_ros.cli import retain_freed_memory


def ridge_descriptors(train_counts, train_descriptors, test_counts, ridge: float) -> np.ndarray:
    mean, std = train_counts.mean(0), train_counts.std(0)

    def design(counts):
        return np.c_[(counts - mean) / std, np.ones(len(counts))]

    a = design(train_counts)
    weights = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ train_descriptors)
    return design(test_counts) @ weights


def refine(model, faces, photodiode, steps: int, lr: float, checkpoints, batch: int = 8):
    """``model``'s codes of ``faces`` (N, R, R, 3) uint8, refined to fit their measurements; returns
    the decoded faces (uint8) at each checkpoint step and the noise-scaled misfit there."""
    import torch
    from tqdm import tqdm

    from lsi_ros.optics import ForwardModel
    from lsi_ros.training.finetune import generator_for

    net = generator_for(model, early_exit="fast").torch_synthesis()
    encoder = model.encoder.eval()
    forward = ForwardModel(model.pattern_set, np.float32)
    images = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
    ideal = forward.measure_torch(images)
    counts = photodiode.sample_torch(ideal, torch.Generator().manual_seed(0)).counts
    measured = photodiode.to_ideal(counts)
    noise = torch.sqrt(photodiode.count_variance(ideal)) / (
        photodiode.conversion_gain * photodiode.photon_flux
    )
    with torch.no_grad():
        start = encoder.normalised(counts)
    mean, std = encoder.latent_mean, encoder.latent_std
    decoded = {k: [] for k in checkpoints}
    misfit = {k: [] for k in checkpoints}
    bar = tqdm(total=steps * len(faces), desc="fitting the measurements", unit="face·step")
    for first in range(0, len(faces), batch):
        part = slice(first, first + batch)
        offset = start[part].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([offset], lr=lr)
        for step in range(steps + 1):
            with torch.set_grad_enabled(step < steps):
                face = net(mean + std * offset)
                chi2 = ((forward.measure_torch(face) - measured[part]) / noise[part]).pow(2).mean(1)
            if step in decoded:
                decoded[step].append((face.detach().permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8))
                misfit[step].append(chi2.detach().numpy())
            if step == steps:
                break
            optimizer.zero_grad(set_to_none=True)
            chi2.sum().backward()
            optimizer.step()
            bar.update(len(face))
    bar.close()
    return {k: np.concatenate(v) for k, v in decoded.items()}, {
        k: np.concatenate(v) for k, v in misfit.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="m128", help="whose patterns the read-out starts from")
    parser.add_argument(
        "--refine-model", default="m128-real", help="whose codes are fitted to the measurements"
    )
    parser.add_argument("--held-out", type=int, default=1024, help="held-out UTKFace people")
    parser.add_argument("--training-photos", type=int, default=100_000, help="training-split photos (all)")
    parser.add_argument("--generated", type=int, default=6144, help="the model's own training faces")
    parser.add_argument("--generated-held-out", type=int, default=512, help="held-out generated faces")
    parser.add_argument("--steps", type=int, default=4000, help="read-out training steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3, help="read-out head's peak learning rate")
    parser.add_argument("--pattern-lr", type=float, default=2e-3, help="patterns' peak learning rate")
    parser.add_argument("--photon-flux", type=float, default=200.0)
    parser.add_argument("--refine-faces", type=int, default=32)
    parser.add_argument("--refine-steps", type=int, default=20)
    parser.add_argument(
        "--refine-lr", type=float, default=0.03, help="Adam step in the code's normalised units"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("docs/results/identity_readout.json"))
    args = parser.parse_args()
    retain_freed_memory()
    import torch

    from lsi_ros.evaluation import real_faces
    from lsi_ros.evaluation.face_analysis import FaceAnalyzer
    from lsi_ros.evaluation.identity import identity_per_face, identity_scores
    from lsi_ros.evaluation.latent_imaging import encode_faces, score_image
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.registry import find_model
    from lsi_ros.optics import PhotodiodeModel
    from lsi_ros.training import data
    from lsi_ros.training.finetune import generated_training_data, photo_scenes, utkface_training_photos
    from lsi_ros.training.readout import (
        ReadoutConfig,
        latent_error,
        normalised_latents,
        pixels_changed,
        read_out,
        train_readout,
    )
    from lsi_ros.training.train import measure

    torch.set_num_threads(args.threads)
    started = time.monotonic()
    analyzer = FaceAnalyzer()
    held_out = real_faces.real_face_set(analyzer, utkface=args.held_out, canada=0)
    train = utkface_training_photos(analyzer, args.training_photos)
    box = real_faces.framed_face_box(analyzer, held_out.images[:64])
    mirrored = np.ascontiguousarray(train.images[:, :, ::-1])
    truth = real_faces.read_faces(analyzer, held_out.images, box).descriptors
    train_descriptors = np.concatenate(
        [real_faces.read_faces(analyzer, images, box).descriptors for images in (train.images, mirrored)]
    )
    side = train.images.shape[1]
    train_scenes = torch.cat([photo_scenes(train.images, side), photo_scenes(mirrored, side)])
    test_scenes = photo_scenes(held_out.images, side)
    del mirrored

    def scored(descriptors) -> dict:
        return identity_scores(*identity_per_face(descriptors, truth))

    average = np.repeat(train_descriptors.mean(0, keepdims=True), len(truth), axis=0)
    result = {
        "command": "python experiments/identity_readout.py",
        "faces": {
            "held_out": len(truth),
            "training_split_photos": len(train.images),
            "training_descriptors": len(train_descriptors),
            "mirrored": True,
        },
        "photon_flux": args.photon_flux,
        "same_person_distance": 0.6,
        "average_descriptor": scored(average),
        "someone_else": scored(np.roll(truth, 1, axis=0)),
    }
    print("average descriptor:", result["average_descriptor"])

    model = load_model(find_model(args.model))
    base = torch.from_numpy(model.pattern_set.matrix()).float()
    descriptors = torch.from_numpy(train_descriptors).float()
    rows = []
    counts_of = {}
    for name, scenes, seed in (("train", train_scenes, 1), ("test", test_scenes, 2)):
        rng = torch.Generator().manual_seed(seed)
        counts_of[name] = torch.cat(
            [
                measure(scenes[s : s + 512].float() / 255.0, base, args.photon_flux, rng)
                for s in range(0, len(scenes), 512)
            ]
        ).numpy()
    for ridge in (1.0, 10.0):
        read = ridge_descriptors(counts_of["train"], train_descriptors, counts_of["test"], ridge)
        rows.append({"read_out": f"ridge {ridge:g}", "patterns": model.model_id, **scored(read)})
        print(rows[-1])
    generated = generated_training_data(model, args.generated)
    generated_test = generated_training_data(
        model, args.generated_held_out, seed_start=data.HELD_OUT_SEED_START
    )
    latents = normalised_latents(model.encoder, generated.latents)
    generated_scenes = photo_scenes(generated.images, side)
    generated_test_scenes = photo_scenes(generated_test.images, side)
    true_latents = normalised_latents(model.encoder, generated_test.latents)

    reference = encode_faces(model, generated_test.images / np.float32(255), PhotodiodeModel(), seed=5)
    result["generated_faces"] = {
        "training": len(generated.latents),
        "held_out": len(true_latents),
        "held_out_seeds": f"{data.HELD_OUT_SEED_START}..{data.HELD_OUT_SEED_START + len(true_latents) - 1}",
        "latent_error_of_the_models_encoder": latent_error(
            normalised_latents(model.encoder, reference), true_latents
        ),
    }
    for learn_from in ((), ("identity",), ("identity", "latent")):
        config = ReadoutConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            pattern_lr=args.pattern_lr,
            photon_flux=args.photon_flux,
            learn_from=learn_from,
        )
        heads, patterns, curve = train_readout(
            train_scenes, descriptors, generated_scenes, latents, base, config
        )
        read = read_out(heads["identity"], patterns, test_scenes, args.photon_flux, seed=3)
        fit = read_out(heads["identity"], patterns, train_scenes[: len(truth)], args.photon_flux, seed=4)
        latent_read = read_out(heads["latent"], patterns, generated_test_scenes, args.photon_flux, seed=5)
        changed = pixels_changed(patterns, base)
        rows.append(
            {
                "read_out": "network",
                "patterns": model.model_id,
                "learnt_from": list(learn_from),
                **scored(read),
                "training_photos": identity_scores(*identity_per_face(fit, train_descriptors[: len(truth)])),
                "generated_latent_error": latent_error(latent_read, true_latents),
                "pattern_pixels_changed": round(changed, 4),
                "curve": curve,
            }
        )
        print({k: v for k, v in rows[-1].items() if k != "curve"})
    result["read_out"] = rows
    result["read_out_settings"] = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "pattern_lr": args.pattern_lr,
        "loss": f"squared descriptor distance + {config.contrastive_weight} x contrastive "
        f"(T {config.temperature})",
    }
    del train_scenes, generated_scenes

    refined_model = load_model(find_model(args.refine_model))
    faces = held_out.images[: args.refine_faces]
    checkpoints = sorted({0, args.refine_steps // 4, args.refine_steps // 2, args.refine_steps})
    photodiode = PhotodiodeModel().with_photon_flux(args.photon_flux)
    decoded, misfit = refine(refined_model, faces, photodiode, args.refine_steps, args.refine_lr, checkpoints)
    own = truth[: args.refine_faces]
    steps = []
    for k in checkpoints:
        read = real_faces.read_faces(analyzer, decoded[k], box)
        quality = [
            score_image(t / np.float32(255), d / np.float32(255))
            for t, d in zip(faces, decoded[k], strict=True)
        ]
        steps.append(
            {
                "step": k,
                "misfit": round(float(np.median(misfit[k])), 1),
                **identity_scores(*identity_per_face(read.descriptors, own)),
                "psnr": round(float(np.mean([q["psnr"] for q in quality])), 2),
                "ssim": round(float(np.mean([q["ssim"] for q in quality])), 3),
            }
        )
        print(steps[-1])
    result["fitting_the_measurements"] = {
        "model": refined_model.model_id,
        "faces": len(faces),
        "lr": args.refine_lr,
        "generator_exit": "fast",
        "misfit": "median over faces of the mean squared measurement residual in photon-noise units",
        "rank1_among": len(faces),
        "steps": steps,
    }
    result["seconds"] = round(time.monotonic() - started)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output} in {math.ceil(result['seconds'] / 60)} min")


if __name__ == "__main__":
    main()
