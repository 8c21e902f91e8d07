"""latent_classifier in its own process: probabilities from linear boundaries; says so without any."""

import subprocess

import numpy as np
import pytest
from conftest import node_command, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node

from lsi_ros.models.attributes import AttributeBoundaries, BoundariesError, load_boundaries, save_boundaries
from lsi_ros.models.registry import SHIPPED_ESTIMATE_BOUNDARIES
from lsi_ros.msg import Attributes, LatentCode
from lsi_ros.ros import latent, qos

BOUNDARIES = AttributeBoundaries(
    names=("smiling", "male"),
    weight=np.array([[1.0] + [0.0] * 7, [0.0, -2.0] + [0.0] * 6], dtype=np.float32),
    bias=np.array([0.0, 0.5], dtype=np.float32),
    generator_id="test",
)


def start(boundaries: str, *params: str):
    extra = [arg for p in params for arg in ("-p", p)]
    return subprocess.Popen(node_command("latent_classifier", "-p", f"boundaries:={boundaries}", *extra))


@pytest.fixture
def probe(ros_context, spin):
    node = Node("classifier_probe", context=ros_context)
    received = {"attributes": [], "status": []}
    node.create_subscription(Attributes, "attributes", received["attributes"].append, qos.RELIABLE)
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda a: received["status"].extend(s for s in a.status if s.name == "latent_classifier"),
        50,
    )
    codes = node.create_publisher(LatentCode, "latent", qos.RELIABLE)
    spin(node)
    return codes, received


def test_publishes_probabilities_and_refuses_other_widths(tmp_path, probe):
    codes, received = probe
    process = start(str(save_boundaries(BOUNDARIES, tmp_path / "b.safetensors")))
    code = np.array([[2.0, 0.25, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    try:
        wrong = latent.to_msg(np.zeros((1, 5)), model_id="m", pattern_set_id="p")
        good = latent.to_msg(code, model_id="m", pattern_set_id="p")
        good.header.stamp.sec = 9

        def published():
            codes.publish(wrong)
            codes.publish(good)
            return received["attributes"]

        assert wait_for(published, timeout=30, period=0.3)
        assert wait_for(
            lambda: any(
                kv.key == "refused" and int(kv.value) > 0 for s in received["status"] for kv in s.values
            ),
            timeout=10,
        )
    finally:
        process.terminate()
        process.wait(timeout=20)
    message = received["attributes"][0]
    assert list(message.names) == ["smiling", "male"] and message.header.stamp.sec == 9
    expected = 1 / (1 + np.exp(-np.array([2.0, -0.5 + 0.5])))
    np.testing.assert_allclose(message.scores, expected, rtol=1e-6)


def test_empty_code_gives_no_attributes_and_a_warn(tmp_path, probe):
    """A [0, 8] code would average to NaN scores: it is refused, and the diagnostics say which code."""
    codes, received = probe
    process = start(str(save_boundaries(BOUNDARIES, tmp_path / "b.safetensors")))
    try:
        empty = LatentCode(shape=[0, 8], model_id="m", pattern_set_id="p")
        empty.header.stamp.sec = 77

        def refused():
            codes.publish(empty)
            return any(
                s.level == DiagnosticStatus.WARN and "stamp 77." in s.message for s in received["status"]
            )

        assert wait_for(refused, timeout=30, period=0.3)
        assert not received["attributes"]
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_without_boundaries_it_says_so(probe):
    codes, received = probe
    process = start("''")
    try:
        assert wait_for(
            lambda: any(
                s.level == DiagnosticStatus.WARN and "no boundaries" in s.message for s in received["status"]
            ),
            timeout=30,
        )
        codes.publish(latent.to_msg(np.zeros((1, 8)), model_id="m", pattern_set_id="p"))
        assert process.poll() is None and not received["attributes"]
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_bad_boundaries_files_are_refused(tmp_path):
    with pytest.raises(BoundariesError, match="not found"):
        load_boundaries(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x04\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(BoundariesError):
        load_boundaries(tmp_path / "bad.safetensors")
    assert load_boundaries(save_boundaries(BOUNDARIES, tmp_path / "ok.safetensors")).names == (
        "smiling",
        "male",
    )


def test_shipped_boundaries_by_name_give_calibrated_probabilities_of_a_face(probe):
    from lsi_ros.models.generators import get_generator
    from lsi_ros.models.registry import find_model

    codes, received = probe
    shipped = load_boundaries(find_model("attributes"))
    w = get_generator("mobilestylegan").sample_latents([1_000_000], truncation_psi=0.7).astype(np.float32)
    process = start("attributes")
    try:
        msg = latent.to_msg(w, model_id="lsi-mobilestylegan-m128", pattern_set_id="p")
        assert wait_for(lambda: codes.publish(msg) or received["attributes"], timeout=30, period=0.3)
    finally:
        process.terminate()
        process.wait(timeout=20)
    published = received["attributes"][0]
    assert list(published.names) == list(shipped.names) and len(shipped.names) >= 3
    np.testing.assert_allclose(published.scores, shipped.probabilities(w[0]), rtol=1e-5)
    assert all(0.0 < p < 1.0 for p in published.scores)


def test_codes_of_a_model_with_estimate_boundaries_are_read_by_them(tmp_path, probe):
    """A code of the model whose estimates fitted boundaries is read by those; any other code by the
    generic ones, a fine-tune with the same patterns included; boundaries that name no model are
    refused as estimate boundaries."""
    import dataclasses

    codes, received = probe
    fitted = dataclasses.replace(
        BOUNDARIES, bias=np.array([3.0, -3.0], np.float32), pattern_set_id="sha256:ab", model_id="m128"
    )
    generic = save_boundaries(BOUNDARIES, tmp_path / "generic.safetensors")
    estimate = save_boundaries(fitted, tmp_path / "fitted.safetensors")
    process = start(str(generic), f"estimate_boundaries:={estimate}")
    code = np.zeros((1, 8), np.float32)
    try:
        ours = latent.to_msg(code, model_id="m128", pattern_set_id="sha256:ab")
        other = latent.to_msg(code, model_id="m64", pattern_set_id="sha256:cd")
        finetuned = latent.to_msg(code, model_id="m128-real", pattern_set_id="sha256:ab")

        def both():
            codes.publish(ours)
            codes.publish(other)
            codes.publish(finetuned)
            return {m.model_id for m in received["attributes"]} == {"m128", "m64", "m128-real"}

        assert wait_for(both, timeout=30, period=0.3)
        assert wait_for(
            lambda: any(
                kv.key == "read_by_estimate_boundaries" and int(kv.value) > 0
                for s in received["status"]
                for kv in s.values
            ),
            timeout=10,
        )
    finally:
        process.terminate()
        process.wait(timeout=20)
    scores = {m.model_id: np.array(m.scores) for m in received["attributes"]}
    np.testing.assert_allclose(scores["m128"], fitted.probabilities(code[0]), rtol=1e-6)
    np.testing.assert_allclose(scores["m64"], BOUNDARIES.probabilities(code[0]), rtol=1e-6)
    np.testing.assert_allclose(scores["m128-real"], BOUNDARIES.probabilities(code[0]), rtol=1e-6)

    received["status"].clear()
    process = start(str(generic), f"estimate_boundaries:={generic}")
    try:
        assert wait_for(
            lambda: any(
                s.level == DiagnosticStatus.WARN and "name no model" in s.message for s in received["status"]
            ),
            timeout=30,
        )
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_shipped_estimate_boundaries_belong_to_the_shipped_models():
    """config/decode.yaml reads LSI models' codes with attributes-<model>: every file it names must
    name that shipped model, its pattern set and its generator."""
    from pathlib import Path

    import yaml

    from lsi_ros.models.checkpoint import load_model
    from lsi_ros.models.registry import find_model

    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "decode.yaml").read_text())
    names = config["/**/latent_classifier"]["ros__parameters"]["estimate_boundaries"].split(",")
    assert [n.strip() for n in names] == list(SHIPPED_ESTIMATE_BOUNDARIES)
    assert {f"attributes-{m}" for m in ("m32", "m64", "m128", "m256")} == set(SHIPPED_ESTIMATE_BOUNDARIES)
    generic = load_boundaries(find_model("attributes"))
    assert not generic.pattern_set_id
    for name in names:
        fitted = load_boundaries(find_model(name.strip()))
        model = load_model(find_model(name.strip().removeprefix("attributes-")))
        assert fitted.pattern_set_id == model.pattern_set.pattern_set_id
        assert fitted.model_id == model.model_id
        assert fitted.names == generic.names and fitted.generator_id == model.info["generator_id"]


def test_w_plus_code_is_classified_by_the_mean_of_its_layers(tmp_path, probe):
    """The boundaries live in W: a [3, 8] code reads as the mean of its rows."""
    codes, received = probe
    process = start(str(save_boundaries(BOUNDARIES, tmp_path / "b.safetensors")))
    rows = np.zeros((3, 8), dtype=np.float32)
    rows[:, 0] = [1.0, 2.0, 3.0]  # mean 2
    rows[:, 1] = [0.75, 0.0, 0.0]  # mean 0.25
    try:
        code = latent.to_msg(rows, model_id="m", pattern_set_id="p")
        assert wait_for(lambda: codes.publish(code) or received["attributes"], timeout=30, period=0.3)
    finally:
        process.terminate()
        process.wait(timeout=20)
    expected = 1 / (1 + np.exp(-np.array([2.0, -0.5 + 0.5])))
    np.testing.assert_allclose(received["attributes"][0].scores, expected, rtol=1e-6)
