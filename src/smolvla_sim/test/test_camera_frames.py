"""The cameras' frames of the URDF (so_arm_description.cameras, what robot_state_publisher publishes as TF)
against MuJoCo's own camera poses in the simulator's model: rviz places the images and the chunk markers
where the simulator rendered them. MuJoCo cameras look along -z with y up; the optical frame (REP 103) looks
along +z with y down, so optical = MuJoCo camera rotated by pi about its x axis."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from smolvla_sim.model import build_model, robot_limits
from so_arm_description.cameras import camera_frames, optical_frame
from so_arm_description.robot_spec import JOINT_NAMES

MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


def mujoco_optical_pose(model: mujoco.MjModel, data: mujoco.MjData, camera: str) -> np.ndarray:
    """Pose (4x4) in the arm's base frame of MuJoCo camera ``camera`` in the optical convention."""
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)
    base = data.site("baseframe")
    base_rot = base.xmat.reshape(3, 3)
    cam = data.camera(camera)
    pose = np.eye(4)
    pose[:3, :3] = base_rot.T @ cam.xmat.reshape(3, 3) @ MUJOCO_TO_OPTICAL
    pose[:3, 3] = base_rot.T @ (cam.xpos - base.xpos)
    return pose


def configurations(robot: str, n: int, seed: int) -> list[np.ndarray]:
    limits = robot_limits(robot)
    rng = np.random.default_rng(seed)
    corners = [np.array([limits[j][k] for j in JOINT_NAMES]) for k in (0, 1)]
    return [
        np.zeros(6),
        *corners,
        *(np.array([rng.uniform(*limits[j]) for j in JOINT_NAMES]) for _ in range(n)),
    ]


@pytest.mark.parametrize("robot", ["so101", "so100"])
@pytest.mark.parametrize("camera", ["wrist", "top"])
def test_urdf_camera_frames_match_mujoco_cameras(robot: str, camera: str) -> None:
    model = build_model(robot, 500.0, 64, "pick_place")
    data = mujoco.MjData(model)
    worst = 0.0
    for q in configurations(robot, 20, seed=11):
        for name, value in zip(JOINT_NAMES, q):
            data.joint(name).qpos = value
        reference = mujoco_optical_pose(model, data, camera)
        ours = camera_frames(q, robot)[optical_frame(camera)]
        np.testing.assert_allclose(ours[:3, 3], reference[:3, 3], atol=1e-6)
        np.testing.assert_allclose(ours[:3, :3], reference[:3, :3], atol=1e-6)
        worst = max(worst, float(np.abs(ours - reference).max()))
    print(f"{robot} {camera}: max |URDF - MuJoCo| = {worst:.2e}")


def test_the_wrist_camera_sees_the_fingers() -> None:
    """Sanity of the convention: the fixed jaw's tip is in front of the wrist camera (optical z > 0) and in
    its image (|x/z|, |y/z| below tan of half the field of view)."""
    model = build_model("so101", 500.0, 64, "pick_place")
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    jaw = data.geom("fixed_jaw")
    tip = jaw.xpos + jaw.xmat.reshape(3, 3) @ np.array([0.0, 0.0, -0.0375])
    p = np.linalg.inv(camera_frames(np.zeros(6))[optical_frame("wrist")]) @ np.array([*tip, 1.0])
    assert p[2] > 0.02
    half = np.tan(np.deg2rad(model.cam_fovy[model.camera("wrist").id] / 2))
    assert abs(p[0] / p[2]) < half and abs(p[1] / p[2]) < half
