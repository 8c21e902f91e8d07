"""Dlib's face recognition pipeline: the protocol of the paper's same-person figures.

The paper's identity numbers come from Dlib: a face detector, landmarks that align a 150² face chip,
a ResNet's 128-d descriptor, and "same person" below a Euclidean distance of 0.6. face-api's
descriptor network (``lsi_ros.evaluation.face_analysis``) is a port of that ResNet; what differs is
the crop: face-api reads a fixed box of the framed image, Dlib a chip rotated and scaled by five
landmarks found on each image. Scoring with both shows how much a number depends on the crop, and
the Dlib one is the paper's protocol. The weights are those of the ``face_recognition_models`` wheel
(the 5-landmark predictor and the ResNet, released into the public domain by Dlib's author), read as
Dlib's own files; ``dlib-bin`` runs them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from tqdm import tqdm

WEIGHTS_PACKAGE = "face_recognition_models"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL = "pip install dlib-bin==20.0.1.post1 face_recognition_models==0.3.0"


def weights_dir() -> Path:
    """The folder of Dlib's weight files in the installed ``face_recognition_models``."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"Dlib's face weights are not installed: {INSTALL}")
    return Path(spec.submodule_search_locations[0]) / "models"


class DlibFaces:
    """Dlib's descriptors of framed faces: one face box for a whole set (like face-api's
    ``framed_face_box``), five landmarks and an aligned chip per image."""

    def __init__(self, folder=None, progress: bool = False):
        try:
            import dlib
        except ImportError as error:
            raise ModuleNotFoundError(f"Dlib is not installed: {INSTALL}") from error
        folder = Path(folder) if folder else weights_dir()
        missing = [name for name in (LANDMARKS_FILE, DESCRIPTOR_FILE) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"no {', '.join(missing)} in {folder}: {INSTALL}")
        self._dlib = dlib
        self.progress = progress
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(folder / LANDMARKS_FILE))
        self._descriptor = dlib.face_recognition_model_v1(str(folder / DESCRIPTOR_FILE))

    def face_box(self, images: np.ndarray) -> np.ndarray:
        """The median of Dlib's detections (x0, y0, x1, y1) over framed images (N, R, R, 3) uint8;
        images where nothing is detected do not count, and none detected at all is an error."""
        boxes = []
        for image in images:
            found = self._detector(np.ascontiguousarray(image, dtype=np.uint8), 1)
            if len(found):
                best = max(found, key=lambda r: r.area())
                boxes.append((best.left(), best.top(), best.right(), best.bottom()))
        if not boxes:
            raise ValueError(f"Dlib's detector found no face in {len(images)} images")
        return np.median(np.asarray(boxes, dtype=np.float64), axis=0)

    def describe(self, images: np.ndarray, box) -> np.ndarray:
        """Descriptors (N, 128) of images (N, R, R, 3) uint8 (or gray (N, R, R) in [0, 1]), each from
        the chip its own five landmarks align inside ``box``."""
        from lsi_ros.evaluation.identity import uint8_images

        images = images if images.dtype == np.uint8 and images.ndim == 4 else uint8_images(images)
        rect = self._dlib.rectangle(*(int(round(float(v))) for v in box))
        out = np.empty((len(images), 128), dtype=np.float32)
        shown = tqdm(images, desc="Dlib descriptors", unit="face", disable=not self.progress, leave=False)
        for i, image in enumerate(shown):
            image = np.ascontiguousarray(image)
            out[i] = np.asarray(self._descriptor.compute_face_descriptor(image, self._landmarks(image, rect)))
        return out
