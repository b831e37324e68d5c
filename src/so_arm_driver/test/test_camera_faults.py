"""Camera faults at the node (issue 19): camera_node keeps serving and reports a device that freezes, is
unplugged and plugged in again, or sends a stream it cannot decode.

There is no USB camera on the build machine, so only the device is faked: a FIFO that this test writes a live
YUV4MPEG2 stream into (the node opens it as a stream source with the real OpenCV/FFmpeg and publishes through
real rclpy/DDS). Unplug = the writer closes the FIFO (the node reads end-of-stream); replug = it opens it
again; frozen = it repeats one image; wrong encoding = it writes bytes that are no YUV4MPEG2 frames.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fake_camera import FifoCamera, H, W

from ros_harness import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the Probe of test_camera_node.py (importlib mode)
from test_camera_node import Probe, _diag_value  # noqa: E402

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402


def test_camera_node_reports_and_keeps_serving_through_device_faults(
    tmp_path: Path, ros_context, ros_executor, run_node
):
    cam = FifoCamera(tmp_path / "video0")
    node = run_node(
        "so_arm_driver",
        "camera_node",
        name="camera_faults",
        parameters={
            "name": "faulty",
            "source": str(cam.path),
            "fps": 10.0,  # the fake device sends ~30: decimated, no frame counted dropped on a loaded machine
            "width": W,
            "height": H,
            "reconnect_period": 0.1,
            "max_reconnect_period": 0.2,
            "frozen_timeout": 0.5,
            "diagnostics_period": 0.2,
        },
    )
    probe = Probe(ros_context, ros_executor, "faulty")
    diags = lambda: probe.snapshot("diagnostics")  # noqa: E731
    images = lambda: len(probe.snapshot("images"))  # noqa: E731

    def reported(level: int, text: str = "", since: int = 0) -> bool:
        return any(s.level == level and text in s.message for s in diags()[since:])

    def serving(since_images: int, since_diag: int) -> bool:
        """Frames published again and the last status says streaming, not frozen (a WARN for frames dropped
        by a loaded machine is still serving)."""
        d = diags()[since_diag:]
        return (
            images() > since_images + 5
            and bool(d)
            and d[-1].level in (DiagnosticStatus.OK, DiagnosticStatus.WARN)
            and _diag_value(d[-1], "state") == "streaming"
            and "frozen" not in d[-1].message
        )

    try:
        assert wait_for(lambda: serving(0, 0), timeout=90), node.output()

        # frozen: one image repeated -> WARN, frames still published
        cam.mode = "frozen"
        n, k = images(), len(diags())
        assert wait_for(lambda: reported(DiagnosticStatus.WARN, "frozen", k), timeout=60), node.output()
        assert wait_for(lambda: images() > n + 10, timeout=60)
        cam.mode = "live"
        n, k = images(), len(diags())
        assert wait_for(lambda: serving(n, k), timeout=60), node.output()

        # unplug: end of stream -> ERROR (disconnected), the node stays up; replug -> serving again
        cam.mode = "unplugged"
        k = len(diags())
        assert wait_for(lambda: reported(DiagnosticStatus.ERROR, "", k), timeout=60), node.output()
        assert node.alive()
        opens = cam.opens
        cam.mode = "live"
        assert wait_for(lambda: cam.opens > opens, timeout=60)
        n, k = images(), len(diags())
        assert wait_for(lambda: serving(n, k), timeout=60), node.output()

        # wrong encoding: bytes that are no frames -> reported, never a crash; good frames -> serving again
        cam.mode = "garbage"
        k = len(diags())
        assert wait_for(lambda: any(s.level != DiagnosticStatus.OK for s in diags()[k:]), timeout=60), (
            node.output()
        )
        assert node.alive()
        cam.mode = "live"
        n, k = images(), len(diags())
        assert wait_for(lambda: serving(n, k), timeout=90), node.output()
        out = node.output()
        assert "frozen" in out and ("stopped delivering frames" in out or "cannot" in out)
        assert node.stop() == 0, node.output()
    finally:
        cam.close()
