"""Video-mode fallback (24 binary patterns per RGB frame) and the ALP-4 frame packing."""

import subprocess

import cv2
import numpy as np
import pytest
from conftest import node_command, wait_for
from rclpy.node import Node

from lsi_ros.hardware import HardwareError
from lsi_ros.hardware import video_mode as video
from lsi_ros.hardware.alp4 import Alp4Projector, alp_frames
from lsi_ros.msg import PatternSetInfo
from lsi_ros.optics import dmd, patterns
from lsi_ros.ros import qos


def test_pack_unpack_round_trip():
    stack = np.random.default_rng(0).random((50, 6, 9)) > 0.5
    frames = video.pack_video_frames(stack)
    assert frames.shape == (3, 6, 9, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(video.unpack_video_frames(frames, 50), stack)
    # frame 2 holds patterns 48 and 49 only: green bits 0 and 1
    assert not frames[2][..., [0, 2]].any() and (frames[2][..., 1] >> 2 == 0).all()


@pytest.mark.parametrize(
    ("index", "frame", "channel", "bit"),
    [(0, 0, 1, 0), (7, 0, 1, 7), (8, 0, 0, 0), (15, 0, 0, 7), (16, 0, 2, 0), (23, 0, 2, 7), (24, 1, 1, 0)],
)
def test_bit_planes_follow_g_r_b_order(index, frame, channel, bit):
    stack = np.zeros((25, 2, 2), dtype=bool)
    stack[index, 1, 0] = True
    frames = video.pack_video_frames(stack)
    expected = np.zeros_like(frames)
    expected[frame, 1, 0, channel] = 1 << bit  # RGB channel: 0 red, 1 green, 2 blue
    np.testing.assert_array_equal(frames, expected)


def test_pattern_rate_is_limited_to_1440_per_second():
    with pytest.raises(ValueError, match="1440 patterns/s"):
        video.VideoModeProjector(pattern_rate_hz=2000.0)
    assert video.MAX_PATTERN_RATE_HZ == 60 * 24


def test_frames_in_an_image_folder_decode_to_the_placed_pattern_set(tmp_path):
    pattern_set = patterns.hadamard_split_patterns(30, 16)
    projector = video.VideoModeProjector(pattern_rate_hz=1440.0, video_output=f"folder:{tmp_path / 'frames'}")
    projector.upload(pattern_set)
    projector.start()
    files = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert [f.name for f in files] == ["frame_00000.png", "frame_00001.png"]
    frames = np.stack([cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files])
    assert frames.shape == (2, 1080, 1920, 3)
    placement = dmd.placement(dmd.DLP6500, 16)
    expected = np.stack([placement.place(p) for p in pattern_set.dense()])
    np.testing.assert_array_equal(video.unpack_video_frames(frames, 30), expected)
    status = projector.status()
    assert (
        status["running"]
        and status["frames"] == 2
        and status["frame_time_ms"] == pytest.approx(1e3 * 30 / 1440)
    )


@pytest.mark.skipif(video.gui_available(), reason="this OpenCV has a GUI")
def test_display_output_without_gui_opencv_is_a_clear_error():
    projector = video.VideoModeProjector(video_output="display")
    projector.upload(patterns.bernoulli_patterns(4, 8))
    with pytest.raises(HardwareError, match="headless"):
        projector.start()
    assert "opencv-python" in projector.status()["error"]
    with pytest.raises(ValueError, match="folder:<path>"):
        video.open_sink("screen")


def test_alp_frames_are_full_array_pictures_of_0_or_255():
    pattern_set = patterns.bernoulli_patterns(5, 16, seed=2)
    placement = dmd.placement(dmd.DLP7000, 16)
    stream = alp_frames(placement, pattern_set.dense())
    assert stream.dtype == np.uint8 and stream.shape == (5 * 768 * 1024,)
    pictures = stream.reshape(5, 768, 1024)
    assert set(np.unique(pictures)) <= {0, 255}
    for picture, pattern in zip(pictures, pattern_set.dense(), strict=True):
        np.testing.assert_array_equal(picture == 255, placement.place(pattern))
    with pytest.raises(ValueError, match="placement"):
        alp_frames(placement, pattern_set.dense()[:, :8])


def test_alp4_without_alp4lib_is_a_clear_error():
    try:
        import ALP4  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ALP4lib is installed")
    projector = Alp4Projector()
    with pytest.raises(HardwareError, match="alp4lib==1.1.0"):
        projector.upload(patterns.bernoulli_patterns(4, 16))
    assert projector.status()["error"]
    with pytest.raises(ValueError, match="DLP7000"):
        Alp4Projector(device="DLP6500")


def test_dmd_driver_with_the_video_backend_writes_frames_and_announces_the_set(tmp_path, ros_context, spin):
    node = Node("video_probe", context=ros_context)
    received = []
    node.create_subscription(PatternSetInfo, "pattern_set", received.append, qos.LATCHED)
    spin(node)
    params = [
        "backend:=video",
        "pattern_rate_hz:=1440.0",
        f"video_output:=folder:{tmp_path / 'frames'}",
        "pattern_set:=hadamard-split:30",
        "resolution:=16",
        f"cache_dir:={tmp_path}",
    ]
    process = subprocess.Popen(node_command("dmd_driver", *(x for param in params for x in ("-p", param))))
    try:
        assert wait_for(lambda: received, timeout=30), "dmd_driver announced no pattern set"
        assert received[0].num_patterns == 30 and received[0].pattern_rate_hz == 1440.0
        assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 2
    finally:
        process.terminate()
        process.wait(timeout=20)
    refused = subprocess.run(
        node_command("dmd_driver", "-p", "backend:=video", "-p", "pattern_rate_hz:=9500.0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "1440 patterns/s" in refused.stderr
