"""The ``viewer`` node (installed executable, real rclpy/DDS) never dies on bad input: malformed images, joint
states and chunks are skipped, the good messages around them are logged, and Ctrl-C ends it with exit 0 and a
complete .rrd (read back through Rerun's reader)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("rerun")
rclpy = pytest.importorskip("rclpy")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
from viewer_testing import read_rrd  # noqa: E402

NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def test_viewer_node_skips_bad_messages(tmp_path: Path, ros_context, run_node) -> None:  # type: ignore[no-untyped-def]
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from smolvla_msgs.msg import ActionChunk

    rrd = tmp_path / "bad.rrd"
    # topics of their own: a graph of another test on the same domain must not add messages
    ns = "/viewer_bad_input"
    remap = {t: ns + t for t in ("/joint_states", "/cameras/top/image_raw", "/smolvla/predicted_chunk")}
    viewer = run_node(
        "smolvla_train",
        "viewer",
        parameters={"serve": False, "save": str(rrd), "cameras": ["top"], "image_rate": 60.0},
        remappings=remap,
    )
    assert viewer.wait_for_output("(cameras", 60), viewer.output()
    node = rclpy.create_node("bad_input", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    js = node.create_publisher(JointState, remap["/joint_states"], 10)
    img = node.create_publisher(Image, remap["/cameras/top/image_raw"], qos_profile_sensor_data)
    chunk = node.create_publisher(ActionChunk, remap["/smolvla/predicted_chunk"], 10)

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)

    deadline = time.monotonic() + 30
    while (
        js.get_subscription_count() == 0
        or chunk.get_subscription_count() == 0
        or img.get_subscription_count() == 0
    ):
        assert time.monotonic() < deadline, "the viewer did not subscribe"
        spin(0.1)
    try:
        js.publish(JointState(name=NAMES[:3], position=[0.0] * 3))  # joints missing
        js.publish(JointState(name=NAMES, position=[float("nan")] * 6))
        img.publish(Image(encoding="yuv422", height=2, width=2, step=4, data=b"\0" * 8))
        img.publish(Image(encoding="rgb8", height=4, width=4, step=12, data=b"\0" * 5))  # too short
        bad = JointTrajectory(joint_names=["a", "b"], points=[JointTrajectoryPoint(positions=[0.0, 1.0])])
        chunk.publish(ActionChunk(trajectory=bad))
        spin(1.0)
        js.publish(JointState(name=NAMES, position=[0.1] * 6))  # a good one after the bad ones
        good = JointTrajectory(joint_names=NAMES, points=[JointTrajectoryPoint(positions=[0.0] * 6)] * 3)
        chunk.publish(ActionChunk(trajectory=good))
        img.publish(Image(encoding="rgb8", height=4, width=4, step=12, data=bytes(range(48))))
        spin(2.0)
        assert viewer.alive(), viewer.output()
    finally:
        executor.shutdown()
        node.destroy_node()
    code = viewer.stop()
    log = Path(viewer.log_path).read_text(errors="replace")
    assert code == 0 and "Traceback" not in log, log
    data = read_rrd(rrd)
    assert len(data["/world/arm"]) == 1 and len(data["/world/chunk"]) == 1
    assert len(data["/cameras/top"]) == 1
