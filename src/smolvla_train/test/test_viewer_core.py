"""The viewer core (no ROS): what it logs, read back from a real .rrd through Rerun's own reader.

References independent of the code under test: the SO-101 TCP at q = 0 is at (0.391, 0, 0.227) m
(so101_new_calib's gripperframe site, see so_arm_description.kinematics), base_link's origin at (0, 0, 0);
image pixels are compared after a lossless (raw) log; scalars are the values given.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest

rr = pytest.importorskip("rerun")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
from viewer_testing import read_rrd  # noqa: E402

from smolvla_train.viewer.core import ViewerLog  # noqa: E402
from smolvla_train.viewer.serve import new_recording  # noqa: E402

NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
TCP_ZERO = np.array([0.391, 0.0, 0.227])


def _traj(actions: np.ndarray, names: list[str] = NAMES) -> NS:
    return NS(joint_names=names, points=[NS(positions=list(map(float, a))) for a in actions])


def _record(tmp_path, fn, jpeg_quality: int = 0):  # type: ignore[no-untyped-def]
    path = tmp_path / "t.rrd"
    rec = new_recording("test", ["top"], save=path)
    log = ViewerLog(rec, jpeg_quality=jpeg_quality)
    fn(log)
    rec.flush()
    rec.disconnect()
    return read_rrd(path), log


def test_arm_chunk_queue_status_and_images_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)
    chunk = np.zeros((4, 6))
    chunk[:, 0] = [0.0, 0.1, 0.2, 0.3]  # pan only: the TCP turns about z at its radius

    def run(log: ViewerLog) -> None:
        log.set_time(0.0)
        # joint names in another order than the contract: the core reorders them
        log.joint_state(NS(name=NAMES[::-1], position=[0.0] * 6))
        log.set_time(0.5)
        log.action_chunk(
            NS(start_timestep=7, inference_ms=12.5, trajectory=_traj(chunk[:, ::-1], NAMES[::-1]))
        )
        log.queue_ahead(_traj(chunk[2:]))
        log.queue_status(NS(threshold=0.7, last_latency_ms=33.0, idle_ticks=4, queue_size=21))
        log.camera_image(
            "top", NS(encoding="rgb8", height=8, width=6, step=18, is_bigendian=0, data=img.tobytes())
        )
        log.camera_image(
            "top", NS(encoding="bgr8", height=8, width=6, step=18, is_bigendian=0, data=img.tobytes())
        )

    data, log = _record(tmp_path, run)
    strip = np.array(data["/world/arm"][0]["LineStrips3D:strips"][0])
    assert np.allclose(strip[0], 0.0)  # base_link origin
    assert np.allclose(strip[-1], TCP_ZERO, atol=1e-3)
    path = np.array(data["/world/chunk"][0]["LineStrips3D:strips"][0])
    r = np.hypot(TCP_ZERO[0] - 0.038835, 0.0)  # radius about the pan axis (x offset 0.038835 m)
    for k, angle in enumerate(chunk[:, 0]):
        # the pan axis is -z (so_arm_description): +angle turns the TCP towards -y
        expect = [0.038835 + r * np.cos(angle), -r * np.sin(angle), TCP_ZERO[2]]
        assert np.allclose(path[k], expect, atol=1e-3), (k, path[k], expect)
    queue = np.array(data["/world/queue"][0]["LineStrips3D:strips"][0])
    assert np.allclose(queue, path[2:])
    assert data["/plots/threshold_g"][0]["Scalars:scalars"] == pytest.approx([0.7])
    assert data["/plots/latency_ms"][0]["Scalars:scalars"] == pytest.approx([33.0])
    assert data["/plots/idle_ticks"][0]["Scalars:scalars"] == pytest.approx([4.0])
    assert data["/plots/inference_ms"][0]["Scalars:scalars"] == pytest.approx([12.5])
    images = data["/cameras/top"]
    assert len(images) == 2
    buf = np.frombuffer(bytes(images[0]["Image:buffer"][0]), dtype=np.uint8).reshape(8, 6, 3)
    assert np.array_equal(buf, img)
    bgr = np.frombuffer(bytes(images[1]["Image:buffer"][0]), dtype=np.uint8).reshape(8, 6, 3)
    assert np.array_equal(bgr, img[..., ::-1])  # bgr8 shown as RGB
    assert not log.stats.rejected


def test_bad_messages_are_counted_not_raised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def run(log: ViewerLog) -> None:
        log.set_time(0.0)
        log.joint_state(NS(name=NAMES[:3], position=[0.0] * 3))  # joints missing
        log.joint_state(NS(name=NAMES, position=[float("nan")] * 6))
        log.action_chunk(
            NS(start_timestep=0, inference_ms=1.0, trajectory=_traj(np.zeros((3, 2)), NAMES[:2]))
        )
        log.camera_image(
            "top", NS(encoding="yuv422", height=2, width=2, step=4, is_bigendian=0, data=b"\0" * 8)
        )
        log.camera_image(
            "top", NS(encoding="rgb8", height=4, width=4, step=12, is_bigendian=0, data=b"\0" * 5)
        )

    data, log = _record(tmp_path, run)
    assert "/world/arm" not in data and "/world/chunk" not in data and "/cameras/top" not in data
    assert log.stats.rejected == {"arm": 2, "world/chunk": 1, "camera top": 2}


def test_jpeg_images_decode_close_to_the_original(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from PIL import Image

    img = np.zeros((32, 48, 3), dtype=np.uint8)
    img[:, :24] = (200, 30, 30)
    img[:, 24:] = (30, 30, 200)

    def run(log: ViewerLog) -> None:
        log.set_time(0.0)
        log.image("top", img)

    data, _ = _record(tmp_path, run, jpeg_quality=90)
    row = data["/cameras/top"][0]
    assert row["EncodedImage:media_type"] == ["image/jpeg"]
    decoded = np.asarray(Image.open(io.BytesIO(bytes(row["EncodedImage:blob"][0]))).convert("RGB"))
    assert decoded.shape == img.shape
    assert np.abs(decoded.astype(int) - img.astype(int)).mean() < 6


def _row(rows: list[dict], key: str) -> list:  # type: ignore[type-arg]
    return next(r[key] for r in rows if key in r)


def test_camera_frames_and_frustums_in_the_3d_view(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """world/cameras/<name>: the optical frame of the camera's images. Hand-known: the simulator's overhead
    camera 0.62 m above x = 0.21 m looking down (optical z = -z, x = -y, y = -x of base_link); a description
    that puts it elsewhere moves it; camera_info's K becomes the frustum (logged once while unchanged)."""
    from so_arm_description.cameras import mounts_with
    from so_arm_description.robot_model import build_urdf

    info = NS(k=[50.0, 0.0, 16.0, 0.0, 50.0, 12.0, 0.0, 0.0, 1.0], width=32, height=24)

    def run(log: ViewerLog) -> None:
        log.set_time(0.0)
        log.arm(np.zeros(6))
        log.camera_info("wrist", info)
        log.camera_info("wrist", info)
        log.camera_info("top", NS(k=[float("nan")] * 9, width=32, height=24))
        log.set_time(1.0)
        log.robot_description(build_urdf("so101", cameras=mounts_with("so101", "0.3 0.1 0.5 0 1.5707963 0")))
        log.arm(np.zeros(6))

    data, log = _record(tmp_path, run)
    top = [r for r in data["/world/cameras/top"] if "Transform3D:translation" in r]
    assert len(top) == 2
    np.testing.assert_allclose(top[0]["Transform3D:translation"][0], [0.21, 0.0, 0.62], atol=1e-6)
    rot = np.array(top[0]["Transform3D:mat3x3"][0]).reshape(3, 3).T  # stored column-major
    np.testing.assert_allclose(rot, [[0, -1, 0], [-1, 0, 0], [0, 0, -1]], atol=1e-6)
    np.testing.assert_allclose(top[1]["Transform3D:translation"][0], [0.3, 0.1, 0.5], atol=1e-6)
    wrist = data["/world/cameras/wrist"]
    pinholes = [r for r in wrist if "Pinhole:image_from_camera" in r]
    assert len(pinholes) == 1
    k = np.array(pinholes[0]["Pinhole:image_from_camera"][0]).reshape(3, 3).T
    np.testing.assert_allclose(k, np.array(info.k).reshape(3, 3))
    assert _row(wrist, "Pinhole:resolution") == [[32.0, 24.0]]
    assert log.stats.rejected == {"camera_info top": 1}
