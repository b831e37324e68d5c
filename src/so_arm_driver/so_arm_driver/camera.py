"""Camera capture core (plain Python, no rclpy): OpenCV ``VideoCapture`` of a device, stream or video file.

- Sources (:func:`parse_source`): a device index (``"0"``) or path (``/dev/video0``), a stream URL
  (``rtsp://``, ``http://``, ... or a FIFO), or a video file (played at ``fps``, looping if ``loop``).
- Frames are converted BGR -> RGB and resized to the requested size; each carries a capture stamp taken right
  after ``grab()`` returned (from an injectable clock, the node's ROS clock in the node).
- A device that is missing or fails is reported (``on_status``) and reopened with exponential backoff
  (``reconnect_period`` doubling up to ``max_reconnect_period``); nothing raises out of the capture thread.
- Dropped frames: a publish tick of the requested rate that passed without a frame counts as dropped
  (:class:`FramePacer`); read errors and reconnects are counted too (:class:`CameraStats`).
- :func:`pinhole_intrinsics` / :func:`load_calibration` provide the camera_info contents.
- Faults (issue 19): a frame in a layout or type that cannot be converted (wrong encoding: 2 channels,
  float64, empty, ...) is skipped and counted (``bad_frames``, the reason in ``bad_frame_reason``); only
  ``max_read_errors`` of them in a row close and reopen the device (the format is negotiated again).
  Frozen frames (a device or driver that repeats one image: identical pixels for ``frozen_timeout`` s;
  devices and streams only, a still video file is what it is) are counted in ``frozen_s`` and still
  delivered; the node reports them. ``last_frame_monotonic`` tells a stalled device (no frames at all).

Only video files and injected captures can be exercised on the build machine (no /dev/video*); a USB camera
path could not be tested here.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)


class SourceKind(enum.Enum):
    DEVICE = "device"
    STREAM = "stream"
    FILE = "file"


def parse_source(source: str | int) -> tuple[SourceKind, int | str]:
    """Classify a ``source`` parameter: ``(kind, value for VideoCapture)``."""
    if isinstance(source, int):
        if source < 0:
            raise ValueError(f"device index must be >= 0, got {source}")
        return SourceKind.DEVICE, source
    text = str(source).strip()
    if not text:
        raise ValueError("camera source is empty")
    if text.isdigit():
        return SourceKind.DEVICE, int(text)
    if text.startswith("/dev/"):
        return SourceKind.DEVICE, text
    if "://" in text:
        return SourceKind.STREAM, text
    path = os.path.expanduser(text)
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            return SourceKind.STREAM, path
    except OSError:
        pass
    return SourceKind.FILE, path


@dataclass
class CameraConfig:
    source: str | int = "0"
    fps: float = 30.0
    width: int = 640  # 0 x 0: keep the source's size
    height: int = 480
    loop: bool = True
    reconnect_period: float = 1.0
    max_reconnect_period: float = 10.0
    fourcc: str = "MJPG"  # devices only; "" = driver default
    #: consecutive failed reads of a device/stream before it is closed and reopened
    max_read_errors: int = 3
    #: identical frames for this long (s) are reported as frozen (devices and streams; 0 = off)
    frozen_timeout: float = 2.0

    def validate(self) -> str | None:
        """Return a reason if the configuration is invalid, else None."""
        try:
            parse_source(self.source)
        except ValueError as exc:
            return str(exc)
        if not (math.isfinite(self.fps) and 0.0 < self.fps <= 1000.0):
            return f"fps must be in (0, 1000], got {self.fps}"
        if self.width < 0 or self.height < 0 or (self.width == 0) != (self.height == 0):
            return (
                f"width and height must both be > 0, or both 0 (source size); got {self.width}x{self.height}"
            )
        if self.width > 16384 or self.height > 16384:
            return f"image size {self.width}x{self.height} is too large"
        if not (self.reconnect_period > 0.0 and math.isfinite(self.reconnect_period)):
            return f"reconnect_period must be > 0, got {self.reconnect_period}"
        if self.max_reconnect_period < self.reconnect_period:
            return (
                f"max_reconnect_period ({self.max_reconnect_period}) must be >= reconnect_period "
                f"({self.reconnect_period})"
            )
        if self.fourcc and len(self.fourcc) != 4:
            return f"fourcc must have 4 characters or be empty, got '{self.fourcc}'"
        if self.max_read_errors < 1:
            return "max_read_errors must be >= 1"
        if not (math.isfinite(self.frozen_timeout) and self.frozen_timeout >= 0.0):
            return f"frozen_timeout must be >= 0, got {self.frozen_timeout}"
        return None


class CameraState(enum.Enum):
    STARTING = "starting"
    STREAMING = "streaming"
    DISCONNECTED = "disconnected"  # missing device/file or device error; retried with backoff
    ENDED = "ended"  # a non-looping file reached its end
    STOPPED = "stopped"


@dataclass
class Frame:
    image: np.ndarray  # H x W x 3 uint8, RGB
    stamp_ns: int  # capture time from the stream's clock
    seq: int  # frames delivered since start
    dropped: int  # frames dropped just before this one


@dataclass
class CameraStats:
    frames: int = 0
    dropped: int = 0
    read_errors: int = 0
    open_failures: int = 0
    reconnects: int = 0  # successful re-opens after the first open
    loops: int = 0  # file rewinds
    state: CameraState = CameraState.STARTING
    message: str = ""
    source_size: tuple[int, int] | None = None  # (width, height) of the source frames
    last_stamp_ns: int | None = None
    last_frame_monotonic: float | None = None  # time.monotonic() of the last delivered frame
    bad_frames: int = 0  # frames in a layout/type that cannot be converted (skipped)
    bad_frame_reason: str = ""
    frozen_s: float = 0.0  # s the source has been repeating one identical image (0: not frozen)


class FramePacer:
    """Publish ticks at ``fps``; decides when a frame is due and counts ticks that passed without a frame.

    Ticks are ``t0 + k / fps``. A frame offered at ``now`` is accepted when ``now`` is at most half a period
    before the next tick; every tick that passed entirely before it counts as dropped. Pure arithmetic on the
    ``now`` values passed in (seconds), so it is tested without sleeping.
    """

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.next_tick: float | None = None

    def set_fps(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.next_tick = None

    def reset(self) -> None:
        """Forget the schedule (after a reconnect: the outage is not counted as dropped frames)."""
        self.next_tick = None

    def wait_time(self, now: float) -> float:
        """Seconds until the next tick (0 if due)."""
        return 0.0 if self.next_tick is None else max(0.0, self.next_tick - now)

    def ready(self, now: float) -> bool:
        return self.next_tick is None or now >= self.next_tick - 0.5 * self.period

    def accept(self, now: float) -> int:
        """Record a frame delivered at ``now``; returns the number of ticks dropped before it."""
        if self.next_tick is None:
            self.next_tick = now + self.period
            return 0
        missed = max(0, int(math.floor((now - self.next_tick) / self.period + 1e-9)))
        self.next_tick += (missed + 1) * self.period
        if self.next_tick < now - self.period:  # guard against drift after long stalls
            self.next_tick = now + self.period
        return missed


class VideoCaptureLike(Protocol):
    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV API)
    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def set(self, prop: int, value: float) -> bool: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


def _default_capture_factory(kind: SourceKind, target: int | str) -> VideoCaptureLike:
    import cv2

    if kind is SourceKind.DEVICE:
        return cv2.VideoCapture(target, cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY)
    return cv2.VideoCapture(target, cv2.CAP_FFMPEG)


def frame_problem(frame: object) -> str | None:
    """Why ``frame`` cannot be converted by :func:`to_rgb` (None if it can): a wrong encoding from a device
    (e.g. raw YUYV with 2 channels, a float or signed image, a flat buffer, an empty image)."""
    if not isinstance(frame, np.ndarray):
        return f"not an image array: {type(frame).__name__}"
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        return f"unsupported layout {tuple(frame.shape)} (expected H x W, H x W x 1, 3 or 4)"
    if frame.size == 0:
        return f"empty image {tuple(frame.shape)}"
    if frame.dtype not in (np.uint8, np.uint16):
        return f"unsupported pixel type {frame.dtype} (expected uint8 or uint16)"
    return None


def _fingerprint(frame: np.ndarray) -> int:
    """A cheap hash of a subsampled frame (frozen-frame detection: a live sensor never repeats exactly)."""
    step = max(1, min(frame.shape[0], frame.shape[1]) // 32)
    return hash(frame[::step, ::step].tobytes())


def to_rgb(frame: np.ndarray, width: int = 0, height: int = 0) -> np.ndarray:
    """OpenCV frame (BGR, BGRA or gray) -> contiguous RGB uint8, resized to ``width`` x ``height`` if > 0."""
    import cv2

    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if rgb.dtype != np.uint8:
        rgb = (
            cv2.convertScaleAbs(rgb, alpha=255.0 / 65535.0)
            if rgb.dtype == np.uint16
            else rgb.astype(np.uint8)
        )
    h, w = rgb.shape[:2]
    if width > 0 and height > 0 and (w, h) != (width, height):
        shrink = width < w and height < h
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb)


class CameraStream:
    """Capture thread: open (with reconnect/backoff), grab at ``fps``, convert, hand frames to ``on_frame``.

    ``on_frame(Frame)`` and ``on_status(CameraState, message)`` run on the capture thread; exceptions they
    raise are logged and do not stop the stream. ``clock_ns`` gives capture stamps (default ``time.time_ns``).
    """

    def __init__(
        self,
        config: CameraConfig,
        on_frame: Callable[[Frame], None],
        on_status: Callable[[CameraState, str], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        capture_factory: Callable[[SourceKind, int | str], VideoCaptureLike] = _default_capture_factory,
    ) -> None:
        reason = config.validate()
        if reason:
            raise ValueError(reason)
        self._config = config
        self.kind, self.target = parse_source(config.source)
        self._on_frame = on_frame
        self._on_status = on_status
        self._clock_ns = clock_ns
        self._factory = capture_factory
        self._pacer = FramePacer(config.fps)
        self._lock = threading.Lock()
        self._stats = CameraStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._cap: VideoCaptureLike | None = None
        self._opened_once = False

    # -- control --------------------------------------------------------------------------------------------
    @property
    def config(self) -> CameraConfig:
        return self._config

    def update(self, **changes: Any) -> None:
        """Change ``fps``, ``loop``, ``reconnect_period``, ``max_reconnect_period``, ``max_read_errors``."""
        allowed = {
            "fps",
            "loop",
            "reconnect_period",
            "max_reconnect_period",
            "max_read_errors",
            "frozen_timeout",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} while running")
        new = replace(self._config, **changes)
        reason = new.validate()
        if reason:
            raise ValueError(reason)
        with self._lock:
            self._config = new
            if "fps" in changes:
                self._pacer.set_fps(new.fps)
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.target}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._release()
        self._set_state(CameraState.STOPPED, "stopped")

    def stats(self) -> CameraStats:
        with self._lock:
            return replace(self._stats)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- capture thread -------------------------------------------------------------------------------------
    def _set_state(self, state: CameraState, message: str) -> None:
        with self._lock:
            changed = (state, message) != (self._stats.state, self._stats.message)
            self._stats.state, self._stats.message = state, message
        if changed and self._on_status is not None:
            try:
                self._on_status(state, message)
            except Exception:  # noqa: BLE001 (a status consumer must not stop the capture)
                log.exception("camera status callback failed")

    def _sleep(self, seconds: float) -> None:
        """Interruptible sleep (stop() or update() wakes it)."""
        if seconds > 0:
            self._wake.wait(seconds)
            self._wake.clear()

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:  # noqa: BLE001
                log.exception("releasing the capture failed")

    def _open(self) -> str | None:
        """Open the source; returns a reason on failure."""
        import cv2

        if self.kind is SourceKind.FILE and not os.path.isfile(str(self.target)):
            return f"video file '{self.target}' not found"
        if (
            self.kind is SourceKind.DEVICE
            and isinstance(self.target, str)
            and not os.path.exists(self.target)
        ):
            return f"camera device '{self.target}' not found"
        try:
            cap = self._factory(self.kind, self.target)
        except Exception as exc:  # noqa: BLE001 (OpenCV raises cv2.error for some backends)
            return f"cannot open '{self.target}': {exc}"
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            what = "camera device" if self.kind is SourceKind.DEVICE else self.kind.value
            return f"cannot open {what} '{self.target}'"
        cfg = self._config
        if self.kind is SourceKind.DEVICE:
            if cfg.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*cfg.fourcc))
            if cfg.width > 0:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
            cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        self._cap = cap
        return None

    def _run(self) -> None:
        backoff = self._config.reconnect_period
        frames_this_pass = 0
        consecutive_errors = 0
        bad_in_a_row = 0  # frames that could not be converted, in a row
        last_print: int | None = None  # fingerprint of the last frame and since when it repeats
        same_since: float | None = None
        while not self._stop.is_set():
            try:
                if self._cap is None:
                    reason = self._open()
                    if reason is not None:
                        with self._lock:
                            self._stats.open_failures += 1
                        self._set_state(CameraState.DISCONNECTED, f"{reason}; retrying in {backoff:.1f} s")
                        self._sleep(backoff)
                        backoff = min(backoff * 2.0, self._config.max_reconnect_period)
                        continue
                    backoff = self._config.reconnect_period
                    frames_this_pass = consecutive_errors = bad_in_a_row = 0
                    last_print = same_since = None
                    with self._lock:
                        if self._opened_once:
                            self._stats.reconnects += 1
                        self._pacer.reset()
                    self._opened_once = True
                    self._set_state(
                        CameraState.STREAMING, f"streaming from {self.kind.value} '{self.target}'"
                    )

                if self.kind is SourceKind.FILE:  # files are paced by us; devices by their own clock
                    with self._lock:
                        wait = self._pacer.wait_time(time.monotonic())
                    if wait > 0:
                        self._sleep(wait)
                        continue

                ok = self._cap.grab()
                now = time.monotonic()
                stamp = self._clock_ns()
                if not ok:
                    if self.kind is SourceKind.FILE:
                        frames_this_pass = self._end_of_file(frames_this_pass)
                        continue
                    consecutive_errors += 1
                    with self._lock:
                        self._stats.read_errors += 1
                    if consecutive_errors >= self._config.max_read_errors:
                        self._release()
                        self._set_state(
                            CameraState.DISCONNECTED,
                            f"{self.kind.value} '{self.target}' stopped delivering frames "
                            f"({consecutive_errors} failed reads); reconnecting in {backoff:.1f} s",
                        )
                        self._sleep(backoff)
                        backoff = min(backoff * 2.0, self._config.max_reconnect_period)
                    continue
                consecutive_errors = 0
                frames_this_pass += 1
                with self._lock:
                    ready = self._pacer.ready(now)
                if not ready:  # a device faster than fps: decimate
                    continue
                ok, raw = self._cap.retrieve()
                if not ok or raw is None:
                    with self._lock:
                        self._stats.read_errors += 1
                    continue
                cfg = self._config
                problem = frame_problem(raw)
                if problem is None:
                    try:
                        rgb = to_rgb(raw, cfg.width, cfg.height)
                    except Exception as exc:  # noqa: BLE001 (cv2.error: a frame OpenCV cannot convert)
                        problem = f"cannot convert: {exc}".strip()[:200]
                if problem is not None:  # wrong encoding: skip the frame; a run of them reopens the device
                    bad_in_a_row += 1
                    with self._lock:
                        self._stats.bad_frames += 1
                        self._stats.bad_frame_reason = problem
                    if bad_in_a_row >= cfg.max_read_errors:
                        self._release()
                        self._set_state(
                            CameraState.DISCONNECTED,
                            f"{self.kind.value} '{self.target}' delivers frames that cannot be converted "
                            f"({problem}); reopening in {backoff:.1f} s",
                        )
                        self._sleep(backoff)
                        backoff = min(backoff * 2.0, cfg.max_reconnect_period)
                    continue
                bad_in_a_row = 0
                frozen = 0.0
                if self.kind is not SourceKind.FILE and cfg.frozen_timeout > 0:
                    fp = _fingerprint(raw)
                    if fp != last_print:
                        last_print, same_since = fp, now
                    elif same_since is not None and now - same_since >= cfg.frozen_timeout:
                        frozen = now - same_since
                with self._lock:
                    dropped = self._pacer.accept(now)
                    self._stats.frames += 1
                    self._stats.dropped += dropped
                    self._stats.source_size = (int(raw.shape[1]), int(raw.shape[0]))
                    self._stats.last_stamp_ns = stamp
                    self._stats.last_frame_monotonic = now
                    self._stats.frozen_s = frozen
                    seq = self._stats.frames
                try:
                    self._on_frame(Frame(image=rgb, stamp_ns=stamp, seq=seq, dropped=dropped))
                except Exception:  # noqa: BLE001 (a frame consumer must not stop the capture)
                    log.exception("camera frame callback failed")
            except Exception as exc:  # noqa: BLE001 (never let the capture thread die)
                log.exception("camera capture error")
                self._release()
                self._set_state(
                    CameraState.DISCONNECTED, f"capture error: {exc}; retrying in {backoff:.1f} s"
                )
                self._sleep(backoff)
                backoff = min(backoff * 2.0, self._config.max_reconnect_period)
        self._release()

    def _end_of_file(self, frames_this_pass: int) -> int:
        import cv2

        if frames_this_pass == 0:  # nothing decodable: treat like a broken device
            self._release()
            with self._lock:
                self._stats.read_errors += 1
            self._set_state(
                CameraState.DISCONNECTED,
                f"video file '{self.target}' has no decodable frames; retrying in "
                f"{self._config.reconnect_period:.1f} s",
            )
            self._sleep(self._config.reconnect_period)
            return 0
        if self._config.loop:
            if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                self._release()  # cannot rewind: reopen
            with self._lock:
                self._stats.loops += 1
            return 0
        self._set_state(CameraState.ENDED, f"end of video file '{self.target}' (loop is off)")
        while not self._stop.is_set() and not self._config.loop:
            self._sleep(0.5)
        if self._config.loop and self._cap is not None:  # loop switched on while ended: rewind
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._set_state(CameraState.STREAMING, f"streaming from file '{self.target}'")
        return 0


# -- camera_info ---------------------------------------------------------------------------------------------
@dataclass
class CameraIntrinsics:
    """The numeric content of a sensor_msgs/CameraInfo (row-major K 3x3, R 3x3, P 3x4)."""

    width: int
    height: int
    k: list[float]
    d: list[float] = field(default_factory=list)
    r: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    p: list[float] = field(default_factory=list)
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        if not self.p:
            k = self.k
            self.p = [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
        if self.distortion_model == "plumb_bob" and not self.d:
            self.d = [0.0] * 5

    def scaled(self, width: int, height: int) -> CameraIntrinsics:
        """The same camera at another resolution (focal lengths and principal point scale with the image)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        k = [v * sx for v in self.k[0:3]] + [v * sy for v in self.k[3:6]] + list(self.k[6:9])
        p = [v * sx for v in self.p[0:4]] + [v * sy for v in self.p[4:8]] + list(self.p[8:12])
        return CameraIntrinsics(width, height, k, list(self.d), list(self.r), p, self.distortion_model)


def pinhole_intrinsics(width: int, height: int, horizontal_fov_deg: float) -> CameraIntrinsics:
    """A distortion-free pinhole camera with square pixels and the principal point at the image centre."""
    if not 0.0 < horizontal_fov_deg < 180.0:
        raise ValueError(f"horizontal field of view must be in (0, 180) deg, got {horizontal_fov_deg}")
    f = (width / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
    return CameraIntrinsics(width, height, [f, 0.0, width / 2.0, 0.0, f, height / 2.0, 0.0, 0.0, 1.0])


def load_calibration(path: str | os.PathLike) -> CameraIntrinsics:
    """Read a ROS camera_calibration YAML file (image_width, image_height, camera_matrix, distortion_model,
    distortion_coefficients, rectification_matrix, projection_matrix)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a camera calibration YAML mapping")

    def matrix(key: str, size: int, required: bool = True) -> list[float]:
        entry = data.get(key)
        if entry is None:
            if required:
                raise ValueError(f"{path}: missing '{key}'")
            return []
        values = entry.get("data") if isinstance(entry, dict) else entry
        values = [float(v) for v in values]
        if size and len(values) != size:
            raise ValueError(f"{path}: '{key}' has {len(values)} values, expected {size}")
        return values

    try:
        width, height = int(data["image_width"]), int(data["image_height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: missing or invalid image_width/image_height") from exc
    return CameraIntrinsics(
        width=width,
        height=height,
        k=matrix("camera_matrix", 9),
        d=matrix("distortion_coefficients", 0, required=False),
        r=matrix("rectification_matrix", 9, required=False) or [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
        p=matrix("projection_matrix", 12, required=False),
        distortion_model=str(data.get("distortion_model", "plumb_bob")),
    )
