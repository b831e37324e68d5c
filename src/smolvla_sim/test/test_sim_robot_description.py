"""sim_node publishes the simulated arm's URDF on /robot_description (transient local), with the joint limits
its MuJoCo model uses: a late subscriber gets it, the SO-100 is an SO-100 (issue 10, defect 2)."""

from __future__ import annotations

import threading

import pytest

import ros_harness
from ros_harness import wait_for

pytestmark = pytest.mark.slow
rclpy = pytest.importorskip("rclpy")


@pytest.mark.parametrize("robot", ["so100", "so101"])
def test_sim_publishes_its_robot_description(robot, run_node, ros_context, ros_executor):  # type: ignore[no-untyped-def]
    from std_msgs.msg import String

    from smolvla_common import robot_description
    from smolvla_sim.model import build_model
    from so_arm_description.robot_model import build_urdf, limits_from_urdf, robot_from_urdf
    from so_arm_description.robot_spec import JOINT_NAMES

    node = run_node(
        "smolvla_sim",
        "sim_node",
        params_file=str(ros_harness.REPO_ROOT / "config" / "sim_node.yaml"),
        parameters={"robot": robot, "cameras": ["top"], "image_width": 64, "image_height": 48},
    )
    assert node.wait_for_output("simulating", timeout=60.0), node.output()
    got: list[str] = []
    lock = threading.Lock()

    def on_msg(msg: String) -> None:
        with lock:
            got.append(msg.data)

    probe = rclpy.create_node("late_subscriber", context=ros_context)  # joins after the publication
    probe.create_subscription(String, "/robot_description", on_msg, robot_description.qos())
    ros_executor.add_node(probe)
    assert wait_for(lambda: bool(got), 30), node.output()
    text = got[-1]
    assert robot_from_urdf(text) == robot
    limits = limits_from_urdf(text)
    assert limits == limits_from_urdf(build_urdf(robot))
    model = build_model(robot)
    for name in JOINT_NAMES:
        assert tuple(model.joint(name).range) == pytest.approx(limits[name], abs=1e-6)
