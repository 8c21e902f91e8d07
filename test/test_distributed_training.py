"""Data-parallel training: two gloo ranks on this CPU, started by run_local_ranks.

Noiseless runs make one process and two comparable: both draw the same batches from the seed, so two
ranks averaging the gradients of their halves must reproduce the one-process gradient of the whole
batch (overlapping or dropped slices, or summed instead of averaged gradients, would not). Every
socket the ranks listen on must be on the loopback interface.
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

from lsi_ros.models.checkpoint import load_model
from lsi_ros.training.distributed import run_local_ranks
from lsi_ros.training.train import Trainer

WORKER = Path(__file__).with_name("ddp_worker.py")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(dcgan_data, **changes):
    """Noiseless, so one process and two see the same measurements."""
    return dcgan_config(
        dcgan_data, **{"steps": 6, "batch_size": 32, "checkpoint_every": 3, "noise": False} | changes
    )


def two_ranks(*args) -> None:
    ranks = run_local_ranks(2, list(args), env=_env(), capture_output=True, timeout=240)
    for rank in ranks:
        assert rank.returncode == 0, rank.stdout[-3000:] + rank.stderr[-3000:]


def _env() -> dict:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_two_ranks_average_the_whole_batch_gradient_stay_in_sync_and_resume_from_rank_0(dcgan_data, tmp_path):
    cfg = config(dcgan_data)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    two_ranks(str(WORKER), str(tmp_path / "config.json"), str(tmp_path), "3")
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

    listeners = {}
    for r in (0, 1):  # rank 1 resumed from an empty run folder: the state came from rank 0
        with safe_open(str(tmp_path / f"rank{r}.safetensors"), "pt") as f:
            metadata = f.metadata()
        assert metadata["resumed_step"] == "3" and metadata["resumed_weights_equal"] == "True"
        listeners[r] = json.loads(metadata["listeners"])
        assert all(a.rsplit(":", 1)[0] in ("127.0.0.1", "::1") for a in listeners[r]), listeners
    assert f"127.0.0.1:{metadata['master_port']}" in listeners[0]  # rank 0 serves the store there
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


def test_a_failing_rank_stops_the_others_and_its_exit_status_comes_back(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(
        "import os, sys, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    print('rank 1 fails', file=sys.stderr)\n"
        "    sys.exit(3)\n"
        "time.sleep(600)\n"
    )
    ranks = run_local_ranks(2, [str(script)], capture_output=True, timeout=60)
    assert ranks[1].returncode == 3 and "rank 1 fails" in ranks[1].stderr
    assert ranks[0].returncode != 0  # terminated, not left waiting for rank 1
