"""Downstream tasks: latent boundaries, landmark NME, block-exact measurements, task patterns, files."""

import numpy as np
import pytest
import torch

from lsi_ros.evaluation import downstream, face_labels
from lsi_ros.models.attributes import load_boundaries, save_boundaries
from lsi_ros.models.task import load_task_model, save_task_model
from lsi_ros.optics import ForwardModel, PhotodiodeModel
from lsi_ros.optics.patterns import bernoulli_patterns, hadamard_split_patterns


def test_boundaries_recover_a_linear_rule_and_survive_the_file(tmp_path):
    rng = np.random.default_rng(0)
    latents = rng.normal(3.0, 2.0, size=(1200, 16)).astype(np.float32)  # offset, scaled: folded back
    direction = rng.normal(size=16)
    labels = {"a": latents @ direction > 3.0 * direction.sum(), "b": latents[:, 0] > 3.5}
    boundaries = downstream.fit_boundaries(latents[:1000], {k: v[:1000] for k, v in labels.items()}, "gen")
    probabilities = boundaries.probabilities(latents[1000:])
    assert boundaries.names == ("a", "b") and boundaries.weight.shape == (2, 16)
    for k, name in enumerate(boundaries.names):
        assert downstream.accuracy(probabilities[:, k], labels[name][1000:]) > 0.95
    loaded = load_boundaries(save_boundaries(boundaries, tmp_path / "attributes.safetensors"))
    assert np.allclose(loaded.probabilities(latents[1000:]), probabilities, atol=1e-4)


def test_torch_boundary_agrees_with_the_scikit_learn_boundaries_on_noisy_labels():
    """The GPU scripts' torch twin of fit_boundaries: same rule, same held-out accuracy, raw-latent units."""
    rng = np.random.default_rng(1)
    latents = rng.normal(-2.0, 3.0, size=(3000, 24)).astype(np.float32)
    logits = (latents + 2.0) @ rng.normal(size=24) / 3.0
    labels = rng.random(3000) < 1 / (1 + np.exp(-2.0 * logits))  # 10-20 % of labels flipped near the rule
    sklearn = downstream.fit_boundaries(latents[:2500], {"a": labels[:2500]})
    weight, bias, l2 = downstream.fit_boundary_torch(
        torch.from_numpy(latents[:2500]), torch.from_numpy(labels[:2500].astype(np.float32))
    )
    assert l2 in (1e-4, 1e-3, 1e-2, 1e-1)
    torch_p = torch.sigmoid(torch.from_numpy(latents[2500:]) @ weight + bias).numpy()
    sklearn_p = sklearn.probabilities(latents[2500:])[:, 0]
    assert np.mean((torch_p > 0.5) == (sklearn_p > 0.5)) > 0.97
    assert (
        abs(downstream.accuracy(torch_p, labels[2500:]) - downstream.accuracy(sklearn_p, labels[2500:]))
        < 0.02
    )
    assert downstream.accuracy(torch_p, labels[2500:]) > 0.75


def test_calibration_error_and_nme_on_known_values():
    target = np.array([1, 1, 0, 0], bool)
    assert downstream.expected_calibration_error(np.array([1.0, 1.0, 0.0, 0.0]), target) == 0.0
    assert downstream.expected_calibration_error(np.full(4, 0.9), target) == pytest.approx(0.4)
    truth = np.zeros((2, 68, 2))
    truth[:, 36], truth[:, 45] = [0.0, 0.0], [10.0, 0.0]  # inter-ocular distance 10
    assert downstream.landmark_nme(truth + [3.0, 4.0], truth) == pytest.approx(0.5)
    predicted = truth + [[[3.0, 4.0]], [[30.0, 40.0]]]  # face errors 0.5 and 5.0
    row = downstream.nme_row(4, "lsi-latent", np.concatenate([predicted, predicted[:1]]), truth[[0, 1, 0]])
    assert row["nme"] == pytest.approx(2.0) and row["nme_median"] == pytest.approx(0.5)
    scale = np.array([1.0, 2.0])
    assert downstream.latent_error(np.array([[1.0, 2.0]]), np.zeros((1, 2)), scale) == pytest.approx(1.0)


def test_accuracy_rows_carry_the_wilson_interval():
    assert downstream.wilson_interval(90, 100) == pytest.approx((0.8256, 0.9448), abs=1e-4)
    low, high = downstream.wilson_interval(0, 50)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.05 < high < 0.08  # never a [0, 0] interval
    target = np.arange(512) % 2 == 0
    probabilities = np.where(np.arange(512) < 461, target, ~target).astype(float)  # 461 of 512 right
    row = downstream.accuracy_row("a", 4, "task-patterns", probabilities, target)
    assert row["accuracy"] == pytest.approx(461 / 512, abs=1e-4) and row["n_images"] == 512
    assert row["ci95"][0] < row["accuracy"] < row["ci95"][1] and row["ci95"][1] - row["ci95"][0] > 0.04


def test_block_measurements_equal_full_resolution_measurements():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    split = hadamard_split_patterns(8, 64)
    coarse = downstream.block_matrix(split, 4)
    assert coarse.shape == (8, 16 * 16)
    full = ForwardModel(split).measure(images)
    assert np.allclose(downstream.channel_sums(images, 4) @ coarse.T, full, rtol=1e-5)
    with pytest.raises(ValueError, match="not constant"):
        downstream.block_matrix(bernoulli_patterns(4, 64), 4)


def test_panchromatic_view_is_what_the_photodiode_sees():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    gray = downstream.panchromatic(images)
    assert gray.dtype == np.uint8 and gray.shape == images.shape
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    patterns = ForwardModel(bernoulli_patterns(16, 32)).matrix
    # Same light on the detector up to the rounding to 8 bits (≤ 0.5/255 per mirror and channel).
    difference = (downstream.channel_sums(gray) - downstream.channel_sums(images)) @ patterns.T
    assert np.abs(difference).max() <= 32 * 32 * 3 * 0.5 / 255 and not np.array_equal(gray, images)


def _faces_with_bright_top_half(n, rng, size=32):
    """Faces whose attribute is 'top half brighter than bottom half': a task 4 patterns can see, and
    one that survives a left-right mirror like the face attributes."""
    images = rng.integers(40, 200, size=(n, size, size, 3)).astype(np.float32)
    target = rng.random(n) < 0.5
    images[target, : size // 2] += 50
    images[~target, size // 2 :] += 50
    return np.clip(images, 0, 255).astype(np.uint8), target


def test_task_patterns_learn_a_binary_attribute_through_the_photodiode(tmp_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    images, target = _faces_with_bright_top_half(400, rng)
    sums = downstream.channel_sums(images, 2)
    model = downstream.train_task_patterns(
        sums, target, 4, "top", block=2, resolution=32, steps=150, batch=128, progress=False
    )
    assert model.pattern_set.resolution == (32, 32) and model.num_measurements == 4
    test_images, test_target = _faces_with_bright_top_half(200, rng)
    dim = PhotodiodeModel().with_photon_flux(20.0)
    counts = downstream.measure_task(model, test_images, dim, seed=5)
    assert downstream.accuracy(model.probabilities(counts), test_target) > 0.9
    path = save_task_model(model, tmp_path / "task.safetensors")
    loaded = load_task_model(path)
    assert loaded.attribute == "top" and loaded.pattern_set.pattern_set_id == model.pattern_set.pattern_set_id
    assert np.allclose(loaded.probabilities(counts), model.probabilities(counts), atol=1e-6)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError):
        load_task_model(path)


def test_hadamard_probe_reads_the_same_task_from_split_counts():
    rng = np.random.default_rng(3)
    images, target = _faces_with_bright_top_half(400, rng)
    forward = ForwardModel(hadamard_split_patterns(6, 32))  # DC and the first two Walsh functions
    counts = PhotodiodeModel().sample(forward.measure(images), np.random.default_rng(0)).counts
    probabilities = downstream.hadamard_probe(counts[:300], target[:300], counts[300:])
    assert downstream.accuracy(probabilities, target[300:]) > 0.9


def test_labels_file_is_read_by_seed_and_refuses_unlabelled_seeds(tmp_path):
    from safetensors.numpy import save_file

    folder = tmp_path / "mobilestylegan-psi0.7"
    folder.mkdir()
    seeds = np.array([5, 7, 9], np.int64)
    labels = {
        "seed": seeds,
        "age": np.array([20.0, 50.0, 30.0], np.float32),
        "p_male": np.array([0.9, 0.2, 0.6], np.float32),
        "expressions": np.eye(7, dtype=np.float32)[[1, 0, 1]],
    }
    save_file(
        labels, str(folder / face_labels.LABELS_FILE), metadata={"labeller": face_labels.FACE_API_PACKAGE}
    )
    loaded = face_labels.load_labels("mobilestylegan", np.array([9, 5]), tmp_path)
    assert loaded["age"].tolist() == [30.0, 20.0]
    binary = face_labels.binary_attributes(loaded)
    assert binary["male"].tolist() == [True, True] and binary["smiling"].tolist() == [True, True]
    assert binary["age_over_40"].tolist() == [False, False]
    with pytest.raises(ValueError, match="not in"):
        face_labels.load_labels("mobilestylegan", np.array([6]), tmp_path)


def test_commands_say_what_to_run_when_faces_labels_or_weights_are_missing(tmp_path):
    import os
    import subprocess
    import sys

    lsi = [sys.executable, "-m", "lsi_ros.cli"]
    result = subprocess.run([*lsi, "attributes", "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "lsi data" in result.stderr
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run([*lsi, "label"], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "lsi label --fetch" in result.stderr


def test_image_latent_regression_recovers_a_linear_latent_and_picks_alpha_on_training_faces():
    """Images that are a known linear function of the latent plus pixel noise: the ridge readout,
    fitted with more pixels than faces, recovers held-out latents far better than their mean, and the
    alpha it keeps is the one with the lowest error on its own validation faces."""
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(8, 600))
    latents = rng.normal(size=(500, 8)) * 2.0 + 5.0
    sums = latents @ mixing + rng.normal(scale=0.5, size=(500, 600))
    model = downstream.fit_image_latents(sums[:400], latents[:400], alphas=(1e-3, 1e2, 1e7), validation=100)
    predicted = model(sums[400:])
    error = np.mean((predicted - latents[400:]) ** 2) / np.var(latents[400:])
    assert error < 0.01 and model.alpha == 1e2  # 1e7 shrinks to the mean; 1e-3 fits the pixel noise
    assert predicted.shape == (100, 8) and predicted.dtype == np.float32
    with pytest.raises(ValueError, match="validation"):
        downstream.fit_image_latents(sums[:50], latents[:50], validation=50)


def test_boundaries_fitted_on_a_models_own_estimates_name_it(dcgan_data, dcgan_model, tmp_path):
    """lsi attributes --fit-estimates: a boundary on the model's estimates of the training faces
    reads held-out faces, and the file says which model's codes it reads, and their pattern set."""
    from lsi_ros.commands.attributes import fit_estimate_boundaries
    from lsi_ros.evaluation.latent_imaging import encode_faces
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.training import data

    model = load_model(dcgan_model)
    train = data.load("dcgan", 0, 1024, dcgan_data)
    test = data.load("dcgan", data.HELD_OUT_SEED_START, 256, dcgan_data)
    threshold = np.median(train.images.mean((1, 2, 3)))  # a property the patterns see: brightness
    train_y = {"bright": train.images.mean((1, 2, 3)) > threshold}
    path = fit_estimate_boundaries(
        {"m32": model},
        {"m32": np.ones(1024, bool)},
        train_y,
        ("dcgan", 0, 1024),
        PhotodiodeModel(),
        tmp_path / "attributes.safetensors",
        dcgan_data,
    )["m32"]
    assert path == tmp_path / "attributes-m32.safetensors"
    fitted = load_boundaries(path)
    assert fitted.pattern_set_id == model.pattern_set.pattern_set_id and fitted.names == ("bright",)
    assert fitted.model_id == model.model_id
    estimates = encode_faces(model, test.images.astype(np.float32) / 255.0, PhotodiodeModel())
    target = test.images.mean((1, 2, 3)) > threshold
    accuracy = downstream.accuracy(fitted.probabilities(estimates)[:, 0], target)
    assert accuracy > 0.6  # a median split: chance is 0.5; the small test model reads 0.66


def test_each_model_is_fitted_on_the_estimate_faces_it_never_saw(dcgan_data, dcgan_model, tmp_path):
    """--fit-estimates leaves out a model's own training and validation seeds: a model trained on
    0..32767 and validated on 32768..33023 is fitted on the last 8,448 of 24832..41471; and the faces
    left out do not reach the fit (their labels inverted here change nothing)."""
    from lsi_ros.commands.attributes import fit_estimate_boundaries, seed_runs, unseen
    from lsi_ros.evaluation.latent_imaging import encode_faces
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.training import data

    keep = unseen(np.arange(24832, 41472), [(0, 32767), (32768, 33023)])
    assert keep.sum() == 8448 and seed_runs(np.arange(24832, 41472)[keep]) == "seeds 33024..41471"
    assert seed_runs(np.array([3, 4, 5, 9, 10])) == "seeds 3..5, 9..10"
    assert unseen(np.arange(10), []).all()

    model = load_model(dcgan_model)
    train = data.load("dcgan", 0, 1024, dcgan_data)
    test = data.load("dcgan", data.HELD_OUT_SEED_START, 256, dcgan_data)
    threshold = np.median(train.images.mean((1, 2, 3)))
    truth = train.images.mean((1, 2, 3)) > threshold
    keep = unseen(train.seeds, [(0, 511)])
    corrupted = {"bright": np.where(keep, truth, ~truth)}
    target = test.images.mean((1, 2, 3)) > threshold
    estimates = encode_faces(model, test.images.astype(np.float32) / 255.0, PhotodiodeModel())
    paths = fit_estimate_boundaries(  # both models in one pass, in chunks that straddle the cut at 512
        {"kept": model, "all": model},
        {"kept": keep, "all": np.ones(1024, bool)},
        corrupted,
        ("dcgan", 0, 1024),
        PhotodiodeModel(),
        tmp_path / "a.safetensors",
        dcgan_data,
        chunk=384,
    )
    accuracy = {
        name: downstream.accuracy(load_boundaries(path).probabilities(estimates)[:, 0], target)
        for name, path in paths.items()
    }
    assert accuracy["kept"] > 0.6 and accuracy["kept"] > accuracy["all"] + 0.05


def test_attributes_refuses_a_model_both_fitted_here_and_given_a_file():
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "lsi_ros.cli",
        "attributes",
        "--fit-estimates",
        "m32",
        "--estimate-boundaries",
        "m32=x.safetensors",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "m32" in result.stderr and "--fit-estimates" in result.stderr


def test_attributes_refuses_to_fit_a_model_on_faces_it_trained_on():
    """--fit-estimates fits on faces the model never saw: m32 trained on seeds 0..24575, so a range
    inside them is refused before any face is read, naming the overlap."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "lsi_ros.cli", "attributes", "--fit-estimates", "m32"]
    result = subprocess.run([*command, "--estimate-faces", "24000:1000"], capture_output=True, text=True)
    assert result.returncode == 2 and "0..24575" in result.stderr and "never saw" in result.stderr
    result = subprocess.run([*command, "--estimate-faces", "50000:500"], capture_output=True, text=True)
    assert result.returncode == 2 and "only 500 faces" in result.stderr and "at least 1024" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([*command, "--estimate-faces", "24000"], capture_output=True, text=True)
    assert result.returncode == 2 and "FIRST:COUNT" in result.stderr
    result = subprocess.run([*command, "--models", "m64"], capture_output=True, text=True)
    assert result.returncode == 2 and "m32 is in --fit-estimates but not in --models" in result.stderr
    result = subprocess.run([*command, "--models", "m32", "m999"], capture_output=True, text=True)
    assert result.returncode == 1 and "no model named 'm999'" in result.stderr
    assert "Traceback" not in result.stderr
