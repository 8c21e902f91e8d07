"""sensor_msgs/Image conversions follow cv_bridge: encodings, padded rows, byte order, bad input."""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from lsi_ros.ros import image

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("encoding", sorted(image.ENCODINGS))
def test_round_trip_every_encoding(encoding):
    dtype, channels = image.ENCODINGS[encoding]
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    if np.issubdtype(dtype, np.floating):
        array = RNG.random(shape).astype(dtype)
    else:
        array = RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    msg = deserialize_message(serialize_message(image.array_to_image(array, encoding)), Image)
    np.testing.assert_array_equal(image.image_to_array(msg), array)


def test_padded_rows_are_cropped():
    array = RNG.integers(0, 255, (3, 5, 3), dtype=np.uint8)
    padded = np.zeros((3, 16), dtype=np.uint8)
    padded[:, :15] = array.reshape(3, 15)
    msg = Image(height=3, width=5, encoding="rgb8", step=16, data=padded.tobytes())
    np.testing.assert_array_equal(image.image_to_array(msg), array)


def test_big_endian_mono16():
    array = np.array([[1, 258], [65535, 4096]], dtype=np.uint16)
    msg = Image(
        height=2, width=2, encoding="mono16", step=4, is_bigendian=1, data=array.astype(">u2").tobytes()
    )
    np.testing.assert_array_equal(image.image_to_array(msg), array)


def test_bgr_and_mono_become_rgb_float():
    rgb = np.array([[[255, 0, 51]]], dtype=np.uint8)
    bgr_msg = image.array_to_image(rgb[:, :, ::-1].copy(), "bgr8")
    np.testing.assert_allclose(image.to_rgb_float(bgr_msg), [[[1.0, 0.0, 0.2]]], atol=1e-6)
    mono = image.array_to_image(np.array([[0, 65535]], dtype=np.uint16), "mono16")
    np.testing.assert_allclose(image.to_rgb_float(mono), [[[0, 0, 0], [1, 1, 1]]])


def test_unknown_encoding_and_short_data_are_clear_errors():
    with pytest.raises(image.ImageEncodingError, match="unsupported image encoding 'yuv422'"):
        image.image_to_array(Image(height=1, width=1, encoding="yuv422", step=2, data=b"\0\0"))
    with pytest.raises(image.ImageEncodingError, match="do not hold"):
        image.image_to_array(Image(height=2, width=2, encoding="rgb8", step=6, data=b"\0" * 6))
    with pytest.raises(image.ImageEncodingError, match="does not match encoding rgb8"):
        image.array_to_image(np.zeros((2, 2), np.uint8), "rgb8")
