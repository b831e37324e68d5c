"""The camera frames on the running simulated graph (real rclpy/DDS, real MuJoCo): the URDF sim_node publishes
on /robot_description and its /joint_states give, through the TF tree robot_state_publisher computes
(``so_arm_description.robot_model.urdf_frames``; robot_state_publisher and tf2 are not PyPI wheels, so they
were not run here), base_link -> wrist_camera_optical_frame equal to the pose MuJoCo renders the wrist image
from, at several commanded arm configurations; the images carry that frame."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ros_harness
from ros_harness import wait_for

pytestmark = pytest.mark.slow
rclpy = pytest.importorskip("rclpy")

TARGETS = tuple(
    np.array(t)
    for t in (
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.6, -0.4, 0.5, 0.8, -1.2, 0.3),
        (-0.9, 0.7, -0.6, -0.5, 1.5, 1.0),
    )
)


def test_wrist_camera_frame_on_the_graph_matches_mujoco(run_node, ros_context, ros_executor):  # type: ignore[no-untyped-def]
    import mujoco
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from smolvla_common import robot_description
    from smolvla_sim.model import build_model
    from so_arm_description.robot_model import urdf_frames
    from so_arm_description.robot_spec import JOINT_NAMES

    node = run_node(
        "smolvla_sim",
        "sim_node",
        params_file=str(ros_harness.REPO_ROOT / "config" / "sim_node.yaml"),
        parameters={"robot": "so101", "cameras": ["top", "wrist"], "image_width": 32, "image_height": 24},
    )
    assert node.wait_for_output("simulating", timeout=60.0), node.output()
    lock = threading.Lock()
    got: dict[str, object] = {}
    probe = rclpy.create_node("camera_tf_probe", context=ros_context)
    probe.create_subscription(
        String, "/robot_description", lambda m: got.update(urdf=m.data), robot_description.qos()
    )

    def on_state(msg: JointState) -> None:
        with lock:
            got["state"] = dict(zip(msg.name, msg.position))

    probe.create_subscription(JointState, "/joint_states", on_state, 10)
    probe.create_subscription(
        Image, "/cameras/wrist/image_raw", lambda m: got.update(frame=m.header.frame_id), 2
    )
    commands = probe.create_publisher(JointTrajectory, "/joint_commands", 10)
    ros_executor.add_node(probe)
    assert wait_for(lambda: {"urdf", "state", "frame"} <= set(got), 60), node.output()
    frames_of = lambda q: urdf_frames(got["urdf"], q)  # noqa: E731
    assert got["frame"] == "wrist_camera_optical_frame" and got["frame"] in frames_of({})

    model = build_model("so101", 500.0, 64, "pick_place")
    data = mujoco.MjData(model)
    worst, moved = 0.0, []

    def send_and_check(msg: JointTrajectory, target: np.ndarray) -> bool:
        commands.publish(msg)  # a streamed target, resent until reached
        with lock:
            return np.abs(np.array([got["state"][j] for j in JOINT_NAMES]) - target).max() < 0.1

    for target in TARGETS:
        msg = JointTrajectory(joint_names=list(JOINT_NAMES))
        msg.points = [JointTrajectoryPoint(positions=list(target))]
        assert wait_for(lambda m=msg, t=target: send_and_check(m, t), 60, interval=0.1), (
            target,
            got["state"],
            node.output()[-2000:],
        )
        with lock:
            state = dict(got["state"])
        moved.append(state)
        # TF from the description on the wire and the joint states on the wire
        tf = frames_of(state)["wrist_camera_optical_frame"]
        # MuJoCo's own camera at the same joint positions (optical = MuJoCo camera turned by pi about x)
        for name in JOINT_NAMES:
            data.joint(name).qpos = state[name]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_camlight(model, data)
        cam = data.camera("wrist")
        reference = np.eye(4)
        reference[:3, :3] = cam.xmat.reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        reference[:3, 3] = cam.xpos
        np.testing.assert_allclose(tf, reference, atol=1e-6)
        worst = max(worst, float(np.abs(tf - reference).max()))
    # the configurations differ (the check is not one pose three times)
    positions = [frames_of(s)["wrist_camera_optical_frame"][:3, 3] for s in moved]
    assert min(np.linalg.norm(positions[i] - positions[j]) for i in range(3) for j in range(i)) > 0.05
    print(f"max |TF - MuJoCo| over {len(moved)} configurations: {worst:.2e}")
