"""Quality of latent space imaging on held-out generated faces (the faces' true latents are known).

Each face (RGB, 256²) is measured with the model's learned patterns through the photodiode model,
encoded to a latent and decoded by the frozen generator. Scored like the classical baselines
(lsi_ros.evaluation.quality): grayscale PSNR/SSIM against the face, plus RGB PSNR and the latent
error in the encoder's normalised units. The ``mean-latent`` row decodes the average latent for
every face: what a camera that measured nothing would show.
"""

import numpy as np
import torch
from tqdm import tqdm

from lsi_ros.evaluation.images import grayscale
from lsi_ros.evaluation.quality import quality_metrics
from lsi_ros.optics import ForwardModel, PhotodiodeModel


def _score(truth_rgb: np.ndarray, decoded_rgb: np.ndarray) -> dict:
    psnr, ssim = quality_metrics(grayscale(truth_rgb), grayscale(decoded_rgb))
    rgb_mse = float(np.mean((np.clip(decoded_rgb, 0, 1) - truth_rgb) ** 2))
    return {"psnr": psnr, "ssim": ssim, "psnr_rgb": float(10 * np.log10(1.0 / max(rgb_mse, 1e-12)))}


def encode_faces(model, images: np.ndarray, photodiode: PhotodiodeModel, seed: int = 0) -> np.ndarray:
    """Faces (N, R, R, 3) in [0, 1] -> latents (N, D) through patterns, detector and encoder."""
    counts = photodiode.sample(
        ForwardModel(model.pattern_set).measure(images), np.random.default_rng(seed)
    ).counts
    with torch.inference_mode():
        return model.encoder(torch.from_numpy(counts.astype(np.float32))).numpy()


def evaluate(models, generator, faces, photodiodes, batch: int = 16, progress: bool = True) -> list[dict]:
    """Rows (one per model and photodiode, plus mean-latent) averaged over ``faces``."""
    truth = faces.images.astype(np.float32) / 255.0
    rows = []
    mean_image = generator.synthesize(generator.mean_latent()[None])[0]
    scores = [_score(t, mean_image) for t in truth]
    rows.append(_row("mean-latent", 0, 0, "none", scores, faces))
    total = len(models) * len(photodiodes) * len(truth)
    with tqdm(total=total, desc="lsi eval", unit="face", disable=not progress) as bar:
        for model in models:
            std = model.encoder.latent_std.numpy()
            for photodiode in photodiodes:
                latents = encode_faces(model, truth, photodiode)
                scores = []
                for start in range(0, len(truth), batch):
                    decoded = generator.synthesize(latents[start : start + batch])
                    scores += [
                        _score(t, d) for t, d in zip(truth[start : start + batch], decoded, strict=True)
                    ]
                    bar.update(len(decoded))
                latent_error = float(np.mean(((latents - faces.latents) / std) ** 2))
                m = model.num_measurements
                rows.append(_row("lsi", m, m, photodiode.label, scores, faces, latent_mse=latent_error))
    return rows


def _row(method, m, patterns, noise, scores, faces, **extra) -> dict:
    mean = {k: round(float(np.mean([s[k] for s in scores])), 3) for k in scores[0]}
    return {
        "method": method,
        "M": m,
        "patterns": patterns,
        "noise": noise,
        "psnr": mean["psnr"],
        "ssim": mean["ssim"],
        "psnr_rgb": mean["psnr_rgb"],
        "n_images": len(scores),
        "resolution": int(faces.images.shape[1]),
        "images": f"held-out generated faces, seeds {int(faces.seeds[0])}..{int(faces.seeds[-1])}",
        **{k: round(v, 4) for k, v in extra.items()},
    }


def examples(models, generator, faces, chosen: dict, photodiode, index: int = 0) -> dict:
    """One face through every model and the Hadamard baselines at the same pattern budgets."""
    from lsi_ros.evaluation import baselines, quality
    from lsi_ros.optics import hadamard_split_patterns

    name, image = list(chosen.items())[index]
    tiles = {("truth", 0): image}
    for model in models:
        w = encode_faces(model, image[None], photodiode)
        tiles["lsi", model.num_measurements] = generator.synthesize(w)[0]
        split = hadamard_split_patterns(model.num_measurements, image.shape[0])
        rng = np.random.default_rng(0)
        indices, coefficients, _ = quality.measure_walsh(image, split, ForwardModel(split), photodiode, rng)
        tiles["hadamard-pinv", model.num_measurements] = baselines.reconstruct_pinv(
            indices, coefficients, image.shape[0]
        )
    return {"face": name, "noise": photodiode.label, "tiles": tiles}


def plot(results: dict, examples: dict, path) -> None:
    """PSNR against DMD patterns for every method and noise level, and one face across methods."""
    from collections import defaultdict
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiles = examples.get("tiles", {})
    budgets = sorted({p for (m, p) in tiles if m == "lsi"})
    columns = max(1 + len(budgets), 4)
    fig = plt.figure(figsize=(2.3 * columns, 4.2 + (4.6 if tiles else 0)), layout="constrained")
    grid = fig.add_gridspec(3 if tiles else 1, columns, height_ratios=[2.2, 1, 1] if tiles else [1])
    ax = fig.add_subplot(grid[0, :])
    curves = defaultdict(list)
    for row in results["rows"]:
        if row["method"] == "mean-latent":
            ax.axhline(row["psnr"], color="gray", lw=1, ls="--", label="mean latent (no measurement)")
        elif row["method"] in ("lsi", "hadamard-pinv", "hadamard-tv"):
            curves[row["method"], row["noise"]].append((row["patterns"], row["psnr"]))
    for (method, noise), points in sorted(curves.items()):
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, "-" if noise == "none" else ":", marker="o", label=f"{method} ({noise})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("DMD patterns displayed per frame")
    ax.set_ylabel("mean PSNR (dB), held-out faces, 256² gray")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    if tiles:
        for r, method in enumerate(("lsi", "hadamard-pinv"), start=1):
            row_tiles = [(tiles["truth", 0], f"{examples['face']}")]
            row_tiles += [(tiles.get((method, p)), f"{method} P={p}") for p in budgets]
            for c, (tile, title) in enumerate(row_tiles):
                tile_ax = fig.add_subplot(grid[r, c])
                tile_ax.axis("off")
                if tile is not None:
                    shown = np.clip(tile, 0, 1)
                    tile_ax.imshow(shown, cmap=None if shown.ndim == 3 else "gray", vmin=0, vmax=1)
                    tile_ax.set_title(title + (f" ({examples['noise']})" if c else ""), fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
