"""The locator's learnt parts beside the landmark net: the framing correction (what the FFHQ rule's square
misses of the generator's framing, carried in the face-finder file) and the finder's training windows."""

import numpy as np
import pytest

from lsi_ros.framing.correction import (
    FramingCorrection,
    features,
    fit_framing_correction,
    residual,
)
from lsi_ros.optics import GridRegistration


def _constant(row=0.0, col=0.0, log_scale=0.0, roll=0.0) -> FramingCorrection:
    return FramingCorrection(np.zeros(136), np.zeros((136, 4)), np.array([row, col, log_scale, roll]))


def test_the_applied_correction_puts_the_grid_where_its_prediction_says():
    found = GridRegistration((12.0, -30.0), 0.8, 7.0)
    correction = _constant(2.5, -1.0, np.log(1.05), -3.0)
    moved = correction.apply(found, np.zeros((68, 2)))
    assert residual(found, moved) == pytest.approx([2.5, -1.0, np.log(1.05), -3.0])
    assert moved.scale == pytest.approx(0.84) and moved.roll == pytest.approx(4.0)


def test_features_are_the_landmarks_in_the_framed_grid():
    found = GridRegistration((5.0, 9.0), 2.0, 90.0)
    grid = np.random.default_rng(0).normal(0, 50, (68, 2))
    assert features(found, found.to_scene(grid)) == pytest.approx(grid.ravel())
    with pytest.raises(ValueError, match="68"):
        features(found, np.zeros((5, 2)))


def test_the_fit_learns_a_linear_residual_and_reports_what_it_bought():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 30, (400, 136))
    truth = rng.normal(0, 0.01, (136, 4))
    y = x @ truth + [3.0, -0.5, 0.02, 0.5] + rng.normal(0, 0.1, (400, 4))
    fitted, report = fit_framing_correction(x, y)
    assert np.abs((x - fitted.mean) @ fitted.weight + fitted.bias - y).max() < 1.0
    assert report["scenes"] == 400 and report["ridge"] in (1.0, 10.0, 100.0, 1000.0)
    assert report["with"]["centre_face_px_median"] < 0.5 * report["without"]["centre_face_px_median"]
    with pytest.raises(ValueError, match="too few"):
        fit_framing_correction(x[:5], y[:5])


def test_a_correction_must_have_its_shapes_and_be_finite():
    with pytest.raises(ValueError, match="weight"):
        FramingCorrection(np.zeros(136), np.zeros((136, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="bias"):
        FramingCorrection(np.zeros(136), np.zeros((136, 4)), np.array([0, np.nan, 0, 0]))


def test_the_finder_file_carries_the_correction_and_refuses_a_broken_one(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from lsi_ros.framing.finder import FaceFinder, FaceFinderError, FaceFinderNet, load_face_finder

    finder = FaceFinder(FaceFinderNet(8), {"width": 8}, _constant(1.0, 2.0))
    path = finder.save(tmp_path / "finder.safetensors")
    loaded = load_face_finder(path)
    assert loaded.framing_correction.bias == pytest.approx([1.0, 2.0, 0.0, 0.0])
    assert load_face_finder(FaceFinder(FaceFinderNet(8), {"width": 8}).save(tmp_path / "plain.safetensors"))
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    del tensors["framing_correction.bias"]
    save_file(tensors, str(tmp_path / "broken.safetensors"), metadata)
    with pytest.raises(FaceFinderError, match="framing_correction.bias missing"):
        load_face_finder(tmp_path / "broken.safetensors")


def test_the_finder_trains_on_every_window_the_locator_zooms_through():
    """Retry, refresh, first zoom and tracking windows, each with its patterns; a zoomed training image
    holds its face whole (a window that cuts it is drawn again) or is an empty window."""
    from lsi_ros.framing.finder import INPUT, _zoom_sample, zoom_windows
    from lsi_ros.framing.localize import FaceLocator
    from lsi_ros.optics import PhotodiodeModel

    locators = {
        size: FaceLocator(None, None, (size, size), photodiode=PhotodiodeModel()) for size in (256, 512)
    }
    c = locators[256].config
    windows = {side: forward for side, forward, _ in zoom_windows(locators[256])}
    assert {c.retry_window, c.refresh_window, c.zoom_window, c.track_window} <= set(windows)
    assert windows[c.refresh_window].num_patterns == c.refresh_patterns
    assert windows[c.zoom_window].num_patterns == c.zoom_patterns
    face = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    rng = np.random.default_rng(1)
    for _ in range(12):
        image, box = _zoom_sample(face, rng, locators)
        assert image.shape == (INPUT, INPUT) and box is not None
        assert box.min() >= 0 and box.max() <= INPUT and box[2] > box[0]
    assert _zoom_sample(None, rng, locators)[1] is None
