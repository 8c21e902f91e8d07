"""Framing errors as training augmentation: the warp is the registration error it stands for, and a
trainer with it measures moved faces while learning their own latents."""

import math

import numpy as np
import pytest
import torch
from conftest import dcgan_config

from lsi_ros.training.augment import FramingJitter, warp_faces
from lsi_ros.training.train import TrainConfig, Trainer


def faces(count=3, resolution=32, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((count, resolution * resolution)) * 3)


def test_no_motion_leaves_the_faces_as_they_are_and_a_shift_moves_them_by_whole_pixels():
    x = faces()
    torch.testing.assert_close(warp_faces(x, 32, torch.zeros(3, 4, dtype=torch.float64)), x.float())
    motion = torch.tensor([[2.0, -3.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    moved = warp_faces(x, 32, motion).reshape(3, 32, 32)
    # output pixel u shows the face at u + d: columns move left by 2, rows down by 3
    expected = x.float().reshape(3, 32, 32)[:, 0:26, 2:30]
    torch.testing.assert_close(moved[:, 3:29, 0:28], expected)


def test_a_quarter_turn_turns_the_face_and_a_grid_of_twice_the_scale_sees_it_halved():
    x = faces(1, 32)
    turned = warp_faces(x, 32, torch.tensor([[0.0, 0.0, 0.0, math.pi / 2]], dtype=torch.float64))
    torch.testing.assert_close(
        turned.reshape(32, 32), torch.rot90(x.float().reshape(32, 32), 1), atol=1e-4, rtol=0
    )
    # a grid twice the face's size (scale 2) sees the whole face, halved, in its middle half
    doubled = torch.kron(x.float().reshape(32, 32), torch.ones(2, 2)).reshape(1, -1)
    zoomed = warp_faces(doubled, 64, torch.tensor([[0.0, 0.0, math.log(2), 0.0]], dtype=torch.float64))
    torch.testing.assert_close(zoomed.reshape(64, 64)[16:48, 16:48], x.float().reshape(32, 32))


def test_drawn_errors_stay_within_their_bounds_and_leave_the_asked_fraction_framed():
    jitter = FramingJitter(shift_px=3.0, scale=0.05, roll_deg=3.0, fraction=0.5)
    motion = jitter.draw(4000, torch.Generator().manual_seed(0))
    moved = motion.abs().sum(1) > 0
    assert moved.float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert motion[:, :2].norm(dim=1).max() <= 3.0 and motion[:, 2].abs().max() <= math.log1p(0.05)
    assert motion[:, 3].abs().max() <= math.radians(3.0)
    assert motion[moved, :2].norm(dim=1).median() > 1.5  # uniform over the disc, not piled at its centre
    assert FramingJitter.from_config(()) is None and FramingJitter.from_config([2, 0.1, 1]).fraction == 0.5
    with pytest.raises(ValueError, match="framing jitter"):
        FramingJitter(fraction=0.0)


def test_a_trainer_with_framing_jitter_measures_moved_faces_against_their_own_latents(dcgan_data, tmp_path):
    settings = {"train_faces": 256, "validation_faces": 64, "batch_size": 32, "checkpoint_every": 20}
    plain = Trainer(dcgan_config(dcgan_data, steps=1, **settings), tmp_path / "plain")
    source = plain.export(tmp_path / "source.safetensors")
    cfg = dcgan_config(
        dcgan_data, steps=20, patterns_from=str(source), framing_jitter=(2.0, 0.05, 3.0, 1.0), **settings
    )
    trainer = Trainer(cfg, tmp_path / "jitter")
    assert trainer.measurements is None  # measured in each step: no face is measured the same way twice
    seen = []
    measure = trainer.model.forward
    trainer.model.forward = lambda x, *args: seen.append(x.clone()) or measure(x, *args)
    rng = torch.Generator()
    rng.set_state(trainer.rng.get_state())  # the step's draws, replayed: the batch, then its framing errors
    index = torch.randint(0, cfg.train_faces, (cfg.batch_size,), generator=rng)
    motion = trainer.jitter.draw(cfg.batch_size, rng)
    before = trainer.validate()
    trainer.train_step()
    clean = trainer._batch(trainer.train_x[index])
    assert (motion.abs().sum(1) > 0).all() and not torch.allclose(seen[0], clean)
    torch.testing.assert_close(seen[0], warp_faces(clean, 64, motion))
    trainer.fit()
    assert trainer.validate() < before
    assert TrainConfig(framing_jitter=(3, 0.05, 3)).framing_jitter == (3, 0.05, 3)


def test_a_framing_fine_tune_images_faces_off_their_framing_better_and_keeps_the_patterns(
    dcgan_data, dcgan_model
):
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.optics import ForwardModel
    from lsi_ros.training import data
    from lsi_ros.training.finetune import FramingFinetuneConfig, finetune_for_framing
    from lsi_ros.training.train import channel_sums

    base = load_model(dcgan_model)
    jitter = (3.0, 0.05, 3.0, 1.0)
    config = FramingFinetuneConfig(steps=300, batch_size=64, lr=2e-3, jitter=jitter)
    tuned, history = finetune_for_framing(
        base, data.load("dcgan", 0, 512, dcgan_data), config, progress=False
    )
    assert tuned.model_id == f"{base.model_id}-framed"
    assert tuned.pattern_set.pattern_set_id == base.pattern_set.pattern_set_id
    assert tuned.info["framing_finetune"]["config"]["jitter"] == jitter and history[-1]["step"] == 300

    # Faces it trained on, through framing errors of other draws: the test double's encoder is too weak to
    # generalise in a few steps, so this checks that the fine-tune learns what moved faces are.
    seen = data.load("dcgan", 0, 128, dcgan_data)
    resolution = base.pattern_set.resolution[0]
    moved = FramingJitter(*jitter)(
        channel_sums(seen.images).float() / 255.0, resolution, torch.Generator().manual_seed(7)
    )
    counts = moved @ torch.from_numpy(ForwardModel(base.pattern_set, np.float32).matrix).T
    truth = torch.from_numpy(seen.latents)

    def error(model) -> float:
        with torch.inference_mode():
            return float((((model.encoder(counts) - truth) / model.encoder.latent_std) ** 2).mean())

    assert error(tuned) < 0.95 * error(base)


def test_lsi_finetune_for_framing_refuses_a_short_jitter_and_no_faces(tmp_path, capsys):
    from lsi_ros.cli import main

    output = tmp_path / "never.safetensors"
    assert (
        main(["finetune", "--framing-jitter", "3", "0.05", "--generated", "8", "--output", str(output)]) == 2
    )
    assert "SHIFT_PX SCALE ROLL_DEG [FRACTION], not 2 values" in capsys.readouterr().err
    assert main(["finetune", "--framing-jitter", "3", "0.05", "3", "--output", str(output)]) == 2
    assert "give --generated N" in capsys.readouterr().err and not output.exists()
