"""Per-robot facts of the SO-100 / SO-101 arms shared by the driver, the simulator and the policy nodes.

Joint names follow the ROS graph contract (README): positions in radians (REP 103), zero at the middle of the
calibrated range (the same convention as lerobot's degrees mode and the so101_new_calib MJCF).

Per-robot facts are collected in :class:`RobotSpec` (``ROBOTS["so100"]``, ``ROBOTS["so101"]``,
:func:`get_robot_spec`). The limits here are the description's (uncalibrated) ones; an arm's calibrated limits
come from its calibration file and reach the other nodes through ``/robot_description``
(:mod:`so_arm_description.robot_model`). The kinematic chains live in :mod:`so_arm_description.kinematics`
and in ``urdf/so10x.urdf``. No ROS import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from so_arm_description.joints import ARM_JOINT_NAMES, JOINT_NAMES, MOTOR_IDS

__all__ = [
    "ARM_JOINT_NAMES",
    "JOINT_NAMES",
    "MOTOR_IDS",
    "ROBOTS",
    "SO100_LIMITS",
    "SO101_LIMITS",
    "RobotSpec",
    "get_robot_spec",
    "joint_limits",
    "robot_names",
]

#: Joint limits in radians (lower, upper), SO-101 (so101_new_calib kinematic facts).
SO101_LIMITS: dict[str, tuple[float, float]] = {
    "shoulder_pan": (-1.91986, 1.91986),
    "shoulder_lift": (-1.74533, 1.74533),
    "elbow_flex": (-1.69, 1.69),
    "wrist_flex": (-1.65806, 1.65806),
    "wrist_roll": (-2.74385, 2.84121),
    "gripper": (-0.17453, 1.74533),
}

#: Joint limits in radians (lower, upper), SO-100, in the project's convention (zero = middle of the
#: calibrated range). The arm joints share the SO-101 design, so their ranges are the SO-101 ones, except
#: shoulder_pan +-2.0 rad (TheRobotStudio SO100 description) and wrist_roll +-pi (no roll stop on the SO-100).
#: The limits a real arm obeys come from its calibration file; these are for descriptions and simulation.
SO100_LIMITS: dict[str, tuple[float, float]] = {
    "shoulder_pan": (-2.0, 2.0),
    "shoulder_lift": (-1.74533, 1.74533),
    "elbow_flex": (-1.69, 1.69),
    "wrist_flex": (-1.65806, 1.65806),
    "wrist_roll": (-3.14159, 3.14159),
    "gripper": (-0.17453, 1.74533),
}


@dataclass(frozen=True)
class RobotSpec:
    """Per-robot facts (SO-100 or SO-101 follower arm)."""

    name: str
    limits: dict[str, tuple[float, float]]
    #: URDF file name under ``share/so_arm_description/urdf``.
    urdf: str
    #: TCP (``gripper_frame``) position in ``base_link`` at q = 0, metres (see kinematics.py).
    tcp_at_zero: tuple[float, float, float]
    #: Approximate total mass of the moving arm plus base, kg.
    mass: float
    servo_model: str = "sts3215"
    #: STS3215 model number read by PING/READ of address 3.
    servo_model_number: int = 777
    #: Steps per revolution of the STS3215 magnetic encoder.
    encoder_resolution: int = 4096
    #: Joints that may turn a full revolution (lerobot calibrates them without a recorded range).
    full_turn_joints: tuple[str, ...] = ("wrist_roll",)
    joint_names: tuple[str, ...] = JOINT_NAMES
    motor_ids: dict[str, int] = field(default_factory=lambda: dict(MOTOR_IDS))
    #: Stall torque of one STS3215 at 7.4 V (approx., N·m) and no-load speed (approx., rad/s).
    max_effort: float = 2.94
    max_velocity: float = 4.7

    def clamp(self, joint: str, value: float) -> float:
        lo, hi = self.limits[joint]
        return min(max(value, lo), hi)


ROBOTS: dict[str, RobotSpec] = {
    "so101": RobotSpec(
        name="so101",
        limits=SO101_LIMITS,
        urdf="so101.urdf",
        tcp_at_zero=(0.3914, -0.0002, 0.2265),
        mass=0.632,
    ),
    "so100": RobotSpec(
        name="so100",
        limits=SO100_LIMITS,
        urdf="so100.urdf",
        tcp_at_zero=(0.3969, -0.0002, 0.2289),
        mass=0.728,
    ),
}


def get_robot_spec(robot: str) -> RobotSpec:
    """The :class:`RobotSpec` of ``robot`` ("so100" or "so101"; case-insensitive, "so_100" accepted)."""
    key = robot.strip().lower().replace("_", "").replace("-", "")
    if key not in ROBOTS:
        raise ValueError(f"unknown robot '{robot}' (known: {', '.join(sorted(ROBOTS))})")
    return ROBOTS[key]


def joint_limits(robot: str = "so101") -> dict[str, tuple[float, float]]:
    """Joint limits (radians) of ``robot`` in joint order."""
    return dict(get_robot_spec(robot).limits)


def robot_names() -> tuple[str, ...]:
    """The known robots ("so100", "so101")."""
    return tuple(sorted(ROBOTS))
