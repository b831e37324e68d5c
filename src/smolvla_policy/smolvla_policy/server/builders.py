"""Chunk -> smolvla_msgs/ActionChunk and chunk -> visualization_msgs/MarkerArray (gripper path).

No rclpy import: only message classes. The forward kinematics are passed in as a callable
``fk(joint_positions (N, 6) radians in JOINT_NAMES order, robot) -> (N, 3) metres`` so the builder is testable
without the kinematics module; :func:`load_forward_kinematics` finds ``so_arm_description.kinematics`` lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from so_arm_description.robot_spec import JOINT_NAMES

ForwardKinematics = Callable[..., np.ndarray]


def seconds_to_duration(t: float) -> Any:
    from builtin_interfaces.msg import Duration

    sec = math.floor(t)
    nanosec = int(round((t - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Duration(sec=int(sec), nanosec=nanosec)


def build_action_chunk(
    chunk: np.ndarray,
    joint_names: Sequence[str],
    *,
    stamp: tuple[int, int],
    frame_id: str,
    start_timestep: int,
    fps: float,
    inference_ms: float,
) -> Any:
    """ActionChunk: header.stamp = the observation's, period = 1/fps, time_from_start = i * period."""
    from builtin_interfaces.msg import Time
    from trajectory_msgs.msg import JointTrajectoryPoint

    from smolvla_msgs.msg import ActionChunk

    period = 1.0 / float(fps)
    msg = ActionChunk()
    msg.header.stamp = Time(sec=int(stamp[0]), nanosec=int(stamp[1]))
    msg.header.frame_id = frame_id
    msg.start_timestep = int(start_timestep)
    msg.period = period
    msg.inference_ms = float(inference_ms)
    msg.trajectory.header = msg.header
    msg.trajectory.joint_names = [str(n) for n in joint_names]
    points = []
    for i, row in enumerate(np.asarray(chunk, dtype=np.float64)):
        point = JointTrajectoryPoint()
        point.positions = row.tolist()
        point.time_from_start = seconds_to_duration(i * period)
        points.append(point)
    msg.trajectory.points = points
    return msg


def chunk_to_arm_order(chunk: np.ndarray, joint_names: Sequence[str]) -> np.ndarray | None:
    """The chunk's columns in JOINT_NAMES order, or None when a joint is missing."""
    try:
        cols = [list(joint_names).index(n) for n in JOINT_NAMES]
    except ValueError:
        return None
    return np.asarray(chunk, dtype=np.float64)[:, cols]


def build_chunk_markers(
    chunk: np.ndarray,
    joint_names: Sequence[str],
    fk: ForwardKinematics,
    *,
    frame_id: str,
    stamp: tuple[int, int],
    robot: str = "so101",
    ns: str = "smolvla_chunk",
) -> Any | None:
    """MarkerArray: a LINE_STRIP of the predicted gripper path (id 0) and a sphere per action (id 1,
    SPHERE_LIST, green at the first action to blue at the last). None when the chunk lacks an arm joint."""
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    q = chunk_to_arm_order(chunk, joint_names)
    if q is None or q.shape[0] == 0:
        return None
    xyz = np.asarray(fk(q, robot=robot), dtype=np.float64)
    if xyz.shape != (q.shape[0], 3) or not np.isfinite(xyz).all():
        raise ValueError(f"forward kinematics returned shape {xyz.shape}, expected ({q.shape[0]}, 3)")
    points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz]
    n = len(points)
    colors = [ColorRGBA(r=0.1, g=1.0 - i / max(1, n - 1), b=i / max(1, n - 1), a=0.9) for i in range(n)]

    def marker(mid: int, mtype: int, scale: float) -> Any:
        m = Marker()
        m.header.stamp = Time(sec=int(stamp[0]), nanosec=int(stamp[1]))
        m.header.frame_id = frame_id
        m.ns, m.id, m.type, m.action = ns, mid, mtype, Marker.ADD
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = scale
        m.points = points
        return m

    line = marker(0, Marker.LINE_STRIP, 0.004)
    line.color = ColorRGBA(r=0.1, g=0.8, b=0.2, a=0.8)
    spheres = marker(1, Marker.SPHERE_LIST, 0.012)
    spheres.color = ColorRGBA(r=0.1, g=0.8, b=0.2, a=0.9)
    spheres.colors = colors
    return MarkerArray(markers=[line, spheres])


def build_prefix_markers(
    prefix: np.ndarray,
    joint_names: Sequence[str],
    fk: ForwardKinematics,
    *,
    guided: int,
    frame_id: str,
    stamp: tuple[int, int],
    robot: str = "so101",
    ns: str = "smolvla_rtc_prefix",
    lifetime_s: float = 0.0,
) -> list[Any]:
    """Real-time chunking in rviz: the previous chunk's actions still to execute (the RTC prefix) as an orange
    LINE_STRIP (id 0) and its first ``guided`` actions, those guiding the new chunk, as orange spheres (id 1);
    the new chunk keeps :func:`build_chunk_markers`' green-to-blue colours. Empty when a joint is missing."""
    from builtin_interfaces.msg import Duration, Time
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker

    q = chunk_to_arm_order(prefix, joint_names)
    if q is None or q.shape[0] == 0:
        return []
    xyz = np.asarray(fk(q, robot=robot), dtype=np.float64)
    if xyz.shape != (q.shape[0], 3) or not np.isfinite(xyz).all():
        raise ValueError(f"forward kinematics returned shape {xyz.shape}, expected ({q.shape[0]}, 3)")
    points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz]
    orange = ColorRGBA(r=1.0, g=0.55, b=0.0, a=0.9)
    sec = math.floor(max(0.0, lifetime_s))
    life = Duration(sec=int(sec), nanosec=int((max(0.0, lifetime_s) - sec) * 1e9))

    def marker(mid: int, mtype: int, scale: float, pts: list[Any]) -> Any:
        m = Marker()
        m.header.stamp = Time(sec=int(stamp[0]), nanosec=int(stamp[1]))
        m.header.frame_id = frame_id
        m.ns, m.id, m.type, m.action = ns, mid, mtype, Marker.ADD
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = scale
        m.points = pts
        m.color = orange
        m.lifetime = life
        return m

    out = [marker(0, Marker.LINE_STRIP, 0.003, points)]
    if guided > 0:
        out.append(marker(1, Marker.SPHERE_LIST, 0.016, points[: int(guided)]))
    return out


def load_forward_kinematics() -> tuple[ForwardKinematics | None, str]:
    """``so_arm_description.kinematics.forward_kinematics`` if available, else (None, reason)."""
    try:
        from so_arm_description.kinematics import forward_kinematics
    except Exception as exc:  # ImportError, or a broken module: markers are optional
        return (
            None,
            f"so_arm_description.kinematics is not available ({type(exc).__name__}: {exc})",
        )
    return forward_kinematics, ""
