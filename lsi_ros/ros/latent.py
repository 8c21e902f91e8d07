"""Conversions between numpy latent codes and ``lsi_ros/LatentCode`` messages."""

import math

import numpy as np

from lsi_ros.msg import LatentCode


class LatentCodeError(ValueError):
    """A LatentCode message whose shape and data disagree, that is empty or holds non-finite values."""


def to_msg(latent: np.ndarray, *, header=None, model_id: str, pattern_set_id: str) -> LatentCode:
    """Pack a latent of any shape ([512], [1, 512], [n_layers, 512]) into a message."""
    latent = np.asarray(latent, dtype=np.float32)
    if latent.ndim == 1:
        latent = latent[None, :]
    msg = LatentCode()
    if header is not None:
        msg.header = header
    msg.model_id = model_id
    msg.pattern_set_id = pattern_set_id
    msg.shape = [int(s) for s in latent.shape]
    msg.data = latent.ravel()
    return msg


def from_msg(msg: LatentCode) -> np.ndarray:
    """Unpack a message to an array of its declared shape, refusing inconsistent or non-finite codes."""
    shape = tuple(int(s) for s in msg.shape)
    data = np.asarray(msg.data, dtype=np.float32)
    if not shape or math.prod(shape) != data.size:
        raise LatentCodeError(f"LatentCode shape {list(shape)} does not match {data.size} data values")
    if data.size == 0:
        raise LatentCodeError(f"LatentCode of shape {list(shape)} is empty")
    if not np.all(np.isfinite(data)):
        raise LatentCodeError("LatentCode holds NaN or infinite values")
    return data.reshape(shape)
