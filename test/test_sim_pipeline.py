"""The whole simulated camera in separate processes (sim.launch.py through `lsi run`), with the DCGAN
test double: scene -> dmd_driver + photodiode_sampler -> latent_encoder -> latent_decoder, recorded."""

import json
import subprocess
import sys

import pytest
from rosbags.highlevel import AnyReader

from lsi_ros.training import data
from lsi_ros.training.train import TrainConfig, Trainer

# Decoded images must resemble *their* scenes: better than against another scene of the run (the
# truncated DCGAN faces are alike, the mean face alone scores ~16.3 dB), and above an absolute floor.
MIN_PSNR_DB = 14.0
MIN_PAIRING_GAIN_DB = 0.5


@pytest.fixture(scope="module")
def dcgan_model(tmp_path_factory):
    from lsi_ros.models.generators import get_generator

    root = tmp_path_factory.mktemp("faces")
    data.generate(get_generator("dcgan"), "dcgan", 0, 1024, root)
    config = TrainConfig(
        num_measurements=32,
        generator="dcgan",
        train_faces=896,
        validation_faces=128,
        steps=400,
        batch_size=64,
        width=256,
        depth=1,
        checkpoint_every=400,
        data_dir=str(root),
    )
    trainer = Trainer(config, root / "run")
    trainer.fit()
    return trainer.export(root / "m32.safetensors")


def test_sim_pipeline_end_to_end(dcgan_model, tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "lsi_ros.cli",
        "run",
        "--model",
        str(dcgan_model),
        "--generator",
        "dcgan",
        "--source",
        "faces",
        "--duration",
        "25",
        "--scene-rate",
        "4",
        "--output",
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert summary["latent_messages"] >= 20 and summary["decoded_images"] >= 10, summary
    assert summary["sequence_gaps"] == 0
    sizes = summary["bytes_per_frame"]
    assert sizes["measurements"] * 100 <= sizes["image_rgb8"], sizes
    quality = summary["quality_rgb"]
    assert quality["psnr_db"] > MIN_PSNR_DB, quality
    assert quality["psnr_db"] > quality["psnr_db_unpaired"] + MIN_PAIRING_GAIN_DB, quality
    assert (output / "frames.png").stat().st_size > 1000
    with AnyReader([output / "bag"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/latent"] >= summary["latent_messages"] - 1 > 0
    assert counts["/measurements"] >= 1 and counts["/image"] >= 1
