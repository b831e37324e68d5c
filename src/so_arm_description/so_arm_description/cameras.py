"""The cameras' frames: names, mounts and poses (plain numpy, no ROS).

One naming rule for every image publisher and reader (sim_node, camera_node, the dataset converters, rviz):
camera ``<name>`` (e.g. ``top``, ``wrist``) has the body frame ``<name>_camera_link`` (REP 103: x forward
along the optical axis, y left, z up) and the optical frame ``<name>_camera_optical_frame`` (REP 103
camera convention: z forward, x right, y down), which is the ``header.frame_id`` of its images and
camera_info. The optical frame is the camera link turned by rpy (-pi/2, 0, -pi/2).

A :class:`CameraMount` places ``<name>_camera_link`` in a link of the arm: the wrist camera is fixed to
``gripper_link`` and moves with the arm; the overhead camera is fixed to ``base_link`` where the user mounts
it (:func:`parse_pose` reads ``"x y z roll pitch yaw"`` from a launch argument). The defaults are the
simulator's cameras (smolvla_sim.model), derived from its MJCF (MuJoCo cameras look along -z with y up):

* wrist: the MJCF camera ``wrist`` (``pos="0.0025 0.042 -0.018" euler="-0.32 0 0"`` in the gripper body)
  expressed in ``gripper_link``: 18 mm along the fingers, 42 mm to the side of the fixed jaw, looking along
  the fingers, turned 0.32 rad across them;
* top: the MJCF camera ``top`` (``pos="0.21 0 0.62" xyaxes="0 -1 0 1 0 0"``): 0.62 m above the table at
  x = 0.21 m, looking straight down, image up = +x of ``base_link``.

``smolvla_sim/test/test_camera_frames.py`` checks these numbers against MuJoCo's own camera poses over the
workspace (the simulator and the URDF agree to 1e-6 m / rad); :func:`camera_frames` gives the poses in
``base_link`` from forward kinematics, as robot_state_publisher computes them from the URDF.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from so_arm_description.kinematics import link_frames, rpy_matrix
from so_arm_description.robot_spec import get_robot_spec

#: The suite's cameras (the simulator renders both; a real arm's camera_node uses the same names).
CAMERA_NAMES: tuple[str, ...] = ("top", "wrist")

#: camera link -> optical frame (REP 103): z forward, x right, y down.
OPTICAL_RPY: tuple[float, float, float] = (-math.pi / 2.0, 0.0, -math.pi / 2.0)


def camera_link(name: str) -> str:
    """``<name>_camera_link``: the camera's body frame (x forward, y left, z up)."""
    return f"{_check_name(name)}_camera_link"


def optical_frame(name: str) -> str:
    """``<name>_camera_optical_frame``: the frame_id of camera ``name``'s images and camera_info."""
    return f"{_check_name(name)}_camera_optical_frame"


def _check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(
            f"camera name '{name}' must be non-empty letters, digits and '_' (a frame name part)"
        )
    return name


@dataclass(frozen=True)
class CameraMount:
    """``<name>_camera_link`` fixed to link ``parent`` at ``xyz`` (metres) / ``rpy`` (URDF roll-pitch-yaw)."""

    parent: str
    xyz: tuple[float, float, float]
    rpy: tuple[float, float, float]

    def matrix(self) -> np.ndarray:
        """Pose of the camera link in ``parent`` (4x4)."""
        pose = np.eye(4)
        pose[:3, :3] = rpy_matrix(self.rpy)
        pose[:3, 3] = self.xyz
        return pose


#: The wrist camera in gripper_link (both arms: the same wrist and gripper design). From the simulator's MJCF.
WRIST_CAMERA = CameraMount(
    parent="gripper_link",
    xyz=(0.018, 0.041828595499786264, 0.004540770696176921),
    rpy=(-1.5245843966243546, 0.015307498240706104, -0.3196462356183608),
)

#: The overhead camera in base_link: the simulator's; a real setup passes its own (``top_camera_pose``).
TOP_CAMERA = CameraMount(parent="base_link", xyz=(0.21, 0.0, 0.62), rpy=(0.0, math.pi / 2.0, 0.0))


def default_mounts(robot: str = "so101") -> dict[str, CameraMount]:
    """The suite's cameras for ``robot``: ``{"top": TOP_CAMERA, "wrist": WRIST_CAMERA}``."""
    get_robot_spec(robot)  # unknown robots are a ValueError
    return {"top": TOP_CAMERA, "wrist": WRIST_CAMERA}


def parse_pose(text: str, parent: str) -> CameraMount:
    """``"x y z roll pitch yaw"`` (metres, radians; spaces or commas) -> a CameraMount on ``parent``."""
    parts = text.replace(",", " ").split()
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise ValueError(f"camera pose '{text}': expected 6 numbers 'x y z roll pitch yaw'") from None
    if len(values) != 6 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"camera pose '{text}': expected 6 finite numbers 'x y z roll pitch yaw'")
    return CameraMount(parent, (values[0], values[1], values[2]), (values[3], values[4], values[5]))


def mounts_with(
    robot: str = "so101",
    top_camera_pose: str = "",
    wrist_camera_pose: str = "",
) -> dict[str, CameraMount]:
    """:func:`default_mounts` with the overhead and/or wrist camera replaced by a ``"x y z roll pitch yaw"``
    pose ('' keeps the default): the launch files' ``top_camera_pose`` / ``wrist_camera_pose`` arguments."""
    mounts = default_mounts(robot)
    if top_camera_pose.strip():
        mounts["top"] = parse_pose(top_camera_pose, TOP_CAMERA.parent)
    if wrist_camera_pose.strip():
        mounts["wrist"] = parse_pose(wrist_camera_pose, WRIST_CAMERA.parent)
    return mounts


_OPTICAL = CameraMount("", (0.0, 0.0, 0.0), OPTICAL_RPY).matrix()


def camera_frames(
    joint_positions: np.ndarray | list | tuple,
    robot: str = "so101",
    mounts: Mapping[str, CameraMount] | None = None,
) -> dict[str, np.ndarray]:
    """Poses in ``base_link`` of every camera's link and optical frame: ``{frame: (N, 4, 4)}`` (``(4, 4)``
    for a single (6,) input), from forward kinematics (:func:`so_arm_description.kinematics.link_frames`)."""
    links = link_frames(joint_positions, robot)
    out: dict[str, np.ndarray] = {}
    for name, mount in (default_mounts(robot) if mounts is None else mounts).items():
        if mount.parent not in links:
            raise ValueError(
                f"camera '{name}': no link '{mount.parent}' in {robot} (links: {', '.join(links)})"
            )
        pose = links[mount.parent] @ mount.matrix()
        out[camera_link(name)] = pose
        out[optical_frame(name)] = pose @ _OPTICAL
    return out
