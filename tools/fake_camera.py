"""A fake camera device for tests and the fault soak (issue 19): no USB camera exists on the build machine, so
only the device is faked. :class:`FifoCamera` writes a live YUV4MPEG2 stream into a FIFO; ``camera_node``
opens the FIFO as a stream source with the real OpenCV/FFmpeg. Its ``mode`` injects the device faults:
"frozen" (one image repeated), "unplugged" (the FIFO closed: end of stream), "garbage" (bytes that are no
frames: a wrong encoding). Plain Python; nothing here is imported by the nodes.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import numpy as np

W, H = 64, 48


class FifoCamera:
    """The fake device: writes a YUV4MPEG2 stream into a FIFO at ``fps`` in a thread. ``mode``: "live"
    (every frame different), "frozen" (one image repeated), "garbage" (bytes that are no frames),
    "unplugged" (the FIFO closed, not reopened)."""

    def __init__(self, path: Path, fps: float = 30.0) -> None:
        self.path = path
        os.mkfifo(path)
        self.fps = fps
        self.mode = "live"
        self.frames_written = 0
        self.opens = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fifo-camera")
        self._thread.start()

    def _frame(self, k: int) -> bytes:
        y = np.zeros((H, W), np.uint8)
        y[:, :] = 40 + (k * 7) % 160
        y[: H // 2, : W // 2] = 200 - (k * 3) % 100
        uv = np.full((H // 2, W // 2), 128, np.uint8)
        return b"FRAME\n" + y.tobytes() + uv.tobytes() + uv.tobytes()

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        while not self._stop.is_set():
            if self.mode == "unplugged":
                time.sleep(0.02)
                continue
            try:  # non-blocking: fails while no reader has the FIFO open
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                time.sleep(0.02)
                continue
            self.opens += 1
            k = 0
            try:
                os.write(fd, f"YUV4MPEG2 W{W} H{H} F30:1 Ip A1:1 C420jpeg\n".encode())
                while not self._stop.is_set() and self.mode != "unplugged":
                    k += 1
                    if self.mode == "frozen":
                        data = self._frame(0)
                    elif self.mode == "garbage":
                        data = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
                    else:
                        data = self._frame(k)
                    try:
                        os.write(fd, data)
                        self.frames_written += 1
                    except BlockingIOError:
                        pass  # the reader is behind: this frame is lost, as on a device
                    time.sleep(1.0 / self.fps)
            except BrokenPipeError:
                pass  # the reader closed (it reconnects): open again
            finally:
                os.close(fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
