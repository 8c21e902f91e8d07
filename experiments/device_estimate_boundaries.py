"""Attribute boundaries fitted on a shipped LSI model's own estimates, on a GPU (models/attributes-m128).

Renders and labels faces the model never saw (seeds from --first-seed on, past its training and
validation seeds) until --budget-s runs out, encodes them through the model's patterns and the
photodiode at photon flux 200, fits one logistic boundary per attribute on those estimates (L2 by log
loss on the last 10 %), and scores them on the 2,048 held-out seeds. With --mlp it also scores a
small MLP (one 512-unit hidden layer, dropout) on the estimates and on the true latents, as a
check of how much a nonlinear read-out would add. Same machine needs as experiments/device_scaling.py.

    python experiments/device_estimate_boundaries.py --model models/m128.safetensors --first-seed 68608 \\
        --budget-s 75 --out out          # what ships: 33,792 faces (seeds 68608..102399)

On a CPU with tiny sizes it checks itself (~5 min):

    python experiments/device_estimate_boundaries.py --device cpu --held-out 16 --chunk 16 --budget-s 1 \\
        --max-faces 64 --mlp --mlp-steps 250 --out /tmp/eb
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from device_scaling import (
    accuracy,
    binary_targets,
    encode,
    log,
    open_device,
    render_faces,
    save_torch_boundaries,
)

from lsi_ros.evaluation.downstream import fit_boundary_torch
from lsi_ros.models.checkpoint import load_model
from lsi_ros.training import data


def mlp_accuracy(x, y, x_test, y_test, steps: int, width: int = 512) -> float:
    """Held-out accuracy of a one-hidden-layer MLP, at its best step on the last 10 % of x."""
    mean, std = x.mean(0), x.std(0) + 1e-8
    z, z_test = (x - mean) / std, (x_test - mean) / std
    cut = int(len(z) * 0.9)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(z.shape[1], width), torch.nn.SiLU(), torch.nn.Dropout(0.2), torch.nn.Linear(width, 1)
    ).to(z.device)
    optimiser = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-3)
    best_val, best_test = -1.0, float("nan")
    for step in range(steps):
        index = torch.randint(0, cut, (1024,), device=z.device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(z[index])[:, 0], y[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 250 == 249:
            net.eval()
            with torch.no_grad():
                val = float(((net(z[cut:])[:, 0] > 0).float() == y[cut:]).float().mean())
                test = float(((net(z_test)[:, 0] > 0).float() == y_test).float().mean())
            net.train()
            if val > best_val:
                best_val, best_test = val, test
    return best_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/m128.safetensors")
    parser.add_argument("--first-seed", type=int, default=68608, help="first seed the model never saw")
    parser.add_argument("--export", default=".device/mobilestylegan", help="lsi data --export-torch folder")
    parser.add_argument("--face-api", default=".device/face-api", help="face-api model folder")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--held-out", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--budget-s", type=float, default=75.0, help="rendering + labelling time")
    parser.add_argument("--max-faces", type=int, default=131072, help="held-back faces, at most")
    parser.add_argument("--mlp", action="store_true", help="also score MLP read-outs")
    parser.add_argument("--mlp-steps", type=int, default=3000)
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device, generator, analyzer = open_device(args)
    model = load_model(args.model)
    held = np.arange(data.HELD_OUT_SEED_START, data.HELD_OUT_SEED_START + args.held_out)
    test_w, test_images, test_labels = render_faces(
        generator, held, args.chunk, float("inf"), "held-out", analyzer
    )
    seeds = np.arange(args.first_seed, args.first_seed + args.max_faces)
    fit_w, fit_images, fit_labels = render_faces(
        generator, seeds, args.chunk, args.budget_s, "held-back", analyzer
    )
    fit_hat = encode(model, fit_images, 1)
    test_hat = encode(model, test_images)
    targets, test_targets = binary_targets(fit_labels, device), binary_targets(test_labels, device)
    rows, fits = [], []
    for name, y in targets.items():
        weight, bias, l2 = fit_boundary_torch(fit_hat, y)
        fits.append((weight, bias))
        row = {
            "attribute": name,
            "l2": l2,
            "linear_on_estimates": accuracy(weight, bias, test_hat, test_targets[name]),
        }
        if args.mlp:
            row["mlp_on_estimates"] = mlp_accuracy(fit_hat, y, test_hat, test_targets[name], args.mlp_steps)
            row["mlp_on_true_latents"] = mlp_accuracy(fit_w, y, test_w, test_targets[name], args.mlp_steps)
        rows.append(row)
        log(json.dumps(row))
    path = out / f"attributes-{Path(args.model).stem}.safetensors"
    save_torch_boundaries(fits, generator.generator_id, model, path)
    results = {
        "command": "python experiments/device_estimate_boundaries.py",
        "args": vars(args),
        "model_id": model.model_id,
        "pattern_set_id": model.pattern_set.pattern_set_id,
        "held_back_seeds": [args.first_seed, args.first_seed + len(fit_w) - 1],
        "labels": "face-api port on the GPU; accuracies against its labels of the held-out faces",
        "rows": rows,
    }
    (out / "estimate_boundaries.json").write_text(json.dumps(results, indent=2) + "\n")
    log("done")


if __name__ == "__main__":
    main()
