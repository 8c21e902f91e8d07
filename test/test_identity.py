"""Identity evaluation: the descriptor distance tells the same person from someone else."""

import numpy as np
import pytest
import torch

from lsi_ros.evaluation import identity
from lsi_ros.evaluation.face_analysis import NETWORKS, FaceAnalyzer, default_face_api_dir
from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.generators import get_generator
from lsi_ros.models.registry import find_model
from lsi_ros.optics import PhotodiodeModel

MODEL_DIR = default_face_api_dir()
pytestmark = pytest.mark.skipif(
    not all((MODEL_DIR / f"{n}-weights_manifest.json").is_file() for n in NETWORKS),
    reason=f"face-api weights not cached in {MODEL_DIR}: run `lsi label --fetch` once (needs npm)",
)


def test_rows_separate_the_face_itself_from_other_faces():
    torch.set_num_threads(1)
    generator = get_generator("mobilestylegan")
    faces = generator.synthesize(generator.sample_latents([1_000_000, 1_000_001, 1_000_002], 0.7))
    rows = identity.identity_rows(
        FaceAnalyzer(), [load_model(find_model("m256"))], generator, faces, PhotodiodeModel(), (32,)
    )
    by_method = {(r["method"], r["patterns"]): r for r in rows}
    assert set(by_method) == {
        ("other-face", 0),
        ("grayscale-face", 0),
        ("mean-latent", 0),
        ("lsi", 256),
        ("hadamard-pinv", 32),
        ("hadamard-tv", 32),
    }
    assert all(r["n_images"] == 3 and np.isfinite(r["median_distance"]) for r in rows)
    other, gray = by_method["other-face", 0], by_method["grayscale-face", 0]
    assert gray["median_distance"] < other["median_distance"]
    assert (other["rank1_identification"], gray["rank1_identification"]) == (0.0, 1.0)
    assert by_method["mean-latent", 0]["rank1_identification"] <= 1 / 3, "one image cannot be all three"
