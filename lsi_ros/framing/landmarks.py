"""Dlib's 68-point shape predictor, started where face-api's landmarks lie: a sharper read of the face.

face-api's landmark net finds the face in the blurred zoomed image reliably, but places its points a
few sampling pixels off, differently for every face. Dlib's regression-tree predictor (Kazemi and
Sullivan, CVPR 2014), started in the box those points span on the same image enlarged twice, places
the same 68 points (the iBUG 300-W scheme both follow) about twice as precisely for the framing
(``docs/results/framing_landmarks.json``). Its weights are the ``face_recognition_models`` wheel's
``shape_predictor_68_face_landmarks.dat``, trained on iBUG 300-W, whose licence allows research use
only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsi_ros.evaluation.dlib_faces import INSTALL, weights_dir

SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


class DlibLandmarks:
    """``refine(image, landmarks)``: the 68 points again, by Dlib, from face-api's (x, y) on ``image``."""

    def __init__(self, path: str | Path | None = None, upsample: int = 2):
        try:
            import dlib
        except ImportError as error:
            raise ModuleNotFoundError(f"Dlib is not installed: {INSTALL}") from error
        path = Path(path) if path else weights_dir() / SHAPE_PREDICTOR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no Dlib shape predictor at {path}: {INSTALL}")
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(path))
        self.upsample = int(upsample)

    def refine(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``image`` (R, R) grayscale in [0, 1]; ``landmarks`` (68, 2) (x, y) in its pixels (centres at
        integers) -> Dlib's (68, 2) in the same pixels."""
        up = self.upsample
        gray = np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
        enlarged = np.ascontiguousarray(np.kron(gray, np.ones((up, up), np.uint8)))
        points = (np.asarray(landmarks, np.float64) + 0.5) * up - 0.5  # in the enlarged image's pixels
        (left, top), (right, bottom) = np.rint(points.min(0)), np.rint(points.max(0))
        shape = self._predictor(enlarged, self._dlib.rectangle(int(left), int(top), int(right), int(bottom)))
        found = np.array([[part.x, part.y] for part in shape.parts()], dtype=np.float64)
        return (found + 0.5) / up - 0.5
