"""latent_encoder in its own process: encodes matching frames, refuses everything else, never dies."""

import subprocess

import numpy as np
import pytest
import torch
from conftest import node_command, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from test_models import make_model

from lsi_ros.models.checkpoint import load_model, save_model
from lsi_ros.msg import LatentCode, Measurements
from lsi_ros.ros import latent, qos


def start_encoder(model_path):
    return subprocess.Popen(node_command("latent_encoder", "-p", f"model:={model_path}"))


@pytest.fixture
def graph(ros_context, spin):
    node = Node("encoder_probe", context=ros_context)
    received = {"codes": [], "status": []}
    node.create_subscription(LatentCode, "latent", received["codes"].append, qos.RELIABLE)

    def on_diagnostics(array):
        received["status"] += [s for s in array.status if s.name == "latent_encoder"]

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    frames = node.create_publisher(Measurements, "measurements", qos.SENSOR_DATA)
    spin(node)
    return node, frames, received


def counters(received):
    return {kv.key: kv.value for kv in received["status"][-1].values} if received["status"] else {}


def test_encodes_matching_frames_and_refuses_bad_ones(tmp_path, graph):
    node, frames, received = graph
    path = save_model(make_model(), tmp_path / "m16.safetensors")
    model = load_model(path)
    set_id = model.pattern_set.pattern_set_id
    process = start_encoder(path)
    try:
        assert wait_for(lambda: received["status"], timeout=30), "no diagnostics from latent_encoder"
        good = np.random.default_rng(1).uniform(100, 5000, 16).astype(np.float32)
        bad_frames = [
            Measurements(pattern_set_id="sha256:someoneelse", sequence=1, values=good),
            Measurements(pattern_set_id=set_id, sequence=2, values=good[:15]),
            Measurements(
                pattern_set_id=set_id, sequence=3, values=np.where(np.arange(16) == 4, np.nan, good)
            ),
        ]

        def all_refused():
            for frame in bad_frames:
                frames.publish(frame)
            c = counters(received)
            return all(
                int(c.get(k, 0)) > 0 for k in ("refused_pattern_set", "refused_count", "refused_nonfinite")
            )

        assert wait_for(all_refused, timeout=20, period=0.3), counters(received)
        assert not received["codes"]
        assert received["status"][-1].level == DiagnosticStatus.WARN

        frame = Measurements(pattern_set_id=set_id, sequence=7, values=good)
        frame.header.frame_id = "lsi_camera"
        frame.header.stamp.sec = 42
        assert wait_for(lambda: frames.publish(frame) or received["codes"], timeout=20, period=0.3)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)
    code = received["codes"][0]
    assert (code.header.stamp.sec, code.header.frame_id) == (42, "lsi_camera")
    assert code.pattern_set_id == set_id and code.model_id == "test-m16" and list(code.shape) == [1, 8]
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(good)[None])[0].numpy()
    np.testing.assert_allclose(latent.from_msg(code)[0], expected, rtol=1e-5, atol=1e-5)


def test_missing_model_is_an_error_in_diagnostics_not_a_crash(tmp_path, graph):
    node, frames, received = graph
    process = start_encoder(tmp_path / "absent.safetensors")
    try:
        assert wait_for(
            lambda: any(
                s.level == DiagnosticStatus.ERROR and "absent" in s.message for s in received["status"]
            ),
            timeout=30,
        )
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_impossible_readings_give_no_code_and_a_warn(tmp_path, graph):
    """1e30 is finite but no detector reads it: the encoder refuses the frame instead of publishing
    the all-NaN code the network makes of it, and says which frame."""
    node, frames, received = graph
    path = save_model(make_model(), tmp_path / "m16.safetensors")
    set_id = load_model(path).pattern_set.pattern_set_id
    process = start_encoder(path)
    try:
        assert wait_for(lambda: received["status"], timeout=30), "no diagnostics from latent_encoder"
        huge = Measurements(pattern_set_id=set_id, sequence=11, values=np.full(16, 1e30, dtype=np.float32))
        negative = Measurements(
            pattern_set_id=set_id, sequence=12, values=np.full(16, -1e9, dtype=np.float32)
        )

        def refused():
            frames.publish(huge)
            frames.publish(negative)
            return int(counters(received).get("refused_out_of_range", 0)) >= 2

        assert wait_for(refused, timeout=20, period=0.3), counters(received)
        wait_for(lambda: False, timeout=1.0)
        assert not received["codes"]
        last = received["status"][-1]
        assert last.level == DiagnosticStatus.WARN and "frame 1" in last.message and "outside" in last.message
        # the level reflects the last seconds: once refusals stop, it is OK again (counters stay)
        assert wait_for(lambda: received["status"][-1].level == DiagnosticStatus.OK, timeout=25)
        assert int(counters(received)["refused_out_of_range"]) >= 2
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_w_plus_model_publishes_one_latent_per_layer(tmp_path, graph):
    """A W+ model file: the code's shape is [n_layers, latent_dim] and its rows are the encoder's."""
    from lsi_ros.models.encoder import with_layer_offsets

    node, frames, received = graph
    model = make_model()
    model.encoder = with_layer_offsets(model.encoder, 3)
    with torch.no_grad():
        model.encoder.layer_offsets.bias.copy_(torch.linspace(-1, 1, 24))
    path = save_model(model, tmp_path / "wplus.safetensors")
    model = load_model(path)
    set_id = model.pattern_set.pattern_set_id
    process = start_encoder(path)
    try:
        assert wait_for(lambda: received["status"], timeout=30), "no diagnostics from latent_encoder"
        good = np.random.default_rng(2).uniform(100, 5000, 16).astype(np.float32)
        frame = Measurements(pattern_set_id=set_id, sequence=3, values=good)
        assert wait_for(lambda: frames.publish(frame) or received["codes"], timeout=20, period=0.3)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)
    code = received["codes"][0]
    assert list(code.shape) == [3, 8]
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(good)[None])[0].numpy()
    rows = latent.from_msg(code)
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(rows[0] - rows[2]).max() > 0.1  # the layers differ


def test_frames_run_through_int8_kernels_and_diagnostics_say_so(tmp_path, graph):
    """On the CPU frames go through the int8 weight kernels (int8_kernels, default): diagnostics
    name them and the code is the fp32 one to bf16 rounding."""
    from test_int8_encoder import M, ensemble_model, frames, rms

    node, frames_out, received = graph
    path = save_model(ensemble_model(3, 0), tmp_path / "int8.safetensors", weight_format="int8")
    model = load_model(path)
    process = start_encoder(path)
    good = frames(1, seed=4)[0].numpy()
    try:
        assert wait_for(lambda: counters(received).get("kernels") == "int8", timeout=30), counters(received)
        frame = Measurements(pattern_set_id=model.pattern_set.pattern_set_id, sequence=1, values=good)
        assert wait_for(lambda: frames_out.publish(frame) or received["codes"], timeout=20, period=0.3)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)
    rows = torch.from_numpy(latent.from_msg(received["codes"][0]))
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(good)[None])[0]
    offset = (expected - model.encoder.latent_mean) / model.encoder.latent_std
    assert good.size == M and 0 < rms((rows - expected) / model.encoder.latent_std) < 5e-3 * rms(offset)
