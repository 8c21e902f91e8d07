"""Scene sources read real files: image folders, videos, the offline portraits."""

import itertools

import cv2
import numpy as np
import pytest

from lsi_ros import scenes


def test_folder_scenes_are_rgb_in_name_order(tmp_path):
    rgb = np.zeros((8, 6, 3), np.uint8)
    rgb[..., 0] = 200
    cv2.imwrite(str(tmp_path / "b.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    names, images = zip(*scenes.folder_scenes(tmp_path), strict=True)
    assert names == ("a.png", "b.png")
    np.testing.assert_array_equal(images[1], rgb)


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(scenes.SceneSourceError, match="not found"):
        list(scenes.folder_scenes(tmp_path / "nope"))
    with pytest.raises(scenes.SceneSourceError, match="no images"):
        list(scenes.folder_scenes(tmp_path))


def test_video_frames_in_order(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for value in (0, 120, 240):
        writer.write(np.full((24, 32, 3), value, np.uint8))
    writer.release()
    frames = list(scenes.video_scenes(path))
    assert [name for name, _ in frames] == ["clip.avi#0", "clip.avi#1", "clip.avi#2"]
    assert [int(round(img.mean())) for _, img in frames] == pytest.approx([0, 120, 240], abs=3)
    with pytest.raises(scenes.SceneSourceError, match="cannot open video"):
        list(scenes.video_scenes(tmp_path / "missing.avi"))


def test_offline_portraits():
    portraits = dict(scenes.portrait_scenes())
    assert set(portraits) == {"astronaut", "grace_hopper"}
    assert all(img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 for img in portraits.values())


def test_portrait_faces_are_square_crops_and_demo_mixes_them_in():
    faces = dict(scenes.portrait_faces())
    assert {name: img.shape[0] == img.shape[1] for name, img in faces.items()} == {
        "astronaut": True,
        "grace_hopper": True,
    }
    names = [name for name, _ in itertools.islice(scenes.demo_scenes("dcgan", portrait_every=2), 6)]
    assert names == [
        "seed 1000000",
        "seed 1000001",
        "astronaut",
        "seed 1000002",
        "seed 1000003",
        "grace_hopper",
    ]
