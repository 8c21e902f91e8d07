"""The generated messages and their numpy conversions."""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from lsi_ros.msg import Attributes, LatentCode, Measurements
from lsi_ros.ros import latent


def test_messages_have_the_documented_fields():
    m = Measurements(pattern_set_id="sha256:ab", sequence=7, values=[1.0, 2.0], saturated_count=1)
    assert (m.pattern_set_id, m.sequence, list(m.values), m.saturated_count, m.dropped_count) == (
        "sha256:ab",
        7,
        [1.0, 2.0],
        1,
        0,
    )
    a = Attributes(model_id="m", names=["smiling"], scores=[0.9])
    assert list(a.names) == ["smiling"] and a.scores[0] == pytest.approx(0.9)
    assert hasattr(LatentCode(), "shape") and hasattr(LatentCode(), "header")


@pytest.mark.parametrize("shape", [(512,), (1, 512), (14, 512)])
def test_latent_round_trip_through_cdr(shape):
    code = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    msg = latent.to_msg(code, model_id="m128", pattern_set_id="sha256:00")
    back = deserialize_message(serialize_message(msg), LatentCode)
    decoded = latent.from_msg(back)
    assert decoded.shape == (code.shape if len(shape) == 2 else (1, *shape))
    np.testing.assert_array_equal(decoded.ravel(), code.ravel())
    assert (back.model_id, back.pattern_set_id) == ("m128", "sha256:00")


def test_inconsistent_or_nonfinite_latent_is_refused():
    msg = latent.to_msg(np.zeros((1, 4)), model_id="m", pattern_set_id="p")
    msg.shape = [2, 4]
    with pytest.raises(latent.LatentCodeError, match="does not match"):
        latent.from_msg(msg)
    bad = latent.to_msg(np.array([[0.0, np.nan]]), model_id="m", pattern_set_id="p")
    with pytest.raises(latent.LatentCodeError, match="NaN"):
        latent.from_msg(bad)
