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
    place_pattern,
    placement,
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
