"""Facts about the SO-100 / SO-101 arms shared by the driver, the simulator and the policy nodes.

Joint names follow the ROS graph contract (README): positions in radians (REP 103), zero at the middle of the
calibrated range (the same convention as lerobot's degrees mode and the so101_new_calib MJCF).
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

#: Servo ids on the Feetech bus, in joint order (lerobot's SO-10x follower).
MOTOR_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(JOINT_NAMES)}

#: Joint limits in radians (lower, upper), SO-101 (so101_new_calib kinematic facts).
SO101_LIMITS: dict[str, tuple[float, float]] = {
    "shoulder_pan": (-1.91986, 1.91986),
    "shoulder_lift": (-1.74533, 1.74533),
    "elbow_flex": (-1.69, 1.69),
    "wrist_flex": (-1.65806, 1.65806),
    "wrist_roll": (-2.74385, 2.84121),
    "gripper": (-0.17453, 1.74533),
}
