"""Detector calibration: recovering known parameters from simulated captures, registration, files, CLI."""

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from lsi_ros.cli import main
from lsi_ros.hardware.calibration_bench import CapturePlan, SimulatedBench
from lsi_ros.optics.calibration import (
    CalibrationCaptures,
    CalibrationError,
    DetectorCalibration,
    calibrate,
    estimate_registration,
    registration_target,
)
from lsi_ros.optics.photodiode import PhotodiodeModel

# Not the defaults, so an estimator that returned defaults would fail. 16² grid: all-on at α = 64000
# gives 2.5e-3 · 768 · 64000 ≈ 123,000 counts, so the upper fill factors clip a 16-bit ADC.
TRUE = PhotodiodeModel(
    photon_flux=64000.0, conversion_gain=2.5e-3, read_noise=700.0, dark_level=350.0, ambient=1.2e5
)
PLAN = CapturePlan(resolution=16, frames=100, offset_patterns=64, levels=24, patterns_per_level=32)
SHIFT, SCALE = (-1.25, 2.0), 0.95
Z = 4.5  # a correct estimator lands within 4.5 standard errors (p ≈ 7e-6 per parameter)


@pytest.fixture(scope="module")
def session():
    bench = SimulatedBench(TRUE, PLAN, shift=SHIFT, scale=SCALE, seed=7)
    captures = bench.acquire(progress=False)
    return captures, calibrate(captures)


def test_recovers_dark_level_read_noise_gain_ambient_within_their_standard_errors(session):
    _, result = session
    calibration = result.calibration
    truth = {
        "dark_level": TRUE.dark_level,
        "read_noise": TRUE.read_noise,
        "gain": TRUE.conversion_gain,
        "ambient": TRUE.ambient,
        "photon_flux": TRUE.photon_flux,
    }
    for name, value in truth.items():
        se = calibration.uncertainties[name]
        assert abs(getattr(calibration, name) - value) < Z * se, (name, getattr(calibration, name), value, se)
    # The standard errors follow from the sample counts: the dark level's is σ_counts / √n.
    dark_samples = PLAN.frames * PLAN.offset_patterns
    dark_sigma = math.sqrt((TRUE.conversion_gain * TRUE.read_noise) ** 2 + 1 / 12)
    assert calibration.uncertainties["dark_level"] == pytest.approx(
        dark_sigma / math.sqrt(dark_samples), rel=0.1
    )
    # ... and are small enough for the check to bite: a 10 % wrong gain or read noise is rejected.
    for name in ("gain", "read_noise", "ambient"):
        assert 1.1 * truth[name] - getattr(calibration, name) > Z * calibration.uncertainties[name], name
    assert calibration.full_scale == TRUE.full_scale
    assert result.ptc.saturation_level is not None and result.ptc.used.sum() >= 5
    assert not result.ptc.used[result.ptc.clipped_fraction > 0].any()
    assert calibration.full_well == pytest.approx(
        (TRUE.full_scale - TRUE.dark_level) / TRUE.conversion_gain, rel=0.1
    )
    assert calibration.linearity_error < 0.5  # the simulated chain is linear below saturation


def test_registration_recovers_the_known_shift_and_scale(session):
    _, result = session
    assert result.calibration.shift == pytest.approx(SHIFT, abs=0.15)
    assert result.calibration.scale == pytest.approx(SCALE, abs=0.02)
    rng = np.random.default_rng(3)
    for shift, scale in (((0.0, 0.0), 1.0), ((2.6, -3.1), 1.1)):
        image = registration_target(32, shift, scale) + rng.normal(0, 0.02, (32, 32))
        found = estimate_registration(image)
        assert found.shift == pytest.approx(shift, abs=0.1)
        assert found.scale == pytest.approx(scale, abs=0.01)
        assert found.residual < 0.05


def test_apply_inverts_the_offset_and_gain_of_the_implied_model(session):
    calibration = session[1].calibration
    model = calibration.photodiode_model()
    assert (model.conversion_gain, model.dark_level, model.read_noise) == (
        calibration.gain,
        calibration.dark_level,
        calibration.read_noise,
    )
    assert model.adc_bits == 16 and model.full_scale == calibration.full_scale
    y = np.array([0.0, 10.0, 250.0, 700.0])
    counts = model.expected_counts(y)
    np.testing.assert_allclose(calibration.apply(counts), model.photon_flux * y, atol=1e-6)
    np.testing.assert_allclose(calibration.to_ideal(counts), y, atol=1e-9)
    frame = calibration.calibrate_frame(counts.astype(np.float32))
    assert frame.dtype == np.float32 and frame.shape == (4,)
    np.testing.assert_allclose(frame, model.photon_flux * y, rtol=1e-5, atol=5.0)
    with pytest.raises(CalibrationError, match="1-D"):
        calibration.calibrate_frame(np.zeros((2, 4)))


def test_no_saturation_keeps_the_nominal_full_scale():
    dim = replace(TRUE, photon_flux=8000.0)
    plan = replace(PLAN, levels=8, frames=20)
    result = calibrate(SimulatedBench(dim, plan, seed=1).acquire(progress=False))
    assert result.ptc.saturation_level is None and result.ptc.used.all()
    assert result.calibration.full_well is None and result.calibration.full_scale == dim.full_scale


def test_too_bright_flat_field_is_refused_with_a_clear_error():
    glaring = replace(TRUE, photon_flux=2e6)
    captures = SimulatedBench(glaring, replace(PLAN, levels=6, frames=10), seed=2).acquire(progress=False)
    with pytest.raises(CalibrationError, match="below saturation"):
        calibrate(captures)


def test_calibration_json_round_trip(session, tmp_path):
    calibration = session[1].calibration
    path = calibration.save(tmp_path / "calibration.json")
    loaded = DetectorCalibration.load(path)
    assert loaded == calibration
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text[: len(text) // 2], "not a readable JSON"),
        (lambda text: "[1, 2]", "format"),
        (lambda text: text.replace('"version": 1', '"version": 99'), "version 99"),
        (lambda text: text.replace('"gain"', '"gian"'), "missing fields \\['gain'\\]"),
        (lambda text: _set(text, "gain", -1.0), "positive"),
        (lambda text: _set(text, "read_noise", float("nan")), "finite"),
        (lambda text: _set(text, "dark_level", "200"), "finite number"),
        (lambda text: _set(text, "shift", [1.0]), "shift"),
        (lambda text: _set(text, "full_well", "lots"), "full_well"),
        (lambda text: _set(text, "uncertainties", {"gain": "small"}), "malformed"),
        (lambda text: _set(text, "full_scale", 10.0), "full_scale"),
    ],
)
def test_corrupt_calibration_files_are_rejected(session, tmp_path, edit, message):
    path = session[1].calibration.save(tmp_path / "calibration.json")
    path.write_text(edit(path.read_text()))
    with pytest.raises(CalibrationError, match=message):
        DetectorCalibration.load(path)
    with pytest.raises(CalibrationError, match="not found"):
        DetectorCalibration.load(tmp_path / "missing.json")


def _set(text: str, key: str, value) -> str:
    data = json.loads(text)
    data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_captures_round_trip_and_corrupt_files(session, tmp_path, suffix):
    captures = session[0]
    path = captures.save(tmp_path / f"captures{suffix}")
    loaded = CalibrationCaptures.load(path)
    for name in CalibrationCaptures.ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(captures, name))
    assert (loaded.resolution, loaded.flat_field, loaded.source) == (16, 1.0, "sim")
    assert calibrate(loaded).calibration.gain == session[1].calibration.gain
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CalibrationError, match="not a readable captures file"):
        CalibrationCaptures.load(path)


def test_captures_with_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, meta=np.array([{"format": "x"}], dtype=object), dark=np.zeros((2, 2)))
    with pytest.raises(CalibrationError, match="not a readable captures file"):
        CalibrationCaptures.load(path)


def test_lsi_calibrate_runs_end_to_end_in_sim(tmp_path, capsys):
    output, figure, captures = tmp_path / "cal.json", tmp_path / "ptc.png", tmp_path / "captures.npz"
    command = [sys.executable, "-m", "lsi_ros.cli", "calibrate", "--resolution", "16", "--frames", "30"]
    command += ["--levels", "10", "--true-gain", "2e-3", "--true-shift", "0.5", "1.0"]
    command += ["--output", str(output), "--figure", str(figure), "--save-captures", str(captures)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    calibration = DetectorCalibration.load(output)
    assert calibration.gain == pytest.approx(2e-3, rel=0.1) and calibration.source == "sim"
    assert calibration.shift == pytest.approx((0.5, 1.0), abs=0.2)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000
    assert "gain" in result.stdout and "in SE" in result.stdout
    # Replays of the recorded captures, in-process (the subprocess above covers the entry point).
    replay = ["calibrate", "--captures", str(captures), "--figure", ""]
    assert main([*replay, "--output", str(tmp_path / "replay.json")]) == 0
    assert DetectorCalibration.load(tmp_path / "replay.json").gain == calibration.gain
    captures.write_bytes(b"not a zip")
    assert main([*replay, "--output", str(tmp_path / "never.json")]) == 2
    assert "not a readable captures file" in capsys.readouterr().out
    assert not (tmp_path / "never.json").exists()
