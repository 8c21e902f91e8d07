"""Training on generated faces (the DCGAN test double): deterministic, resumable, exportable."""

import numpy as np
import pytest
import torch
from conftest import dcgan_config

from lsi_ros.models.checkpoint import load_model, save_model
from lsi_ros.models.encoder import EncoderEnsemble
from lsi_ros.optics import ForwardModel
from lsi_ros.training import data, train
from lsi_ros.training.train import TrainConfig, Trainer, fit_members


def config(dcgan_data, steps, **changes):
    defaults = {"train_faces": 384, "validation_faces": 128, "batch_size": 32, "checkpoint_every": 20}
    return dcgan_config(dcgan_data, steps=steps, **(defaults | changes))


def test_generated_faces_are_reproducible_and_held_out_is_disjoint(dcgan_data):
    train = data.load("dcgan", 0, 512, dcgan_data)
    held_out = data.load("dcgan", data.HELD_OUT_SEED_START, 256, dcgan_data)
    assert train.images.shape == (512, 64, 64, 3) and train.images.dtype == np.uint8
    assert not set(train.seeds) & set(held_out.seeds)
    from lsi_ros.models.generators import get_generator

    again = get_generator("dcgan").synthesize(train.latents[:2])
    np.testing.assert_allclose(np.rint(again * 255), train.images[:2], atol=1)


def test_a_seed_range_across_shards_reads_the_same_faces_as_the_whole_shards(dcgan_data):
    whole = data.load("dcgan", 0, 1024, dcgan_data)
    part = data.load("dcgan", 100, 500, dcgan_data)  # ends and starts mid-shard, spans three shards
    np.testing.assert_array_equal(part.seeds, np.arange(100, 600))
    np.testing.assert_array_equal(part.images, whole.images[100:600])
    np.testing.assert_array_equal(part.latents, whole.latents[100:600])
    with pytest.raises(FileNotFoundError, match="run `lsi data`"):
        data.load("dcgan", 1000, 100, dcgan_data)  # seeds 1024.. were never generated
    with pytest.raises(ValueError, match="no faces"):
        data.load("dcgan", 0, 0, dcgan_data)


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


def test_keep_best_exports_the_checkpoint_of_lowest_validation_error(dcgan_data, tmp_path):
    """Early stopping: a run that goes bad after step 40 still exports its best checkpoint, the
    training state keeps the last weights, and a resumed trainer knows the same best checkpoint."""
    trainer = Trainer(config(dcgan_data, 40, keep_best=True), tmp_path / "run")
    trainer.fit()
    with torch.no_grad():  # the run diverges: every encoder weight is thrown far off
        for parameter in trainer.encoder.parameters():
            parameter.add_(10.0 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    trainer.config.steps = 60
    trainer.fit()
    errors = {r["step"]: r["val_latent_mse"] for r in trainer.history}
    assert sorted(errors) == [20, 40, 60]
    best_step = min(errors, key=errors.get)
    assert trainer.best["step"] == best_step <= 40 and errors[60] > errors[best_step]
    last = {k: v.clone() for k, v in trainer.encoder.state_dict().items()}

    model = load_model(trainer.export(tmp_path / "best.safetensors"))
    assert model.info["exported_step"] == best_step and model.info["steps"] == 60
    exported = model.encoder.state_dict()
    for name, value in trainer.best["tensors"].items():
        if name.startswith("encoder."):
            torch.testing.assert_close(exported[name[8:]], value, rtol=1e-3, atol=1e-3)  # fp16 file
    weights = [k for k in exported if not k.startswith("latent_")]
    assert any(not torch.allclose(exported[k], last[k], atol=1.0) for k in weights)
    for name, value in trainer.encoder.state_dict().items():
        assert torch.equal(value, last[name]), f"export changed the training state's {name}"

    resumed = Trainer(trainer.config, tmp_path / "run")
    assert resumed.step == 60 and resumed.best["step"] == best_step
    for name, value in trainer.best["tensors"].items():
        assert torch.equal(resumed.best["tensors"][name], value)


def test_lsi_train_last_exports_the_final_step(dcgan_data, tmp_path):
    from lsi_ros.cli import build_parser
    from lsi_ros.commands.train import build_config

    args = build_parser().parse_args(["train", "--last", "--data-dir", str(dcgan_data)])
    assert build_config(args).keep_best is False and TrainConfig().keep_best is True
    trainer = Trainer(config(dcgan_data, 40, keep_best=False), tmp_path / "run")
    trainer.fit()
    assert trainer.best is None
    assert load_model(trainer.export(tmp_path / "last.safetensors")).info["exported_step"] == 40


def test_faces_in_memory_train_as_the_cached_ones(dcgan_data, tmp_path):
    """Faces handed over in memory (rendered on a GPU, say) give the run the cache gives; a count that
    does not match the configuration is refused."""
    cfg = config(dcgan_data, 3)
    faces = data.load("dcgan", 0, cfg.train_faces + cfg.validation_faces, dcgan_data)
    cached = Trainer(cfg, tmp_path / "cached")
    handed = Trainer(cfg, tmp_path / "handed", faces=faces)
    in_torch = data.FaceData(
        faces.seeds, torch.from_numpy(faces.latents), torch.from_numpy(faces.images), faces.generator_id, 0.7
    )
    tensors = Trainer(cfg, tmp_path / "tensors", faces=in_torch)
    losses = [[t.train_step() for _ in range(3)] for t in (cached, handed, tensors)]
    assert losses[0] == losses[1]
    np.testing.assert_allclose(losses[2], losses[0], rtol=1e-5)
    short = data.FaceData(faces.seeds[:-1], faces.latents[:-1], faces.images[:-1], faces.generator_id, 0.7)
    with pytest.raises(ValueError, match="faces given"):
        Trainer(cfg, tmp_path / "short", faces=short)


def test_members_on_fixed_patterns_are_exported_as_one_averaging_model(dcgan_data, tmp_path):
    """An ensemble trains encoders only: the source's patterns are shown unchanged, each member has its
    own seed and run folder, and the file's encoder is the mean of the members' estimates."""
    source = Trainer(config(dcgan_data, 20), tmp_path / "source")
    source.fit()
    source_path = source.export(tmp_path / "source.safetensors")
    ensemble_config = config(dcgan_data, 20, patterns_from=str(source_path), members=2, train_faces=256)
    model = fit_members(ensemble_config, tmp_path / "ensemble")
    original = load_model(source_path)
    assert model.pattern_set.pattern_set_id == original.pattern_set.pattern_set_id
    assert isinstance(model.encoder, EncoderEnsemble) and len(model.encoder.members) == 2
    assert [m["seed"] for m in model.info["members"]] == [0, 1]
    assert model.info["patterns_from"]["pattern_set_id"] == original.pattern_set.pattern_set_id
    assert (tmp_path / "ensemble" / "member-1" / "state.safetensors").is_file()
    y = torch.rand(5, 16) * 100
    with torch.no_grad():
        members = [m(y) for m in model.encoder.members]
        assert not torch.allclose(members[0], members[1])
        torch.testing.assert_close(model.encoder(y), (members[0] + members[1]) / 2)
        path = save_model(model, tmp_path / "ensemble.safetensors")
        loaded = load_model(path)
        assert loaded.info["architecture"]["members"] == 2
        torch.testing.assert_close(loaded.encoder(y), model.encoder(y), atol=2e-2, rtol=2e-2)
    assert 0 < model.info["val_latent_mse"] < max(m["val_latent_mse"] for m in model.info["members"])
    # Retraining on the ensemble's patterns still names the faces the patterns learnt from.
    assert model.info["training_seeds"] == [0, 255] and original.info["training_seeds"] == [0, 383]
    again = Trainer(config(dcgan_data, 20, patterns_from=str(path), seed=7), tmp_path / "again")
    assert again.patterns_source["training_seeds"] == [0, 383]


def test_fixed_patterns_are_measured_once_and_train_as_measuring_in_the_step(dcgan_data, tmp_path):
    """With fixed patterns the trainer holds the faces' noise-free detector values (what the optics'
    forward model gives) and a step from them is the step that measures the batch's faces itself."""
    source = Trainer(config(dcgan_data, 1), tmp_path / "source")
    path = source.export(tmp_path / "source.safetensors")
    cfg = config(dcgan_data, 1, patterns_from=str(path))
    trainer = Trainer(cfg, tmp_path / "fixed")
    faces = data.load("dcgan", 0, cfg.train_faces + cfg.validation_faces, dcgan_data)
    expected = ForwardModel(load_model(path).pattern_set).measure(faces.images / 255.0)
    np.testing.assert_allclose(trainer.measurements.numpy(), expected, rtol=1e-5, atol=1e-3)

    rng = torch.Generator()
    rng.set_state(trainer.rng.get_state())  # the step's draws, replayed: batch, light level, noise
    index = torch.randint(0, cfg.train_faces, (cfg.batch_size,), generator=rng)
    flux = train.log_uniform_flux(cfg.photon_flux_range, rng)
    sums = faces.images[index.numpy()].sum(-1).reshape(cfg.batch_size, -1).astype(np.float32) / 255.0
    with torch.no_grad():
        binary = trainer.patterns.binary().float()
        predicted = trainer.encoder.normalised(train.measure(torch.from_numpy(sums), binary, flux, rng))
        target = (torch.from_numpy(faces.latents[index.numpy()]) - trainer.encoder.latent_mean) / (
            trainer.encoder.latent_std
        )
        measured_in_step = torch.nn.functional.mse_loss(predicted, target).item()
    assert trainer.train_step() == pytest.approx(measured_in_step, rel=1e-4)

    with pytest.raises(ValueError, match="measurements of shape"):
        Trainer(cfg, tmp_path / "short", measurements=trainer.measurements[:-1])


def test_an_ensemble_measures_its_faces_once(dcgan_data, tmp_path, monkeypatch):
    source = Trainer(config(dcgan_data, 1), tmp_path / "source")
    path = source.export(tmp_path / "source.safetensors")
    calls = []
    real = train.ideal_measurements
    monkeypatch.setattr(train, "ideal_measurements", lambda *a, **k: calls.append(1) or real(*a, **k))
    fit_members(config(dcgan_data, 2, patterns_from=str(path), members=3), tmp_path / "ensemble")
    assert len(calls) == 1


def test_members_need_fixed_patterns_of_the_right_count(dcgan_data, tmp_path):
    with pytest.raises(ValueError, match="fixed patterns"):
        fit_members(config(dcgan_data, 20, members=2), tmp_path / "run")
    source = Trainer(config(dcgan_data, 1, num_measurements=8), tmp_path / "m8")
    path = source.export(tmp_path / "m8.safetensors")
    with pytest.raises(ValueError, match="8 patterns"):
        Trainer(config(dcgan_data, 20, patterns_from=str(path)), tmp_path / "run")


def test_a_finished_run_is_re_exported_in_another_weight_format(dcgan_data, tmp_path):
    """The weight format changes the file, not the training: the run resumes at its last step and the
    int8 export reads back to what the fp16 one gives, within the quantisation step; other fields still
    refuse the run folder."""
    run = tmp_path / "run"
    Trainer(config(dcgan_data, 20), run).fit()
    again = Trainer(config(dcgan_data, 20, weight_format="int8"), run)
    assert again.step == 20
    half = load_model(Trainer(config(dcgan_data, 20), run).export(tmp_path / "fp16.safetensors"))
    small = load_model(again.export(tmp_path / "int8.safetensors"))
    assert small.info["architecture"]["weights"] == "int8"
    y = torch.rand(8, 16) * 100
    with torch.no_grad():
        torch.testing.assert_close(small.encoder(y), half.encoder(y), atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(config(dcgan_data, 20, lr=5e-4), run)
