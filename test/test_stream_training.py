"""Streamed training (lsi train --stream): fresh faces, each seen once, on the DCGAN test double (and
the GPU slot command on the real generator's export)."""

import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import dcgan_config
from safetensors.torch import load_file

from lsi_ros.cli import build_parser
from lsi_ros.models.checkpoint import load_model
from lsi_ros.training.compact import SHARD_LIMIT
from lsi_ros.training.seeds import HELD_OUT_SEED_START, STREAM_SEED_START, STREAM_VALIDATION_SEED_START
from lsi_ros.training.stream import StreamTrainer

REPO = Path(__file__).resolve().parents[1]

TINY = dcgan_config(  # three steps a chunk: runs stop and resume inside chunks
    "", num_measurements=8, validation_faces=16, steps=8, batch_size=8, width=32, checkpoint_every=4
)
TINY = replace(TINY, chunk_faces=24, stream=True)


class SeedLog:
    """Wraps a trainer's renderer and step to note which seeds were rendered and which were learnt from
    (each latent row traced back to its seed)."""

    def __init__(self, trainer: StreamTrainer):
        self.by_latent, self.shown = {}, []
        renderer, learn = trainer.renderer, trainer.learn_faces

        def render(seeds):
            w, faces = renderer(seeds)
            self.by_latent |= {row.numpy().tobytes(): int(s) for row, s in zip(w, seeds, strict=True)}
            return w, faces

        def learn_faces(w, faces):
            self.shown += [self.by_latent[row.numpy().tobytes()] for row in w]
            return learn(w, faces)

        trainer.renderer = render
        trainer.learn_faces = learn_faces


def test_a_resumed_run_shows_each_seed_once_and_ends_as_an_uninterrupted_one(tmp_path):
    straight = StreamTrainer(TINY, tmp_path / "straight")
    straight_log = SeedLog(straight)
    straight.fit()

    first = StreamTrainer(TINY, tmp_path / "first")
    first_log = SeedLog(first)
    first.fit(max_steps=5)  # stops inside the second chunk
    assert (first.step, first.faces_seen, first.seed_cursor) == (5, 40, STREAM_SEED_START + 40)
    # the checkpoint is carried elsewhere and goes on into another folder
    second = StreamTrainer(TINY, tmp_path / "second", resume_from=tmp_path / "first")
    assert (second.step, second.faces_seen) == (5, 40)
    second_log = SeedLog(second)
    second.fit()

    shown = first_log.shown + second_log.shown
    assert len(shown) == len(set(shown)) == TINY.steps * TINY.batch_size
    assert shown == straight_log.shown == list(range(STREAM_SEED_START, STREAM_SEED_START + 64))
    validation = range(STREAM_VALIDATION_SEED_START, STREAM_VALIDATION_SEED_START + TINY.validation_faces)
    assert not set(shown) & set(validation)

    for name in ("model.safetensors", "optimizer.safetensors"):
        expected = load_file(tmp_path / "straight" / name)
        resumed = load_file(tmp_path / "second" / name)
        weights = [k for k in expected if not k.startswith("best.")]
        assert weights and set(weights) <= set(resumed)
        for key in weights:
            torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=0, msg=key)
    assert torch.equal(second.rng.get_state(), straight.rng.get_state())
    state = json.loads((tmp_path / "second" / "state.json").read_text())
    assert (state["step"], state["faces_seen"], state["seed_cursor"]) == (8, 64, STREAM_SEED_START + 64)
    assert state["training_seeds"] == [STREAM_SEED_START, STREAM_SEED_START + 63]
    straight_records = {r["step"]: r for r in straight.history}
    for record in second.history:  # the resumed run validated at step 5 as well
        if record["step"] in straight_records:
            assert record == pytest.approx(straight_records[record["step"]])


def test_a_checkpoint_refuses_another_configuration_but_takes_another_budget(tmp_path):
    trainer = StreamTrainer(TINY, tmp_path / "run")
    trainer.fit(max_steps=1)
    again = StreamTrainer(
        replace(TINY, budget_s=100.0, chunk_faces=16), tmp_path / "other", resume_from=tmp_path / "run"
    )
    assert again.step == 1
    # the best checkpoint (its patterns kept bit-packed) exports the same model file
    exported, reloaded = trainer.exported_model(), again.exported_model()
    assert exported.pattern_set.pattern_set_id == reloaded.pattern_set.pattern_set_id
    for key, value in exported.encoder.state_dict().items():
        assert torch.equal(value, reloaded.encoder.state_dict()[key]), key
    with pytest.raises(ValueError, match="another configuration"):
        StreamTrainer(replace(TINY, lr=0.5), tmp_path / "other", resume_from=tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="state.json"):
        StreamTrainer(TINY, tmp_path / "new", resume_from=tmp_path / "missing")
    with pytest.raises(ValueError, match="multiple of batch_size"):
        StreamTrainer(replace(TINY, chunk_faces=12), tmp_path / "new")


def test_the_budget_stops_training_in_time_with_a_checkpoint_to_go_on_from(tmp_path):
    config = replace(TINY, steps=100_000, checkpoint_every=100_000, budget_s=10.0)
    trainer = StreamTrainer(config, tmp_path / "run")
    began = time.perf_counter()
    record = trainer.fit()
    elapsed = time.perf_counter() - began
    # on a shared machine one step can take longer than any before it: 2 s of slack for that
    assert config.budget_s / 2 < elapsed < config.budget_s + 2.0
    assert 0 < trainer.step < config.steps
    assert record["step"] == trainer.step  # validated at the stop
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["step"] == trainer.step and state["faces_seen"] == trainer.step * config.batch_size
    assert state["last_run"]["faces_per_s"] > 0 and state["last_run"]["steps_per_s"] > 0
    assert StreamTrainer(config, tmp_path / "run").step == trainer.step


def run_lsi(*argv) -> int:
    args = build_parser().parse_args(["train", *argv])
    return args.func(args)


def test_the_gpu_slot_command_trains_evaluates_and_resumes_from_a_carried_checkpoint(tmp_path):
    """The slot command as docs/training.md gives it, at tiny size on the CPU: a first slot cut short
    by its budget, a second going on from the first one's OUT/run carried in as .device/run-m8."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({k: v for k, v in vars(TINY).items() if k != "num_measurements"}))
    config = tmp_path / "train-m8.json"
    config.write_text(json.dumps({"recipe": "recipe.json", "num_measurements": 8}))
    common = ["--stream", "--config", str(config), "--device", "cpu", "--eval-faces", "32"]

    began = time.perf_counter()
    assert run_lsi(*common, "--out", str(tmp_path / "slot1"), "--budget-s", "16") == 0
    assert time.perf_counter() - began < 16
    first = json.loads((tmp_path / "slot1" / "results.json").read_text())
    carried = tmp_path / ".device" / "run-m8"
    carried.parent.mkdir()
    (tmp_path / "slot1" / "run").rename(carried)
    out = tmp_path / "slot2"
    assert run_lsi(*common, "--out", str(out), "--resume", str(carried), "--budget-s", "600") == 0
    second = json.loads((out / "results.json").read_text())

    assert first["steps"] + second["this_run"]["steps"] == second["steps"] == TINY.steps
    assert second["faces_seen"] == 64 and second["training_seeds"] == [
        STREAM_SEED_START,
        STREAM_SEED_START + 63,
    ]
    for results in (first, second):
        assert results["held_out"]["seeds"] == [HELD_OUT_SEED_START, HELD_OUT_SEED_START + 31]
        assert np.isfinite(results["held_out"]["latent_mse"]["new"])
    ran = [
        r["this_run"] for r in (first, second) if r["this_run"]["steps"]
    ]  # a fast host may finish in slot 1
    assert ran and all(r["faces_per_s"] > 0 and r["steps_per_s"] > 0 for r in ran)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8  # what the device tool brings back: 8 files, 2 folders down
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert all(p.stat().st_size <= SHARD_LIMIT for p in files)  # and at most 16 MiB each
    checkpoint = sorted(p.name for p in (out / "run").glob("*.safetensors"))
    assert checkpoint and all(name.startswith("checkpoint-") for name in checkpoint)  # the compact form
    assert {p.name for p in (out / "run").iterdir()} == {*checkpoint, "state.json"}  # no file to spare
    model = load_model(out / "m8.safetensors")
    assert (
        model.info["faces_seen"] == 64 and model.info["validation_seeds"][0] == STREAM_VALIDATION_SEED_START
    )


def test_the_gpu_slot_command_needs_only_torch_numpy_safetensors_tqdm_and_msssim(tmp_path, bare_gpu_python):
    """The slot command of docs/training.md on the real generator's float16 export, in an interpreter
    that sees only the packages it is documented to need (no OpenVINO, ROS, OpenCV or SciPy), as on a
    GPU machine that has torch alone: it renders, trains, evaluates and writes its folder."""
    pytest.importorskip("openvino")
    from lsi_ros.models.generators import get_generator

    export = get_generator("mobilestylegan").export_torch(tmp_path / ".device" / "mobilestylegan", "float16")
    bare, env = bare_gpu_python
    out = tmp_path / "out"
    args = ["train", "--config", str(REPO / "config/train-m32.json"), "--generator-export", str(export)]
    args += ["--device", "cpu", "--steps", "2", "--batch-size", "4", "--chunk-faces", "4"]
    args += ["--validation-faces", "4", "--eval-faces", "4", "--width", "32", "--out", str(out)]
    result = subprocess.run(
        [*bare, "-m", "lsi_ros.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2 and results["faces_seen"] == 8
    assert np.isfinite(results["held_out"]["latent_mse"]["new"])
    assert load_model(out / "m32.safetensors").pattern_set.num_patterns == 32


def test_every_shipped_m_shares_one_streamed_recipe():
    from lsi_ros.commands.train import build_config

    configs = {}
    for m in (32, 64, 128, 256):
        args = build_parser().parse_args(["train", "--config", str(REPO / f"config/train-m{m}.json")])
        configs[m] = build_config(args)
        assert configs[m].num_measurements == m and configs[m].stream
    recipes = {json.dumps({**vars(c), "num_measurements": 0}, sort_keys=True) for c in configs.values()}
    assert len(recipes) == 1
