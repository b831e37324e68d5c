"""Forward kinematics of the SO-100 / SO-101 arms (plain numpy, no ROS).

Conventions (the project's, see robot_spec.py): joint angles in radians, zero at the middle of the calibrated
range (so101_new_calib). ``base_link``: x forward (the arm points along +x at q = 0), z up, origin on the
mounting surface, the same frame as the base body of the so101_new_calib MJCF. Every link frame is parallel
to ``base_link`` at q = 0, so each joint is given by a translation from its parent link, an optional fixed
rotation (only the moving jaw has one) and a unit axis. The tables below hold the same numbers as
``urdf/so10x.urdf``; ``test_urdf.py`` checks that both agree.

Sources of the facts (numbers re-derived here, nothing copied): SO-101 joint positions and axes at q = 0
from TheRobotStudio SO-ARM100 ``so101_new_calib`` (TCP = its ``gripperframe`` site, at (0.391, 0, 0.227) m).
SO-100 link offsets from TheRobotStudio ``so100.urdf`` / MuJoCo Menagerie ``trs_so_arm100``, with the SO-101
zero pose (the calibrated middle of each joint is the same mechanical pose on both arms) and the SO-101 joint
signs; approximate, not verified on an SO-100.

The chain up to ``gripper_link`` is the simulator's (smolvla_sim.model) exactly, so that the wrist camera's
frame (so_arm_description.cameras) is where MuJoCo renders from: the net lateral offset of the wrist
(-0.1778 mm in y, from so101_new_calib's upper-arm and gripper body offsets), the published digits
0.0388353 / 0.0303992, and on the SO-100 the simulator's pan axis at x = 0.0454 m (Menagerie: 0.0452).
``smolvla_sim/test/test_model_matches_kinematics.py`` pins it to 1e-9 m.

Used by the policy server (predicted gripper paths as markers) and available to the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from so_arm_description.joints import JOINT_NAMES
from so_arm_description.robot_spec import get_robot_spec


@dataclass(frozen=True)
class ChainJoint:
    """One joint of the serial chain: ``parent -> child`` placed at ``xyz``/``rpy`` (parent frame), rotating
    about ``axis`` (child frame). ``name`` is a contract joint name, or a fixed frame's joint name."""

    name: str
    parent: str
    child: str
    xyz: tuple[float, float, float]
    axis: tuple[float, float, float] | None  # None: fixed joint
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class RobotChain:
    robot: str
    joints: tuple[ChainJoint, ...]
    #: link whose origin is the TCP
    tcp_link: str = "gripper_frame"

    @property
    def links(self) -> tuple[str, ...]:
        return ("base_link", *(j.child for j in self.joints))


# SO-101, derived from so101_new_calib at q = 0 (joint origins relative to the previous joint, metres).
_SO101 = RobotChain(
    robot="so101",
    joints=(
        ChainJoint("shoulder_pan", "base_link", "shoulder_link", (0.0388353, 0.0, 0.0624), (0.0, 0.0, -1.0)),
        ChainJoint(
            "shoulder_lift", "shoulder_link", "upper_arm_link", (0.0303992, 0.0, 0.0542), (0.0, 1.0, 0.0)
        ),
        ChainJoint("elbow_flex", "upper_arm_link", "lower_arm_link", (0.028, 0.0, 0.11257), (0.0, 1.0, 0.0)),
        ChainJoint("wrist_flex", "lower_arm_link", "wrist_link", (0.1349, 0.0, 0.0052), (0.0, 1.0, 0.0)),
        ChainJoint("wrist_roll", "wrist_link", "gripper_link", (0.0611, -0.0001778, 0.0), (-1.0, 0.0, 0.0)),
        ChainJoint(
            "gripper",
            "gripper_link",
            "moving_jaw_link",
            (0.0234, 0.0178, 0.0211),
            (0.0, -1.0, 0.0),
            rpy=(0.04866, 0.0, 0.0),
        ),
        ChainJoint("gripper_frame_joint", "gripper_link", "gripper_frame", (0.098127, 0.0, -0.007901), None),
    ),
)

# SO-100 (approximate): Menagerie trs_so_arm100 offsets (pan axis and wrist as the simulator's), SO-101 zero
# pose and joint signs.
_SO100 = RobotChain(
    robot="so100",
    joints=(
        ChainJoint("shoulder_pan", "base_link", "shoulder_link", (0.0454, 0.0, 0.0165), (0.0, 0.0, -1.0)),
        ChainJoint(
            "shoulder_lift", "shoulder_link", "upper_arm_link", (0.0303992, 0.0, 0.1025), (0.0, 1.0, 0.0)
        ),
        ChainJoint("elbow_flex", "upper_arm_link", "lower_arm_link", (0.028, 0.0, 0.11257), (0.0, 1.0, 0.0)),
        ChainJoint("wrist_flex", "lower_arm_link", "wrist_link", (0.1349, 0.0, 0.0052), (0.0, 1.0, 0.0)),
        ChainJoint("wrist_roll", "wrist_link", "gripper_link", (0.0601, -0.0001778, 0.0), (-1.0, 0.0, 0.0)),
        ChainJoint("gripper", "gripper_link", "moving_jaw_link", (0.0244, 0.0, 0.0202), (0.0, -1.0, 0.0)),
        ChainJoint("gripper_frame_joint", "gripper_link", "gripper_frame", (0.0981, 0.0, -0.0079), None),
    ),
)

CHAINS: dict[str, RobotChain] = {"so101": _SO101, "so100": _SO100}


def get_chain(robot: str = "so101") -> RobotChain:
    return CHAINS[get_robot_spec(robot).name]


def rpy_matrix(rpy: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw -> 3x3 rotation (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def axis_angle_matrices(axis: tuple[float, float, float] | np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotations about a unit ``axis`` by each of ``angles`` (N,) -> (N, 3, 3) (Rodrigues)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    s = np.sin(angles)[:, None, None]
    c = np.cos(angles)[:, None, None]
    return np.eye(3)[None] + s * k[None] + (1.0 - c) * (k @ k)[None]


def _as_batch(joint_positions: np.ndarray | list | tuple) -> tuple[np.ndarray, bool]:
    q = np.asarray(joint_positions, dtype=float)
    single = q.ndim == 1
    q2 = q[None, :] if single else q
    if q2.ndim != 2 or q2.shape[1] not in (len(JOINT_NAMES), len(JOINT_NAMES) - 1):
        raise ValueError(f"joint_positions must have shape (6,), (N, 6), (5,) or (N, 5); got {q.shape}")
    if not np.all(np.isfinite(q2)):
        raise ValueError("joint_positions contain NaN or inf")
    if q2.shape[1] == len(JOINT_NAMES) - 1:  # arm joints only: gripper closed (no effect on the TCP)
        q2 = np.concatenate([q2, np.zeros((q2.shape[0], 1))], axis=1)
    return q2, single


def link_frames(joint_positions: np.ndarray | list | tuple, robot: str = "so101") -> dict[str, np.ndarray]:
    """Poses of every link in ``base_link``: ``{link: (N, 4, 4)}`` (or ``(4, 4)`` for a single (6,) input).

    Joint order is :data:`~so_arm_description.joints.JOINT_NAMES`; a (N, 5) input means a closed gripper.
    """
    q, single = _as_batch(joint_positions)
    chain = get_chain(robot)
    n = q.shape[0]
    index = {name: i for i, name in enumerate(JOINT_NAMES)}
    frames: dict[str, np.ndarray] = {"base_link": np.broadcast_to(np.eye(4), (n, 4, 4)).copy()}
    for joint in chain.joints:
        fixed = np.eye(4)
        fixed[:3, :3] = rpy_matrix(joint.rpy)
        fixed[:3, 3] = joint.xyz
        pose = frames[joint.parent] @ fixed
        if joint.axis is not None:
            motion = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
            motion[:, :3, :3] = axis_angle_matrices(joint.axis, q[:, index[joint.name]])
            pose = pose @ motion
        frames[joint.child] = pose
    if single:
        return {k: v[0] for k, v in frames.items()}
    return frames


def forward_kinematics(joint_positions: np.ndarray | list | tuple, robot: str = "so101") -> np.ndarray:
    """TCP (``gripper_frame``) positions in ``base_link``, metres: (N, 6) -> (N, 3); (6,) -> (1, 3).

    Vectorised over N (a predicted action chunk of 50 steps costs well under a millisecond).
    """
    q, _ = _as_batch(joint_positions)
    return link_frames(q, robot)[get_chain(robot).tcp_link][:, :3, 3].copy()


def tcp_pose(joint_positions: np.ndarray | list | tuple, robot: str = "so101") -> np.ndarray:
    """TCP poses (N, 4, 4) in ``base_link``: x = approach direction (out of the fingers), z = up at q = 0."""
    q, _ = _as_batch(joint_positions)
    return link_frames(q, robot)[get_chain(robot).tcp_link]
