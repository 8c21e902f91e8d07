"""Quality of latent space imaging on held-out generated faces (the faces' true latents are known).

Each face (RGB, 256²) is measured with the model's learned patterns through the photodiode model,
encoded to a latent and decoded by the frozen generator. Scored like the classical baselines
(lsi_ros.evaluation.quality): grayscale PSNR/SSIM against the face, plus RGB PSNR and the latent
error in the encoder's normalised units. The ``mean-latent`` row decodes the average latent for
every face: what a camera that measured nothing would show.
"""

import numpy as np
import torch
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from lsi_ros.evaluation.images import grayscale
from lsi_ros.evaluation.quality import quality_metrics
from lsi_ros.models.encoder import normalised_error
from lsi_ros.optics import ForwardModel, PhotodiodeModel

# Five scales of an 11-pixel window need more than (11 - 1) * 2**4 pixels a side.
MS_SSIM_MIN_SIZE = 160


def score_image(truth_rgb: np.ndarray, decoded_rgb: np.ndarray) -> dict:
    """Grayscale PSNR/SSIM (MS-SSIM above 160 px) and RGB PSNR of a decoded image against the truth."""
    truth, decoded = grayscale(truth_rgb), grayscale(np.clip(decoded_rgb, 0, 1))
    psnr, ssim = quality_metrics(truth, decoded)
    rgb_mse = float(np.mean((np.clip(decoded_rgb, 0, 1) - truth_rgb) ** 2))
    scores = {"psnr": psnr, "ssim": ssim, "psnr_rgb": float(10 * np.log10(1.0 / max(rgb_mse, 1e-12)))}
    if truth.shape[0] > MS_SSIM_MIN_SIZE:
        pair = [
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None] for x in (truth, decoded)
        ]
        scores["ms_ssim"] = float(ms_ssim(*pair, data_range=1.0))
    return scores


def encode_faces(
    model, images, photodiode: PhotodiodeModel, seed: int = 0, chunk: int = 2048
) -> np.ndarray | torch.Tensor:
    """Faces (N, R, R, 3) -> latents (N, D), or W+ (N, L, D), through patterns, detector and encoder.

    Numpy faces in [0, 1] are measured with numpy noise; a uint8 torch tensor is measured and encoded
    where it lies (a GPU's faces stay there), in chunks, with torch noise, and gives a tensor."""
    if not isinstance(images, torch.Tensor):
        counts = photodiode.sample(
            ForwardModel(model.pattern_set).measure(images), np.random.default_rng(seed)
        ).counts
        with torch.inference_mode():
            return model.encoder(torch.from_numpy(counts.astype(np.float32))).numpy()
    forward = ForwardModel(model.pattern_set, np.float32)
    encoder = model.encoder.to(images.device).eval()
    rng = torch.Generator(images.device).manual_seed(seed)
    latents = []
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            faces = images[start : start + chunk].permute(0, 3, 1, 2).float() / 255.0
            latents.append(encoder(photodiode.sample_torch(forward.measure_torch(faces), rng).counts))
    return torch.cat(latents)


def decode_faces(
    generator, latents: np.ndarray, batch: int = 16, desc: str = "decoding", progress: bool = True
):
    """Latents (N, D) -> the generator's faces (N, R, R, 3) uint8, the form the face labeller reads."""
    parts = [
        (generator.synthesize(latents[start : start + batch]) * 255.0 + 0.5).astype(np.uint8)
        for start in tqdm(range(0, len(latents), batch), desc=desc, unit="batch", disable=not progress)
    ]
    return np.concatenate(parts)


def evaluate(models, generator, faces, photodiodes, batch: int = 16, progress: bool = True) -> list[dict]:
    """Rows (one per model and photodiode, plus mean-latent) averaged over ``faces``."""
    truth = faces.images.astype(np.float32) / 255.0
    rows = []
    mean_image = generator.synthesize(generator.mean_latent()[None])[0]
    scores = [score_image(t, mean_image) for t in truth]
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
                        score_image(t, d) for t, d in zip(truth[start : start + batch], decoded, strict=True)
                    ]
                    bar.update(len(decoded))
                latent_error = float(np.mean(normalised_error(latents, faces.latents, std) ** 2))
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
        **mean,
        "n_images": len(scores),
        "resolution": int(faces.images.shape[1]),
        "images": f"held-out generated faces, seeds {int(faces.seeds[0])}..{int(faces.seeds[-1])}",
        **{k: round(v, 4) for k, v in extra.items()},
    }


def example_grid(models, generator, faces: dict, photodiode, patterns: int = 256) -> dict:
    """Faces (name -> (R, R, 3) in [0, 1]) through every model and the Hadamard baselines.

    Columns: truth, LSI at each M, Hadamard pinv and TV with ``patterns`` displayed (their best
    budget here); TV uses the calibrated weight rule of lsi_ros.evaluation.quality.
    """
    from lsi_ros.evaluation import baselines, quality
    from lsi_ros.optics import hadamard_split_patterns

    resolution = next(iter(faces.values())).shape[0]
    split = hadamard_split_patterns(patterns, resolution)
    forward = ForwardModel(split)
    weight = quality.calibrate_tv_weight(split, forward, photodiode)
    rows = {}
    for name, image in faces.items():
        tiles = {"truth": image}
        for model in models:
            tiles[f"LSI M={model.num_measurements}"] = generator.synthesize(
                encode_faces(model, image[None], photodiode)
            )[0]
        rng = np.random.default_rng(0)
        indices, coefficients, _ = quality.measure_walsh(image, split, forward, photodiode, rng)
        tiles[f"pinv P={patterns}"] = baselines.reconstruct_pinv(indices, coefficients, resolution)
        tiles[f"TV P={patterns}"] = baselines.reconstruct_tv(indices, coefficients, resolution, weight)
        rows[name] = tiles
    return rows


def plot_examples(
    rows: dict, noise: str, path, title: str = "held-out faces and real portraits (out of distribution)"
) -> None:
    """A grid: one row per face, one column per method (gray tiles: what a photodiode sees)."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(next(iter(rows.values())))
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(1.7 * len(columns), 1.8 * len(rows)), squeeze=False
    )
    for r, (name, tiles) in enumerate(rows.items()):
        for c, column in enumerate(columns):
            ax = axes[r][c]
            ax.axis("off")
            tile = np.clip(tiles[column], 0, 1)
            ax.imshow(tile, cmap=None if tile.ndim == 3 else "gray", vmin=0, vmax=1)
            if r == 0:
                ax.set_title(column, fontsize=8)
            if c == 0:
                ax.text(
                    -0.05, 0.5, name, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=7
                )
    fig.suptitle(f"{title}; detector: {noise}", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_quality(results: dict, path) -> None:
    """Mean PSNR and SSIM against the compression ratio, per method and detector noise."""
    from collections import defaultdict
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    curves = defaultdict(list)
    for row in results["rows"]:
        if row["method"] in ("lsi", "hadamard-pinv", "hadamard-tv"):
            curves[row["method"], row["noise"]].append(row)
    styles = {"none": "-", "photons=200": "--"}
    colors = {"lsi": "tab:red", "hadamard-pinv": "tab:blue", "hadamard-tv": "tab:green"}
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        for row in results["rows"]:
            if row["method"] == "mean-latent":
                ax.axhline(
                    row[metric], color="gray", lw=1, ls="--", label="decoded mean latent (nothing measured)"
                )
        for (method, noise), rows in sorted(curves.items()):
            rows = sorted(rows, key=lambda r: r["patterns"])
            ratios = [results["pixels"] / r["patterns"] for r in rows]
            ax.plot(
                ratios,
                [r[metric] for r in rows],
                styles.get(noise, ":"),
                color=colors[method],
                marker="o",
                label=f"{method} ({noise})",
            )
        ax.set_xscale("log", base=2)
        ax.invert_xaxis()
        ax.set_xlabel("compression ratio (256² pixels / DMD patterns displayed)")
        ax.set_ylabel(f"mean {metric.upper()}, held-out faces, 256² gray")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
