"""Training on generated faces (the DCGAN test double): deterministic, resumable, exportable."""

import numpy as np
import pytest
import torch
from conftest import dcgan_config

from lsi_ros.models.checkpoint import load_model
from lsi_ros.training import data
from lsi_ros.training.train import Trainer


def config(dcgan_data, steps):
    return dcgan_config(
        dcgan_data, train_faces=384, validation_faces=128, steps=steps, batch_size=32, checkpoint_every=20
    )


def test_generated_faces_are_reproducible_and_held_out_is_disjoint(dcgan_data):
    train = data.load("dcgan", 0, 512, dcgan_data)
    held_out = data.load("dcgan", data.HELD_OUT_SEED_START, 256, dcgan_data)
    assert train.images.shape == (512, 64, 64, 3) and train.images.dtype == np.uint8
    assert not set(train.seeds) & set(held_out.seeds)
    from lsi_ros.models.generators import get_generator

    again = get_generator("dcgan").synthesize(train.latents[:2])
    np.testing.assert_allclose(np.rint(again * 255), train.images[:2], atol=1)


def test_resumed_training_equals_uninterrupted_training(dcgan_data, tmp_path):
    straight = Trainer(config(dcgan_data, 40), tmp_path / "straight")
    straight.fit()
    first = Trainer(config(dcgan_data, 40), tmp_path / "resumed")
    while first.step < 20:
        first.train_step()
    first._save_state()
    resumed = Trainer(config(dcgan_data, 40), tmp_path / "resumed")
    assert resumed.step == 20
    resumed.fit()
    for a, b in zip(straight.encoder.parameters(), resumed.encoder.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(straight.patterns.binary(), resumed.patterns.binary())


def test_training_reduces_the_latent_error_and_exports_a_loadable_model(dcgan_data, tmp_path):
    trainer = Trainer(config(dcgan_data, 120), tmp_path / "run")
    before = trainer.validate()
    trainer.fit()
    after = trainer.validate()
    assert after < before
    model = load_model(trainer.export(tmp_path / "m16.safetensors"))
    assert model.num_measurements == 16 and model.info["training_seeds"] == [0, 383]
    assert model.pattern_set.resolution == (64, 64) and model.pattern_set.kind == "learned"
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(config(dcgan_data, 999), tmp_path / "run")
