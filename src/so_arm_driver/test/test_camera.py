"""Camera capture core (so_arm_driver.camera) with real OpenCV on MJPG video files written by cv2.VideoWriter.

There is no camera on the build machine: device behaviour (an unplugged USB camera) is exercised by wrapping
a real ``cv2.VideoCapture`` of a video file so that it stops delivering frames, which is what a device does
when it is pulled. A real USB camera could not be tested here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from ros_harness import wait_for
from so_arm_driver.camera import (
    CameraConfig,
    CameraState,
    CameraStream,
    Frame,
    FramePacer,
    SourceKind,
    load_calibration,
    parse_source,
    pinhole_intrinsics,
    to_rgb,
)

SRC_W, SRC_H, N_FRAMES = 64, 48, 6


def write_video(path: Path, n: int = N_FRAMES, size: tuple[int, int] = (SRC_W, SRC_H)) -> Path:
    """MJPG avi: left half red, right half blue (BGR written), bottom band grey level 30 + 40 * index."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    assert writer.isOpened()
    for i in range(n):
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[: h // 2, : w // 2] = (0, 0, 255)  # red in BGR
        bgr[: h // 2, w // 2 :] = (255, 0, 0)  # blue in BGR
        bgr[h // 2 :] = 30 + 40 * i
        writer.write(bgr)
    writer.release()
    return path


def frame_index(rgb: np.ndarray) -> int:
    h = rgb.shape[0]
    level = float(rgb[h * 3 // 4 - 2 : h * 3 // 4 + 2, 4:-4].mean())
    return int(round((level - 30.0) / 40.0))


class Collector:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.states: list[tuple[CameraState, str]] = []
        self._lock = threading.Lock()

    def on_frame(self, frame: Frame) -> None:
        with self._lock:
            self.frames.append(frame)

    def on_status(self, state: CameraState, message: str) -> None:
        with self._lock:
            self.states.append((state, message))

    def count(self) -> int:
        with self._lock:
            return len(self.frames)

    def seen(self, state: CameraState, text: str = "") -> bool:
        with self._lock:
            return any(s is state and text in m for s, m in self.states)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi")


@pytest.fixture
def streams():
    started: list[CameraStream] = []

    def make(config: CameraConfig, collector: Collector, **kwargs) -> CameraStream:
        stream = CameraStream(config, collector.on_frame, collector.on_status, **kwargs)
        started.append(stream)
        stream.start()
        return stream

    yield make
    for stream in started:
        stream.stop()
    assert not any(s.running for s in started)


# -- pure functions --
def test_parse_source(tmp_path: Path):
    assert parse_source("0") == (SourceKind.DEVICE, 0)
    assert parse_source(2) == (SourceKind.DEVICE, 2)
    assert parse_source(" 3 ") == (SourceKind.DEVICE, 3)
    assert parse_source("/dev/video4") == (SourceKind.DEVICE, "/dev/video4")
    assert parse_source("rtsp://10.0.0.2/stream") == (SourceKind.STREAM, "rtsp://10.0.0.2/stream")
    assert parse_source(str(tmp_path / "a.mp4")) == (SourceKind.FILE, str(tmp_path / "a.mp4"))
    fifo = tmp_path / "pipe"
    import os

    os.mkfifo(fifo)
    assert parse_source(str(fifo)) == (SourceKind.STREAM, str(fifo))
    for bad in ("", "   ", -1):
        with pytest.raises(ValueError):
            parse_source(bad)


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"width": 0, "height": 480}, "both"),
        ({"width": -5}, "width"),
        ({"reconnect_period": 0.0}, "reconnect_period"),
        ({"reconnect_period": 5.0, "max_reconnect_period": 1.0}, "max_reconnect_period"),
        ({"fourcc": "MJPEG"}, "fourcc"),
        ({"source": ""}, "empty"),
    ],
)
def test_config_validation(changes, fragment):
    reason = CameraConfig(**changes).validate()
    assert reason is not None and fragment in reason
    with pytest.raises(ValueError):
        CameraStream(CameraConfig(**changes), on_frame=lambda f: None)


def test_default_config_is_valid():
    assert CameraConfig().validate() is None
    assert CameraConfig(width=0, height=0).validate() is None


def test_frame_pacer_counts_missed_ticks():
    pacer = FramePacer(10.0)  # ticks every 0.1 s
    assert pacer.ready(0.0) and pacer.accept(0.0) == 0
    assert pacer.wait_time(0.02) == pytest.approx(0.08)
    assert not pacer.ready(0.03)  # a faster device is decimated
    assert pacer.ready(0.06)  # within half a period of the tick
    assert pacer.accept(0.1) == 0
    assert pacer.accept(0.2) == 0
    assert pacer.accept(0.45) == 1  # tick 0.3 passed without a frame; this one serves tick 0.4 (late)
    assert pacer.accept(0.5) == 0
    assert pacer.accept(0.85) == 2  # ticks 0.6 and 0.7 missed; this one serves tick 0.8
    pacer.reset()  # after a reconnect the outage is not counted as dropped frames
    assert pacer.accept(10.0) == 0 and pacer.accept(10.1) == 0
    pacer.set_fps(20.0)
    assert pacer.accept(11.0) == 0 and pacer.accept(11.05) == 0 and pacer.accept(11.2) == 2


def test_pinhole_and_scaling():
    intr = pinhole_intrinsics(640, 480, 90.0)
    assert intr.k == pytest.approx([320.0, 0, 320.0, 0, 320.0, 240.0, 0, 0, 1])
    assert intr.p == pytest.approx([320.0, 0, 320.0, 0, 0, 320.0, 240.0, 0, 0, 0, 1, 0])
    assert intr.d == [0.0] * 5 and intr.distortion_model == "plumb_bob"
    half = intr.scaled(320, 240)
    assert half.k == pytest.approx([160.0, 0, 160.0, 0, 160.0, 120.0, 0, 0, 1])
    assert half.p[:8] == pytest.approx([160.0, 0, 160.0, 0, 0, 160.0, 120.0, 0])
    with pytest.raises(ValueError):
        pinhole_intrinsics(640, 480, 180.0)


def test_load_calibration(tmp_path: Path):
    path = tmp_path / "cam.yaml"
    path.write_text(
        "image_width: 640\nimage_height: 480\ncamera_name: front\n"
        "camera_matrix: {rows: 3, cols: 3, data: [500.0, 0.0, 319.5, 0.0, 501.0, 239.5, 0.0, 0.0, 1.0]}\n"
        "distortion_model: plumb_bob\n"
        "distortion_coefficients: {rows: 1, cols: 5, data: [0.1, -0.2, 0.0, 0.0, 0.05]}\n"
        "rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}\n"
        "projection_matrix: {rows: 3, cols: 4, data: [500.0, 0, 319.5, 0, 0, 501.0, 239.5, 0, 0, 0, 1, 0]}\n"
    )
    intr = load_calibration(path)
    assert (intr.width, intr.height) == (640, 480)
    assert intr.k[0] == 500.0 and intr.k[4] == 501.0 and intr.d == [0.1, -0.2, 0.0, 0.0, 0.05]
    assert intr.scaled(320, 240).k[0] == pytest.approx(250.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: 640\n")
    with pytest.raises(ValueError):
        load_calibration(bad)


def test_to_rgb_channel_order_and_resize():
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 200  # red in BGR
    rgb = to_rgb(bgr)
    assert rgb.shape == (4, 6, 3) and rgb[0, 0].tolist() == [200, 0, 0]
    assert to_rgb(np.full((4, 6), 7, np.uint8))[0, 0].tolist() == [7, 7, 7]
    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[..., 0] = 9
    assert to_rgb(bgra)[0, 0].tolist() == [0, 0, 9]
    big = to_rgb(bgr, 12, 8)
    assert big.shape == (8, 12, 3) and big.flags["C_CONTIGUOUS"] and big[3, 3].tolist() == [200, 0, 0]
    assert to_rgb(bgr, 3, 2).shape == (2, 3, 3)


# -- capture from a real video file --
def test_file_source_loops_resizes_and_converts_to_rgb(video: Path, streams):
    col = Collector()
    stream = streams(CameraConfig(source=str(video), fps=200.0, width=80, height=60, loop=True), col)
    assert wait_for(lambda: col.count() >= 2 * N_FRAMES + 2, timeout=30)
    frames = list(col.frames)
    assert all(f.image.shape == (60, 80, 3) and f.image.dtype == np.uint8 for f in frames)
    top_left, top_right = frames[0].image[5:20, 5:30].mean((0, 1)), frames[0].image[5:20, 50:75].mean((0, 1))
    assert top_left[0] > 180 and top_left[1] < 60 and top_left[2] < 60  # red stays red: BGR -> RGB
    assert top_right[2] > 180 and top_right[0] < 60
    indices = [frame_index(f.image) for f in frames]
    assert indices[: N_FRAMES + 1] == [*range(N_FRAMES), 0]  # plays in order, then loops
    stamps = [f.stamp_ns for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert [f.seq for f in frames] == list(range(1, len(frames) + 1))
    stats = stream.stats()
    assert stats.loops >= 1 and stats.source_size == (SRC_W, SRC_H) and stats.state is CameraState.STREAMING
    assert stats.frames >= len(frames) and stats.read_errors == 0


def test_file_without_loop_ends(video: Path, streams):
    col = Collector()
    stream = streams(CameraConfig(source=str(video), fps=200.0, width=0, height=0, loop=False), col)
    assert wait_for(lambda: col.seen(CameraState.ENDED), timeout=30)
    assert [frame_index(f.image) for f in col.frames] == list(range(N_FRAMES))
    assert col.frames[0].image.shape == (SRC_H, SRC_W, 3)  # 0 x 0 keeps the source size
    assert stream.stats().state is CameraState.ENDED and stream.running
    stream.update(loop=True)  # switching loop on resumes playback
    assert wait_for(lambda: col.count() > N_FRAMES, timeout=30)


def test_missing_file_is_retried_until_it_appears(tmp_path: Path, streams):
    path = tmp_path / "later.avi"
    col = Collector()
    stream = streams(
        CameraConfig(source=str(path), fps=100.0, reconnect_period=0.02, max_reconnect_period=0.05), col
    )
    assert wait_for(lambda: stream.stats().open_failures >= 3, timeout=30)
    assert col.seen(CameraState.DISCONNECTED, "not found") and col.count() == 0 and stream.running
    write_video(tmp_path / "tmp.avi").rename(path)
    assert wait_for(lambda: col.count() >= 3, timeout=30)
    assert col.seen(CameraState.STREAMING)


def test_undecodable_file_is_reported_not_raised(tmp_path: Path, streams):
    path = tmp_path / "garbage.avi"
    path.write_bytes(b"\x00not a video" * 100)
    col = Collector()
    stream = streams(CameraConfig(source=str(path), reconnect_period=0.02, max_reconnect_period=0.05), col)
    assert wait_for(lambda: col.seen(CameraState.DISCONNECTED), timeout=30)
    assert stream.running and col.count() == 0


@pytest.mark.parametrize("source", ["/dev/video97", "97"])
def test_missing_device_is_reported_and_retried(source: str, streams):
    col = Collector()
    stream = streams(CameraConfig(source=source, reconnect_period=0.02, max_reconnect_period=0.04), col)
    assert wait_for(lambda: stream.stats().open_failures >= 2, timeout=30)
    assert col.seen(CameraState.DISCONNECTED, "97") and stream.running and col.count() == 0


class UnpluggedCapture:
    """A real cv2.VideoCapture of a video file standing in for a USB camera (none exists here): it loops like
    a live device and, for the first instance, stops delivering frames after ``fail_after`` grabs as a
    pulled-out camera does."""

    instances = 0

    def __init__(self, path: str, fail_after: int | None) -> None:
        self.cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        self.grabs = 0
        self.fail_after = fail_after
        self.settings: dict[int, float] = {}

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV API)
        return self.cap.isOpened()

    def grab(self) -> bool:
        self.grabs += 1
        if self.fail_after is not None and self.grabs > self.fail_after:
            return False
        if not self.cap.grab():
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            return self.cap.grab()
        return True

    def retrieve(self):
        return self.cap.retrieve()

    def set(self, prop: int, value: float) -> bool:
        self.settings[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.cap.get(prop)

    def release(self) -> None:
        self.cap.release()


def test_device_error_reconnects_with_backoff(video: Path, streams):
    created: list[UnpluggedCapture] = []

    def factory(kind: SourceKind, target):
        assert kind is SourceKind.DEVICE and target == 0
        cap = UnpluggedCapture(str(video), fail_after=4 if not created else None)
        created.append(cap)
        return cap

    col = Collector()
    config = CameraConfig(source="0", fps=100.0, reconnect_period=0.02, max_reconnect_period=0.05)
    stream = streams(config, col, capture_factory=factory)
    assert wait_for(lambda: stream.stats().reconnects >= 1 and col.count() >= 8, timeout=30)
    stats = stream.stats()
    assert stats.read_errors >= config.max_read_errors
    assert col.seen(CameraState.DISCONNECTED, "stopped delivering frames")
    assert len(created) == 2 and stats.state is CameraState.STREAMING
    # the device was asked for the configured format, size and rate
    settings = created[0].settings
    assert settings[cv2.CAP_PROP_FRAME_WIDTH] == 640 and settings[cv2.CAP_PROP_FRAME_HEIGHT] == 480
    assert settings[cv2.CAP_PROP_FPS] == 100.0
    assert settings[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")


def test_failing_consumer_does_not_stop_the_stream(video: Path, streams):
    calls = []

    def on_frame(frame: Frame) -> None:
        calls.append(frame.seq)
        raise RuntimeError("consumer bug")

    stream = CameraStream(CameraConfig(source=str(video), fps=200.0), on_frame)
    try:
        stream.start()
        assert wait_for(lambda: len(calls) >= 3, timeout=30)
        assert stream.running
    finally:
        stream.stop()


def test_live_update(video: Path, streams):
    col = Collector()
    stream = streams(CameraConfig(source=str(video), fps=50.0), col)
    stream.update(fps=150.0, reconnect_period=0.5)
    assert stream.config.fps == 150.0
    with pytest.raises(ValueError, match="cannot change"):
        stream.update(width=10)
    with pytest.raises(ValueError, match="fps"):
        stream.update(fps=-1.0)
    assert wait_for(lambda: col.count() >= 3, timeout=30)


class ScriptedDevice:
    """A stand-in for a USB camera (none exists here): ``frames(k)`` gives the k-th image the device delivers
    (any array: wrong encodings included); no frame is converted or checked by it."""

    def __init__(self, frames) -> None:  # type: ignore[no-untyped-def]
        self.frames = frames
        self.k = 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV API)
        return True

    def grab(self) -> bool:
        self.k += 1
        threading.Event().wait(0.002)  # a device paces its frames
        return True

    def retrieve(self):
        return True, self.frames(self.k)

    def set(self, prop: int, value: float) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def _image(level: int) -> np.ndarray:
    return np.full((SRC_H, SRC_W, 3), level % 256, np.uint8)


def test_frame_in_an_unsupported_format_reopened_the_device(streams):
    """Regression (issue 19, camera faults): one frame in a wrong encoding (raw YUYV with 2 channels, float64,
    a flat buffer, empty) raised out of to_rgb into the capture loop's catch-all: the device was closed and
    reopened (DISCONNECTED, backoff) for one bad frame. It is skipped and counted; the stream goes on."""
    bad = [
        np.zeros((SRC_H, SRC_W, 2), np.uint8),
        np.zeros((SRC_H, SRC_W, 3), np.float64),
        np.zeros(SRC_H * SRC_W * 3, np.uint8),
        np.zeros((0, SRC_W, 3), np.uint8),
    ]
    created = []

    def factory(kind, target):  # type: ignore[no-untyped-def]
        dev = ScriptedDevice(lambda k: bad[k % 4] if k % 5 == 0 else _image(k))
        created.append(dev)
        return dev

    col = Collector()
    config = CameraConfig(source="0", fps=1000.0, width=0, height=0, reconnect_period=0.02)
    stream = streams(config, col, capture_factory=factory)
    assert wait_for(lambda: stream.stats().bad_frames >= 8 and col.count() >= 30, timeout=30)
    stats = stream.stats()
    assert len(created) == 1 and stats.reconnects == 0 and stats.state is CameraState.STREAMING
    assert not col.seen(CameraState.DISCONNECTED)
    assert stats.bad_frame_reason
    assert all(f.image.shape == (SRC_H, SRC_W, 3) and f.image.dtype == np.uint8 for f in col.frames[:30])


def test_device_with_a_wrong_encoding_only_is_reopened_and_reported(streams):
    """Only bad frames (a format the node cannot convert): after max_read_errors in a row the device is
    reopened (the format negotiated again) and the reason is reported; the stream never raises."""
    created = []

    def factory(kind, target):  # type: ignore[no-untyped-def]
        dev = ScriptedDevice(lambda k: np.zeros((SRC_H, SRC_W, 2), np.uint8))
        created.append(dev)
        return dev

    col = Collector()
    config = CameraConfig(source="0", fps=1000.0, reconnect_period=0.02, max_reconnect_period=0.04)
    stream = streams(config, col, capture_factory=factory)
    assert wait_for(lambda: len(created) >= 3, timeout=30)
    assert col.seen(CameraState.DISCONNECTED, "cannot be converted") and col.count() == 0 and stream.running
    assert "unsupported layout" in stream.stats().bad_frame_reason


def test_frozen_device_is_reported_and_still_served(streams):
    """A device (or driver) that repeats one identical image: frozen_s counts how long once frozen_timeout
    passed; frames are still delivered; frozen_s returns to 0 when the images change again."""
    state = {"frozen": False}

    def frames(k: int) -> np.ndarray:
        return _image(7) if state["frozen"] else _image(k)

    col = Collector()
    config = CameraConfig(source="0", fps=1000.0, frozen_timeout=0.2)
    stream = streams(config, col, capture_factory=lambda kind, target: ScriptedDevice(frames))
    assert wait_for(lambda: col.count() >= 20, timeout=30)
    assert stream.stats().frozen_s == 0.0
    state["frozen"] = True
    assert wait_for(lambda: stream.stats().frozen_s > 0.0, timeout=30)
    n = col.count()
    assert wait_for(lambda: col.count() > n + 10, timeout=30)  # still served
    state["frozen"] = False
    assert wait_for(lambda: stream.stats().frozen_s == 0.0, timeout=30)
    assert stream.stats().state is CameraState.STREAMING


def test_video_file_is_never_frozen(tmp_path: Path, streams):
    """A still video file is what it is: the frozen check is for devices and streams."""
    path = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (SRC_W, SRC_H))
    for _ in range(4):
        writer.write(np.full((SRC_H, SRC_W, 3), 90, np.uint8))
    writer.release()
    col = Collector()
    stream = streams(CameraConfig(source=str(path), fps=500.0, frozen_timeout=0.01), col)
    assert wait_for(lambda: col.count() >= 40, timeout=30)
    assert stream.stats().frozen_s == 0.0
