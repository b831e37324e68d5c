"""The driver's /robot_description places the cameras where the user says (``top_camera_pose`` /
``wrist_camera_pose``, the launch files' arguments), so that the viewer and bags see a real setup's camera
frames; a malformed pose is a clear start-up error."""

from __future__ import annotations

import math
import threading

import pytest

from ros_harness import wait_for

pytestmark = pytest.mark.slow
rclpy = pytest.importorskip("rclpy")


def test_driver_publishes_the_camera_poses_it_is_given(run_node, ros_context, ros_executor):
    from smolvla_common import robot_description
    from so_arm_description.robot_model import camera_mounts_from_urdf

    node = run_node(
        "so_arm_driver",
        "so_arm_driver",
        parameters={"port": "emulated", "top_camera_pose": "0.3 -0.1 0.8 0 1.2 0.5"},
    )
    probe = rclpy.create_node("camera_pose_probe", context=ros_context)
    got: list[str] = []
    done = threading.Event()
    robot_description.subscribe(probe, lambda text: (got.append(text), done.set()))
    ros_executor.add_node(probe)
    assert wait_for(lambda: done.is_set() or not node.alive(), 90), node.output()
    mounts = camera_mounts_from_urdf(got[-1])
    top, wrist = mounts["top"], mounts["wrist"]
    # the hand-given numbers, in the frame the launch argument names
    assert top.parent == "base_link"
    assert top.xyz == pytest.approx((0.3, -0.1, 0.8), abs=1e-12)
    assert top.rpy == pytest.approx((0.0, 1.2, 0.5), abs=1e-12)
    # the wrist camera was not given: the simulator's mount on the gripper
    assert wrist.parent == "gripper_link" and not math.isclose(wrist.xyz[2], 0.8)


def test_malformed_camera_pose_is_a_clear_start_up_error(run_node):
    node = run_node(
        "so_arm_driver", "so_arm_driver", parameters={"port": "emulated", "top_camera_pose": "1 2 3"}
    )
    assert wait_for(lambda: not node.alive(), 60)
    out = node.output()
    assert node.proc.returncode == 1, out
    assert "top_camera_pose" in out and "expected 6 finite numbers" in out, out
    assert "Traceback" not in out
