"""Pattern sets learnt through read-out networks (``lsi patterns``) and encoders trained on them."""

import json

import numpy as np
import pytest
import torch
from conftest import dcgan_config

from lsi_ros.optics.patterns import PatternSet, is_pattern_set_file, save_pattern_set
from lsi_ros.training import readout
from lsi_ros.training.train import Trainer

SIDE, M = 8, 4


def scenes_with_identity_on_the_right(count: int, seed: int = 0):
    """Random scenes (N, 64) as channel sums, an "identity" (N, 2) that lives in the right half of
    the frame only and a "latent" (N, 2) that lives in the left half."""
    rng = np.random.default_rng(seed)
    scenes = rng.integers(0, 766, size=(count, SIDE, SIDE)).astype(np.float32)
    left, right = scenes[:, :, : SIDE // 2], scenes[:, :, SIDE // 2 :]
    identity = np.stack([right[:, :4].mean((1, 2)), right[:, 4:].mean((1, 2))], 1)
    latent = np.stack([left[:, :4].mean((1, 2)), left[:, 4:].mean((1, 2))], 1)

    def standardised(a):
        return torch.from_numpy((a - a.mean(0)) / a.std(0)).float()

    flat = torch.from_numpy(scenes.reshape(count, -1).astype(np.int32)).to(torch.int16)
    return flat, standardised(identity), standardised(latent)


def left_half_patterns() -> torch.Tensor:
    """Four patterns that see only the left half of the frame: blind to the identity."""
    rng = np.random.default_rng(1)
    dense = np.zeros((M, SIDE, SIDE), np.float32)
    dense[:, :, : SIDE // 2] = rng.integers(0, 2, size=(M, SIDE, SIDE // 2))
    return torch.from_numpy(dense.reshape(M, -1))


def test_patterns_learn_to_see_what_the_identity_read_out_needs():
    """Start patterns blind to the right half cannot pass the identity on; learning from the identity
    loss turns right-half pixels on, and the read-out of held-out scenes gets much closer."""
    scenes, identity, latent = scenes_with_identity_on_the_right(1024)
    test_scenes, test_identity, _ = scenes_with_identity_on_the_right(256, seed=5)
    base = left_half_patterns()
    errors, changed = {}, {}
    for learn_from in ((), ("identity", "latent")):
        config = readout.ReadoutConfig(
            steps=300, batch_size=64, lr=3e-3, pattern_lr=0.05, photon_flux=2000.0, width=32,
            learn_from=learn_from,
        )  # fmt: skip
        heads, patterns, curve = readout.train_readout(scenes, identity, scenes, latent, base, config)
        read = readout.read_out(heads["identity"], patterns, test_scenes, config.photon_flux, seed=1)
        errors[learn_from] = float(((read - test_identity.numpy()) ** 2).mean())
        binary = patterns.binary().float().reshape(M, SIDE, SIDE)
        changed[learn_from] = readout.pixels_changed(patterns, base)
        assert curve[-1]["step"] == 300 and curve[-1]["pixels_changed"] == round(changed[learn_from], 4)
    assert changed[()] == 0.0
    assert changed[("identity", "latent")] > 0.05
    assert binary[:, :, SIDE // 2 :].sum() > 0  # the learnt patterns see the right half
    assert errors[("identity", "latent")] < 0.3 * errors[()]


def test_unknown_losses_and_unpaired_targets_are_refused():
    scenes, identity, latent = scenes_with_identity_on_the_right(64)
    base = left_half_patterns()
    with pytest.raises(ValueError, match="unknown losses"):
        readout.train_readout(
            scenes, identity, scenes, latent, base, readout.ReadoutConfig(learn_from=("pixels",))
        )
    with pytest.raises(ValueError, match="descriptor"):
        readout.train_readout(scenes, identity[:-1], scenes, latent, base, readout.ReadoutConfig(steps=1))


def test_an_encoder_trains_on_a_pattern_set_file(dcgan_data, tmp_path):
    """`lsi train --patterns-from` takes the pattern set file `lsi patterns` writes: the model shows
    those patterns, names them and where they came from, and carries its own name."""
    source = Trainer(dcgan_config(dcgan_data), tmp_path / "source").exported_model().pattern_set
    flipped = source.dense().copy()
    flipped[:, 0, 0] ^= 1
    pattern_set = PatternSet.from_dense(
        flipped, kind="learned", model_id="people-patterns", meta={"learnt_from": ["identity"]}
    )
    path = save_pattern_set(pattern_set, tmp_path / "people-patterns.safetensors")
    assert is_pattern_set_file(path) and not is_pattern_set_file(tmp_path / "missing.safetensors")
    trainer = Trainer(dcgan_config(dcgan_data, patterns_from=str(path), name="m16-people"), tmp_path / "run")
    trainer.fit()
    model = trainer.exported_model()
    assert model.model_id == "lsi-dcgan-m16-people"
    assert model.pattern_set.pattern_set_id == pattern_set.pattern_set_id != source.pattern_set_id
    assert model.info["patterns_from"]["model_id"] == "people-patterns"
    assert model.info["patterns_from"]["learnt"] == {"learnt_from": ["identity"]}
    np.testing.assert_array_equal(trainer.patterns.binary().numpy().reshape(flipped.shape), flipped)
    eight = PatternSet.from_dense(flipped[:8], kind="learned")
    with pytest.raises(ValueError, match="8 patterns"):
        Trainer(
            dcgan_config(
                dcgan_data, patterns_from=str(save_pattern_set(eight, tmp_path / "eight.safetensors"))
            ),
            tmp_path / "eight",
        )


def test_lsi_patterns_writes_a_pattern_set_an_encoder_then_trains_on(
    dcgan_model, dcgan_data, tmp_path, capsys
):
    """`lsi patterns` end to end on the DCGAN double and a few training-split photos: a pattern set file
    that names where it started, a report scoring the read-outs on held-out people and faces, and
    `lsi train --patterns-from` trains on that file."""
    from lsi_ros.cli import main
    from lsi_ros.evaluation import real_faces
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.optics.patterns import load_pattern_set

    if not (real_faces.default_real_faces_dir() / real_faces.UTKFACE_FOLDER).is_dir():
        pytest.skip("no shared UTKFace photos on this machine")
    output = tmp_path / "people.safetensors"
    sizes = ["--identity-photos", "8", "--generated", "64", "--held-out", "8", "--generated-held-out", "16"]
    run = ["--steps", "3", "--batch-size", "8", "--pattern-lr", "0.2", "--data-dir", str(dcgan_data)]
    assert main(["patterns", "--start", str(dcgan_model), *sizes, *run, "--output", str(output)]) == 0
    pattern_set, base = load_pattern_set(output), load_model(dcgan_model).pattern_set
    report = json.loads(output.with_suffix(".json").read_text())
    assert pattern_set.pattern_set_id == report["pattern_set_id"] != base.pattern_set_id
    assert pattern_set.meta["started_from"] == base.pattern_set_id
    assert 0 < report["pixels_changed"] == pattern_set.meta["pixels_changed"]
    faces = {"identity_photos": 8, "generated": 64, "held_out_people": 8, "held_out_generated": 16}
    assert report["faces"] == faces | {"mirrored": True}
    scores = report["held_out_readout"]
    assert scores["rank1_among"] == 8 and 0 <= scores["rank1_identification"] <= 1
    assert scores["generated_latent_error"] > 0 and len(report["curve"]) == 2
    encoder = ["train", "--patterns-from", str(output), "--name", "m32-people", "--generator", "dcgan"]
    small = [
        "--train-faces",
        "64",
        "--validation-faces",
        "32",
        "--steps",
        "2",
        "--batch-size",
        "16",
        "--width",
        "32",
    ]
    exported = tmp_path / "m32-people.safetensors"
    where = ["--data-dir", str(dcgan_data), "--run-dir", str(tmp_path / "run"), "--export", str(exported)]
    assert main([*encoder, "-M", "32", *small, *where]) == 0
    model = load_model(exported)
    assert model.model_id == "lsi-dcgan-m32-people"
    assert model.pattern_set.pattern_set_id == pattern_set.pattern_set_id
