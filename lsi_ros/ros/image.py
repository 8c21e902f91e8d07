"""sensor_msgs/Image and CompressedImage <-> numpy: the one conversion module of the nodes.

cv_bridge does the Image conversions where it is installed (a ROS install on a robot); without it
(not on PyPI for ROS 2) the numpy code here does the same with cv_bridge's semantics.
Shapes: (H, W) for one channel, (H, W, C) otherwise. ``step`` is bytes per row and rows may be
padded; ``is_bigendian`` is honoured; dtype and channel count must match the encoding.
CompressedImage messages follow image_transport's ``compressed`` format (JPEG of the BGR image,
``format`` "<encoding>; jpeg compressed bgr8"), which ``image_transport republish`` and RViz read.
"""

import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

try:
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:  # no ROS install: the numpy conversion below
    CvBridge, CvBridgeError = None, None

BRIDGE = CvBridge() if CvBridge is not None else None

# encoding -> (dtype, channels)
ENCODINGS = {
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "8UC3": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "8UC4": (np.uint8, 4),
    "rgb16": (np.uint16, 3),
    "bgr16": (np.uint16, 3),
    "32FC1": (np.float32, 1),
    "64FC1": (np.float64, 1),
}


class ImageEncodingError(ValueError):
    """An Image whose encoding is unknown or whose size/step disagree with its encoding."""


def image_to_array(msg: Image, bridge=BRIDGE) -> np.ndarray:
    """The image's pixels as an array of the encoding's dtype (a copy, native byte order)."""
    if msg.encoding not in ENCODINGS:
        raise ImageEncodingError(
            f"unsupported image encoding '{msg.encoding}'; supported: {sorted(ENCODINGS)}"
        )
    dtype, channels = ENCODINGS[msg.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes or len(msg.data) < msg.step * msg.height or msg.height == 0 or msg.width == 0:
        raise ImageEncodingError(
            f"{msg.encoding} image {msg.width}x{msg.height}: step {msg.step} and {len(msg.data)} bytes "
            f"do not hold {row_bytes} bytes per row"
        )
    if bridge is not None:
        try:
            return np.array(bridge.imgmsg_to_cv2(msg, "passthrough"))
        except CvBridgeError as error:
            raise ImageEncodingError(str(error)) from error
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8, count=msg.step * msg.height)
    rows = rows.reshape(msg.height, msg.step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width, channels)
    pixels = pixels.astype(dtype.newbyteorder("="))
    return pixels[:, :, 0] if channels == 1 else pixels


def array_to_image(array: np.ndarray, encoding: str, header=None, bridge=BRIDGE) -> Image:
    """Pack an array into an Image of the given encoding (no padding, native byte order)."""
    if encoding not in ENCODINGS:
        raise ImageEncodingError(f"unsupported image encoding '{encoding}'; supported: {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    array = np.asarray(array)
    shape_channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype != dtype or shape_channels != channels or array.ndim not in (2, 3):
        raise ImageEncodingError(
            f"array {array.dtype} {array.shape} does not match encoding {encoding} "
            f"({np.dtype(dtype).name}, {channels} channels)"
        )
    if bridge is not None:
        return bridge.cv2_to_imgmsg(np.ascontiguousarray(array), encoding, header)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = msg.width * channels * array.dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def to_rgb_float(msg: Image) -> np.ndarray:
    """Any supported image as RGB float32 in [0, 1], shape (H, W, 3): what the optics sees."""
    pixels = image_to_array(msg)
    if pixels.dtype == np.uint8:
        scaled = pixels.astype(np.float32) / 255.0
    elif pixels.dtype == np.uint16:
        scaled = pixels.astype(np.float32) / 65535.0
    else:
        scaled = np.clip(np.nan_to_num(pixels.astype(np.float32), nan=0.0), 0.0, 1.0)
    if scaled.ndim == 2:
        return np.repeat(scaled[:, :, None], 3, axis=2)
    if msg.encoding.startswith("bgr"):
        scaled = scaled[:, :, [2, 1, 0, *range(3, scaled.shape[2])]]
    return np.ascontiguousarray(scaled[:, :, :3])


def array_to_compressed(array: np.ndarray, encoding: str, quality: int = 90, header=None) -> CompressedImage:
    """An 8-bit mono/RGB/BGR array as image_transport's ``compressed`` JPEG message."""
    if encoding not in ("mono8", "rgb8", "bgr8") or np.asarray(array).dtype != np.uint8:
        raise ImageEncodingError(f"JPEG compression takes mono8, rgb8 or bgr8 uint8 arrays, not {encoding}")
    pixels = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if encoding == "rgb8" else array
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageEncodingError(f"OpenCV could not JPEG-encode a {encoding} array of shape {array.shape}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"{encoding}; jpeg compressed {'mono8' if encoding == 'mono8' else 'bgr8'}"
    msg.data = jpeg.tobytes()
    return msg


def compressed_to_array(msg: CompressedImage) -> np.ndarray:
    """A ``compressed`` message's pixels in the encoding before its ';' (rgb8, bgr8 or mono8)."""
    encoding = msg.format.split(";")[0].strip() or "bgr8"
    flags = cv2.IMREAD_GRAYSCALE if encoding == "mono8" else cv2.IMREAD_COLOR
    pixels = cv2.imdecode(np.frombuffer(bytes(msg.data), dtype=np.uint8), flags)
    if pixels is None:
        raise ImageEncodingError(f"compressed image ({msg.format}) could not be decoded")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if encoding == "rgb8" else pixels
