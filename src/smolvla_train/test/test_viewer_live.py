"""The ``viewer`` node on the real simulated loop (launch/sim_demo.launch.py viewer:=true: MuJoCo arm and
cameras, policy server with the scripted expert, action queue, viewer; real rclpy/DDS), seen in a real
headless Chromium, and its recording read back through Rerun's own reader.

- the browser shows the arm, a camera image and a chunk path (pixels of their colours in the screenshot);
  with ``SMOLVLA_WRITE_DOC_IMAGES=1`` the screenshot is written to ``docs/images/viewer_sim.png`` (the picture
  in the README and docs/viewer.md is the one this test took);
- g changed on the running queue (SetParameters on /action_queue, as ``ros2 param set`` does) shows in the
  recorded ``plots/threshold_g`` series: the default 0.7 first, then 0.5;
- the recording holds the arm from forward kinematics, both cameras and the predicted chunks.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # loaded machine: software-rendered browser
pytest.importorskip("rerun")
rclpy = pytest.importorskip("rclpy")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
import browser_testing  # noqa: E402
from viewer_testing import read_rrd  # noqa: E402

import mini_launch  # noqa: E402
from ros_harness import REPO_ROOT, wait_for  # noqa: E402
from smolvla_train.viewer.core import ARM_COLOR, CHUNK_COLOR  # noqa: E402

DOC_IMAGE = REPO_ROOT / "docs" / "images" / "viewer_sim.png"


def _loopback_up() -> None:
    """Inside ``unshare -n`` the loopback interface starts down: the web viewer needs 127.0.0.1."""
    ip = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True, check=False)
    out = ip.stdout
    flags = out.split("<", 1)[-1].split(">", 1)[0].split(",")
    if "UP" not in flags:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False, capture_output=True)


def _color_pixels(png: bytes, color: tuple[int, int, int], tol: int = 30) -> int:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(img - np.array(color)).max(axis=-1) <= tol).sum())


def _camera_panel_drawn(png: bytes) -> bool:
    """The camera panels (top right of the layout) show a rendered scene, not an empty or loading panel:
    many distinct colours there (a panel still loading is a flat background with three dots)."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    h, w, _ = img.shape
    panel = img[int(0.08 * h) : int(0.3 * h), int(0.52 * w) : int(0.98 * w)]
    colours = np.unique((panel // 8).reshape(-1, 3), axis=0)
    return len(colours) > 100


def _threshold_values(data: dict) -> list[float]:
    return [round(float(r["Scalars:scalars"][0]), 3) for r in data["/plots/threshold_g"]]


def test_viewer_on_the_sim_loop_in_a_browser(tmp_path: Path, ros_context: object) -> None:
    if not browser_testing.available():
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    _loopback_up()
    rrd = tmp_path / "loop.rrd"
    plan = mini_launch.describe(
        REPO_ROOT / "launch" / "sim_demo.launch.py",
        {
            "backend": "smolvla_sim.expert_backend:make_backend",
            "viewer": "true",
            "image_size": "160",
            # one episode lasts long enough (~40 s) for the software-rendered browser to show it moving
            "real_time_factor": "0.2",
            "use_sim_time": "true",
        },
    )
    viewer = next(n for n in plan.nodes if n.executable == "viewer")
    viewer.parameters.update({"web_port": 0, "grpc_port": 0, "save": str(rrd), "image_rate": 1.0})
    procs = mini_launch.start_nodes(plan)
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import SingleThreadedExecutor

    from smolvla_msgs.msg import QueueStatus

    node = rclpy.create_node("viewer_test", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    status: dict[str, object] = {}
    node.create_subscription(QueueStatus, "/smolvla/queue_status", lambda m: status.update(last=m), 10)

    def spin_until(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if pred():
                return True
        return False

    try:
        vproc = next(p for p in procs if p.executable == "viewer")
        assert wait_for(lambda: "(cameras" in vproc.output() or not vproc.alive(), 60), vproc.output()
        assert vproc.alive(), vproc.output()
        url = re.search(r"open (http://127\.0\.0\.1:\d+/\?url=[^\s;]+)", vproc.output()).group(1)  # type: ignore[union-attr]
        assert spin_until(lambda: "last" in status and status["last"].chunks_received >= 3, 120), "no chunks"
        # g on the running queue, the way `ros2 param set /action_queue chunk_threshold 0.5` does it
        client = node.create_client(SetParameters, "/action_queue/set_parameters")
        assert client.wait_for_service(timeout_sec=10)
        req = SetParameters.Request(
            parameters=[
                Parameter(
                    name="chunk_threshold",
                    value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.5),
                )
            ]
        )
        fut = client.call_async(req)
        assert spin_until(fut.done, 10) and fut.result().results[0].successful
        assert spin_until(lambda: abs(status["last"].threshold - 0.5) < 1e-6, 10)
        with browser_testing.Browser(1440, 900) as browser:
            browser.open(url)
            shot = b""

            from std_srvs.srv import Trigger

            services = {
                n: node.create_client(Trigger, f"/{n}") for n in ("action_queue/stop", "sim_node/reset")
            }
            services["action_queue/start"] = node.create_client(Trigger, "/action_queue/start")
            last_reset = [time.monotonic()]

            def keep_moving() -> None:
                """A new episode every 30 s (stop the queue, reset the scene, start): the expert moves the arm
                again, so the latest chunk is a path, not the point of an arm holding still."""
                if time.monotonic() - last_reset[0] < 30.0:
                    return
                last_reset[0] = time.monotonic()
                for name in ("action_queue/stop", "sim_node/reset", "action_queue/start"):
                    fut = services[name].call_async(Trigger.Request())
                    spin_until(fut.done, 10)

            def shows_everything() -> bool:
                nonlocal shot
                keep_moving()
                executor.spin_once(timeout_sec=0.01)
                try:
                    shot = browser.screenshot()
                except OSError:  # a browser busy rendering on a loaded machine: look again
                    return False
                return (
                    _color_pixels(shot, CHUNK_COLOR) > 400
                    and _color_pixels(shot, ARM_COLOR, 12) > 500
                    and _camera_panel_drawn(shot)
                )

            # polls the page until the viewer has loaded and drawn the streamed data (condition, no timing)
            seen = wait_for(shows_everything, timeout=420, interval=3.0)
            (tmp_path / "viewer.png").write_bytes(shot)
            assert seen, (
                f"the viewer did not show the arm and a chunk path (screenshot {tmp_path / 'viewer.png'})"
            )
            if os.environ.get("SMOLVLA_WRITE_DOC_IMAGES") == "1":
                DOC_IMAGE.parent.mkdir(parents=True, exist_ok=True)
                DOC_IMAGE.write_bytes(shot)
        assert all(p.alive() for p in procs), [p.output()[-2000:] for p in procs if not p.alive()]
    finally:
        executor.shutdown()
        node.destroy_node()
        mini_launch.stop_all(procs, send_sigint=True)
    assert all(p.proc.returncode == 0 for p in procs), [(p.label, p.proc.returncode) for p in procs]
    data = read_rrd(rrd)
    assert len(data["/world/arm"]) > 10 and len(data["/world/chunk"]) >= 3
    assert len(data["/world/queue"]) >= 1  # the fused queue ahead (/smolvla/queue_ahead)
    assert len(data["/cameras/top"]) >= 1 and len(data["/cameras/wrist"]) >= 1
    values = _threshold_values(data)
    first_half = values.index(0.5)
    assert set(values[:first_half]) == {0.7} and values[-1] == 0.5
    # the camera image in the recording is a real rendering (not blank)
    from PIL import Image

    blob = bytes(data["/cameras/top"][-1]["EncodedImage:blob"][0])
    img = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    assert img.shape == (160, 160, 3) and img.std() > 5
