"""Joint names of the SO-100 / SO-101 follower arms (the ROS graph contract and lerobot's motor names).

Positions are radians (REP 103) with zero at the middle of the calibrated range (lerobot's degrees mode uses
the same zero), in this order everywhere: JointState, JointTrajectory, ``observation.state`` and ``action``.
"""

from __future__ import annotations

JOINT_NAMES: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)

#: The five arm joints (everything but the gripper), in joint order.
ARM_JOINT_NAMES: tuple[str, ...] = JOINT_NAMES[:5]

#: The gripper joint (lerobot's RANGE_0_100 motor).
GRIPPER: str = "gripper"

#: Servo ids on the Feetech bus, in joint order (lerobot's SO-10x follower).
MOTOR_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(JOINT_NAMES)}
