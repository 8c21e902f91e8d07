"""The face-api port: weights reader on the real manifests, and the networks on the offline portraits."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lsi_ros.evaluation import face_analysis
from lsi_ros.evaluation.face_analysis import (
    EXPRESSIONS,
    NETWORKS,
    FaceAnalyzer,
    FaceApiMissingError,
    default_face_api_dir,
    read_tfjs_weights,
)
from lsi_ros.evaluation.images import TEST_IMAGES

MODEL_DIR = default_face_api_dir()
DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.skipif(
    not all((MODEL_DIR / f"{n}-weights_manifest.json").is_file() for n in NETWORKS),
    reason=f"face-api weights not cached in {MODEL_DIR}: run `lsi label --fetch` once (needs npm)",
)


@pytest.fixture(scope="module")
def analyzer():
    torch.set_num_threads(1)
    return FaceAnalyzer()


def test_weights_reader_dequantises_every_tensor_of_the_manifest():
    manifest_path = MODEL_DIR / "age_gender_model-weights_manifest.json"
    (group,) = json.loads(manifest_path.read_text())
    weights = read_tfjs_weights(manifest_path)
    assert list(weights) == [w["name"] for w in group["weights"]]
    for spec in group["weights"]:
        value = weights[spec["name"]]
        assert value.shape == tuple(spec["shape"]) and value.dtype == np.float32
        quant = spec.get("quantization")
        if quant:  # uint8 codes q -> q * scale + min: inside [min, min + 255 * scale], on the grid
            low, step = quant["min"], quant["scale"]
            assert low - 1e-5 <= value.min() and value.max() <= low + 255 * step + 1e-5
            codes = (value - low) / step
            assert np.allclose(codes, np.round(codes), atol=1e-3)


def test_truncated_shard_and_missing_manifest_are_clear_errors(tmp_path):
    for name in ("face_landmark_68_model-weights_manifest.json", "face_landmark_68_model.bin"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    blob = (tmp_path / "face_landmark_68_model.bin").read_bytes()
    (tmp_path / "face_landmark_68_model.bin").write_bytes(blob[:-100])
    with pytest.raises(ValueError):
        read_tfjs_weights(tmp_path / "face_landmark_68_model-weights_manifest.json")
    with pytest.raises(FaceApiMissingError, match="lsi label --fetch"):
        read_tfjs_weights(tmp_path / "nothing-weights_manifest.json")


def test_landmarks_of_the_mirrored_face_pair_left_with_right(analyzer):
    """Landmark i of a mirrored face is landmark LANDMARK_MIRROR[i] of the face, mirrored: the pairing
    is an involution, and averaging both ways lands within a few pixels of one look (a wrong pair,
    an eye swapped with the other or with the mouth, lands tens of pixels off)."""
    mirror = np.array(face_analysis.LANDMARK_MIRROR)
    assert sorted(mirror) == list(range(68)) and (mirror[mirror] == np.arange(68)).all()
    crop = np.load(DATA / "face_api_astronaut_crop.npy", allow_pickle=False)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float()
    once, both = analyzer.landmarks(x)[0] * 112, analyzer.landmarks_both_ways(x)[0] * 112
    assert np.abs(both - once).max() < 3.0
    flipped = analyzer.landmarks(x.flip(-1))[0, mirror] * 112
    flipped[:, 0] = 112 - flipped[:, 0]
    assert np.median(np.hypot(*(flipped - once).T)) < 2.0
    both_mirrored = analyzer.landmarks_both_ways(x.flip(-1))[0, mirror]
    assert np.allclose(both_mirrored[:, 1] * 112, both[:, 1], atol=1e-3)


def test_port_equals_the_original_tfjs_networks(analyzer):
    """Reference outputs of face-api itself (TF.js cpu backend, scripts/face_api_reference.mjs) on a
    fixed 112² face crop: every network of the port agrees to float32 rounding."""
    reference = json.loads((DATA / "face_api_reference.json").read_text())
    crop = np.load(DATA / "face_api_astronaut_crop.npy", allow_pickle=False)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float()
    out = analyzer.attributes(x)
    assert out["age"][0] == pytest.approx(reference["age"][0], abs=1e-3)
    assert out["p_male"][0] == pytest.approx(reference["gender"][0], abs=1e-5)
    assert np.allclose(out["expressions"][0], reference["expressions"], atol=1e-5)
    assert np.allclose(analyzer.landmarks(x).ravel(), reference["landmarks"], atol=1e-5)
    x2 = torch.from_numpy(crop.repeat(2, 0).repeat(2, 1)).permute(2, 0, 1)[None].float()
    detector = analyzer.detector_map(x2).permute(0, 2, 3, 1).numpy()  # NHWC, as TF.js
    assert list(detector.shape) == reference["detector_shape"]
    assert np.allclose(detector.ravel(), reference["detector"], atol=1e-3)
    x150 = torch.nn.functional.pad(x, (19, 19, 19, 19))
    assert np.allclose(analyzer.descriptors(x150).ravel(), reference["descriptor"], atol=1e-4)


def test_descriptor_tells_the_same_person_from_another(analyzer):
    astronaut = np.asarray(TEST_IMAGES["astronaut"]())
    hopper = np.asarray(TEST_IMAGES["grace_hopper"]())[:512]  # same size as the astronaut for one batch
    faces = np.stack([astronaut, np.ascontiguousarray(astronaut[:, ::-1]), hopper])
    d = analyzer.describe(faces)
    assert d.shape == (3, 128)
    assert np.linalg.norm(d[0] - d[1]) < 0.6 < np.linalg.norm(d[0] - d[2])


def test_tf_same_padding_puts_the_odd_pixel_after():
    x = torch.ones(1, 1, 112, 112)
    padded = face_analysis._pad_same(x, 3, 2)
    assert padded.shape[-1] == 113 and padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, -1] == 0
    assert face_analysis._pad_same(x, 3, 1).shape[-1] == 114


def test_astronaut_face_detected_with_landmarks_on_eyes_nose_mouth(analyzer):
    image = np.asarray(TEST_IMAGES["astronaut"]())
    labels = analyzer.label(image[None])
    x0, y0, x1, y1 = labels.boxes[0]
    assert labels.detection_scores[0] > 0.5
    # The face of the 512² astronaut portrait lies around x 170-260, y 80-200.
    assert 130 < x0 < 200 and 230 < x1 < 300 and 40 < y0 < 120 and 170 < y1 < 250
    points = labels.landmarks[0]
    eyes, nose, mouth = points[36:48].mean(0), points[27:36].mean(0), points[48:68].mean(0)
    assert eyes[1] < nose[1] < mouth[1]  # eyes above the nose above the mouth
    assert points[36:42, 0].mean() < points[42:48, 0].mean()  # image-left eye left of the right one
    assert np.all((points > [x0 - 20, y0 - 20]) & (points < [x1 + 20, y1 + 20]))
    # Eileen Collins, smiling: a woman of plausible age, happy.
    assert labels.p_male[0] < 0.5 and 20 < labels.age[0] < 60
    assert EXPRESSIONS[int(np.argmax(labels.expressions[0]))] == "happy"
    assert np.allclose(labels.expressions.sum(1), 1, atol=1e-5)


def test_grace_hopper_is_old_and_not_smiling(analyzer):
    image = np.asarray(TEST_IMAGES["grace_hopper"]())
    labels = analyzer.label(image[None])
    assert labels.detection_scores[0] > 0.5
    assert labels.age[0] > 55
    assert labels.expressions[0, EXPRESSIONS.index("happy")] < 0.5


def test_batch_equals_single_faces(analyzer):
    faces = np.stack([np.asarray(TEST_IMAGES["astronaut"]())[::2, ::2]] * 2)
    faces[1] = faces[1, :, ::-1]
    batch = analyzer.label(faces)
    single = analyzer.label(faces[1:])
    assert np.allclose(batch.landmarks[1], single.landmarks[0], atol=1e-3)
    # The mirrored face: the same age within a few years, landmarks mirrored.
    assert abs(batch.age[0] - batch.age[1]) < 5
    assert abs(batch.landmarks[0, :, 0].mean() - (256 - batch.landmarks[1, :, 0].mean())) < 8


def test_lsi_label_writes_labels_next_to_the_faces(dcgan_data):
    import subprocess
    import sys

    from lsi_ros.evaluation import face_labels
    from lsi_ros.training import data

    command = [
        sys.executable,
        "-m",
        "lsi_ros.cli",
        "label",
        "--generator",
        "dcgan",
        "--data-dir",
        str(dcgan_data),
    ]
    result = subprocess.run(
        [*command, "--train", "16", "--held-out", "8", "--batch", "16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    seeds = np.concatenate([np.arange(16), data.HELD_OUT_SEED_START + np.arange(8)])
    labels = face_labels.load_labels("dcgan", seeds[::-1], dcgan_data)
    assert labels["landmarks"].shape == (24, 68, 2) and np.isfinite(labels["landmarks"]).all()
    assert np.all((labels["p_male"] >= 0) & (labels["p_male"] <= 1))
    assert np.allclose(labels["expressions"].sum(1), 1, atol=1e-5)
    assert set(face_labels.binary_attributes(labels)) == set(face_labels.ATTRIBUTES)
    with pytest.raises(ValueError, match="lsi label"):
        face_labels.load_labels("dcgan", np.array([16]), dcgan_data)
    # A further range labels only its own faces and keeps the labels on file as they were.
    result = subprocess.run(
        [*command, "--train", "16", "--held-out", "8", "--batch", "16", "--seeds", "16:8"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "8 labelled now" in result.stdout, result.stderr
    again = face_labels.load_labels("dcgan", seeds[::-1], dcgan_data)
    assert all(np.array_equal(again[key], labels[key]) for key in labels)
    assert face_labels.load_labels("dcgan", np.arange(16, 24), dcgan_data)["age"].shape == (8,)
    result = subprocess.run([*command, "--seeds", "16"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "FIRST:COUNT" in result.stderr


def test_torch_batches_label_like_numpy_arrays(analyzer):
    """Faces already in torch (rendered on a GPU, say) get the labels their numpy copy gets."""
    faces = np.stack([np.asarray(TEST_IMAGES["astronaut"]())[::2, ::2]] * 2)
    faces[1] = faces[1, :, ::-1]
    from_numpy = analyzer.label(faces, 256)
    from_torch = analyzer.label(torch.from_numpy(faces), 256)
    for field in ("boxes", "age", "p_male", "expressions", "landmarks"):
        np.testing.assert_allclose(getattr(from_torch, field), getattr(from_numpy, field), atol=1e-4)
