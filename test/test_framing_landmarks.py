"""Dlib's shape predictor in the locator: it reads the face in the zoomed image, not where face-api's
points started it, and its points come back in the image's own pixels."""

import cv2
import numpy as np
import pytest

from lsi_ros.evaluation.face_analysis import NETWORKS, FaceAnalyzer, default_face_api_dir

needs_face_api = pytest.mark.skipif(
    not all((default_face_api_dir() / f"{n}-weights_manifest.json").is_file() for n in NETWORKS),
    reason="face-api weights not cached: run `lsi label --fetch` once (needs npm)",
)


@pytest.fixture(scope="module")
def zoomed_face():
    """A generated face, blurred to a zoom's 128² as the locator sees it, with face-api's landmarks."""
    import torch

    from lsi_ros.models.generators import get_generator

    torch.set_num_threads(1)
    generator = get_generator("mobilestylegan")
    face = generator.synthesize(generator.sample_latents([1_000_005], 0.7))[0]
    gray = cv2.resize(face.mean(-1).astype(np.float32), (96, 96), interpolation=cv2.INTER_AREA)
    image = np.zeros((128, 128), np.float32)
    image[16:112, 16:112] = gray  # the face fills 96 of the zoom's 128 pixels, as a 1.36 crop round it
    analyzer = FaceAnalyzer(networks=("face_landmark_68_model",))
    rgb = np.repeat(np.rint(image * 255).astype(np.uint8)[None, ..., None], 3, axis=-1)
    crops, frames = analyzer.crop(rgb, np.array([[10.0, 10.0, 118.0, 118.0]]))
    marks = frames[:, None, :2] + analyzer.landmarks_both_ways(crops) * frames[:, None, 2:3]
    return image, marks[0]


@needs_face_api
def test_dlib_reads_the_face_not_where_its_start_lay(zoomed_face):
    from lsi_ros.framing.landmarks import DlibLandmarks

    image, marks = zoomed_face
    predictor = DlibLandmarks()
    refined = predictor.refine(image, marks)
    assert refined.shape == (68, 2) and np.all((refined > 16) & (refined < 112))
    for start in ([4.0, 0.0], [0.0, 4.0], [-3.0, 3.0]):
        moved = np.median(np.linalg.norm(predictor.refine(image, marks + start) - refined, axis=1))
        assert moved < 0.4 * np.hypot(*start), (start, moved)


@needs_face_api
def test_dlib_points_move_with_the_image_pixel_for_pixel(zoomed_face):
    """Shift the image and the start by whole pixels: the points move by exactly that (the enlarged
    image's pixels convert back with their centres where the image's are)."""
    from lsi_ros.framing.landmarks import DlibLandmarks

    image, marks = zoomed_face
    predictor = DlibLandmarks()
    shifted = np.roll(image, (5, -3), axis=(0, 1))
    refined = predictor.refine(image, marks)
    assert predictor.refine(shifted, marks + [-3.0, 5.0]) == pytest.approx(refined + [-3.0, 5.0], abs=1e-6)


def test_a_missing_shape_predictor_file_is_named(tmp_path):
    from lsi_ros.framing.landmarks import DlibLandmarks

    with pytest.raises(FileNotFoundError, match="shape predictor"):
        DlibLandmarks(tmp_path / "shape_predictor_68_face_landmarks.dat")
