"""The objective lens: a scene as it falls on the DMD's square sampling grid.

Modelled as a centre crop to a square and an area resample (exact pixel-area averaging when
shrinking, bilinear when enlarging). Integer images are scaled by their dtype's maximum, gray
scenes are white light on all three channels, alpha is dropped. The simulated camera, the
evaluation and the pipeline monitor all see scenes through this one function.
"""

import cv2
import numpy as np


def scene_on_dmd(image: np.ndarray, resolution: int) -> np.ndarray:
    """An image (H, W[, C]) of any size as float32 RGB (resolution, resolution, 3) on the DMD grid."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer):
        image = image / np.iinfo(image.dtype).max
    image = image.astype(np.float32, copy=False)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side, :3])
    if side == resolution:
        return square
    interpolation = cv2.INTER_AREA if side > resolution else cv2.INTER_LINEAR
    return cv2.resize(square, (resolution, resolution), interpolation=interpolation)
