"""Fine-tuning the encoder on real data (DCGAN test double): the latent teacher, pairs from a miscalibrated
camera and from a recorded bag, export and the ``lsi finetune`` / ``lsi eval --images`` commands."""

import json

import cv2
import numpy as np
import pytest
import torch

from lsi_ros.evaluation.latent_imaging import encode_faces
from lsi_ros.models.checkpoint import load_model, save_model
from lsi_ros.models.generators import get_generator
from lsi_ros.optics import PhotodiodeModel
from lsi_ros.training import data
from lsi_ros.training.finetune import (
    FinetuneConfig,
    MeasurementPairs,
    evaluate_pairs,
    finetune,
    pairs_from_bag,
    read_capture_pairs,
    simulate_measurements,
    split_pairs,
    split_scenes,
    time_blocks,
)
from lsi_ros.training.teacher import LatentTeacher, TeacherConfig


def held_out_faces(dcgan_data, count):
    faces = data.load("dcgan", data.HELD_OUT_SEED_START, count, dcgan_data)
    return faces, (faces.images / 255.0).astype(np.float32)


def test_teacher_lowers_the_image_error_from_the_encoders_start_and_caches_by_content(
    dcgan_data, dcgan_model, tmp_path
):
    model, generator = load_model(dcgan_model), get_generator("dcgan")
    _, faces = held_out_faces(dcgan_data, 4)
    images = np.roll(faces, 3, axis=2)  # a view the encoder was not trained on
    teacher = LatentTeacher(generator, model, TeacherConfig(steps=25), tmp_path / "cache")
    first = teacher.invert(images, progress=False)
    np.testing.assert_allclose(
        first.initial_latents, encode_faces(model, images, PhotodiodeModel.noiseless()), atol=1e-5
    )
    for quality in first.quality:
        assert quality["psnr_rgb"] > quality["initial_psnr_rgb"] + 1.0
        assert quality["ssim"] > quality["initial_ssim"]
    assert first.cached == 0 and len(list((tmp_path / "cache").glob("*.safetensors"))) == 4
    again = teacher.invert(images[::-1], progress=False)
    assert again.cached == 4
    np.testing.assert_array_equal(again.latents, first.latents[::-1])
    changed = images[:1].copy()
    changed[0, 10, 10] = 1.0 - changed[0, 10, 10]
    assert teacher.invert(changed, progress=False).cached == 0
    with pytest.raises(ValueError, match="generator's resolution"):
        teacher.invert(np.zeros((1, 32, 32, 3), np.float32), progress=False)


def test_teacher_checkpoints_keep_the_best_latent_so_far_and_the_cosine_ramp_ends_at_zero(tmp_path):
    generator, model = get_generator("dcgan"), None
    images = np.roll(generator.synthesize(generator.sample_latents([1, 2])), 3, axis=2)
    elsewhere = generator.sample_latents([3, 4])  # the start: other faces
    config = TeacherConfig(
        steps=40, space="w+", schedule="cosine", checkpoints=(0, 5, 40), batch_size=2, init="mean"
    )
    teacher = LatentTeacher(generator, model, config, tmp_path / "cache")
    assert teacher.learning_rate(0) < teacher.learning_rate(5) == config.lr > teacher.learning_rate(39) > 0
    first = teacher.invert(images, progress=False, start=elsewhere)
    assert sorted(first.history) == [0, 5, 40] and first.seconds_per_step > 0
    np.testing.assert_array_equal(first.history[40], first.latents)
    np.testing.assert_allclose(first.history[0][:, 0], elsewhere, atol=1e-6)
    target = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())

    def objective(latents):  # the teacher's loss: what "best" means
        w = torch.from_numpy(latents)
        decoded = generator.torch_synthesis()(w)
        offset = (w - teacher.latent_mean) / teacher.latent_std
        return teacher._image_loss(decoded, target) + config.prior_weight * offset.pow(2).flatten(1).mean(1)

    with torch.no_grad():
        losses = [objective(first.history[k]) for k in (0, 5, 40)]
    assert torch.all(losses[1] < losses[0]) and torch.all(losses[2] <= losses[1] + 1e-6)
    again = teacher.invert(images, progress=False, start=elsewhere)
    assert again.cached == 2 and again.seconds_per_step == first.seconds_per_step  # the timing stays
    assert teacher.step_seconds(2) > 0 and teacher.config == config
    # W+ continued from a W inversion: started where W ended, cached apart from the encoder start.
    w_teacher = LatentTeacher(generator, model, TeacherConfig(steps=10, init="mean"), tmp_path / "cache")
    w = w_teacher.invert(images, progress=False, start=elsewhere).latents
    continued = teacher.invert(images, progress=False, start=w)
    assert continued.cached == 0 and np.allclose(continued.history[0][:, 0], w, atol=1e-6)
    with pytest.raises(ValueError, match="start"):
        teacher.invert(images, progress=False, start=w[:1])
    np.testing.assert_array_equal(again.history[5], first.history[5])
    # Settings left at their defaults keep the cache keys of inversions written before they existed.
    plain = LatentTeacher(generator, model, TeacherConfig(steps=20, init="mean"))
    assert "schedule" not in plain.context["config"] and "schedule" in teacher.context["config"]
    with pytest.raises(ValueError, match="checkpoints"):
        LatentTeacher(generator, model, TeacherConfig(steps=20, checkpoints=(30,), init="mean"))


def miscalibrated_camera(model, faces, repeats):
    """The "real" camera: scene off by a few pixels, vignetting, a dimmer scene, and gain/offset errors."""
    yy, xx = np.mgrid[:64, :64]
    vignetting = 1 - 0.5 * ((yy - 32) ** 2 + (xx - 32) ** 2) / 32**2
    seen = np.roll(faces, (6, -5), axis=(1, 2)) * vignetting[None, :, :, None]
    values, scenes = simulate_measurements(
        model, seen, PhotodiodeModel().with_photon_flux(50), repeats, seed=1
    )
    return 1.3 * values + 500.0, scenes


def test_finetune_on_a_miscalibrated_camera_lowers_the_held_out_error_with_the_same_patterns(
    dcgan_data, dcgan_model, tmp_path
):
    model, generator = load_model(dcgan_model), get_generator("dcgan")
    truth, faces = held_out_faces(dcgan_data, 256)
    values, scenes = miscalibrated_camera(model, faces, repeats=8)
    names = [f"seed {s}" for s in truth.seeds]
    pairs = MeasurementPairs(values, truth.latents[scenes], scenes, faces, names, {"kind": "test"})
    config = FinetuneConfig(steps=150)
    result = finetune(model, pairs, generator, config, progress=False)

    assert result.after["latent_mse"] < result.before["latent_mse"] - 0.03
    assert result.after["psnr"] > result.before["psnr"]
    assert not set(result.train_scenes) & set(result.held_out_scenes) and len(result.held_out_scenes) == 64
    tuned = result.model
    assert np.array_equal(np.asarray(tuned.pattern_set.bits), np.asarray(model.pattern_set.bits))
    assert tuned.pattern_set.pattern_set_id == model.pattern_set.pattern_set_id
    base = load_model(dcgan_model)
    for a, b in zip(model.encoder.parameters(), base.encoder.parameters(), strict=True):
        assert torch.equal(a, b), "the base model's encoder must stay untouched"

    loaded = load_model(save_model(tuned, tmp_path / "m32-ft.safetensors"))
    assert loaded.pattern_set.pattern_set_id == model.pattern_set.pattern_set_id
    assert loaded.model_id == "lsi-dcgan-m32-ft" and loaded.info["generator_id"] == model.info["generator_id"]
    info = loaded.info["finetune"]
    assert info["held_out_after"] == result.after and info["held_out_scenes"] == result.held_out_scenes
    assert info["source"] == {"kind": "test"} and info["train_frames"] == 192 * 8
    held = pairs.subset(split_scenes(256, config.held_out_fraction, config.seed)[1])
    reloaded = evaluate_pairs(loaded.encoder, held, generator)
    assert reloaded["latent_mse"] == pytest.approx(result.after["latent_mse"], abs=2e-3)


def write_capture_bag(path, model, faces):
    """A bag as bag_recorder writes it: CDR bytes of Measurements and a reference camera's Image."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from lsi_ros.msg import Measurements
    from lsi_ros.recording import BagWriter, typestore_with
    from lsi_ros.ros.image import array_to_image

    values, _ = simulate_measurements(model, faces, PhotodiodeModel(), 1, seed=3)
    topics = {"/measurements": "lsi_ros/msg/Measurements", "/camera/image": "sensor_msgs/msg/Image"}
    writer = BagWriter(path, topics, typestore_with({"lsi_ros": "msg"}))

    def header(ns):
        h = Header(frame_id="cam")
        h.stamp.sec, h.stamp.nanosec = divmod(int(ns), 1_000_000_000)
        return h

    def frame(k, ns, pattern_set_id=model.pattern_set.pattern_set_id):
        msg = Measurements(header=header(ns), pattern_set_id=pattern_set_id, sequence=k, values=values[k])
        writer.write("/measurements", int(ns), serialize_message(msg))

    def reference(k, ns):
        image = array_to_image(np.rint(faces[k] * 255).astype(np.uint8), "rgb8", header(ns))
        writer.write("/camera/image", int(ns), serialize_message(image))

    start = 1_700_000_000 * 10**9
    offsets_ms = [3, -4, 0, 9, -12]  # the last is beyond a 10 ms tolerance
    for k, offset in enumerate(offsets_ms):
        reference(k, start + k * 10**8 + offset * 10**6)
        frame(k, start + k * 10**8)
    frame(5, start + 5 * 10**8, pattern_set_id="sha256:another")  # refused: other patterns
    reference(5, start + 9 * 10**8)  # nothing measured then
    writer.close()
    return values


def test_bag_pairs_by_stamp_skip_and_count_the_unmatched(dcgan_data, dcgan_model, tmp_path):
    model, generator = load_model(dcgan_model), get_generator("dcgan")
    _, faces = held_out_faces(dcgan_data, 6)
    values = write_capture_bag(tmp_path / "bag", model, faces)
    capture = read_capture_pairs(
        tmp_path / "bag", "/measurements", "/camera/image", 0.01, model.pattern_set.pattern_set_id, 32
    )
    assert capture.counts == {
        "frames": 6,
        "references": 6,
        "paired": 4,
        "unmatched_frames": 1,
        "unmatched_references": 2,
        "refused_frames": 1,
    }
    np.testing.assert_array_equal(capture.values, values[:4])
    assert list(capture.offsets_ns // 10**6) == [3, -4, 0, 9]
    for k, reference in enumerate(capture.references):
        np.testing.assert_allclose(reference, faces[k], atol=0.5 / 255)

    teacher = LatentTeacher(generator, model, TeacherConfig(steps=3))
    pairs = pairs_from_bag(model, teacher, tmp_path / "bag", tolerance_s=0.01, progress=False)
    assert pairs.values.shape == (4, 32) and pairs.latents.shape == (4, 100) and len(pairs.names) == 4
    assert pairs.source["paired"] == 4 and pairs.source["max_abs_offset_ms"] == 9.0
    # 0.3 s of frames fall into one default 5 s block: no honest held-out set, so a clear error
    assert list(pairs.split_groups) == [0, 0, 0, 0] and pairs.source["split_blocks"] == 1
    with pytest.raises(ValueError, match="split block"):
        split_pairs(pairs, 0.25)
    assert list(time_blocks(capture.stamps_ns, 0.25)) == [0, 0, 0, 1]  # frames at 0, 0.1, 0.2, 0.3 s
    with pytest.raises(ValueError, match="positive"):
        time_blocks(capture.stamps_ns, 0.0)
    with pytest.raises(ValueError, match="no topic /camera/other"):
        read_capture_pairs(tmp_path / "bag", "/measurements", "/camera/other")


def test_finetune_and_eval_commands_on_an_image_folder(dcgan_data, dcgan_model, tmp_path, capsys):
    from lsi_ros.cli import main

    missing = ["finetune", "--model", str(dcgan_model), "--output", str(tmp_path / "never.safetensors")]
    assert main([*missing, "--images", str(tmp_path / "nowhere")]) == 2
    assert "image folder not found" in capsys.readouterr().err
    assert main([*missing, "--bag", str(tmp_path / "nobag")]) == 2
    assert "bag not found" in capsys.readouterr().err and not (tmp_path / "never.safetensors").exists()

    _, faces = held_out_faces(dcgan_data, 8)
    folder = tmp_path / "photos"
    folder.mkdir()
    for k, face in enumerate(faces):
        cv2.imwrite(
            str(folder / f"face_{k}.png"),
            cv2.cvtColor(np.rint(face * 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
        )
    (folder / "notes.txt").write_text("not an image")
    output, report, cache = tmp_path / "m32-ft.safetensors", tmp_path / "report.json", tmp_path / "cache"
    common = ["--teacher-steps", "5", "--cache-dir", str(cache)]
    assert (
        main(
            [
                "finetune",
                "--images",
                str(folder),
                "--model",
                str(dcgan_model),
                "--output",
                str(output),
                "--steps",
                "20",
                "--report",
                str(report),
                *common,
            ]
        )
        == 0
    )
    tuned, base = load_model(output), load_model(dcgan_model)
    assert tuned.pattern_set.pattern_set_id == base.pattern_set.pattern_set_id
    results = json.loads(report.read_text())
    assert results["source"]["scenes"] == 8 and len(results["held_out_scenes"]) == 2
    assert results["teacher"]["steps"] == 5 and set(results["held_out_before"]) >= {
        "latent_mse",
        "psnr",
        "ssim",
    }

    quality, examples = tmp_path / "quality_images.json", tmp_path / "examples.png"
    assert (
        main(
            [
                "eval",
                "--images",
                str(folder),
                "--models",
                str(dcgan_model),
                str(output),
                "--generator",
                "dcgan",
                "--output",
                str(quality),
                "--examples",
                str(examples),
                *common,
            ]
        )
        == 0
    )
    rows = json.loads(quality.read_text())["rows"]
    by_method = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    assert len(by_method["lsi"]) == 6 and {r["model_id"] for r in by_method["lsi"]} == {
        base.model_id,
        tuned.model_id,
    }
    teacher, mean = by_method["teacher-inversion"][0], by_method["mean-latent"][0]
    assert teacher["n_images"] == 8 and teacher["psnr_rgb"] > mean["psnr_rgb"]
    assert all(r["vs_teacher_psnr"] > 0 and r["latent_mse_vs_teacher"] >= 0 for r in by_method["lsi"])
    assert examples.stat().st_size > 10_000


def test_split_groups_stay_whole_on_one_side_of_the_split():
    """Frames recorded close together (one group) must never be on both sides of the split."""
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    pairs = MeasurementPairs(
        np.zeros((10, 4), np.float32),
        np.zeros((10, 2), np.float32),
        np.arange(10),
        np.zeros((10, 2, 2, 3), np.float32),
        [f"frame{k}" for k in range(10)],
        split_groups=groups,
    )
    for seed in range(5):
        train, held = split_pairs(pairs, 0.5, seed)
        assert sorted([*train, *held]) == list(range(10))
        assert not set(groups[train]) & set(groups[held]) and len(set(groups[held])) == 2
        assert list(pairs.subset(held).split_groups) == list(groups[held])
    plain = MeasurementPairs(
        *(getattr(pairs, f) for f in ("values", "latents", "scenes", "references", "names"))
    )
    train, held = split_pairs(plain, 0.3, 0)  # no groups: each scene its own, as split_scenes does
    assert [list(train), list(held)] == [list(x) for x in split_scenes(10, 0.3, 0)]
