"""Mirror-array placement and DMD timing."""

import numpy as np
import pytest

from lsi_ros.optics import (
    ALP4_DLP7000,
    DLP6500,
    DLP7000,
    DLP9000,
    DLPC900_1080P,
    DmdGeometry,
    GridRegistration,
    place_pattern,
    placement,
)
from lsi_ros.optics.calibration import (
    estimate_registration,
    reconstruct_target,
    registration_target,
    target_pattern_set,
)


@pytest.mark.parametrize(
    ("geometry", "block", "row_offset", "col_offset"),
    [(DLP6500, 4, 28, 448), (DLP7000, 3, 0, 128), (DLP9000, 6, 32, 512)],
)
def test_placement_maps_every_mirror_exactly(geometry, block, row_offset, col_offset):
    place = placement(geometry, 256)
    assert (place.block, place.row_offset, place.col_offset) == (block, row_offset, col_offset)
    pattern = np.random.default_rng(0).random((256, 256)) < 0.5
    image = place.place(pattern)
    assert image.shape == (geometry.rows, geometry.cols) and image.dtype == bool
    active = np.zeros_like(image)
    active[row_offset : row_offset + 256 * block, col_offset : col_offset + 256 * block] = True
    assert not image[~active].any()  # mirrors outside the active area are off
    rows, cols = np.nonzero(active)
    i, j = (rows - row_offset) // block, (cols - col_offset) // block
    assert np.array_equal(image[rows, cols], pattern[i, j])
    index = place.pixel_index_map()
    assert np.all(index[~active] == -1)
    assert np.array_equal(index[rows, cols], i * 256 + j)
    assert np.array_equal(place_pattern(pattern, geometry), image)


def test_non_square_resolution_and_too_small_array():
    place = placement(DmdGeometry("tiny", cols=10, rows=7), (3, 4))
    assert (place.block, place.row_offset, place.col_offset) == (2, 0, 1)
    with pytest.raises(ValueError):
        placement(DmdGeometry("tiny", cols=100, rows=100), 256)
    with pytest.raises(ValueError, match="shape"):
        place.place(np.ones((4, 3)))


def test_timing():
    assert DLPC900_1080P.frame_time(32) == pytest.approx(32 / 9500)
    assert ALP4_DLP7000.frame_time(32) == pytest.approx(1.41e-3, rel=1e-2)
    assert DLPC900_1080P.batches(400) == 1 and DLPC900_1080P.batches(401) == 2
    assert ALP4_DLP7000.frame_rate(128) == pytest.approx(22700 / 128)


def test_registration_moves_each_sampling_pixel_to_its_scene_point():
    """Pixel ``i`` of a registered placement covers the mirrors of grid rows ``scale·(i − c) + c + shift``
    to ``scale·(i + 1 − c) + c + shift`` (c: the grid centre), to the nearest mirror."""
    registration = GridRegistration(shift=(1.5, -2.25), scale=1.04)  # 6.6 of the 7 spare pixel rows
    place = placement(DLP6500, 256, registration)
    index = place.pixel_index_map()
    assert set(np.unique(index)) == {-1, *range(256 * 256)}  # every pixel is shown, once per mirror
    rows, cols = np.nonzero(index >= 0)
    pixel_rows, pixel_cols = index[rows, cols] // 256, index[rows, cols] % 256
    grid_rows = (rows + 0.5 - place.row_offset) / place.block
    grid_cols = (cols + 0.5 - place.col_offset) / place.block
    for grid, pixel, shift in ((grid_rows, pixel_rows, 1.5), (grid_cols, pixel_cols, -2.25)):
        expected_centre = 1.04 * (pixel + 0.5 - 128) + 128 + shift
        centre = np.bincount(pixel, weights=grid) / np.bincount(pixel)
        assert np.abs(centre - expected_centre[np.unique(pixel, return_index=True)[1]]).max() < 0.5 / 4
    counts = np.bincount(index[index >= 0])
    assert counts.min() >= 16 and abs(counts.mean() - (4 * 1.04) ** 2) < 0.1
    pattern = np.random.default_rng(1).random((256, 256)) < 0.5
    image = place.place(pattern)
    assert (
        np.array_equal(image[rows, cols], pattern.ravel()[index[rows, cols]]) and not image[index < 0].any()
    )
    assert place.place_values(np.stack([pattern, ~pattern], -1)).shape == (1080, 1920, 2)
    assert placement(DLP6500, 256, GridRegistration()) == placement(DLP6500, 256)


def test_registration_that_leaves_the_mirror_array_is_refused():
    with pytest.raises(ValueError, match="rows off the DLP6500"):
        placement(DLP6500, 256, GridRegistration(shift=(7.5, 0.0)))  # the margin is 7 pixels
    with pytest.raises(ValueError, match="rows off the DLP6500"):
        placement(DLP6500, 256, GridRegistration(shift=(1.5, 0.0), scale=1.05))  # 1.5 + 6.4 > 7
    with pytest.raises(ValueError, match="without a mirror"):
        placement(DLP6500, 256, GridRegistration(scale=0.2))  # less than a mirror per pixel
    with pytest.raises(ValueError, match="rows off the DLP7000"):
        placement(DLP7000, 256, GridRegistration(scale=1.01))  # the 256² grid fills its 768 rows
    with pytest.raises(ValueError, match="columns off the DLP7000"):
        placement(DLP7000, 256, GridRegistration(shift=(0.0, -43.0)))  # 42⅔ spare columns a side
    with pytest.raises(ValueError, match="scale"):
        GridRegistration(scale=0.0)
    with pytest.raises(ValueError, match="shift"):
        GridRegistration(shift=(float("nan"), 0.0))


def test_registered_patterns_undo_the_misregistration_that_calibration_measures():
    """The scene falls on the mirrors shifted and scaled; the calibration's Hadamard reconstruction of
    the registration target finds that, and patterns placed with it see the target where it belongs."""
    n, block = 32, 4
    geometry = DmdGeometry("bench", cols=152, rows=152)  # block 4, a 3-pixel margin all round
    truth = GridRegistration(shift=(1.5, -2.25), scale=1.05)
    # The target on the 32² grid, rendered per mirror over the whole 38-pixel array: at mirror
    # resolution the shift is in mirrors and the target's size is relative to the array.
    scene = registration_target(
        geometry.rows, (block * truth.shift[0], block * truth.shift[1]), truth.scale * n / 38, supersampling=2
    )
    basis = target_pattern_set(n)

    def registration_seen(registration):
        index = placement(geometry, n, registration).pixel_index_map()
        lit = index >= 0
        per_pixel = np.bincount(index[lit], weights=scene[lit], minlength=n * n)  # what each pixel gathers
        ideal = basis.dense().reshape(basis.num_patterns, -1).astype(np.float64) @ per_pixel
        return estimate_registration(reconstruct_target(ideal, basis))

    seen = registration_seen(None)
    np.testing.assert_allclose(seen.shift, truth.shift, atol=0.1)
    assert seen.scale == pytest.approx(truth.scale, abs=0.01)
    corrected = registration_seen(GridRegistration(seen.shift, seen.scale))
    np.testing.assert_allclose(corrected.shift, (0.0, 0.0), atol=0.1)
    assert corrected.scale == pytest.approx(1.0, abs=0.01)
