"""sensor_msgs/Image <-> numpy conversion (cv_bridge is not available from PyPI; this is the project's own).

No rclpy import: the message class is passed in or duck-typed, so the module is usable in plain Python
(bag conversion) and in nodes alike.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np

# encoding -> (channels, numpy dtype)
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8UC1": (1, np.dtype(np.uint8)),
    "8UC3": (3, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
    "16UC1": (1, np.dtype(np.uint16)),
}

#: Encodings a policy accepts as camera input (converted to rgb8).
POLICY_ENCODINGS = ("rgb8", "bgr8", "mono8")


class ImageConversionError(ValueError):
    """The message cannot be interpreted as an image (unknown encoding, wrong size, bad step)."""


def image_to_numpy(msg: Any) -> np.ndarray:
    """Return an HxWxC view (read-only, zero-copy where possible) of an Image message's pixels."""
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding '{enc}'")
    channels, dtype = ENCODINGS[enc]
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"image has an empty size {w}x{h}")
    row = w * channels * dtype.itemsize
    step = int(msg.step) if msg.step else row
    if step < row:
        raise ImageConversionError(f"image step {step} is smaller than width*channels*itemsize = {row}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < step * h:
        raise ImageConversionError(f"image data has {buf.size} bytes, expected {step * h} ({w}x{h} {enc})")
    rows = buf[: step * h].reshape(h, step)[:, :row]
    out = rows.view(dtype) if dtype.itemsize == 1 else np.ascontiguousarray(rows).view(dtype)
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != (np.little_endian is False):
        out = out.byteswap()
    return out.reshape(h, w, channels)


def image_to_rgb8(msg: Any, accepted: tuple[str, ...] = POLICY_ENCODINGS) -> np.ndarray:
    """Return the image as HxWx3 uint8 RGB; only ``accepted`` encodings are allowed."""
    if msg.encoding not in accepted:
        raise ImageConversionError(
            f"image encoding '{msg.encoding}' is not accepted (accepted: {', '.join(accepted)})"
        )
    img = image_to_numpy(msg)
    if msg.encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(img[..., 2::-1])
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 4:
        return np.ascontiguousarray(img[..., :3])
    return img


def numpy_to_image(arr: np.ndarray, encoding: str = "rgb8", msg: Any = None) -> Any:
    """Fill (or create) a sensor_msgs/Image from an HxW[xC] array. Header is left to the caller."""
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding '{encoding}'")
    channels, dtype = ENCODINGS[encoding]
    a = np.ascontiguousarray(arr, dtype=dtype)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] != channels:
        raise ImageConversionError(f"array of shape {arr.shape} does not match encoding '{encoding}'")
    if msg is None:
        from sensor_msgs.msg import Image

        msg = Image()
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(a.shape[1] * channels * dtype.itemsize)
    # array.array is the fast path that is valid with and without ROS_PYTHON_CHECK_FIELDS.
    msg.data = array.array("B", a.tobytes())
    return msg
