"""Quality of classical reconstructions at equal pattern budget, on offline test images.

For each pattern budget ``P`` (patterns shown on the DMD) and photodiode model, every test image
(RGB, 256²) is measured through the optics core (pattern set → ideal ``y`` → ADC counts → ideal
units) and reconstructed:

- ``hadamard-pinv``: ± split Walsh–Hadamard set, ``P/2`` signed coefficients, zero-filled inverse;
- ``hadamard-tv``: same measurements, pylops split-Bregman TV; the TV weight is the best of
  ``TV_WEIGHTS`` on a separate calibration image (``images.CALIBRATION_IMAGE``) at the same ``P``
  and photodiode model, so the ground truth of the scored image is never used;
- ``hadamard-tv-oracle``: the best weight of the grid per scored image (an upper bound, marked);
- ``hadamard-reference-pinv``: ``(1+H)/2`` set with an all-on reference, ``P`` coefficients; only the
  calibrated dark level is subtracted, so ambient light leaves a bias.

Metrics compare the grayscale reconstruction (channel sum / 3: the photodiode sums RGB) with the
grayscale (channel mean) ground truth, both clipped to [0, 1] like a display: PSNR and SSIM from
``skimage.metrics`` with ``data_range=1``. ``M`` in a row is the number of Walsh coefficients the
reconstruction uses, ``patterns`` the number of DMD patterns displayed.

On the offline test images: ``python -m lsi_ros.evaluation.quality`` (writes
docs/results/quality_offline_images.json and docs/quality_offline_images.png). On held-out faces,
next to the learned models: ``lsi eval --baselines`` (lsi_ros.commands.eval).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm import tqdm

from lsi_ros.evaluation import baselines
from lsi_ros.evaluation.images import CALIBRATION_IMAGE, TEST_IMAGES, grayscale, load_image
from lsi_ros.optics import ForwardModel, PhotodiodeModel, hadamard_reference_patterns, hadamard_split_patterns

COMMAND = "python -m lsi_ros.evaluation.quality"
DEFAULT_PATTERNS = (32, 64, 128, 256)
TV_WEIGHTS = (0.03, 0.3, 3.0)
LOW_LIGHT_PHOTON_FLUX = 2.0
RESOLUTION = 256


def default_photodiodes() -> tuple[PhotodiodeModel, ...]:
    """Noiseless, the realistic default, and a 100× dimmer scene with the same electronics."""
    default = PhotodiodeModel()
    return PhotodiodeModel.noiseless(), default, default.with_photon_flux(LOW_LIGHT_PHOTON_FLUX)


def quality_metrics(truth: np.ndarray, reconstruction: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of a grayscale reconstruction, both images clipped to [0, 1]."""
    truth = np.clip(truth, 0.0, 1.0)
    reconstruction = np.clip(reconstruction, 0.0, 1.0)
    psnr = peak_signal_noise_ratio(truth, reconstruction, data_range=1.0)
    ssim = structural_similarity(truth, reconstruction, data_range=1.0)
    return float(psnr), float(ssim)


def measure_walsh(image, pattern_set, forward, photodiode, rng) -> tuple[np.ndarray, np.ndarray, int]:
    """Image → ADC counts → Walsh coefficients of the grayscale image; also the saturated count."""
    frame = photodiode.sample(forward.measure(image), rng)
    indices, coefficients = baselines.walsh_coefficients(pattern_set, photodiode.to_ideal(frame.counts))
    return indices, coefficients, int(frame.saturated)


def _tv_sweep(indices, coefficients, truth, weights) -> tuple[list[tuple[float, float]], list[np.ndarray]]:
    images = [baselines.reconstruct_tv(indices, coefficients, truth.shape[0], w) for w in weights]
    return [quality_metrics(truth, x) for x in images], images


def calibrate_tv_weight(
    pattern_set, forward, photodiode, weights: Sequence[float] = TV_WEIGHTS, seed: int = 0
) -> float:
    """TV weight with the best PSNR on the calibration image (never a scored image)."""
    image = load_image(CALIBRATION_IMAGE, pattern_set.resolution[0])
    rng = np.random.default_rng([seed, 9999, pattern_set.num_patterns])
    indices, coefficients, _ = measure_walsh(image, pattern_set, forward, photodiode, rng)
    scores, _ = _tv_sweep(indices, coefficients, grayscale(image), weights)
    return float(weights[int(np.argmax([psnr for psnr, _ in scores]))])


def run_quality(
    output_json: str | Path | None,
    images: Sequence[str] | Mapping[str, np.ndarray] = tuple(TEST_IMAGES),
    patterns: Sequence[int] = DEFAULT_PATTERNS,
    photodiodes: Sequence[PhotodiodeModel] | None = None,
    tv_weights: Sequence[float] = TV_WEIGHTS,
    seed: int = 0,
    figure: str | Path | None = None,
    example_image: str = "grace_hopper",
    progress: bool = True,
    resolution: int = RESOLUTION,
) -> dict:
    """Evaluate the baselines, write ``output_json`` (and ``figure``) and return the results dict."""
    photodiodes = tuple(photodiodes or default_photodiodes())
    # Names of offline test images, or ready images (name -> (R, R, 3) in [0, 1]), e.g. held-out faces.
    loaded = (
        dict(images)
        if isinstance(images, Mapping)
        else {name: load_image(name, resolution) for name in images}
    )
    scores: dict[tuple[str, int, int, str], list[tuple[float, float]]] = defaultdict(list)
    extras: dict[tuple[str, int, str], dict] = {}
    seconds: dict[str, list[float]] = defaultdict(list)
    examples: dict[tuple[str, int], np.ndarray] = {}
    bar = tqdm(total=len(patterns) * len(photodiodes) * len(images), disable=not progress, desc="baselines")
    for num_patterns in patterns:
        split = hadamard_split_patterns(num_patterns, resolution)
        reference = hadamard_reference_patterns(num_patterns, resolution)
        split_forward, reference_forward = ForwardModel(split), ForwardModel(reference)
        m_split, m_reference = num_patterns // 2, num_patterns
        for k, photodiode in enumerate(photodiodes):
            label = photodiode.label
            weight = calibrate_tv_weight(split, split_forward, photodiode, tv_weights, seed)
            saturated = 0
            for i, name in enumerate(images):
                image, truth = loaded[name], grayscale(loaded[name])
                rng = np.random.default_rng([seed, i, num_patterns, k])
                indices, coefficients, sat = measure_walsh(image, split, split_forward, photodiode, rng)
                saturated += sat
                start = time.perf_counter()
                pinv = baselines.reconstruct_pinv(indices, coefficients, resolution)
                seconds["hadamard-pinv"].append(time.perf_counter() - start)
                scores["hadamard-pinv", m_split, num_patterns, label].append(quality_metrics(truth, pinv))
                start = time.perf_counter()
                sweep, tv_images = _tv_sweep(indices, coefficients, truth, tv_weights)
                seconds["hadamard-tv"].append((time.perf_counter() - start) / len(tv_weights))
                scores["hadamard-tv", m_split, num_patterns, label].append(sweep[tv_weights.index(weight)])
                scores["hadamard-tv-oracle", m_split, num_patterns, label].append(max(sweep))
                indices_r, coefficients_r, sat = measure_walsh(
                    image, reference, reference_forward, photodiode, rng
                )
                saturated += sat
                reference_pinv = baselines.reconstruct_pinv(indices_r, coefficients_r, resolution)
                scores["hadamard-reference-pinv", m_reference, num_patterns, label].append(
                    quality_metrics(truth, reference_pinv)
                )
                if name == example_image and k == 0:
                    examples["hadamard-pinv", num_patterns] = pinv
                    examples["hadamard-tv", num_patterns] = tv_images[tv_weights.index(weight)]
                bar.update()
            extras["hadamard-tv", num_patterns, label] = {"tv_weight": weight}
            extras["saturated", num_patterns, label] = {"saturated_measurements": saturated}
    bar.close()
    rows = []
    for (method, m, num_patterns, label), values in scores.items():
        psnr, ssim = np.mean(values, axis=0)
        row = {
            "method": method,
            "M": m,
            "patterns": num_patterns,
            "noise": label,
            "psnr": round(float(psnr), 2),
            "ssim": round(float(ssim), 3),
            "n_images": len(values),
            "resolution": resolution,
            "psnr_per_image": [round(p, 2) for p, _ in values],
        }
        if method == "hadamard-tv":
            row["tv_weight"] = extras["hadamard-tv", num_patterns, label]["tv_weight"]
        if label != "none":
            row.update(extras["saturated", num_patterns, label])
        rows.append(row)
    rows.sort(key=lambda r: (r["method"], r["noise"], r["patterns"]))
    results = {
        "rows": rows,
        "command": COMMAND,
        "images": list(images),
        "image_source": "offline test images: skimage.data + matplotlib grace_hopper.jpg, centre crop + area "
        f"resize to {resolution}x{resolution}, grayscale replicated to RGB",
        "calibration_image": CALIBRATION_IMAGE,
        "metrics": "grayscale (channel sum / 3 vs channel mean), clipped to [0,1], "
        "skimage PSNR/SSIM with data_range=1",
        "tv": {
            "solver": "pylops splitbregman, anisotropic TV, mu=1",
            "outer_iterations": baselines.TV_OUTER_ITERATIONS,
            "weight_grid": list(tv_weights),
            "weight_rule": "best PSNR on the calibration image at the same patterns and noise",
        },
        "photodiodes": {pd.label: dataclasses.asdict(pd) for pd in photodiodes},
        "seconds_per_reconstruction": {k: round(float(np.mean(v)), 4) for k, v in seconds.items()},
        "seed": seed,
    }
    if output_json is not None:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(output_json).write_text(json.dumps(results, indent=2) + "\n")
    if figure is not None:
        plot_quality(results, examples, loaded.get(example_image), figure)
    return results


def plot_quality(results: dict, examples: dict, example: np.ndarray | None, path: str | Path) -> None:
    """PSNR vs patterns per method and noise level, and an example reconstruction strip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    patterns = sorted({num for _, num in examples})
    columns = 1 + len(patterns)
    fig = plt.figure(figsize=(2.2 * columns, 9.5), layout="constrained")
    grid = fig.add_gridspec(3, columns, height_ratios=[2.2, 1, 1])
    ax = fig.add_subplot(grid[0, :])
    curves = defaultdict(list)
    for row in results["rows"]:
        curves[row["method"], row["noise"]].append((row["patterns"], row["psnr"]))
    styles = {"none": "-", "photons=2": ":"}
    for (method, noise), points in sorted(curves.items()):
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, styles.get(noise, "--"), marker="o", label=f"{method} ({noise})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("DMD patterns displayed")
    side = results["rows"][0]["resolution"]
    ax.set_ylabel(f"mean PSNR (dB), {len(results['images'])} offline images, {side}² gray")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    for r, method in enumerate(("hadamard-pinv", "hadamard-tv"), start=1):
        tiles = [(example.mean(axis=-1) if example is not None else None, "ground truth")]
        tiles += [(examples.get((method, num)), f"{method[9:]} P={num}") for num in patterns]
        for c, (tile, title) in enumerate(tiles):
            tile_ax = fig.add_subplot(grid[r, c])
            tile_ax.axis("off")
            if tile is not None:
                tile_ax.imshow(np.clip(tile, 0, 1), cmap="gray", vmin=0, vmax=1)
                tile_ax.set_title(title, fontsize=8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--output", default="docs/results/quality_offline_images.json", help="results JSON")
    parser.add_argument("--figure", default="docs/quality_offline_images.png", help="figure ('' for none)")
    parser.add_argument("--patterns", type=int, nargs="+", default=list(DEFAULT_PATTERNS))
    parser.add_argument("--images", nargs="+", default=list(TEST_IMAGES), choices=list(TEST_IMAGES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(args: argparse.Namespace) -> int:
    results = run_quality(
        args.output,
        images=args.images,
        patterns=args.patterns,
        seed=args.seed,
        figure=args.figure or None,
        progress=not args.no_progress,
    )
    for row in results["rows"]:
        method, patterns, noise = row["method"], row["patterns"], row["noise"]
        print(f"{method:26s} P={patterns:4d} {noise:13s} {row['psnr']:6.2f} dB {row['ssim']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(
        main(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())
    )
