"""Does the M = 128 latent read attributes better with more training faces?

The shipped m128 patterns stay frozen; only an encoder of the shipped architecture is trained, from
the first N cached faces (photodiode in the loop, photon flux log-uniform 20–2000 as in `lsi train`).
Each encoder is scored on the 2,048 held-out faces at photon flux 200: latent error (normalised
units) and the shipped attribute boundaries' accuracy. Beside them, for each N, the linear (ridge)
encoder from the same measurements. Needs `lsi data --train 24576` (about 75 min on 2 cores) and
`lsi label`; writes docs/results/latent_data_scaling.json:

    .venv/bin/python experiments/latent_data_scaling.py      # ~11 min on the 2-core CPU (2,000 steps per N)
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge
from tqdm import tqdm

from lsi_ros.evaluation import downstream, face_labels
from lsi_ros.models.attributes import load_boundaries
from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.encoder import MeasurementEncoder
from lsi_ros.models.registry import find_model
from lsi_ros.optics import ForwardModel, PhotodiodeModel
from lsi_ros.training import data
from lsi_ros.training.train import TrainConfig, learning_rate, log_uniform_flux

FLUX_RANGE = TrainConfig().photon_flux_range  # as `lsi train`


def measurements(matrix: np.ndarray, start: int, count: int, chunk: int = 2048):
    """Ideal m128 measurements and true latents of cached faces [start, start + count), chunk by chunk."""
    ys, ws = [], []
    for first in range(start, start + count, chunk):
        faces = data.load("mobilestylegan", first, min(chunk, start + count - first))
        ys.append(downstream.channel_sums(faces.images) @ matrix.T)
        ws.append(faces.latents)
    return np.concatenate(ys), np.concatenate(ws)


def frame_normalised(counts: np.ndarray) -> np.ndarray:
    """Each frame to zero mean and unit spread, as the encoder's first LayerNorm does."""
    return (counts - counts.mean(1, keepdims=True)) / counts.std(1, keepdims=True)


def train_encoder(y: np.ndarray, w: np.ndarray, steps: int, batch: int, seed: int = 0) -> MeasurementEncoder:
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    encoder = MeasurementEncoder(y.shape[1])
    latents, ideal = torch.from_numpy(w), torch.from_numpy(y.astype(np.float64))
    encoder.latent_mean.copy_(latents.mean(0))
    encoder.latent_std.copy_(latents.std(0))
    optimiser = torch.optim.AdamW(encoder.parameters(), weight_decay=1e-4)
    for step in tqdm(range(steps), desc=f"encoder on {len(y)} faces", unit="step"):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, steps, 1e-3)
        index = torch.randint(0, len(y), (batch,), generator=rng)
        flux = log_uniform_flux(FLUX_RANGE, rng)
        counts = PhotodiodeModel().with_photon_flux(flux).sample_torch(ideal[index], rng).counts.float()
        target = (latents[index] - encoder.latent_mean) / encoder.latent_std
        loss = torch.nn.functional.mse_loss(encoder.normalised(counts), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return encoder.eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faces", type=int, nargs="*", default=[8448, 16384, 24576])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="docs/results/latent_data_scaling.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(find_model("m128"))
    matrix = ForwardModel(model.pattern_set).matrix.astype(np.float32)
    train_y, train_w = measurements(matrix, 0, max(args.faces))
    test_y, test_w = measurements(matrix, data.HELD_OUT_SEED_START, 2048)
    seeds = np.arange(data.HELD_OUT_SEED_START, data.HELD_OUT_SEED_START + 2048)
    test_attributes = face_labels.binary_attributes(face_labels.load_labels("mobilestylegan", seeds))
    boundaries = load_boundaries("models/attributes.safetensors")
    counts = PhotodiodeModel().sample(test_y.astype(np.float64), np.random.default_rng(0)).counts
    counts = counts.astype(np.float32)
    scale = model.encoder.latent_std.numpy()

    def row(encoder: str, faces: int, latents: np.ndarray, **extra) -> dict:
        probabilities = boundaries.probabilities(latents)
        return {
            "encoder": encoder,
            "training_faces": faces,
            "latent_mse": round(downstream.latent_error(latents, test_w, scale), 4),
            **{
                name: round(downstream.accuracy(probabilities[:, k], test_attributes[name]), 4)
                for k, name in enumerate(boundaries.names)
            },
            **extra,
        }

    with torch.inference_mode():
        rows = [
            row(
                "shipped m128 (patterns + encoder trained jointly)",
                8192,
                model.encoder(torch.from_numpy(counts)).numpy(),
            )
        ]
    for faces in args.faces:
        noisy = PhotodiodeModel().sample(train_y[:faces].astype(np.float64), np.random.default_rng(1)).counts
        ridge = Ridge(alpha=1.0).fit(frame_normalised(noisy), train_w[:faces])
        rows.append(
            row(
                "ridge (linear) on the frame-normalised counts",
                faces,
                ridge.predict(frame_normalised(counts)),
            )
        )
        start = time.perf_counter()
        encoder = train_encoder(train_y[:faces], train_w[:faces], args.steps, args.batch)
        with torch.inference_mode():
            latents = encoder(torch.from_numpy(counts)).numpy()
        seconds = round(time.perf_counter() - start, 1)
        rows.append(row("MLP encoder, patterns frozen", faces, latents, steps=args.steps, train_s=seconds))
        print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)
    result = {
        "rows": rows,
        "patterns": f"m128 ({model.pattern_set.pattern_set_id}), frozen",
        "held_out_seeds": [int(seeds[0]), int(seeds[-1])],
        "noise": "training: photon flux log-uniform 20-2000; test: PhotodiodeModel() (flux 200)",
        "boundaries": "models/attributes.safetensors (fitted on the true latents of seeds 0..8447)",
        "command": "python experiments/latent_data_scaling.py",
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
