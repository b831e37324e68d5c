"""MJCF of the SO-101 / SO-100 arm and the table-top scene, written here from published kinematic facts.

The kinematic chain (body offsets, joint axes, joint ranges with zero at the middle of the calibrated range,
the ``so101_new_calib`` convention) follows the published SO-101 description; the geometry is the project's
own: capsules, boxes and cylinders, cheap to render without meshes. The SO-100 variant uses the same chain
with the SO-100's shoulder offset and wrist length (its forearm and upper arm are the same lengths).

Actuators are position servos like the STS3215 class used for the real arm's simulation (kp, force range,
joint damping, armature and friction loss), so a commanded position is reached with a small gravity sag, as on
the real arm.

Collision groups: the arm links are visual only (contype 0) except the gripper palm and both jaws; table, cube
and tray collide with each other and with the gripper.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco

from so_arm_description.robot_spec import JOINT_NAMES, joint_limits

# Geometric sizes of the scene (metres).
CUBE_HALF = 0.0125
TRAY_INNER_HALF = 0.055
TRAY_WALL = 0.005
TRAY_HEIGHT = 0.035
TABLE_CENTER = (0.12, 0.0)
TABLE_HALF = (0.55, 0.6)

#: The grasp point in the gripper body frame: centre of a cube 2.5 mm clear of the fixed jaw (the moving jaw
#: pushes it against the fixed one when closing).
TCP_IN_GRIPPER = (0.005, 0.0, -0.085)

ROBOTS = ("so101", "so100")


@dataclass(frozen=True)
class ArmGeometry:
    """Offsets (metres) and orientations (w x y z) of the kinematic chain, parent frame -> child frame."""

    shoulder_pos: tuple[float, float, float]
    gripper_pos: tuple[float, float, float]
    color: tuple[float, float, float]


SO101 = ArmGeometry(
    shoulder_pos=(0.0388353, 0.0, 0.0624), gripper_pos=(0.0, -0.0611, 0.0181), color=(1, 0.82, 0.12)
)
SO100 = ArmGeometry(
    shoulder_pos=(0.0454, 0.0, 0.0648), gripper_pos=(0.0, -0.0601, 0.0181), color=(1, 0.40, 0.05)
)

# Fixed chain facts shared by both arms (upper arm 0.1126 m, forearm 0.1349 m).
SHOULDER_QUAT = (0.0, 0.0, -1.0, 0.0)
UPPER_ARM_POS, UPPER_ARM_QUAT = (-0.0303992, -0.0182778, -0.0542), (0.5, -0.5, -0.5, -0.5)
LOWER_ARM_POS, LOWER_ARM_QUAT = (-0.11257, -0.028, 0.0), (0.707107, 0.0, 0.0, 0.707107)
WRIST_POS, WRIST_QUAT = (-0.1349, 0.0052, 0.0), (0.707107, 0.0, 0.0, -0.707107)
GRIPPER_QUAT = (0.0172091, -0.0172091, 0.706897, 0.706897)
JAW_POS, JAW_QUAT = (0.0202, 0.0188, -0.0234), (0.707107, 0.707107, 0.0, 0.0)

#: Servo model (STS3215 class of the published simulation): kp [N m/rad], force range [N m], joint dynamics.
SERVO_KP = 17.8
SERVO_FORCE = 3.35
JOINT_DAMPING = 0.6
JOINT_ARMATURE = 0.028
JOINT_FRICTIONLOSS = 0.052


def _v(values: tuple[float, ...] | list[float]) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def robot_limits(robot: str) -> dict[str, tuple[float, float]]:
    """Joint limits (radians) of ``robot``: its description's (so_arm_description.robot_spec), the numbers the
    simulator also publishes on ``/robot_description``."""
    if robot not in ROBOTS:
        raise ValueError(f"unknown robot '{robot}' (expected one of {', '.join(ROBOTS)})")
    return joint_limits(robot)


def arm_mjcf(robot: str = "so101") -> str:
    """The ``<body>`` tree of the arm (no scene), base at the origin, facing +x at zero pose."""
    geo = SO101 if robot == "so101" else SO100
    lim = robot_limits(robot)
    arm = f'rgba="{_v(geo.color)} 1"'
    dark = 'rgba="0.12 0.12 0.12 1"'
    g = TCP_IN_GRIPPER

    def joint(name: str) -> str:
        lo, hi = lim[name]
        return f'<joint name="{name}" axis="0 0 1" range="{lo:.6f} {hi:.6f}"/>'

    return f"""
    <body name="base" pos="0 0 0">
      <inertial pos="0.0137 0 0.0335" mass="0.147" diaginertia="0.000115 0.000136 0.00013"/>
      <geom class="visual" type="cylinder" size="0.045 0.028" pos="0 0 0.028" {arm}/>
      <geom class="visual" type="box" size="0.024 0.02 0.017" pos="0.026 0 0.044" {dark}/>
      <site name="baseframe" pos="0 0 0"/>
      <body name="shoulder" pos="{_v(geo.shoulder_pos)}" quat="{_v(SHOULDER_QUAT)}">
        {joint("shoulder_pan")}
        <inertial pos="-0.0308 0 -0.0253" mass="0.1" diaginertia="8.4e-05 8.1e-05 2.4e-05"/>
        <geom class="visual" type="box" size="0.022 0.024 0.026" pos="-0.03 0 -0.03" {arm}/>
        <geom class="visual" type="cylinder" size="0.014 0.025" pos="-0.0304 0 -0.0542"
              quat="0.707107 0.707107 0 0" {dark}/>
        <body name="upper_arm" pos="{_v(UPPER_ARM_POS)}" quat="{_v(UPPER_ARM_QUAT)}">
          {joint("shoulder_lift")}
          <inertial pos="-0.0898 -0.0084 0.0184" mass="0.103" diaginertia="4.1e-05 0.000147 0.000142"/>
          <geom class="visual" type="capsule" size="0.016" fromto="0 0 0.018 {_v(LOWER_ARM_POS[:2])} 0.018"
                {arm}/>
          <geom class="visual" type="box" size="0.012 0.02 0.018" pos="-0.1126 -0.0155 0.0187" {dark}/>
          <body name="lower_arm" pos="{_v(LOWER_ARM_POS)}" quat="{_v(LOWER_ARM_QUAT)}">
            {joint("elbow_flex")}
            <inertial pos="-0.098 0.0032 0.0183" mass="0.104" diaginertia="2.9e-05 0.00016 0.000145"/>
            <geom class="visual" type="capsule" size="0.014" fromto="0 0 0.018 {_v(WRIST_POS[:2])} 0.018"
                  {arm}/>
            <geom class="visual" type="box" size="0.012 0.02 0.016" pos="-0.1224 0.0052 0.0187" {dark}/>
            <body name="wrist" pos="{_v(WRIST_POS)}" quat="{_v(WRIST_QUAT)}">
              {joint("wrist_flex")}
              <inertial pos="0 -0.0386 0.0281" mass="0.079" diaginertia="3.7e-05 2.5e-05 2.1e-05"/>
              <geom class="visual" type="box" size="0.017 0.024 0.012" pos="0 -0.035 0.0181" {arm}/>
              <body name="gripper" pos="{_v(geo.gripper_pos)}" quat="{_v(GRIPPER_QUAT)}">
                {joint("wrist_roll")}
                <inertial pos="0 0 -0.025" mass="0.087" diaginertia="2.8e-05 4.3e-05 3.5e-05"/>
                <geom name="palm" class="hand" type="box" size="0.021 0.017 0.014" pos="0.004 0 -0.014"
                      {dark}/>
                <geom name="fixed_jaw" class="hand" type="box" size="0.003 0.011 0.0375"
                      pos="-0.013 0 -0.0675"
                      {arm}/>
                <site name="tcp" pos="{_v(g)}" size="0.004" rgba="0 1 0 0.0"/>
                <camera name="wrist" pos="0.0025 0.042 -0.018" euler="-0.32 0 0" fovy="85"/>
                <geom class="visual" type="box" size="0.012 0.004 0.012" pos="0.0025 0.034 -0.018" {dark}/>
                <body name="moving_jaw" pos="{_v(JAW_POS)}" quat="{_v(JAW_QUAT)}">
                  {joint("gripper")}
                  <inertial pos="-0.012 -0.04 0.0188" mass="0.012" diaginertia="6.6e-06 1.9e-06 5.3e-06"/>
                  <geom name="jaw_strut" class="hand" type="box" size="0.013 0.006 0.008"
                        pos="-0.013 -0.032 0.0188" {arm}/>
                  <geom name="moving_pad" class="hand" type="box" size="0.003 0.0225 0.011"
                        pos="-0.0272 -0.0591 0.0188" {arm}/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


#: Objects per task: (cube name, cube rgba, tray name, tray floor rgba, tray wall rgba).
TASK_OBJECTS: dict[str, list[tuple[str, str, str, str, str]]] = {
    "pick_place": [("cube", "0.9 0.08 0.08 1", "tray", "0.15 0.35 0.9 1", "0.1 0.25 0.75 1")],
    "sort": [
        ("cube", "0.9 0.08 0.08 1", "tray", "0.15 0.35 0.9 1", "0.1 0.25 0.75 1"),
        ("cube_b", "0.1 0.75 0.15 1", "tray_b", "0.6 0.22 0.85 1", "0.48 0.16 0.7 1"),
    ],
}


def _tray_xml(name: str, floor: str, wall: str, pos: tuple[float, float]) -> str:
    t, w, h2 = TRAY_INNER_HALF, TRAY_WALL, TRAY_HEIGHT / 2
    c, n = t + w / 2, t + w
    walls = "\n".join(
        f'      <geom class="object" type="box" size="{sx} {sy} {h2}" pos="{px} {py} {h2}" rgba="{wall}"/>'
        for sx, sy, px, py in ((w / 2, n, c, 0), (w / 2, n, -c, 0), (n, w / 2, 0, c), (n, w / 2, 0, -c))
    )
    return f"""    <body name="{name}" pos="{pos[0]} {pos[1]} 0">
      <geom name="{name}_floor" class="object" type="box" size="{n} {n} 0.002" pos="0 0 0.002"
            rgba="{floor}"/>
{walls}
    </body>"""


def _cube_xml(name: str, rgba: str, pos: tuple[float, float]) -> str:
    c = CUBE_HALF
    return f"""    <body name="{name}" pos="{pos[0]} {pos[1]} {c}">
      <freejoint name="{name}"/>
      <geom name="{name}" class="object" type="box" size="{c} {c} {c}" mass="0.02" rgba="{rgba}"/>
    </body>"""


def scene_mjcf(
    robot: str = "so101", physics_rate: float = 500.0, offscreen_size: int = 640, task: str = "pick_place"
) -> str:
    """The full scene: arm, table, the task's cubes (free bodies) and open trays (static, moved at reset)."""
    if physics_rate < 500.0:
        raise ValueError(f"physics_rate must be >= 500 Hz, got {physics_rate}")
    if task not in TASK_OBJECTS:
        raise ValueError(f"unknown task '{task}' (known: {', '.join(TASK_OBJECTS)})")
    parts = []
    for k, (cube, cube_rgba, tray, floor, wall) in enumerate(TASK_OBJECTS[task]):
        parts.append(_tray_xml(tray, floor, wall, (0.2, 0.15 + 0.12 * k)))
        parts.append(_cube_xml(cube, cube_rgba, (0.2, -0.15 - 0.05 * k)))
    objects = "\n".join(parts)
    actuators = "\n".join(
        f'    <position name="{n}" joint="{n}" kp="{SERVO_KP}" forcerange="-{SERVO_FORCE} {SERVO_FORCE}" '
        f'ctrlrange="{lo:.6f} {hi:.6f}"/>'
        for n, (lo, hi) in robot_limits(robot).items()
    )
    return f"""<mujoco model="smolvla_{robot}_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{1.0 / physics_rate:.6g}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{offscreen_size}" offheight="{offscreen_size}"/>
    <quality offsamples="0" shadowsize="0"/>
    <headlight ambient="0.3 0.3 0.3" diffuse="0.35 0.35 0.35" specular="0.05 0.05 0.05"/>
    <rgba haze="0.55 0.6 0.65 1"/>
  </visual>
  <default>
    <joint damping="{JOINT_DAMPING}" armature="{JOINT_ARMATURE}" frictionloss="{JOINT_FRICTIONLOSS}"/>
    <default class="visual">
      <geom contype="0" conaffinity="0" group="2"/>
    </default>
    <default class="hand">
      <geom contype="2" conaffinity="1" condim="4" friction="1.2 0.02 0.001" solref="0.004 1" group="2"/>
    </default>
    <default class="object">
      <geom contype="1" conaffinity="3" condim="4" friction="1.0 0.01 0.001"/>
    </default>
  </default>
  <worldbody>
    <light name="sun" pos="0.3 -0.2 1.2" dir="-0.2 0.15 -1" directional="true" castshadow="false"
           diffuse="0.45 0.45 0.45" specular="0.05 0.05 0.05"/>
    <geom name="table" class="object" type="box" size="{TABLE_HALF[0]} {TABLE_HALF[1]} 0.02"
          pos="{TABLE_CENTER[0]} {TABLE_CENTER[1]} -0.02" rgba="0.60 0.50 0.38 1"/>
    <camera name="top" pos="0.21 0 0.62" xyaxes="0 -1 0 1 0 0" fovy="58"/>
{arm_mjcf(robot)}
{objects}
  </worldbody>
  <actuator>
{actuators}
  </actuator>
</mujoco>
"""


def build_model(
    robot: str = "so101", physics_rate: float = 500.0, offscreen_size: int = 640, task: str = "pick_place"
) -> mujoco.MjModel:
    """Compile the scene of ``task`` for ``robot`` with physics at ``physics_rate`` Hz."""
    return mujoco.MjModel.from_xml_string(scene_mjcf(robot, physics_rate, offscreen_size, task))


__all__ = ["JOINT_NAMES", "ROBOTS", "build_model", "scene_mjcf", "arm_mjcf", "robot_limits", "TCP_IN_GRIPPER"]
