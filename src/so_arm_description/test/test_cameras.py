"""Camera frames (so_arm_description.cameras): the naming rule, REP 103 optical axes (hand-known), the frames
build_urdf adds (read back by a small URDF walker of this test, as robot_state_publisher would) equal to
camera_frames. The agreement with the simulator's MuJoCo cameras is smolvla_sim/test/test_camera_frames.py."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from so_arm_description import cameras, robot_model
from so_arm_description.robot_model import RobotModelError, build_urdf, limits_from_urdf, main
from so_arm_description.robot_spec import JOINT_NAMES, ROBOTS, get_robot_spec


def test_naming_rule() -> None:
    assert cameras.optical_frame("wrist") == "wrist_camera_optical_frame"
    assert cameras.camera_link("top") == "top_camera_link"
    assert cameras.optical_frame("front_2") == "front_2_camera_optical_frame"
    for bad in ("", "top/x", "a b"):
        with pytest.raises(ValueError, match="camera name"):
            cameras.optical_frame(bad)


def test_optical_frame_axes_are_rep103() -> None:
    """Optical z = the link's x (forward), x = the link's -y (right), y = the link's -z (down)."""
    mount = cameras.CameraMount("base_link", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    frames = cameras.camera_frames(np.zeros(6), "so101", {"c": mount})
    rot = frames["c_camera_optical_frame"][:3, :3]
    np.testing.assert_allclose(rot[:, 2], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(rot[:, 0], [0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(rot[:, 1], [0, 0, -1], atol=1e-15)


def test_default_top_camera_looks_down_with_image_up_along_x() -> None:
    """The simulator's overhead camera (MJCF xyaxes "0 -1 0 1 0 0" at (0.21, 0, 0.62)): looking down (-z),
    image right = -y, image down = -x of base_link."""
    pose = cameras.camera_frames(np.zeros(6))["top_camera_optical_frame"]
    np.testing.assert_allclose(pose[:3, 3], [0.21, 0.0, 0.62], atol=1e-15)
    np.testing.assert_allclose(pose[:3, :3], [[0, -1, 0], [-1, 0, 0], [0, 0, -1]], atol=1e-15)


def test_wrist_camera_moves_with_the_gripper() -> None:
    q = np.zeros(6)
    q[JOINT_NAMES.index("wrist_roll")] = 1.0
    a = cameras.camera_frames(np.zeros(6))["wrist_camera_optical_frame"]
    b = cameras.camera_frames(q)["wrist_camera_optical_frame"]
    assert np.linalg.norm(a[:3, 3] - b[:3, 3]) > 0.02
    # the gripper joint (moving jaw) does not move it
    q_open = np.zeros(6)
    q_open[JOINT_NAMES.index("gripper")] = 1.2
    np.testing.assert_allclose(cameras.camera_frames(q_open)["wrist_camera_optical_frame"], a, atol=1e-15)


def test_parse_pose_and_overrides() -> None:
    mount = cameras.parse_pose("0.3, 0 0.5  0 1.2 0", "base_link")
    assert mount == cameras.CameraMount("base_link", (0.3, 0.0, 0.5), (0.0, 1.2, 0.0))
    for bad in ("1 2 3", "1 2 3 4 5 x", "1 2 3 4 5 nan"):
        with pytest.raises(ValueError, match="x y z roll pitch yaw"):
            cameras.parse_pose(bad, "base_link")
    mounts = cameras.mounts_with("so101", top_camera_pose="0 0 1 0 1.5 0")
    assert mounts["top"].xyz == (0.0, 0.0, 1.0) and mounts["wrist"] == cameras.WRIST_CAMERA


def _rpy(r: float, p: float, y: float) -> np.ndarray:
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def urdf_frames(urdf_text: str, q: dict[str, float]) -> dict[str, np.ndarray]:
    """Every link's pose in base_link from the URDF text (what robot_state_publisher computes)."""
    joints = ET.fromstring(urdf_text).findall("joint")
    poses = {"base_link": np.eye(4)}
    while len(poses) <= len(joints):
        before = len(poses)
        for j in joints:
            parent, child = j.find("parent").get("link"), j.find("child").get("link")
            if parent not in poses or child in poses:
                continue
            origin = j.find("origin")
            fixed = np.eye(4)
            fixed[:3, :3] = _rpy(*(float(v) for v in origin.get("rpy", "0 0 0").split()))
            fixed[:3, 3] = [float(v) for v in origin.get("xyz", "0 0 0").split()]
            motion = np.eye(4)
            if j.get("type") == "revolute":
                axis = np.array([float(v) for v in j.find("axis").get("xyz").split()])
                motion[:3, :3] = _axis_angle(axis, q[j.get("name")])
            poses[child] = poses[parent] @ fixed @ motion
        assert len(poses) > before, "URDF tree not connected"
    return poses


@pytest.mark.parametrize("robot", sorted(ROBOTS))
def test_build_urdf_camera_frames_equal_camera_frames(robot: str) -> None:
    text = build_urdf(robot)
    assert limits_from_urdf(text) == get_robot_spec(robot).limits  # fixed joints ignored
    rng = np.random.default_rng(7)
    limits = get_robot_spec(robot).limits
    for _ in range(10):
        q = np.array([rng.uniform(*limits[j]) for j in JOINT_NAMES])
        from_urdf = urdf_frames(text, dict(zip(JOINT_NAMES, q)))
        expected = cameras.camera_frames(q, robot)
        assert set(expected) <= set(from_urdf)
        for frame, pose in expected.items():
            np.testing.assert_allclose(from_urdf[frame], pose, atol=1e-12, err_msg=frame)
        # the suite's own URDF walker (robot_model.urdf_frames, for pip installs without tf2) agrees
        ours = robot_model.urdf_frames(text, dict(zip(JOINT_NAMES, q)))
        assert set(ours) == set(from_urdf)
        for link, pose in from_urdf.items():
            np.testing.assert_allclose(ours[link], pose, atol=1e-12, err_msg=link)


def test_urdf_frames_errors() -> None:
    with pytest.raises(RobotModelError, match="one root link"):
        robot_model.urdf_frames('<robot name="x"><link name="a"/><link name="b"/></robot>')
    with pytest.raises(RobotModelError, match="root element"):
        robot_model.urdf_frames("<nope/>")


def test_build_urdf_camera_options() -> None:
    names = lambda text: {link.get("name") for link in ET.fromstring(text).iter("link")}  # noqa: E731
    assert not any("camera" in n for n in names(build_urdf("so101", cameras={})))
    assert {"wrist_camera_link", "wrist_camera_optical_frame", "top_camera_optical_frame"} <= names(
        build_urdf("so101")
    )
    with pytest.raises(RobotModelError, match="no link 'nope'"):
        build_urdf("so101", cameras={"x": cameras.CameraMount("nope", (0, 0, 0), (0, 0, 0))})
    with pytest.raises(RobotModelError, match="finite"):
        build_urdf("so101", cameras={"x": cameras.CameraMount("base_link", (0, 0, math.inf), (0, 0, 0))})


def test_print_urdf_top_camera_pose(tmp_path, capsys) -> None:
    out = tmp_path / "arm.urdf"
    assert main(["--top-camera-pose", "0.4 0 0.7 0 1.5707963 0", "-o", str(out)]) == 0
    pose = urdf_frames(out.read_text(), dict.fromkeys(JOINT_NAMES, 0.0))["top_camera_link"]
    np.testing.assert_allclose(pose[:3, 3], [0.4, 0.0, 0.7])
    assert main(["--top-camera-pose", "0.4 0 0.7"]) == 1
    assert "6 finite numbers" in capsys.readouterr().err


def test_camera_mounts_read_back_from_the_urdf() -> None:
    mounts = cameras.mounts_with("so101", top_camera_pose="0.3 -0.1 0.5 0.1 1.2 -0.2")
    assert robot_model.camera_mounts_from_urdf(build_urdf("so101", cameras=mounts)) == mounts
    assert robot_model.camera_mounts_from_urdf(build_urdf("so100")) == cameras.default_mounts("so100")
    assert robot_model.camera_mounts_from_urdf(build_urdf("so101", cameras={})) == {}
