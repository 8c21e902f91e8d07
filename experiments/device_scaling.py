"""Attributes from the LSI latent with many more faces: a GPU run.

On one GPU, with torch and no OpenVINO, from the generator's torch export
(`MobileStyleGAN.export_torch`) and the face-api port:

1. render and label the 2,048 held-out seeds (from 1,000,000) and, until --reserve-budget-s, faces
   the encoder never sees (seeds from --reserve-first-seed), to fit read-outs on;
2. train the M = 128 LSI model on streamed faces (`lsi train --stream`'s `StreamTrainer`: each face
   rendered inside the loop and seen once, two chunks in memory at most) for --steps or until
   --train-budget-s, exported at its lowest validation latent error;
3. score on the held-out faces (photon flux 200): boundaries on the true latent w, boundaries fitted
   on the new model's own estimates ŵ of the reserve faces (what ships as attributes-m128), and the
   shipped m128 read the same two ways (its shipped boundaries, and refitted on the same reserve).

Stages write to --out as they finish (model, boundaries, compact reserve labels, results.json), so a
run cut short still returns what it made. What the GPU machine needs besides the repository (torch,
numpy, safetensors, tqdm, pytorch-msssim and pylops installed; pylops for the import chain
evaluation.latent_imaging -> quality -> baselines):

    lsi data --export-torch .device/mobilestylegan       # the generator for torch alone (40 MB)
    mkdir -p .device/face-api && cp ~/.cache/lsi_ros/face-api/model/{tiny_face_detector,\
        face_landmark_68,age_gender,face_expression}_model* .device/face-api/
    python experiments/device_scaling.py --out out --reserve-budget-s 100 --train-budget-s 300

On a CPU with tiny sizes it checks itself:

    python experiments/device_scaling.py --device cpu --held-out 32 --chunk 32 --reserve 64 \
        --steps 30 --batch-size 16 --validation 16 --out /tmp/ds --run-dir /tmp/ds/run
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from lsi_ros.evaluation import face_analysis, face_labels
from lsi_ros.evaluation.downstream import fit_boundary_torch
from lsi_ros.evaluation.face_analysis import FaceAnalyzer
from lsi_ros.evaluation.latent_imaging import encode_faces
from lsi_ros.models.attributes import AttributeBoundaries, load_boundaries, save_boundaries
from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.torch_generator import ExportedMobileStyleGAN
from lsi_ros.optics import PhotodiodeModel
from lsi_ros.training import data
from lsi_ros.training.stream import StreamTrainer, held_out_latent_mse
from lsi_ros.training.train import TrainConfig

ATTRIBUTES = list(face_labels.ATTRIBUTES)
PHOTODIODE = PhotodiodeModel().with_photon_flux(200.0)
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f} s] {message}", flush=True)


def open_device(args):
    """The device, and the exported generator and the labeller's four networks on it."""
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # faces as the CPU renders them, to float rounding
    torch.backends.cudnn.allow_tf32 = False
    generator = ExportedMobileStyleGAN(args.export, device)
    analyzer = FaceAnalyzer(args.face_api, device, face_analysis.NETWORKS[:4])
    log(f"generator {generator.generator_id} and labeller on {device}")
    return device, generator, analyzer


def render_faces(generator, seeds, chunk: int, budget_s: float, desc: str, analyzer=None):
    """w, uint8 faces (on the device) and, given the labeller, labels of ``seeds``, chunk by chunk
    until the budget ends. The face storage is sized after the first chunk to what the budget renders
    at that rate (+25 %), and grows by as much again if the rate picks up: no storage for seeds the
    budget never reaches."""
    ws, images, labels, n = [], None, [], 0
    began = time.perf_counter()
    for first in tqdm(range(0, len(seeds), chunk), desc=desc, unit="chunk", mininterval=10):
        elapsed = time.perf_counter() - began
        if elapsed > budget_s:
            break
        w = generator.sample_latents(seeds[first : first + chunk].tolist(), data.DEFAULT_PSI)
        faces = generator.render(w)
        if images is None or n + len(faces) > len(images):
            images = _grow(images, faces, n, len(seeds), budget_s, time.perf_counter() - began)
        images[n : n + len(faces)] = faces
        n += len(faces)
        ws.append(w)
        if analyzer is not None:
            labels.append(face_labels.label_faces(analyzer, faces, chunk, input_size=256, progress=False))
    rate = n / (time.perf_counter() - began)
    log(f"{desc}: {n} faces rendered{' and labelled' if analyzer else ''}, {rate:.0f} faces/s")
    merged = {k: np.concatenate([part[k] for part in labels]) for k in labels[0]} if labels else {}
    return torch.cat(ws), images[:n], merged


def _grow(images, faces, n: int, most: int, budget_s: float, elapsed_s: float) -> torch.Tensor:
    """Face storage for what the rest of the budget renders at the rate so far (+25 %), at most
    ``most`` faces, holding the ``n`` faces rendered before."""
    rate = (n + len(faces)) / max(elapsed_s, 1e-3)
    expected = most if math.isinf(budget_s) else int(1.25 * rate * max(budget_s, elapsed_s))
    size = min(most, max(n + len(faces), expected))
    if images is not None:
        size = min(most, max(size, 2 * len(images)))
    grown = torch.empty((size, *faces.shape[1:]), dtype=faces.dtype, device=faces.device)
    if images is not None:
        grown[:n] = images[:n]
    return grown


def encode(model, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """ŵ of uint8 faces on the device through the model's patterns and the photodiode at flux 200."""
    return encode_faces(model, images, PHOTODIODE, seed)


def save_torch_boundaries(pairs, generator_id: str, model, path) -> None:
    """One (weight, bias) tensor pair per attribute of ATTRIBUTES, fitted on ``model``'s estimates ->
    a boundaries file that names the model and its pattern set."""
    weight = torch.stack([w for w, _ in pairs]).cpu().numpy()
    bias = torch.stack([b for _, b in pairs]).cpu().numpy()
    fitted = AttributeBoundaries(
        tuple(ATTRIBUTES), weight, bias, generator_id, model.pattern_set.pattern_set_id, model.model_id
    )
    save_boundaries(fitted, path)


def binary_targets(labels: dict, device) -> dict:
    """The binary attributes of labels, as 0/1 float tensors on the device."""
    return {
        k: torch.as_tensor(v, dtype=torch.float32, device=device)
        for k, v in face_labels.binary_attributes(labels).items()
    }


def accuracy(weight, bias, x, y) -> float:
    return float(((x @ weight + bias > 0).float() == y).float().mean())


def write_results(results: dict, out: Path) -> None:
    results["seconds"] = round(time.perf_counter() - START, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--export", default=".device/mobilestylegan", help="MobileStyleGAN.export_torch folder"
    )
    parser.add_argument("--face-api", default=".device/face-api", help="face-api model folder")
    parser.add_argument("--shipped", default="models/m128.safetensors", help="shipped model to compare")
    parser.add_argument(
        "--shipped-boundaries", default="models/attributes-m128.safetensors", help="its read-out"
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--held-out", type=int, default=2048)
    parser.add_argument(
        "--reserve", type=int, default=65536, help="labelled faces to fit read-outs on, at most"
    )
    parser.add_argument("--reserve-first-seed", type=int, default=600_000)
    parser.add_argument("--reserve-budget-s", type=float, default=100.0)
    parser.add_argument("--validation", type=int, default=1024)
    parser.add_argument(
        "--chunk", type=int, default=512, help="held-out and reserve faces rendered at a time"
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--train-budget-s", type=float, default=300.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default="out")
    parser.add_argument("--run-dir", default="/tmp/lsi-device-run", help="training state (not copied back)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device, generator, analyzer = open_device(args)
    results = {"command": "python experiments/device_scaling.py", "args": vars(args)}
    if device.type == "cuda":
        results["device_name"] = torch.cuda.get_device_name(device)
    held_seeds = np.arange(data.HELD_OUT_SEED_START, data.HELD_OUT_SEED_START + args.held_out)
    test_w, test_images, test_labels = render_faces(
        generator, held_seeds, args.chunk, float("inf"), "held-out", analyzer
    )
    reserve_seeds = np.arange(args.reserve_first_seed, args.reserve_first_seed + args.reserve)
    fit_w, fit_images, fit_labels = render_faces(
        generator, reserve_seeds, args.chunk, args.reserve_budget_s, "reserve", analyzer
    )
    kept = ("age", "p_male", "expressions")  # what the binary attributes need
    compact = {k: torch.from_numpy(np.ascontiguousarray(fit_labels[k])) for k in kept}
    compact["seed"] = torch.from_numpy(reserve_seeds[: len(fit_w)].astype(np.int32))
    save_file(compact, str(out / "labels.safetensors"), metadata={"labeller": face_labels.FACE_API_PACKAGE})
    results["reserve_seeds"] = [args.reserve_first_seed, args.reserve_first_seed + len(fit_w) - 1]

    config = TrainConfig(
        num_measurements=128,
        stream=True,
        steps=args.steps,
        batch_size=args.batch_size,
        validation_faces=args.validation,
        chunk_faces=args.batch_size * max(1, 4096 // args.batch_size),
        checkpoint_every=max(10, args.steps // 25),
        budget_s=args.train_budget_s,
        extra={"rendered": f"torch export on {results.get('device_name', args.device)}"},
    )
    trainer = StreamTrainer(config, Path(args.run_dir) / "run", str(device), generator_export=args.export)
    trainer.fit()
    model_path = trainer.export(out / "m128.safetensors")
    results["training"] = {
        "steps": trainer.step,
        "faces_seen": trainer.faces_seen,
        "rates": trainer.rates(),
        "exported_step": trainer.best["step"] if trainer.best else trainer.step,
        "history": trainer.history,
    }
    scale = trainer.encoder.latent_std
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    write_results(results, out)
    log(f"exported {model_path}")

    y_fit, y_test = binary_targets(fit_labels, device), binary_targets(test_labels, device)
    new = load_model(model_path)
    models = {"new": new}
    if Path(args.shipped).is_file():
        models["shipped"] = load_model(args.shipped)
    latents = {name: (encode(m, fit_images, 1), encode(m, test_images)) for name, m in models.items()}
    results["latent_mse"] = held_out_latent_mse(models, test_w, test_images, scale)
    shipped_boundaries = None
    if "shipped" in models and Path(args.shipped_boundaries).is_file():
        shipped_boundaries = load_boundaries(args.shipped_boundaries)
    rows, fitted = [], []
    for name in ATTRIBUTES:
        row = {"attribute": name, "chance": float(max(y_test[name].mean(), 1 - y_test[name].mean()))}
        weight, bias, _ = fit_boundary_torch(fit_w, y_fit[name])
        row["true_latent"] = accuracy(weight, bias, test_w, y_test[name])
        for model_name, (fit_hat, test_hat) in latents.items():
            row[f"{model_name}_latent_true_boundaries"] = accuracy(weight, bias, test_hat, y_test[name])
            hat_weight, hat_bias, l2 = fit_boundary_torch(fit_hat, y_fit[name])
            row[f"{model_name}_latent_fit_on_hat_w"] = accuracy(hat_weight, hat_bias, test_hat, y_test[name])
            row[f"{model_name}_l2"] = l2
            if model_name == "new":
                fitted.append((hat_weight, hat_bias))
        if shipped_boundaries is not None:
            index = shipped_boundaries.names.index(name)
            shipped_weight = torch.as_tensor(shipped_boundaries.weight[index], device=device)
            shipped_bias = torch.as_tensor(shipped_boundaries.bias[index], device=device)
            row["shipped_latent_shipped_boundaries"] = accuracy(
                shipped_weight, shipped_bias, latents["shipped"][1], y_test[name]
            )
        rows.append(row)
        log(json.dumps(row))
    results["rows"] = rows
    save_torch_boundaries(fitted, generator.generator_id, new, out / "attributes-m128.safetensors")
    write_results(results, out)
    log("done")


if __name__ == "__main__":
    main()
