"""Labels of the generated faces from the face-api port, cached next to the faces.

``labels.safetensors`` in the dataset folder holds, per seed: detector box and score, age, p(male),
expression probabilities and 68 landmarks (256² pixels). Binary attributes for the latent
boundaries are derived from them by ``binary_attributes``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from lsi_ros.evaluation.face_analysis import EXPRESSIONS, FACE_API_PACKAGE, FaceAnalyzer
from lsi_ros.training import data

LABELS_FILE = "labels.safetensors"
AGE_THRESHOLD = 40.0
# name -> (description); thresholds are on the labeller's outputs.
ATTRIBUTES = {
    "male": "face-api p(male) > 0.5",
    "smiling": "face-api expression 'happy' > 0.5",
    f"age_over_{AGE_THRESHOLD:g}": f"face-api age > {AGE_THRESHOLD:g} years",
}


def labels_path(generator_name: str, root=None, truncation_psi: float = data.DEFAULT_PSI) -> Path:
    return data.dataset_dir(root or data.default_data_dir(), generator_name, truncation_psi) / LABELS_FILE


def label_faces(
    analyzer: FaceAnalyzer,
    images: np.ndarray,
    batch: int = 64,
    desc: str = "",
    input_size: int = 256,
    progress: bool = True,
) -> dict:
    """(N, H, W, 3) uint8 -> label arrays, in batches with a progress bar (detector at ``input_size``²)."""
    parts = []
    starts = range(0, len(images), batch)
    for start in tqdm(starts, desc=desc or "labelling", unit="batch", disable=not progress):
        labels = analyzer.label(images[start : start + batch], input_size)
        parts.append(
            {
                "box": labels.boxes,
                "detection_score": labels.detection_scores,
                "age": labels.age,
                "p_male": labels.p_male,
                "expressions": labels.expressions,
                "landmarks": labels.landmarks,
            }
        )
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in parts[0]}


def label_dataset(
    analyzer: FaceAnalyzer,
    generator_name: str,
    ranges: list[tuple[int, int]],
    root=None,
    batch: int = 64,
    relabel: bool = False,
) -> tuple[Path, int]:
    """Label the seeds of ``ranges`` ((first, count) pairs) into one file keyed by seed.

    Labels already in the file are kept and their faces not labelled again (unless ``relabel``), so
    a new range costs only its own faces; returns the file and how many faces were labelled now."""
    path = labels_path(generator_name, root)
    kept = {}
    if path.is_file() and not relabel:
        with safe_open(str(path), "np") as f:
            if (f.metadata() or {}).get("labeller") == FACE_API_PACKAGE:
                kept = {key: f.get_tensor(key) for key in f.keys()}
    done = set(kept.get("seed", np.zeros(0, np.int64)).tolist())
    tensors = {key: [value] for key, value in kept.items()}
    labelled = 0
    for start, count in ranges:
        faces = data.load(generator_name, start, count, root)
        todo = np.array([int(seed) not in done for seed in faces.seeds], bool)
        if not todo.any():
            continue
        labels = label_faces(analyzer, faces.images[todo], batch, desc=f"seeds {start}..{start + count - 1}")
        labels["seed"] = faces.seeds[todo].astype(np.int64)
        done.update(labels["seed"].tolist())
        labelled += int(todo.sum())
        for key, value in labels.items():
            tensors.setdefault(key, []).append(value)
    if not labelled:
        return path, 0
    tensors = {k: np.ascontiguousarray(np.concatenate(v)) for k, v in tensors.items()}
    metadata = {
        "labeller": FACE_API_PACKAGE,
        "expressions": json.dumps(EXPRESSIONS),
        "attributes": json.dumps(ATTRIBUTES),
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path, labelled


def load_labels(generator_name: str, seeds: np.ndarray, root=None) -> dict[str, np.ndarray]:
    """The cached labels of ``seeds`` (in that order); a clear error when some were never labelled."""
    path = labels_path(generator_name, root)
    if not path.is_file():
        raise FileNotFoundError(f"no labels at {path}: run `lsi label` first")
    with safe_open(str(path), "np") as f:
        if (f.metadata() or {}).get("labeller") != FACE_API_PACKAGE:
            raise ValueError(f"{path} was labelled by another labeller; run `lsi label` again")
    tensors = load_file(str(path))
    index = {int(s): i for i, s in enumerate(tensors.pop("seed"))}
    missing = [int(s) for s in seeds if int(s) not in index]
    if missing:
        raise ValueError(f"{len(missing)} seeds (first {missing[0]}) are not in {path}: run `lsi label`")
    rows = np.array([index[int(s)] for s in seeds])
    return {k: v[rows] for k, v in tensors.items()}


def binary_attributes(labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The binary attributes of ``ATTRIBUTES`` (bool arrays) from label arrays."""
    happy = labels["expressions"][:, EXPRESSIONS.index("happy")]
    values = {
        "male": labels["p_male"] > 0.5,
        "smiling": happy > 0.5,
        f"age_over_{AGE_THRESHOLD:g}": labels["age"] > AGE_THRESHOLD,
    }
    return {name: values[name] for name in ATTRIBUTES}


def check_portraits(analyzer: FaceAnalyzer, path) -> dict[str, str]:
    """Detect and analyse the two offline portraits; draw box and landmarks with the labels to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsi_ros.evaluation.images import TEST_IMAGES

    results, drawn = {}, []
    for name in ("astronaut", "grace_hopper"):
        image = np.asarray(TEST_IMAGES[name]())[..., :3]
        labels = analyzer.label(image[None])
        top = int(np.argmax(labels.expressions[0]))
        summary = (
            f"face score {labels.detection_scores[0]:.2f}, "
            f"{'male' if labels.p_male[0] > 0.5 else 'female'} (p_male {labels.p_male[0]:.2f}), "
            f"age {labels.age[0]:.0f}, {EXPRESSIONS[top]} {labels.expressions[0, top]:.2f}"
        )
        results[name] = summary
        drawn.append((name, image, labels, summary))
    fig, axes = plt.subplots(1, len(drawn), figsize=(5 * len(drawn), 5.6))
    for ax, (name, image, labels, summary) in zip(axes, drawn, strict=True):
        ax.imshow(image)
        x0, y0, x1, y1 = labels.boxes[0]
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=1.5))
        ax.scatter(*labels.landmarks[0].T, s=6, c="red")
        ax.set_title(f"{name}\n{summary}", fontsize=8)
        ax.axis("off")
    fig.suptitle(
        f"face-api port ({FACE_API_PACKAGE}): tiny face detector, 68 landmarks, age/gender, expression",
        fontsize=9,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return results
