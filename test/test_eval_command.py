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
