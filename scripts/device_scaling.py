"""Attributes from the LSI latent with many more faces: a GPU run (issue #6's "far more faces").

On one GPU, with torch and no OpenVINO: render faces from seeds with the exported MobileStyleGAN
(`MobileStyleGAN.export_torch`), label them with the face-api port, train the M = 128 LSI model on
them (the same `Trainer` as `lsi train`), then score attribute read-outs on the 2,048 held-out seeds:

- boundaries on the true latent w fitted on the first 8,448 labels (as `lsi attributes`) and on all;
- the same boundaries applied to the LSI latent ŵ of the new model and of the shipped m128;
- boundaries fitted on ŵ itself (the read-out the encoder's estimate actually needs).

Rendering and training stop at their time budgets, so the run fits a fixed device lease. Writes the
model, both boundaries files, compact labels (p_male, age, expressions per seed) and results.json to
--out. What the GPU machine needs besides the repository (torch, numpy, safetensors, tqdm and
pytorch-msssim installed):

    lsi data --export-torch .device/mobilestylegan       # the generator for torch alone (40 MB)
    mkdir -p .device/face-api && cp ~/.cache/lsi_ros/face-api/model/{tiny_face_detector,\
        face_landmark_68,age_gender,face_expression}_model* .device/face-api/
    python scripts/device_scaling.py --out out --render-budget-s 190 --train-budget-s 170 --steps 60000

On a CPU with tiny sizes it checks itself:

    python scripts/device_scaling.py --device cpu --faces 128 --held-out 32 --chunk 32 \
        --reserve 32 --steps 30 --batch-size 16 --out /tmp/ds --run-dir /tmp/ds/run   # ~4 min
"""

import argparse
import json
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
from lsi_ros.models.attributes import AttributeBoundaries, save_boundaries
from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.torch_generator import ExportedMobileStyleGAN
from lsi_ros.optics import PhotodiodeModel
from lsi_ros.training import data
from lsi_ros.training.train import TrainConfig, Trainer

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


def render_and_label(generator, analyzer, seeds, chunk: int, budget_s: float, desc: str):
    """w, uint8 faces (on the device) and labels of ``seeds``, chunk by chunk until the budget ends."""
    ws, images, labels = [], [], []
    began = time.perf_counter()
    for first in tqdm(range(0, len(seeds), chunk), desc=desc, unit="chunk", mininterval=10):
        if time.perf_counter() - began > budget_s:
            break
        w = generator.sample_latents(seeds[first : first + chunk].tolist(), data.DEFAULT_PSI)
        faces = generator.render(w)
        ws.append(w)
        images.append(faces)
        labels.append(face_labels.label_faces(analyzer, faces, chunk, input_size=256, progress=False))
    n = sum(len(w) for w in ws)
    rate = n / (time.perf_counter() - began)
    log(f"{desc}: {n} faces rendered and labelled, {rate:.0f} faces/s")
    merged = {k: np.concatenate([part[k] for part in labels]) for k in labels[0]}
    return torch.cat(ws), torch.cat(images), merged


def encode(model, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """ŵ of uint8 faces on the device through the model's patterns and the photodiode at flux 200."""
    return encode_faces(model, images, PHOTODIODE, seed)


def save_torch_boundaries(pairs, generator_id: str, pattern_set_id: str, path) -> None:
    """One (weight, bias) tensor pair per attribute of ATTRIBUTES -> a boundaries file."""
    weight = torch.stack([w for w, _ in pairs]).cpu().numpy()
    bias = torch.stack([b for _, b in pairs]).cpu().numpy()
    save_boundaries(AttributeBoundaries(tuple(ATTRIBUTES), weight, bias, generator_id, pattern_set_id), path)


def accuracy(weight, bias, x, y) -> float:
    return float(((x @ weight + bias > 0).float() == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--export", default=".device/mobilestylegan", help="MobileStyleGAN.export_torch folder"
    )
    parser.add_argument("--face-api", default=".device/face-api", help="face-api model folder")
    parser.add_argument("--shipped", default="models/m128.safetensors", help="shipped model to compare")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--faces", type=int, default=262144, help="training + 256 validation faces, at most")
    parser.add_argument("--held-out", type=int, default=2048)
    parser.add_argument("--boundary-faces", type=int, default=8448, help="labels `lsi attributes` uses")
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--render-budget-s", type=float, default=200.0)
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--train-budget-s", type=float, default=200.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--reserve", type=int, default=16384, help="faces kept from the encoder to fit boundaries on its ŵ"
    )
    parser.add_argument("--out", default="out")
    parser.add_argument("--run-dir", default="/tmp/lsi-device-run", help="training state (not copied back)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device, generator, analyzer = open_device(args)
    results = {"command": "python scripts/device_scaling.py", "args": vars(args)}
    if device.type == "cuda":
        results["device_name"] = torch.cuda.get_device_name(device)
    held_seeds = np.arange(data.HELD_OUT_SEED_START, data.HELD_OUT_SEED_START + args.held_out)
    test_w, test_images, test_labels = render_and_label(
        generator, analyzer, held_seeds, args.chunk, float("inf"), "held-out"
    )
    train_w, train_images, train_labels = render_and_label(
        generator, analyzer, np.arange(args.faces), args.chunk, args.render_budget_s, "training"
    )
    n = len(train_w)
    kept = ("age", "p_male", "expressions")  # what the binary attributes need; under 16 MB for 262k faces
    compact = {k: torch.from_numpy(np.ascontiguousarray(train_labels[k])) for k in kept}
    compact["seed"] = torch.arange(n, dtype=torch.int32)
    save_file(compact, str(out / "labels.safetensors"), metadata={"labeller": face_labels.FACE_API_PACKAGE})
    results["faces"] = n
    results["render_label_faces_per_s"] = round(n / (time.perf_counter() - START), 1)

    reserve = min(args.reserve, n // 4)
    n_model = n - reserve  # the encoder's training + validation faces; the rest fit boundaries on ŵ
    validation = min(256, n_model // 4)
    config = TrainConfig(
        num_measurements=128,
        train_faces=n_model - validation,
        validation_faces=validation,
        batch_size=args.batch_size,
        checkpoint_every=1000,
        extra={"rendered": f"torch export on {results.get('device_name', args.device)}"},
    )
    faces = data.FaceData(
        np.arange(n_model),
        train_w[:n_model],
        train_images[:n_model],
        generator.generator_id,
        data.DEFAULT_PSI,
    )
    probe = Trainer(config, Path(args.run_dir) / "probe", str(device), faces)
    probe.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(50):
        probe.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - began) / 50
    del probe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    steps = int(min(args.steps, max(20, args.train_budget_s / step_s)))
    config.steps = steps
    config.checkpoint_every = max(10, steps // 20)
    log(
        f"training m128 on {n_model - validation} faces: {steps} steps at batch {args.batch_size} "
        f"({step_s * 1e3:.1f} ms/step)"
    )
    trainer = Trainer(config, Path(args.run_dir) / "run", str(device), faces)
    trainer.fit()
    model_path = trainer.export(out / "m128.safetensors")
    results["reserved_for_hat_w_boundaries"] = reserve
    results["training"] = {"steps": steps, "ms_per_step": round(step_s * 1e3, 2), "history": trainer.history}
    del trainer
    log(f"exported {model_path}")

    targets_train = face_labels.binary_attributes(train_labels)
    targets_test = face_labels.binary_attributes(test_labels)
    ytr = {k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in targets_train.items()}
    yte = {k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in targets_test.items()}
    scale = train_w.std(0)
    new = load_model(model_path)
    latents = {
        "new": (
            encode(new, train_images[n_model:], 1),
            encode(new, test_images),
        )
    }
    if Path(args.shipped).is_file():
        shipped = load_model(args.shipped)
        latents["shipped"] = (None, encode(shipped, test_images))
    results["latent_mse"] = {
        name: float((((test_hat - test_w) / scale) ** 2).mean()) for name, (_, test_hat) in latents.items()
    }
    rows, fitted = [], {"w": [], "hat-w": []}
    for name in ATTRIBUTES:
        row = {"attribute": name, "chance": float(max(yte[name].mean(), 1 - yte[name].mean()))}
        for label, count in (("w8448", args.boundary_faces), ("wall", n)):
            weight, bias, l2 = fit_boundary_torch(train_w[:count], ytr[name][:count])
            row[f"true_latent_{label}"] = accuracy(weight, bias, test_w, yte[name])
            if label == "wall":
                fitted["w"].append((weight, bias))
            for model_name, (_, test_hat) in latents.items():
                row[f"{model_name}_latent_{label}"] = accuracy(weight, bias, test_hat, yte[name])
        weight, bias, l2 = fit_boundary_torch(latents["new"][0], ytr[name][n_model:])
        row["new_latent_fit_on_hat_w"] = accuracy(weight, bias, latents["new"][1], yte[name])
        row["l2_hat_w"] = l2
        fitted["hat-w"].append((weight, bias))
        rows.append(row)
        log(json.dumps(row))
    results["rows"] = rows
    for kind, pairs in fitted.items():
        pattern_set_id = "" if kind == "w" else new.pattern_set.pattern_set_id
        path = out / f"boundaries-{kind}.safetensors"
        save_torch_boundaries(pairs, generator.generator_id, pattern_set_id, path)
    results["seconds"] = round(time.perf_counter() - START, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log("done")


if __name__ == "__main__":
    main()
