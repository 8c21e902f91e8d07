"""The objective: centre square, exact area averaging, RGB in [0, 1]."""

import numpy as np

from lsi_ros.optics.objective import scene_on_dmd

RNG = np.random.default_rng(11)


def test_shrinking_averages_pixel_areas_exactly():
    image = RNG.random((512, 512, 3)).astype(np.float32)
    blocks = image.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(scene_on_dmd(image, 256), blocks, atol=1e-6)
    # 3 -> 2: output pixel 0 covers source pixels 0 and half of 1 (weights 2/3, 1/3) in each axis.
    small = RNG.random((3, 3)).astype(np.float32)
    weights = np.array([[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    expected = weights @ small @ weights.T
    np.testing.assert_allclose(scene_on_dmd(small, 2)[..., 1], expected, atol=1e-6)


def test_centre_square_gray_as_white_light_and_integer_scaling():
    wide = np.zeros((4, 8), np.uint8)
    wide[:, 2:6] = 255  # the centre square is fully lit, the margins are cut off
    on_grid = scene_on_dmd(wide, 4)
    assert on_grid.shape == (4, 4, 3) and on_grid.dtype == np.float32
    np.testing.assert_array_equal(on_grid, np.ones((4, 4, 3), np.float32))
    rgba = np.full((6, 6, 4), 0.5, np.float32)
    assert scene_on_dmd(rgba, 3).shape == (3, 3, 3)
