"""Forward kinematics (so_arm_description.kinematics): shapes, conventions, and agreement with the published
so101_new_calib model (its body chain at q is recomputed here from the published body offsets/quaternions)."""

from __future__ import annotations

import numpy as np
import pytest

from so_arm_description import kinematics
from so_arm_description.robot_spec import JOINT_NAMES, ROBOTS, get_robot_spec

ROBOT_NAMES = sorted(ROBOTS)


def _random_q(robot: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    limits = get_robot_spec(robot).limits
    lo = np.array([limits[j][0] for j in JOINT_NAMES])
    hi = np.array([limits[j][1] for j in JOINT_NAMES])
    return rng.uniform(lo, hi, size=(n, len(JOINT_NAMES)))


def test_shapes_single_batch_and_arm_only():
    assert kinematics.forward_kinematics(np.zeros(6)).shape == (1, 3)
    q = _random_q("so101", 7)
    tcp = kinematics.forward_kinematics(q)
    assert tcp.shape == (7, 3)
    np.testing.assert_allclose(kinematics.forward_kinematics(q[:, :5]), tcp, atol=1e-12)
    np.testing.assert_allclose(kinematics.forward_kinematics(q[3]), tcp[3:4], atol=1e-12)
    np.testing.assert_allclose(kinematics.forward_kinematics(q[3].tolist()), tcp[3:4], atol=1e-12)
    assert kinematics.forward_kinematics(np.zeros((0, 6))).shape == (0, 3)


@pytest.mark.parametrize("bad", [np.zeros(4), np.zeros((2, 7)), np.zeros((2, 3, 6)), np.array([np.nan] * 6)])
def test_bad_input_is_a_value_error(bad):
    with pytest.raises(ValueError):
        kinematics.forward_kinematics(bad)


def test_unknown_robot_is_a_value_error():
    with pytest.raises(ValueError, match="unknown robot"):
        kinematics.forward_kinematics(np.zeros(6), robot="so42")


@pytest.mark.parametrize("robot", ROBOT_NAMES)
def test_tcp_at_zero_matches_robot_spec(robot):
    tcp = kinematics.forward_kinematics(np.zeros(6), robot)[0]
    np.testing.assert_allclose(tcp, get_robot_spec(robot).tcp_at_zero, atol=5e-4)


def test_so101_tcp_at_zero_is_the_published_gripperframe():
    # ENVIRONMENT.md 8.1: at q = 0 the arm points along +x and gripperframe is at (0.391, 0, 0.227) m.
    tcp = kinematics.forward_kinematics(np.zeros(6), "so101")[0]
    np.testing.assert_allclose(tcp, (0.391, 0.0, 0.227), atol=1.5e-3)


@pytest.mark.parametrize("robot", ROBOT_NAMES)
def test_joint_signs(robot):
    """Signs of the so101_new_calib convention: +pan turns the arm clockwise seen from above (towards -y),
    +shoulder_lift and +elbow_flex lower the TCP, +wrist_flex tips the fingers down."""
    zero = kinematics.forward_kinematics(np.zeros(6), robot)[0]
    for joint, check in (
        ("shoulder_pan", lambda p: p[1] < -0.05),
        ("shoulder_lift", lambda p: p[2] < zero[2] - 0.02),
        ("elbow_flex", lambda p: p[2] < zero[2] - 0.02),
        ("wrist_flex", lambda p: p[2] < zero[2] - 0.02),
    ):
        q = np.zeros(6)
        q[JOINT_NAMES.index(joint)] = 0.5
        assert check(kinematics.forward_kinematics(q, robot)[0]), joint


@pytest.mark.parametrize("robot", ROBOT_NAMES)
def test_invariants(robot):
    q = _random_q(robot, 50, seed=1)
    frames = kinematics.link_frames(q, robot)
    tcp = kinematics.forward_kinematics(q, robot)
    # every link pose is a proper rigid transform
    for link, pose in frames.items():
        rot = pose[:, :3, :3]
        np.testing.assert_allclose(
            rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9
        )
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9, err_msg=link)
    # the gripper joint does not move the TCP; wrist_roll keeps its distance to the roll axis
    q_open = q.copy()
    q_open[:, 5] = 1.2
    np.testing.assert_allclose(kinematics.forward_kinematics(q_open, robot), tcp, atol=1e-12)
    q_roll = q.copy()
    q_roll[:, 4] += 1.0
    roll = frames["gripper_link"]
    axis = roll[:, :3, :3] @ np.array([-1.0, 0.0, 0.0])
    for p in (tcp, kinematics.forward_kinematics(q_roll, robot)):
        rel = p - roll[:, :3, 3]
        dist = np.linalg.norm(rel - (rel * axis).sum(1, keepdims=True) * axis, axis=1)
        np.testing.assert_allclose(dist, np.full(len(q), np.hypot(*_tcp_offset_yz(robot))), atol=1e-9)
    # shoulder_pan keeps the height and the distance to the pan axis
    q_pan = q.copy()
    q_pan[:, 0] = -q_pan[:, 0]
    pan_xy = frames["shoulder_link"][0, :2, 3]
    tcp_pan = kinematics.forward_kinematics(q_pan, robot)
    np.testing.assert_allclose(tcp_pan[:, 2], tcp[:, 2], atol=1e-12)
    np.testing.assert_allclose(
        np.linalg.norm(tcp_pan[:, :2] - pan_xy, axis=1),
        np.linalg.norm(tcp[:, :2] - pan_xy, axis=1),
        atol=1e-12,
    )


def _tcp_offset_yz(robot: str) -> tuple[float, float]:
    joint = next(j for j in kinematics.get_chain(robot).joints if j.child == "gripper_frame")
    return joint.xyz[1], joint.xyz[2]


def test_single_input_returns_single_frames():
    q = _random_q("so101", 3, seed=2)
    batch = kinematics.link_frames(q)
    single = kinematics.link_frames(q[1])
    assert set(single) == set(batch) == set(kinematics.get_chain("so101").links)
    for link in batch:
        np.testing.assert_allclose(single[link], batch[link][1], atol=1e-12)
    np.testing.assert_allclose(kinematics.tcp_pose(q)[:, :3, 3], kinematics.forward_kinematics(q), atol=1e-12)


# --- agreement with the published so101_new_calib body chain ---
# Body offsets (pos, quat w x y z) of shoulder, upper_arm, lower_arm, wrist, gripper and the gripperframe
# site, each rotating about its local z, as published in TheRobotStudio SO-ARM100
# Simulation/SO101/so101_new_calib.
_PUBLISHED_SO101 = (
    ((0.0388353, 0.0, 0.0624), (0.0, 0.0, -1.0, 0.0)),
    ((-0.0303992, -0.0182778, -0.0542), (0.5, -0.5, -0.5, -0.5)),
    ((-0.11257, -0.028, 0.0), (0.707107, 0.0, 0.0, 0.707107)),
    ((-0.1349, 0.0052, 0.0), (0.707107, 0.0, 0.0, -0.707107)),
    ((0.0, -0.0611, 0.0181), (0.0172091, -0.0172091, 0.706897, 0.706897)),
)
_PUBLISHED_SO101_TCP = (-0.0079, -0.000218121, -0.0981274)


def _quat_matrix(q: tuple[float, float, float, float]) -> np.ndarray:
    w, x, y, z = np.asarray(q) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _published_tcp(q: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    for (pos, quat), angle in zip(_PUBLISHED_SO101, q[:5]):
        body = np.eye(4)
        body[:3, :3] = _quat_matrix(quat)
        body[:3, 3] = pos
        c, s = np.cos(angle), np.sin(angle)
        hinge = np.eye(4)
        hinge[:2, :2] = [[c, -s], [s, c]]
        pose = pose @ body @ hinge
    return (pose @ np.array([*_PUBLISHED_SO101_TCP, 1.0]))[:3]


def test_so101_matches_the_published_model_over_the_workspace():
    q = _random_q("so101", 200, seed=3)
    ours = kinematics.forward_kinematics(q, "so101")
    published = np.array([_published_tcp(qi) for qi in q])
    # the description keeps the wrist's net lateral offset (-0.18 mm, as the simulator's MJCF) but drops the
    # TCP's sub-millimetre offsets in the gripper (0.22 mm lateral)
    assert np.abs(ours - published).max() < 2.5e-4
