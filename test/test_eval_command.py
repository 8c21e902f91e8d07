"""`lsi eval` on held-out faces: model rows, baseline rows at the same budgets, a figure."""

import json
import subprocess
import sys


def test_eval_writes_rows_for_models_and_baselines(dcgan_data, dcgan_model, tmp_path):
    output, figure, examples = tmp_path / "quality.json", tmp_path / "quality.png", tmp_path / "examples.png"
    command = [
        sys.executable,
        "-m",
        "lsi_ros.cli",
        "eval",
        "--models",
        str(dcgan_model),
        "--generator",
        "dcgan",
        "--faces",
        "64",
        "--baseline-faces",
        "4",
        "--data-dir",
        str(dcgan_data),
        "--output",
        str(output),
        "--figure",
        str(figure),
        "--examples",
        str(examples),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(output.read_text())["rows"]
    by_method = {(r["method"], r["noise"]): r for r in rows}
    lsi = by_method["lsi", "none"]
    assert lsi["M"] == 32 and lsi["n_images"] == 64 and "1000000" in lsi["images"]
    assert (
        by_method["hadamard-pinv", "none"]["patterns"] == 32
        and by_method["hadamard-tv", "none"]["n_images"] == 4
    )
    # The learned camera knows something about each face: better than decoding the mean latent.
    assert lsi["psnr_rgb"] > by_method["mean-latent", "none"]["psnr_rgb"]
    assert lsi["latent_mse"] < 1.0
    assert {r["noise"] for r in rows if r["method"] == "lsi"} == {"none", "photons=200", "photons=2"}
    assert figure.stat().st_size > 10_000 and examples.stat().st_size > 10_000


def test_faces_on_a_device_encode_like_numpy_faces(dcgan_data, dcgan_model):
    """encode_faces on a uint8 tensor (the GPU scripts' path): the same latents as the numpy path
    without noise, a tensor where the faces lie, and photon noise that moves the latents."""
    import numpy as np
    import torch

    from lsi_ros.evaluation.latent_imaging import encode_faces
    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.optics import PhotodiodeModel
    from lsi_ros.training import data

    model = load_model(dcgan_model)
    faces = data.load("dcgan", data.HELD_OUT_SEED_START, 40, dcgan_data).images
    noiseless = PhotodiodeModel.noiseless()
    expected = encode_faces(model, faces.astype(np.float32) / 255.0, noiseless)
    encoded = encode_faces(model, torch.from_numpy(faces), noiseless, chunk=16)
    assert isinstance(encoded, torch.Tensor) and encoded.shape == expected.shape
    np.testing.assert_allclose(encoded.numpy(), expected, atol=2e-3)
    noisy = encode_faces(model, torch.from_numpy(faces), PhotodiodeModel().with_photon_flux(20.0))
    assert not torch.allclose(noisy, encoded, atol=1e-2)
