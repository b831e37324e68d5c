"""Compact observations (issue 17): each camera sent as the model will see it. No rclpy.

The action queue may send every camera

- **resized** with the model's own resize-with-pad (``model.processor.resize_with_pad``: bilinear, no
  antialias) to the input size the policy server reports, the padding left out (the server's own
  resize-with-pad of such an image is an identity followed by the same padding), rounded to uint8; and/or
- **JPEG-encoded** (OpenCV, ``quality`` 1..100) as a ``sensor_msgs/CompressedImage``.

The server decodes compressed images with :func:`decode_compressed` (JPEG and PNG). A 640x480 camera becomes
512x384 (590 KB rgb8) resized, and ~15-40 KB as JPEG at quality 90 (docs/benchmarks.md,
observation_transport).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AUTO = "auto"

#: CompressedImage.format values written by :func:`encode_jpeg`.
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"


class CompactObservationError(ValueError):
    """A compact-observation setting or a compressed image is invalid."""


@dataclass(frozen=True)
class CompactSettings:
    """What the queue sends per camera.

    ``size``: None = raw frames; ``"auto"`` = the server's reported input size (raw until it is known);
    ``(width, height)`` = that target. ``jpeg_quality``: 0 = pixels (sensor_msgs/Image), 1..100 = JPEG.
    """

    size: tuple[int, int] | str | None = None
    jpeg_quality: int = 0

    def target(self, server_size: tuple[int, int] | None) -> tuple[int, int] | None:
        """The resize target for this request (None: no resize)."""
        if self.size == AUTO:
            return server_size if server_size and server_size[0] > 0 and server_size[1] > 0 else None
        return self.size if isinstance(self.size, tuple) else None


def parse_image_size(text: str) -> tuple[int, int] | str | None:
    """``""`` -> None (raw), ``"auto"`` -> "auto", ``"512x512"`` -> (512, 512); raises on anything else."""
    t = str(text).strip().lower()
    if not t:
        return None
    if t == AUTO:
        return AUTO
    parts = t.split("x")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        w, h = int(parts[0]), int(parts[1])
        if 8 <= w <= 8192 and 8 <= h <= 8192:
            return (w, h)
    raise CompactObservationError(
        f"observation image size '{text}' is not '' (raw), 'auto' or WIDTHxHEIGHT (8..8192, e.g. 512x512)"
    )


def check_jpeg_quality(quality: int) -> int:
    q = int(quality)
    if not 0 <= q <= 100:
        raise CompactObservationError(f"jpeg quality {quality} is not in 0..100 (0 = no JPEG)")
    return q


def content_size(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int]:
    """(w, h) of the image inside the padding, exactly as ``resize_with_pad`` computes it."""
    ratio = max(width / target_width, height / target_height)
    return int(width / ratio), int(height / ratio)


def resize_for_model(rgb: np.ndarray, target_width: int, target_height: int) -> np.ndarray:
    """HxWx3 uint8 -> the model's resize-with-pad of it without the padding, rounded to uint8.

    Uses the model's own function (float32 in [0, 1], torch bilinear, align_corners=False, no antialias), so
    the server's resize-with-pad of the result is that same image up to the rounding (less than half a level).
    An image already at its content size is returned unchanged (a copy).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise CompactObservationError(f"expected an HxWx3 uint8 image, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    new_w, new_h = content_size(w, h, target_width, target_height)
    if (new_w, new_h) == (w, h):
        return np.array(rgb, copy=True)
    # torch only when there is something to resize (importing it stalls a process for seconds)
    import torch

    from smolvla_policy.model.processor import image_to_tensor, resize_with_pad

    with torch.no_grad():
        padded = resize_with_pad(image_to_tensor(rgb), target_width, target_height, pad_value=0.0)
        content = padded[0, :, target_height - new_h :, target_width - new_w :]
        out = (content * 255.0).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """HxWx3 uint8 RGB -> JPEG bytes (OpenCV/libjpeg-turbo, 4:2:0, baseline)."""
    import cv2

    q = check_jpeg_quality(quality)
    if q == 0:
        raise CompactObservationError("jpeg quality 0 means no JPEG")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise CompactObservationError("JPEG encoding failed")
    return buf.tobytes()


def decode_compressed(fmt: str, data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """CompressedImage (JPEG or PNG) -> HxWx3 uint8 RGB; raises CompactObservationError."""
    import cv2

    f = str(fmt).lower()
    if f and "jpeg" not in f and "jpg" not in f and "png" not in f:
        raise CompactObservationError(f"compressed image format '{fmt}' is not JPEG or PNG")
    buf = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8)
    if buf.size == 0:
        raise CompactObservationError("compressed image has no data")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise CompactObservationError(f"compressed image ({buf.size} bytes, {fmt!r}) cannot be decoded")
    return np.ascontiguousarray(img[..., ::-1])


def compressed_size(data: bytes | bytearray | memoryview | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG or PNG header without decoding; None when not found."""
    b = bytes(data[:65536]) if not isinstance(data, np.ndarray) else data[:65536].tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24:
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(b):
            if b[i] != 0xFF:
                return None
            marker = b[i + 1]
            length = int.from_bytes(b[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(b[i + 7 : i + 9], "big"), int.from_bytes(b[i + 5 : i + 7], "big")
            i += 2 + length
    return None


def preload(settings: CompactSettings) -> None:
    """Import what :func:`compact_camera` will need (torch for a resize, OpenCV for JPEG) now, at start-up,
    instead of in the first control tick that uses it (a multi-second stall on a busy machine)."""
    if settings.size is not None:
        import smolvla_policy.model.processor  # noqa: F401
    if settings.jpeg_quality > 0:
        import cv2  # noqa: F401


def compact_camera(
    rgb: np.ndarray, settings: CompactSettings, server_size: tuple[int, int] | None
) -> tuple[np.ndarray, bytes | None]:
    """One camera frame -> (pixels to send, JPEG bytes or None). The pixels are resized when a target is
    known; the JPEG (when enabled) encodes those pixels."""
    target = settings.target(server_size)
    pixels = resize_for_model(rgb, *target) if target is not None else rgb
    data = encode_jpeg(pixels, settings.jpeg_quality) if settings.jpeg_quality > 0 else None
    return pixels, data
