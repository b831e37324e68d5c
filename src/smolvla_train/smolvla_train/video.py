"""MP4 video writing and reading through PyAV (AV1 via libsvtav1 like lerobot, or H.264 via libx264).

One ``VideoWriter`` holds one open mp4 file; episodes are appended back to back into the same stream, so an
episode's frames sit at ``from_timestamp + frame_index / fps`` (``from_timestamp`` = frames before it / fps),
which is exactly what lerobot's concatenated v3.0 files look like to a decoder. Plain Python, no rclpy.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

# SVT-AV1 prints its configuration and warnings for every encoder; keep errors only.
os.environ.setdefault("SVT_LOG", "1")

from smolvla_train.lerobot_format import VIDEO_DEFAULTS


class VideoError(RuntimeError):
    pass


def encoder_settings(codec: str, crf: int | None = None, gop: int | None = None, preset: Any = None) -> dict:
    """Settings for ``codec`` ('av1' or 'h264'), lerobot's defaults unless overridden."""
    if codec not in VIDEO_DEFAULTS:
        raise ValueError(f"unknown video codec {codec!r} (known: {', '.join(VIDEO_DEFAULTS)})")
    s = dict(VIDEO_DEFAULTS[codec])
    if crf is not None:
        s["crf"] = int(crf)
    if gop is not None:
        s["g"] = int(gop)
    if preset is not None:
        s["preset"] = preset
    return s


class VideoWriter:
    """Encode RGB uint8 frames (H, W, 3) into ``path`` at ``fps``; frame n has pts n (time base 1/fps).

    With ``background=True`` (default) frames are encoded by a thread of their own (PyAV releases the GIL
    while converting and encoding), so reading the bag and several cameras' encoders run in parallel; an
    encoder error is raised by the next ``write()`` or by ``close()``.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: int,
        settings: dict,
        threads: int = 0,
        background: bool = True,
    ):
        if width % 2 or height % 2:
            raise VideoError(f"yuv420p needs even image sizes, got {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height, self.fps = width, height, fps
        self.frames = 0  # frames accepted by write()
        self.bytes = 0  # bytes muxed so far (lags behind write() in background mode)
        options = {"g": str(settings["g"]), "crf": str(settings["crf"]), "preset": str(settings["preset"])}
        if settings["encoder"] == "libsvtav1" and threads:
            options["svtav1-params"] = f"lp={threads}"
        elif threads:
            options["threads"] = str(threads)
        self._container = av.open(str(self.path), "w")
        try:
            self._stream = self._container.add_stream(settings["encoder"], rate=fps, options=options)
        except Exception:
            self._container.close()
            raise
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = settings["pix_fmt"]
        self._stream.time_base = Fraction(1, fps)
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(
                target=self._run, name=f"encode-{self.path.parent.parent.name}", daemon=True
            )
            self._thread.start()

    def write(self, image: np.ndarray) -> None:
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise VideoError(
                f"{self.path.name}: frame {image.shape} {image.dtype}, "
                f"expected ({self.height}, {self.width}, 3) uint8"
            )
        if self._error is not None:
            raise VideoError(f"{self.path}: encoder failed: {self._error}") from self._error
        if self._queue is not None:
            self._queue.put((self.frames, image))
        else:
            self._encode(self.frames, image)
        self.frames += 1

    def _encode(self, pts: int, image: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = pts
        frame.time_base = Fraction(1, self.fps)
        self._mux(self._stream.encode(frame))

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain until the sentinel
            try:
                self._encode(*item)
            except BaseException as exc:  # noqa: BLE001 - reported to the writing thread
                self._error = exc

    def _mux(self, packets: list) -> None:
        for p in packets:
            self.bytes += p.size
            self._container.mux(p)

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._stop_thread()
            if self._error is not None:
                raise VideoError(f"{self.path}: encoder failed: {self._error}") from self._error
            self._mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # best effort on an error path
            self._stop_thread()
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None


def probe(path: str | Path) -> dict[str, Any]:
    """Codec, size, fps, frame count and duration of the first video stream."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        n = sum(1 for p in c.demux(s) if p.size)
        return {
            "codec": cc.name,
            "width": cc.width,
            "height": cc.height,
            "pix_fmt": cc.pix_fmt,
            "fps": float(s.average_rate) if s.average_rate else None,
            "frames": n,
        }


def read_frames(
    path: str | Path, start_s: float = 0.0, end_s: float | None = None, fps: float | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode frames with start_s - 1/(2 fps) <= t < end_s - 1/(2 fps) as (time_s, RGB uint8)."""
    half = 0.5 / fps if fps else 1e-6
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if start_s > 0:
            c.seek(int(max(0.0, start_s - 1.0) / s.time_base), stream=s, backward=True, any_frame=False)
        for frame in c.decode(s):
            t = float(frame.pts * s.time_base)
            if t < start_s - half:
                continue
            if end_s is not None and t >= end_s - half:
                break
            yield t, frame.to_ndarray(format="rgb24")
