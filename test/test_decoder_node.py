"""latent_decoder publishes a camera: image_raw, camera_info, image_raw/compressed and its static TF,
through real rclpy and DDS (DCGAN test double as the generator)."""

import numpy as np
import pytest
from conftest import wait_for
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from skimage.metrics import peak_signal_noise_ratio
from tf2_msgs.msg import TFMessage

from lsi_ros.models.generators import get_generator
from lsi_ros.nodes.latent_decoder import LatentDecoder
from lsi_ros.ros import camera, image, latent, qos

# JPEG at quality 90 of a smooth 64x64 face: visually lossless; a wrong channel order or a
# different image scores far below (~10-15 dB).
MIN_JPEG_PSNR_DB = 30.0


@pytest.fixture
def decoded(ros_context, spin):
    """The decoder's messages for one code: the raw image, its camera_info, the compressed image,
    and the /tf_static message a late joiner receives."""
    decoder = LatentDecoder(
        context=ros_context,
        parameter_overrides=[Parameter("generator", value="dcgan"), Parameter("threads", value=1)],
    )
    probe = Node("decoder_probe", context=ros_context)
    received = {"raw": [], "info": [], "compressed": [], "tf": []}
    probe.create_subscription(Image, "image_raw", received["raw"].append, qos.RELIABLE)
    probe.create_subscription(CameraInfo, "camera_info", received["info"].append, qos.RELIABLE)
    probe.create_subscription(
        CompressedImage, "image_raw/compressed", received["compressed"].append, qos.RELIABLE
    )
    # subscribed after the decoder sent it: transient-local delivers it all the same
    probe.create_subscription(TFMessage, "/tf_static", received["tf"].append, camera.STATIC_TF_QOS)
    codes = probe.create_publisher(latent.LatentCode, "latent", qos.RELIABLE)
    stop = spin(decoder, probe)
    generator = get_generator("dcgan")
    code = latent.to_msg(generator.sample_latents([3]), model_id="dcgan", pattern_set_id="test")
    code.header.stamp.sec, code.header.frame_id = 42, "lsi_camera"

    def all_arrived():
        if not received["compressed"]:
            codes.publish(code)
        return received["raw"] and received["info"] and received["compressed"] and received["tf"]

    assert wait_for(all_arrived, timeout=30, period=0.5), {k: len(v) for k, v in received.items()}
    stop()
    decoder.destroy_node()
    return received


def test_compressed_image_decodes_with_opencv_to_the_raw_image(decoded):
    raw = decoded["raw"][0]
    compressed = next(c for c in decoded["compressed"] if c.header.stamp == raw.header.stamp)
    assert compressed.format == "rgb8; jpeg compressed bgr8"
    assert bytes(compressed.data[:2]) == b"\xff\xd8"  # a JPEG stream
    pixels = image.image_to_array(raw)
    jpeg = image.compressed_to_array(compressed)
    assert jpeg.shape == pixels.shape == (raw.height, raw.width, 3)
    assert peak_signal_noise_ratio(pixels, jpeg, data_range=255) > MIN_JPEG_PSNR_DB
    swapped = jpeg[:, :, ::-1]  # what a reader that ignored the channel order would see
    assert peak_signal_noise_ratio(pixels, swapped, data_range=255) < peak_signal_noise_ratio(
        pixels, jpeg, data_range=255
    )


def test_camera_info_matches_the_image(decoded):
    raw, info = decoded["raw"][0], decoded["info"][0]
    assert (info.width, info.height) == (raw.width, raw.height)
    assert info.header.stamp == raw.header.stamp and raw.header.stamp.sec == 42
    assert info.header.frame_id == raw.header.frame_id == "lsi_camera_optical_frame"
    k = np.array(info.k).reshape(3, 3)
    assert k[0, 0] == k[1, 1] > 0 and k[0, 2] == (raw.width - 1) / 2 and k[1, 2] == (raw.height - 1) / 2
    # horizontal_fov_deg (30) recovered from the focal length
    assert np.degrees(2 * np.arctan(raw.width / 2 / k[0, 0])) == pytest.approx(30.0)
    assert list(info.d) == [0.0] * 5 and info.distortion_model == "plumb_bob"


def test_static_tf_arrives_for_a_late_joiner(decoded):
    (transform,) = decoded["tf"][0].transforms
    assert transform.header.frame_id == "lsi_camera"
    assert transform.child_frame_id == "lsi_camera_optical_frame"
    rotation = transform.transform.rotation
    # the optical frame looks along the body's x: its z axis is the body's x axis
    q = np.array([rotation.x, rotation.y, rotation.z, rotation.w])
    x, y, z, w = q
    optical_z_in_body = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])
    assert np.allclose(optical_z_in_body, [1.0, 0.0, 0.0]) and np.isclose(np.linalg.norm(q), 1.0)


def test_w_plus_code_decodes_with_per_layer_styles(ros_context, spin):
    """A [23, 512] code through MobileStyleGAN (OpenVINO on the CPU): the image is the generator's of
    those 23 styles, not of their mean."""
    decoder = LatentDecoder(
        context=ros_context,
        parameter_overrides=[Parameter("generator", value="mobilestylegan"), Parameter("threads", value=1)],
    )
    probe = Node("decoder_wplus_probe", context=ros_context)
    raw = []
    probe.create_subscription(Image, "image_raw", raw.append, qos.RELIABLE)
    codes = probe.create_publisher(latent.LatentCode, "latent", qos.RELIABLE)
    stop = spin(decoder, probe)
    generator = decoder.generator
    rows = generator.sample_latents(list(range(200, 200 + generator.num_ws)), truncation_psi=0.7)
    code = latent.to_msg(rows, model_id="wplus", pattern_set_id="test")
    assert list(code.shape) == [23, 512]
    try:
        assert wait_for(lambda: codes.publish(code) or raw, timeout=60, period=0.5)
    finally:
        stop()
        decoder.destroy_node()
    pixels = image.image_to_array(raw[0])
    expected = np.rint(generator.synthesize(rows[None])[0] * 255).astype(np.uint8)
    mean_only = np.rint(generator.synthesize(rows.mean(0)[None])[0] * 255).astype(np.uint8)
    assert np.abs(pixels.astype(int) - expected).max() <= 1
    assert np.abs(pixels.astype(int) - mean_only).mean() > 5


def test_max_rate_decodes_the_newest_code_at_most_that_often(ros_context, spin):
    """Codes at ~20/s, max_rate_hz 2: at most ~2 images a second, each of a code that was the newest
    when its turn came (the last code sent is the last image), the rest counted as superseded."""
    import time

    from conftest import publishing

    decoder = LatentDecoder(
        context=ros_context,
        parameter_overrides=[
            Parameter("generator", value="dcgan"),
            Parameter("threads", value=1),
            Parameter("max_rate_hz", value=2.0),
        ],
    )
    probe = Node("rate_probe", context=ros_context)
    images = []
    probe.create_subscription(Image, "image_raw", images.append, qos.RELIABLE)
    codes = probe.create_publisher(latent.LatentCode, "latent", qos.RELIABLE)
    stop = spin(decoder, probe)
    code = latent.to_msg(get_generator("dcgan").sample_latents([5]), model_id="dcgan", pattern_set_id="t")
    assert wait_for(lambda: codes.get_subscription_count() > 0, timeout=30)
    with publishing(codes, code, period=0.05):
        assert wait_for(lambda: images, timeout=30), "no image decoded"
        first = time.monotonic()
        time.sleep(3.0)
        window_s, count = time.monotonic() - first, len(images) - 1
    code.header.stamp.sec = 77  # one last code, after the stream: its turn comes within 1/max_rate
    codes.publish(code)
    assert wait_for(lambda: images[-1].header.stamp.sec == 77, timeout=10), "the newest code was not shown"
    stop()
    assert 1 <= count <= 2.0 * window_s + 1, (count, window_s)
    assert decoder.superseded > 0
    decoder.destroy_node()
