"""rviz:=true: the robot_state_publisher the sim and real launch files start gets a URDF with the cameras'
frames (TF for the images' ``<name>_camera_optical_frame``), and ``top_camera_pose`` moves a real setup's
overhead camera. robot_state_publisher and rviz2 are not installed here (not PyPI wheels): the
OpaqueFunction that declares the node is run against the launch stand-ins and its URDF is read back."""

from __future__ import annotations

import numpy as np
import pytest

import mini_launch
import ros_harness

LAUNCH_DIR = ros_harness.REPO_ROOT / "launch"


def robot_state_publisher_urdf(launch_file: str, **values: str) -> str:
    entities = mini_launch.load_launch_file(LAUNCH_DIR / launch_file).entities
    (opaque,) = [
        e
        for e in entities
        if isinstance(e, mini_launch.OpaqueFunction) and e.function.__name__ == "_robot_state_publisher"
    ]
    configs = {"rviz": "true", "robot": "so101", "top_camera_pose": "", "wrist_camera_pose": "", **values}
    context = mini_launch.LaunchContext(configs, {})
    with mini_launch.stub_launch_api():
        (node,) = opaque.function(context)
    assert node.executable == "robot_state_publisher"
    return node.parameters[0]["robot_description"]


@pytest.mark.parametrize("launch_file", ["sim_demo.launch.py", "real_arm.launch.py"])
def test_robot_state_publisher_gets_the_camera_frames(launch_file: str) -> None:
    from so_arm_description.cameras import camera_frames
    from so_arm_description.robot_model import urdf_frames
    from so_arm_description.robot_spec import JOINT_NAMES

    declared = {
        e.name
        for e in mini_launch.load_launch_file(LAUNCH_DIR / launch_file).entities
        if isinstance(e, mini_launch.DeclareLaunchArgument)
    }
    assert {"rviz", "top_camera_pose", "wrist_camera_pose"} <= declared
    urdf = robot_state_publisher_urdf(launch_file)
    q = np.array([0.3, -0.2, 0.4, 0.5, -0.7, 0.2])
    tf = urdf_frames(urdf, dict(zip(JOINT_NAMES, q)))
    for frame, pose in camera_frames(q).items():
        np.testing.assert_allclose(tf[frame], pose, atol=1e-12, err_msg=frame)
    # a real setup's overhead camera: 0.5 m above x = 0.3, y = -0.1, looking down
    moved = urdf_frames(robot_state_publisher_urdf(launch_file, top_camera_pose="0.3 -0.1 0.5 0 1.5707963 0"))
    optical = moved["top_camera_optical_frame"]
    np.testing.assert_allclose(optical[:3, 3], [0.3, -0.1, 0.5], atol=1e-12)
    np.testing.assert_allclose(optical[:3, 2], [0.0, 0.0, -1.0], atol=1e-6)  # optical z (forward) = down


def test_a_malformed_camera_pose_fails_the_launch() -> None:
    with pytest.raises(ValueError, match="x y z roll pitch yaw"):
        robot_state_publisher_urdf("sim_demo.launch.py", top_camera_pose="0.3 0 0.5")


def test_without_rviz_no_robot_state_publisher() -> None:
    entities = mini_launch.load_launch_file(LAUNCH_DIR / "sim_demo.launch.py").entities
    (opaque,) = [
        e
        for e in entities
        if isinstance(e, mini_launch.OpaqueFunction) and e.function.__name__ == "_robot_state_publisher"
    ]
    context = mini_launch.LaunchContext({"rviz": "false", "robot": "so101"}, {})
    with mini_launch.stub_launch_api():
        assert opaque.function(context) == []
