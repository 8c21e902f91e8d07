"""dmd_driver applies the calibration's registration: real process, real DDS, sim backend."""

import subprocess
from dataclasses import replace

import pytest
from conftest import node_command, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node

from lsi_ros.msg import PatternSetInfo
from lsi_ros.optics.calibration import CalibrationError, DetectorCalibration
from lsi_ros.optics.photodiode import PhotodiodeModel
from lsi_ros.ros import qos


def calibration(shift, scale, resolution=32) -> DetectorCalibration:
    nominal = DetectorCalibration.from_model(PhotodiodeModel(), source="test")
    return replace(nominal, shift=shift, scale=scale, resolution=resolution)


def test_grid_registration_is_rescaled_to_the_pattern_resolution():
    registration = calibration((1.5, -2.25), 1.04).grid_registration(256)
    assert registration.shift == (12.0, -18.0) and registration.scale == 1.04
    assert calibration((0.0, 0.0), 1.0, resolution=0).grid_registration(256).is_identity
    with pytest.raises(CalibrationError, match="no resolution"):
        calibration((1.0, 0.0), 1.0, resolution=0).grid_registration(256)


def run_driver(tmp_path, ros_context, spin, calibration_file):
    """dmd_driver (sim, 64² Hadamard) with ``calibration_file``: its latest status and announcements."""
    node = Node("registration_probe", context=ros_context)
    received = {"status": [], "info": []}
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda array: received["status"].extend(s for s in array.status if s.name == "dmd_driver"),
        50,
    )
    node.create_subscription(PatternSetInfo, "pattern_set", received["info"].append, qos.LATCHED)
    spin(node)
    params = [
        "pattern_set:=hadamard-split:8",
        "resolution:=64",
        f"cache_dir:={tmp_path / 'patterns'}",
        f"calibration:={calibration_file}",
    ]
    process = subprocess.Popen(node_command("dmd_driver", *(x for p in params for x in ("-p", p))))
    try:
        assert wait_for(lambda: received["info"] and len(received["status"]) >= 2, timeout=30)
        assert process.poll() is None, "dmd_driver died"
        latest = received["status"][-1]
        return latest, {kv.key: kv.value for kv in latest.values}, received["info"]
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_dmd_driver_shows_the_patterns_registered_to_the_scene(tmp_path, ros_context, spin):
    path = calibration((0.25, -1.5), 1.02).save(tmp_path / "calibration.json")
    status, values, info = run_driver(tmp_path, ros_context, spin, path)
    assert status.level == DiagnosticStatus.OK, status.message
    # measured at 32²: at 64² the shift doubles; the announced set is the plain Hadamard set
    assert values["registration_shift_px"] == "0.500, -3.000" and values["registration_scale"] == "1.0200"
    assert info[0].num_patterns == 8 and info[0].kind == "hadamard-split"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not a readable JSON file"),
        (None, "off the DLP6500 mirror array"),  # 64² on the DLP6500 has 1.75 spare pixel rows
    ],
)
def test_a_bad_calibration_is_reported_and_the_patterns_are_shown_unregistered(
    tmp_path, ros_context, spin, content, reason
):
    path = tmp_path / "calibration.json"
    if content is None:
        calibration((1.5, 0.0), 1.0).save(path)  # 3 pixels at 64²
    else:
        path.write_text(content)
    status, values, info = run_driver(tmp_path, ros_context, spin, path)
    assert status.level == DiagnosticStatus.ERROR
    assert "registration not applied" in status.message and reason in status.message
    assert values["registration_shift_px"] == "0.000, 0.000" and info, "nothing displayed"
