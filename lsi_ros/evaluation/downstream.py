"""Downstream tasks from the latent code and from a handful of measurements (the paper's 1:16384).

Labels come from the face-api port (lsi_ros.evaluation.face_labels). Sources compared on held-out
faces, each scored against the labeller's label on the clean 256² face:

- ``image``: the labeller itself on the mirrored face. The labels are the labeller's output on the
  face, so "the labeller on the face" would score 1.0 by construction; its agreement with itself under a
  label-preserving change (left-right mirror) is the ceiling any camera can reach against these labels.
- ``image-grayscale``: the same on the mirrored face in gray (channel mean): the full image of this
  camera, whose photodiode sums the channels, raster-scanned with M = 256² measurements.
- ``image-latent``: the boundaries on a latent estimated from the full grayscale image (every pixel
  of this camera, 2×2-pooled to 128²) by ridge regression trained on the same training faces as the
  LSI encoders: the full image read out the way LSI reads its M values, so the gap to ``lsi-latent``
  is what measuring M values instead of the image costs a latent readout.
- ``true-latent``: the linear boundaries on the face's true latent (M = none: nothing measured).
- ``lsi-latent``: the boundaries on the latent the LSI model m32..m256 encodes from its M photodiode
  values (learned patterns, photodiode noise model).
- ``task-patterns``: M binary patterns and a tiny head trained end to end for one attribute, with the
  photodiode in the loop.
- ``hadamard``: M low-sequency Walsh–Hadamard split patterns, logistic regression on their counts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from lsi_ros.models.attributes import AttributeBoundaries
from lsi_ros.models.task import TaskHead, TaskModel
from lsi_ros.optics import ForwardModel, PhotodiodeModel
from lsi_ros.optics.patterns import PatternSet, learned_patterns

# Inter-ocular normalisation of the 68-point scheme: outer eye corners.
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45


def fit_boundaries(latents: np.ndarray, attributes: dict[str, np.ndarray], generator_id: str = ""):
    """Logistic regression per attribute (C by 5-fold cross-validation, log loss: calibrated
    probabilities) on standardised latents, folded back into one AttributeBoundaries on raw w."""
    from sklearn.linear_model import LogisticRegressionCV

    mean, std = latents.mean(0), latents.std(0) + 1e-8
    z = (latents - mean) / std
    weights, biases = [], []
    for target in attributes.values():
        classifier = LogisticRegressionCV(
            Cs=6, cv=5, scoring="neg_log_loss", max_iter=2000, l1_ratios=(0.0,), use_legacy_attributes=False
        )
        classifier.fit(z, target.astype(int))
        a = classifier.coef_[0] / std
        weights.append(a)
        biases.append(classifier.intercept_[0] - a @ mean)
    return AttributeBoundaries(
        tuple(attributes), np.array(weights, np.float32), np.array(biases, np.float32), generator_id
    )


def fit_boundary_torch(
    latents: torch.Tensor, target: torch.Tensor, l2_grid=(1e-4, 1e-3, 1e-2, 1e-1), steps: int = 200
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One attribute's boundary like ``fit_boundaries``, in torch where the latents lie (a GPU machine
    without scikit-learn, tens of thousands of faces): full-batch L-BFGS logistic regression on
    standardised latents, L2 strength by log loss on the last 10 % of rows, then refit on all.
    Returns (weight, bias) on raw latents and the chosen L2."""
    cut = int(len(latents) * 0.9)
    losses = {}
    for l2 in l2_grid:
        weight, bias = _logistic_torch(latents[:cut], target[:cut], l2, steps)
        logits = latents[cut:] @ weight + bias
        losses[l2] = torch.nn.functional.binary_cross_entropy_with_logits(logits, target[cut:]).item()
    l2 = min(losses, key=losses.get)
    return (*_logistic_torch(latents, target, l2, steps), l2)


def _logistic_torch(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int):
    mean, std = x.mean(0), x.std(0) + 1e-8
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], device=x.device, requires_grad=True)
    b = torch.zeros((), device=x.device, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w @ w) / 2
        loss.backward()
        return loss

    optimiser.step(closure)
    weight = (w / std).detach()
    return weight, (b - weight @ mean).detach()


def accuracy(probabilities: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(correct(probabilities, target)))


def correct(probabilities: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per face: does p > 0.5 agree with the label?"""
    return (probabilities > 0.5) == target.astype(bool)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion: on 512 faces an accuracy of 0.9 is only known to
    about ±2.6 points, which decides whether a 3-point target is met."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def expected_calibration_error(probabilities: np.ndarray, target: np.ndarray, bins: int = 10) -> float:
    """Mean |confidence − accuracy| over equal-width probability bins, weighted by bin size."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            total += chosen.sum() * abs(probabilities[chosen].mean() - target[chosen].mean())
    return float(total / len(target))


def fit_landmarks(latents: np.ndarray, landmarks: np.ndarray, alpha: float = 10.0):
    """Ridge regression latent -> 68 (x, y) landmarks; returns a predict function."""
    from sklearn.linear_model import Ridge

    regressor = Ridge(alpha=alpha).fit(latents, landmarks.reshape(len(landmarks), -1))
    return lambda w: regressor.predict(w).reshape(len(w), 68, 2)


class ImageLatentRegression:
    """Full image (channel sums, (N, P)) -> latent, linear: ``w = w_mean + w_std · (x − x_mean) @ B``."""

    def __init__(self, image_mean: np.ndarray, projection: np.ndarray, latent_mean, latent_std, alpha: float):
        self.image_mean, self.projection = image_mean, projection
        self.latent_mean, self.latent_std, self.alpha = latent_mean, latent_std, alpha

    def __call__(self, sums: np.ndarray) -> np.ndarray:
        offset = (sums - self.image_mean) @ self.projection
        return (self.latent_mean + self.latent_std * offset).astype(np.float32)


def latent_error(latents: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> float:
    """Mean squared latent error per dimension in units of ``scale`` (the training latents' std, as
    the encoders' normalised latent loss measures it)."""
    return float(np.mean(((latents - truth) / scale) ** 2))


def fit_image_latents(
    sums: np.ndarray, latents: np.ndarray, alphas=(1e3, 3e3, 1e4, 3e4, 1e5), validation: int = 1024
) -> ImageLatentRegression:
    """Ridge regression from images to normalised latents, solved in the dual (an N × N kernel: fewer
    faces than pixels). ``alpha`` is the one with the lowest latent error on the last ``validation``
    training faces, fitted on the others; the returned model is refitted on all of them."""
    if not 0 < validation < len(sums):
        raise ValueError(f"validation faces {validation} must be between 0 and {len(sums)}")
    image_mean = sums.mean(0)
    centred = (sums - image_mean).astype(np.float32)
    latent_mean, latent_std = latents.mean(0), latents.std(0) + 1e-8
    target = (latents - latent_mean) / latent_std
    kernel = (centred @ centred.T).astype(np.float64)
    fit = len(sums) - validation
    errors = {}
    for alpha in alphas:
        dual = np.linalg.solve(kernel[:fit, :fit] + alpha * np.eye(fit), target[:fit])
        errors[alpha] = float(np.mean((kernel[fit:, :fit] @ dual - target[fit:]) ** 2))
    alpha = min(errors, key=errors.get)
    dual = np.linalg.solve(kernel + alpha * np.eye(len(sums)), target)
    projection = (centred.T @ dual.astype(np.float32)).astype(np.float32)
    return ImageLatentRegression(image_mean, projection, latent_mean, latent_std, alpha)


def face_nme(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per face: mean point error over the inter-ocular (outer eye corner) distance."""
    ocular = np.linalg.norm(truth[:, LEFT_EYE_OUTER] - truth[:, RIGHT_EYE_OUTER], axis=1)
    return np.linalg.norm(predicted - truth, axis=2).mean(1) / ocular


def landmark_nme(predicted: np.ndarray, truth: np.ndarray) -> float:
    """NME averaged over faces (the usual figure; one failed labeller fit with a tiny eye distance
    can dominate it, hence the median beside it in the rows)."""
    return float(np.mean(face_nme(predicted, truth)))


def channel_sums(images: np.ndarray, pool: int = 1, chunk: int = 512) -> np.ndarray:
    """(N, R, R, 3) uint8 -> (N, (R/pool)²) float32 channel sums in [0, 3], summed over pool² blocks
    (a pattern constant on those blocks sees exactly the same light)."""
    n, r = len(images), images.shape[1]
    out = np.empty((n, (r // pool) ** 2), np.float32)
    for start in range(0, n, chunk):
        x = images[start : start + chunk].astype(np.float32).sum(-1) / 255.0
        x = x.reshape(len(x), r // pool, pool, r // pool, pool).sum((2, 4))
        out[start : start + chunk] = x.reshape(len(x), -1)
    return out


def panchromatic(images: np.ndarray) -> np.ndarray:
    """(N, R, R, 3) uint8 -> the same faces in gray (channel mean, as RGB): all a photodiode that sums
    the channels can ever see of them."""
    gray = np.round(images.astype(np.float32).mean(-1, keepdims=True)).astype(np.uint8)
    return np.repeat(gray, 3, axis=-1)


def measure_counts(sums: np.ndarray, matrix: np.ndarray, photodiode: PhotodiodeModel, seed: int = 0):
    """Channel sums (N, P) through a (M, P) pattern matrix and the photodiode -> ADC counts (N, M)."""
    y = sums.astype(np.float64) @ matrix.T.astype(np.float64)
    return photodiode.sample(y, np.random.default_rng(seed)).counts


def hadamard_probe(train_counts, train_target, test_counts) -> np.ndarray:
    """Logistic regression on standardised counts (the classical comparison): test probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_counts, train_target.astype(int))
    return probe.predict_proba(test_counts)[:, 1]


# -- task-specific patterns -------------------------------------------------------------------


def train_task_patterns(
    sums: np.ndarray,
    target: np.ndarray,
    num_measurements: int,
    attribute: str,
    block: int,
    resolution: int,
    steps: int = 3000,
    batch: int = 256,
    photon_flux_range: tuple = (20.0, 2000.0),
    seed: int = 0,
    progress: bool = True,
) -> TaskModel:
    """Patterns (straight-through binary, one value per block² of mirrors) + head, trained on
    block-summed channel sums ``sums`` (N, (R/block)²) against bool ``target`` with the photodiode
    (photon flux log-uniform in ``photon_flux_range``) in the loop; returns the model at ``resolution``."""
    from lsi_ros.models.encoder import BinaryPatterns
    from lsi_ros.training.train import learning_rate, log_uniform_flux

    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    coarse = int(math.isqrt(sums.shape[1]))
    patterns = BinaryPatterns(num_measurements, coarse, rng)
    head = TaskHead(num_measurements)
    groups = [
        {"params": head.parameters(), "peak": 3e-3, "weight_decay": 1e-4},
        {"params": patterns.parameters(), "peak": 1e-2, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups)
    x_all = torch.from_numpy(sums)
    t_all = torch.from_numpy(target.astype(np.float32))
    for step in tqdm(range(steps), desc=f"task patterns M={num_measurements}", disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, group["peak"])
        index = torch.randint(0, len(x_all), (batch,), generator=rng)
        flux = log_uniform_flux(photon_flux_range, rng)
        x = x_all[index]
        # Left-right mirrored faces keep their attributes: half of each batch is mirrored.
        mirror = torch.rand(batch, generator=rng) < 0.5
        x[mirror] = x[mirror].view(-1, coarse, coarse).flip(-1).reshape(-1, coarse * coarse)
        y = x @ patterns().T
        counts = PhotodiodeModel().with_photon_flux(flux).sample_torch(y, rng).counts
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(counts), t_all[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    bits = patterns.binary().numpy().reshape(-1, coarse, coarse)
    fine = np.kron(bits, np.ones((block, block), dtype=bool)) if block > 1 else bits
    assert fine.shape[-1] == resolution
    pattern_set = learned_patterns(fine, model_id=f"task-{attribute}-m{num_measurements}")
    return TaskModel(attribute, pattern_set, head.eval())


def measure_task(model: TaskModel, images: np.ndarray, photodiode: PhotodiodeModel, seed: int = 0):
    """Held-out faces (N, R, R, 3) uint8 through the full-resolution patterns and the photodiode."""
    return measure_counts(channel_sums(images), ForwardModel(model.pattern_set).matrix, photodiode, seed)


# -- the comparison ---------------------------------------------------------------------------


def accuracy_row(attribute: str, m, source: str, probabilities, target, **extra) -> dict:
    right = int(correct(probabilities, target).sum())
    value = right / len(target)
    low, high = wilson_interval(right, len(target))
    return {
        "attribute": attribute,
        "M": m,
        "source": source,
        "accuracy": round(value, 4),
        "ci95": [round(low, 4), round(high, 4)],
        "n_images": int(len(target)),
        **extra,
    }


def block_matrix(pattern_set: PatternSet, block: int) -> np.ndarray:
    """A (M, R²) pattern set constant on block² mirrors -> its (M, (R/block)²) matrix on block sums."""
    r = pattern_set.resolution[0]
    dense = pattern_set.matrix().reshape(-1, r // block, block, r // block, block)
    coarse = dense[:, :, :1, :, :1]
    if not np.array_equal(np.broadcast_to(coarse, dense.shape), dense):
        raise ValueError(f"pattern set is not constant on {block}x{block} blocks")
    return coarse.reshape(len(dense), -1)


def latent_rows(boundaries, latents, attributes, source, m, **extra) -> list[dict]:
    """One accuracy row per attribute for the boundaries on ``latents``, with calibration error."""
    probabilities = boundaries.probabilities(latents)
    return [
        accuracy_row(
            name,
            m,
            source,
            probabilities[:, k],
            attributes[name],
            ece=round(expected_calibration_error(probabilities[:, k], attributes[name]), 4),
            **extra,
        )
        for k, name in enumerate(boundaries.names)
    ]


def nme_row(m, source, predicted, truth, **extra) -> dict:
    return {
        "attribute": "landmarks68",
        "M": m,
        "source": source,
        "nme": round(landmark_nme(predicted, truth), 4),
        "nme_median": round(float(np.median(face_nme(predicted, truth))), 4),
        "n_images": int(len(truth)),
        **extra,
    }


def plot_comparison(results: dict, path) -> None:
    """Accuracy against M per attribute and source (lines for the image, image-latent and true-latent
    references), and NME."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["attributes"])
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 4), layout="constrained")
    colors = {
        "lsi-latent": "tab:red",
        "lsi-latent-fitted": "tab:orange",
        "lsi-decoded": "tab:pink",
        "task-patterns": "tab:purple",
        "hadamard": "tab:blue",
    }
    accuracy_rows = [r for r in results["rows"] if "accuracy" in r]
    for ax, name in zip(axes, names, strict=False):
        rows = [r for r in accuracy_rows if r["attribute"] == name]
        for row in rows:
            if row["source"] == "image":
                ax.axhline(row["accuracy"], color="black", ls="--", lw=1, label="labeller on mirrored image")
            if row["source"] == "image-grayscale":
                ax.axhline(row["accuracy"], color="tab:brown", ls="--", lw=1, label="... on its grayscale")
            if row["source"] == "true-latent":
                ax.axhline(row["accuracy"], color="gray", ls=":", lw=1.5, label="boundary on true latent")
            if row["source"] == "image-latent":
                ax.axhline(
                    row["accuracy"], color="tab:green", ls="-.", lw=1.5, label="full gray image → latent"
                )
        majority = results.get("majority_class_accuracy", {}).get(name)
        if majority is not None:
            ax.axhline(majority, color="tab:olive", ls="-.", lw=1, label="majority class (chance)")
        for source, color in colors.items():
            curve = sorted((r["M"], r["accuracy"], *r["ci95"]) for r in rows if r["source"] == source)
            if curve:
                m, value, low, high = (np.array(column) for column in zip(*curve, strict=True))
                ax.errorbar(
                    m, value, yerr=[value - low, high - value], fmt="o-", color=color, capsize=2, label=source
                )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("M (photodiode values per face)")
        ax.set_title(f"{name} ({results['attributes'][name]})", fontsize=8)
        ax.set_ylabel("held-out accuracy vs labeller (95 % CI)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    nme = [r for r in results["rows"] if "nme" in r]
    for statistic, style in (("nme", "-"), ("nme_median", "--")):
        curve = sorted((r["M"], r[statistic]) for r in nme if r["source"] == "lsi-latent")
        for row in nme:
            if row["source"] == "mean-landmarks":
                ax.axhline(row[statistic], color="black", ls=style, lw=1, label=f"mean shape, {statistic}")
            if row["source"] == "true-latent":
                ax.axhline(row[statistic], color="gray", ls=style, lw=1.5, label=f"true latent, {statistic}")
            if row["source"] == "image-latent":
                ax.axhline(
                    row[statistic], color="tab:green", ls=style, lw=1, label=f"image → latent, {statistic}"
                )
        if curve:
            ax.plot(*zip(*curve, strict=True), "o" + style, color="tab:red", label=f"lsi-latent, {statistic}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M")
    ax.set_ylabel("landmark NME (inter-ocular; ridge regression on w)")
    ax.set_title("68 landmarks from the latent", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
