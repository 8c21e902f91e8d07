"""Same person? Face-descriptor distance between each held-out face and its reconstructions.

PSNR and SSIM reward a blur; identity is what a viewer asks of a camera at 1:2048. The face-api
port's 128-d descriptor (ResNet-34-like) puts two photos of one person within a Euclidean
distance of about 0.6 (face-api's matching threshold). For every held-out face this compares its
descriptor with the descriptor of: each LSI model's decoded image; the Hadamard pinv and TV
reconstructions at the same number of displayed patterns (grayscale, as the photodiode sees it);
the face itself in grayscale (the ceiling for the gray baselines); the mean face; and a
*different* held-out face (what "someone else" scores). Generated faces sit closer together than
face-api's threshold assumes for photos, so each row also has a threshold-free score: the rank-1
identification rate, how often the reconstruction's nearest face among all N held-out faces is
its own (chance: 1/N).
"""

import numpy as np
from tqdm import tqdm

from lsi_ros.evaluation import baselines
from lsi_ros.evaluation.images import grayscale
from lsi_ros.evaluation.latent_imaging import encode_faces
from lsi_ros.evaluation.quality import calibrate_tv_weight, measure_walsh
from lsi_ros.optics import ForwardModel, hadamard_split_patterns

SAME_PERSON_DISTANCE = 0.6


def uint8_images(images: np.ndarray) -> np.ndarray:
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    if images.ndim == 3:  # grayscale: white light on all three channels
        images = np.repeat(images[..., None], 3, axis=-1)
    return np.rint(images * 255).astype(np.uint8)


def identity_per_face(descriptors: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each reconstruction's descriptor distance to its own face, and whether its own face is the
    nearest of all ``truth`` faces (rank-1 identification); descriptors (N, 128), row i to row i."""
    from scipy.spatial.distance import cdist

    pairwise = cdist(descriptors, truth)
    return np.diagonal(pairwise).copy(), pairwise.argmin(axis=1) == np.arange(len(truth))


def identity_scores(distances: np.ndarray, rank1: np.ndarray) -> dict:
    """Median distance, same-person rate (below ``SAME_PERSON_DISTANCE``) and rank-1 rate."""
    return {
        "median_distance": round(float(np.median(distances)), 3),
        "same_person_rate": round(float(np.mean(distances < SAME_PERSON_DISTANCE)), 3),
        "rank1_identification": round(float(np.mean(rank1)), 3),
    }


def _row(method: str, patterns: int, noise: str, descriptors: np.ndarray, truth: np.ndarray) -> dict:
    """Scores of reconstructions' descriptors (N, 128) against their faces' (N, 128), row i to row i."""
    distances, rank1 = identity_per_face(descriptors, truth)
    return {
        "method": method,
        "patterns": patterns,
        "noise": noise,
        **identity_scores(distances, rank1),
        "n_images": int(len(distances)),
    }


def hadamard_reconstructions(faces: np.ndarray, num_patterns: int, photodiode, tv: bool = True):
    """Grayscale pinv (and TV, with the calibrated weight) reconstructions (N, R, R) of faces
    (N, R, R, 3) in [0, 1] (or uint8) from ``num_patterns`` ± split Walsh-Hadamard patterns; TV is None
    when off."""
    resolution = faces.shape[1]
    pattern_set = hadamard_split_patterns(num_patterns, resolution)
    forward = ForwardModel(pattern_set)
    weight = calibrate_tv_weight(pattern_set, forward, photodiode) if tv else None
    pinv, tvs = [], []
    for i, face in enumerate(faces):
        face = face / np.float32(255) if face.dtype == np.uint8 else face
        rng = np.random.default_rng([i, num_patterns])
        indices, coefficients, _ = measure_walsh(face, pattern_set, forward, photodiode, rng)
        pinv.append(baselines.reconstruct_pinv(indices, coefficients, resolution).astype(np.float32))
        if tv:
            tvs.append(baselines.reconstruct_tv(indices, coefficients, resolution, weight))
    return np.stack(pinv), np.stack(tvs) if tv else None


def identity_rows(analyzer, models, generator, faces: np.ndarray, photodiode, baseline_budgets=(32, 256)):
    """Rows of median descriptor distance and same-person rate, ``faces`` (N, R, R, 3) in [0, 1]."""
    truth = analyzer.describe(uint8_images(faces))

    def row(method: str, patterns: int, noise: str, images: np.ndarray) -> dict:
        return _row(method, patterns, noise, analyzer.describe(uint8_images(images)), truth)

    label = photodiode.label
    rows = [
        _row("other-face", 0, "none", np.roll(truth, 1, axis=0), truth),
        row("grayscale-face", 0, "none", np.stack([grayscale(f) for f in faces])),
    ]
    mean_face = generator.synthesize(generator.mean_latent()[None])
    rows.append(row("mean-latent", 0, "none", np.repeat(mean_face, len(faces), axis=0)))
    for model in tqdm(models, desc="identity: lsi", unit="model"):
        decoded = generator.synthesize(encode_faces(model, faces, photodiode))
        rows.append(row("lsi", model.num_measurements, label, decoded))
    for num_patterns in tqdm(baseline_budgets, desc="identity: baselines", unit="budget"):
        pinv, tv = hadamard_reconstructions(faces, num_patterns, photodiode)
        rows.append(row("hadamard-pinv", num_patterns, label, pinv))
        rows.append(row("hadamard-tv", num_patterns, label, tv))
    return rows
