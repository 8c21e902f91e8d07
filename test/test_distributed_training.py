"""Data-parallel training: two gloo ranks on this CPU, started through torch.distributed.run.

Noiseless runs make one process and two comparable: both draw the same batches from the seed, so two
ranks averaging the gradients of their halves must reproduce the one-process gradient of the whole
batch (overlapping or dropped slices, or summed instead of averaged gradients, would not).
"""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from conftest import dcgan_config
from safetensors import safe_open
from safetensors.torch import load_file

from lsi_ros.commands.train import free_loopback_port
from lsi_ros.models.checkpoint import load_model
from lsi_ros.training.train import Trainer

WORKER = Path(__file__).with_name("ddp_worker.py")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(dcgan_data, **changes):
    """Noiseless, so one process and two see the same measurements."""
    return dcgan_config(
        dcgan_data, **{"steps": 6, "batch_size": 32, "checkpoint_every": 3, "noise": False} | changes
    )


def torchrun(*args, cwd=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(free_loopback_port()), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=cwd, env=_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _env() -> dict:
    import os

    return {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}


def test_two_ranks_average_the_whole_batch_gradient_stay_in_sync_and_resume_from_rank_0(dcgan_data, tmp_path):
    cfg = config(dcgan_data)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    torchrun(str(WORKER), str(tmp_path / "config.json"), str(tmp_path), "3")
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]

    single = Trainer(cfg, tmp_path / "single")
    single.train_step()
    for name, p in single.imager.named_parameters():
        assert torch.equal(ranks[0][f"grad.{name}"], ranks[1][f"grad.{name}"])
        torch.testing.assert_close(ranks[0][f"grad.{name}"], p.grad, rtol=1e-4, atol=1e-6)
    single.fit()
    for name, p in single.imager.named_parameters():
        assert torch.equal(ranks[0][f"final.{name}"], ranks[1][f"final.{name}"])  # replicas in sync
        torch.testing.assert_close(ranks[0][f"final.{name}"], p.detach(), rtol=1e-4, atol=1e-5)

    for r in (0, 1):  # rank 1 resumed from an empty run folder: the state came from rank 0
        with safe_open(str(tmp_path / f"rank{r}.safetensors"), "pt") as f:
            assert f.metadata() == {"resumed_step": "3", "resumed_weights_equal": "True"}
    assert (tmp_path / "run-rank0" / "state.safetensors").is_file()
    assert not (tmp_path / "run-rank1").exists()  # rank 1 wrote nothing
    with safe_open(str(tmp_path / "run-rank0" / "state.safetensors"), "pt") as f:
        assert f.metadata()["step"] == "6"


def test_lsi_train_nproc_2_exports_the_model_one_process_trains(dcgan_data, tmp_path):
    cfg = config(dcgan_data, steps=4, checkpoint_every=2)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    done = subprocess.run(
        [sys.executable, "-m", "lsi_ros.cli", "train", "--nproc", "2", "--threads", "1"]
        + ["--config", str(tmp_path / "config.json"), "--run-dir", str(tmp_path / "run")]
        + ["--export", str(tmp_path / "m16.safetensors")],
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("exported") == 1  # rank 0 alone exports
    assert done.stdout.count("step 4: train loss") == 1  # and reports validation

    model = load_model(tmp_path / "m16.safetensors")
    assert model.num_measurements == 16 and model.info["steps"] == 4
    single = Trainer(cfg, tmp_path / "single")
    single.fit()
    assert torch.equal(
        torch.from_numpy(model.pattern_set.dense()), single.patterns.binary().reshape(16, 64, 64)
    )
    for a, b in zip(model.encoder.parameters(), single.encoder.cpu().parameters(), strict=True):
        torch.testing.assert_close(a.float(), b.detach(), rtol=2e-3, atol=2e-3)  # the file keeps fp16
