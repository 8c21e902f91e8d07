"""The image loss through the frozen generator (DCGAN double): it steers the encoder and the DMD
patterns, leaves the generator untouched, and training with it lowers it."""

from dataclasses import replace

import pytest
import torch
from conftest import dcgan_config

from lsi_ros.training.losses import ms_ssim_window
from lsi_ros.training.train import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gradients(trainer: Trainer) -> dict:
    trainer.train_step()
    return {name: p.grad.clone() for name, p in trainer.imager.named_parameters()}


@pytest.mark.parametrize("kind", ["l1", "l2", "ms-ssim"])
def test_image_loss_reaches_the_encoder_and_the_patterns(dcgan_data, tmp_path, kind):
    latent_only = gradients(Trainer(dcgan_config(dcgan_data), tmp_path / "a"))
    with_image = gradients(
        Trainer(dcgan_config(dcgan_data, image_loss_weight=1.0, image_loss=kind), tmp_path / "b")
    )
    for name in ("patterns.weight", "encoder.net.1.weight"):
        difference = (with_image[name] - latent_only[name]).abs().max()
        assert difference > 1e-3 * latent_only[name].abs().max(), name


def test_generator_stays_frozen_and_a_few_steps_lower_the_image_loss(dcgan_data, tmp_path):
    cfg = dcgan_config(
        dcgan_data, steps=10, checkpoint_every=10, image_loss_weight=1.0, image_loss="l1+ms-ssim"
    )
    trainer = Trainer(cfg, tmp_path / "run")
    generator = trainer.image_net()
    before_weights = {k: v.clone() for k, v in generator.state_dict().items()}
    assert not any(p.requires_grad for p in generator.parameters())
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in generator.parameters()}
    before = trainer.validate_image()
    after = trainer.fit()["val_image_loss"]
    assert after < before - 0.03
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before_weights[key]), key  # weights and BatchNorm statistics

    latent_only = Trainer(replace(cfg, image_loss_weight=0.0), tmp_path / "latent-only")
    latent_only.fit()
    assert after < latent_only.validate_image() - 0.03  # the drop is the image loss's doing


def test_unknown_image_loss_is_refused_and_ms_ssim_windows_fit():
    assert (ms_ssim_window(64), ms_ssim_window(256)) == (3, 11)
    with pytest.raises(ValueError, match="unknown image loss"):
        Trainer(TrainConfig(image_loss="l1+lpips"), "/nonexistent")
