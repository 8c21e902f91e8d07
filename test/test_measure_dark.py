"""photodiode_sampler's ~/measure_dark service through real rclpy service calls: the sim backend
images a black scene (the covered objective), the node averages the next frames into the dark
level and read noise, updates the calibration in use (and its file) and dark-subtracts later frames.
"""

import json
import math

import numpy as np
import pytest
from conftest import publishing, wait_for
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from lsi_ros.msg import Measurements, PatternSetInfo
from lsi_ros.optics import patterns
from lsi_ros.optics.calibration import DetectorCalibration, temporal_stats
from lsi_ros.optics.photodiode import PhotodiodeModel
from lsi_ros.ros import image, qos

M = 16
PHOTON_FLUX = 200.0
DARK_FRAMES = 40


@pytest.fixture
def camera(tmp_path, ros_context, spin, request):
    """A sampler (sim backend, black scene streaming at ~200 Hz) and a probe node."""
    from lsi_ros.nodes.photodiode_sampler import PhotodiodeSampler

    options = getattr(request, "param", {})
    pattern_set = patterns.hadamard_split_patterns(M, 32)
    uri = patterns.save_pattern_set(pattern_set, tmp_path / "set.safetensors")
    probe = Node("dark_probe", context=ros_context)
    frames = []
    probe.create_subscription(Measurements, "measurements", frames.append, qos.SENSOR_DATA)
    announce = probe.create_publisher(PatternSetInfo, "pattern_set", qos.LATCHED)
    scenes = probe.create_publisher(image.Image, "scene", qos.SENSOR_DATA)
    overrides = [
        Parameter("photon_flux", value=PHOTON_FLUX),
        Parameter("dark_frames", value=DARK_FRAMES),
    ]
    if options.get("with_file"):
        # a calibration with a wrong dark level, as if the amplifier's offset had drifted
        model = PhotodiodeModel().with_photon_flux(PHOTON_FLUX)
        nominal = DetectorCalibration.from_model(model, source="test")
        drifted = {**vars(nominal), "dark_level": 100.0, "ambient": 0.0, "uncertainties": {"gain": 0.01}}
        path = DetectorCalibration(**drifted).save(tmp_path / "calibration.json")
        overrides.append(Parameter("calibration", value=str(path)))
    sampler = PhotodiodeSampler(context=ros_context, parameter_overrides=overrides)
    client = probe.create_client(Trigger, "/photodiode_sampler/measure_dark")
    stop_spinning = spin(probe, sampler)
    info = PatternSetInfo(pattern_set_id=pattern_set.pattern_set_id, num_patterns=M, uri=str(uri))
    info.resolution, info.pattern_rate_hz, info.kind = 32, 2000.0, "hadamard-split"
    announce.publish(info)
    black = image.array_to_image(np.zeros((32, 32, 3), np.uint8), "rgb8")
    with publishing(scenes, black, 0.005):
        assert client.wait_for_service(timeout_sec=10)
        yield sampler, client, frames
    stop_spinning()
    sampler.destroy_node()


def call(client, timeout=30):
    future = client.call_async(Trigger.Request())
    assert wait_for(future.done, timeout=timeout)
    return future.result()


def black_level(model: PhotodiodeModel) -> float:
    """Mean counts of a black scene: the electronic dark level plus the stray light the sim keeps."""
    return float(model.expected_counts(0.0))


def test_measured_dark_level_matches_the_model_and_later_frames_are_dark_subtracted(camera):
    sampler, client, frames = camera
    model = PhotodiodeModel().with_photon_flux(PHOTON_FLUX)
    assert wait_for(lambda: len(frames) >= 5, timeout=15)
    raw = np.stack([f.values for f in frames[:5]])
    assert abs(raw.mean() - black_level(model)) < 5.0  # raw counts before any calibration

    response = call(client)
    assert response.success, response.message
    calibration = sampler.calibration
    assert calibration is not None and calibration.ambient == 0.0
    assert calibration.gain == pytest.approx(model.conversion_gain)
    se = calibration.uncertainties["dark_level"]
    assert 0 < se < 0.2
    assert abs(calibration.dark_level - black_level(model)) < 4 * se
    # a black scene's temporal noise in electrons: read noise and the stray light's shot noise
    expected_noise = math.sqrt(model.read_noise**2 + model.ambient)
    assert abs(calibration.read_noise - expected_noise) < 4 * calibration.uncertainties["read_noise"]
    assert f"dark level {calibration.dark_level:.3f}" in response.message

    count = len(frames)
    assert wait_for(lambda: len(frames) >= count + 30, timeout=15)
    after = np.stack([f.values for f in frames[count + 5 : count + 30]])  # calibrated: photo-electrons
    noise_e = temporal_stats(after).variance ** 0.5
    assert abs(after.mean()) < 4 * noise_e / math.sqrt(after.size) + 3 * se / model.conversion_gain
    assert abs(after.mean()) < 0.02 * black_level(model) / model.conversion_gain


@pytest.mark.parametrize("camera", [{"with_file": True}], indirect=True)
def test_measurement_updates_and_saves_the_loaded_calibration(tmp_path, camera):
    sampler, client, frames = camera
    path = tmp_path / "calibration.json"
    loaded = DetectorCalibration.load(path)
    assert sampler.calibration == loaded and loaded.dark_level == 100.0
    response = call(client)
    assert response.success, response.message
    saved = DetectorCalibration.load(path)
    model = PhotodiodeModel().with_photon_flux(PHOTON_FLUX)
    assert abs(saved.dark_level - black_level(model)) < 4 * saved.uncertainties["dark_level"]
    assert saved.gain == loaded.gain and saved.photon_flux == loaded.photon_flux  # the rest kept
    assert saved.uncertainties["gain"] == 0.01 and "~/measure_dark" in saved.method
    assert sampler.calibration == saved and str(path) in response.message
    assert json.loads(path.read_text())["format"] == "lsi_ros.detector_calibration"
