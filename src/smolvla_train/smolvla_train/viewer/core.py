"""The suite's messages as Rerun logs (no rclpy): the core of the ``viewer`` node and ``smolvla_train view``.

One :class:`ViewerLog` writes to one ``rerun.RecordingStream``. Its methods take plain data (numpy arrays,
names) or duck-typed messages with the ROS field names, so the same code serves live rclpy messages (the
``viewer`` node) and messages deserialized from a bag by rosbags (``smolvla_train view BAG``).

What is logged where (entity paths; 3D entities are in ``base_link``, REP 103/105: x forward, z up, metres):

====================================  ===================================================================
``world/arm``                         the arm from forward kinematics of ``/joint_states``: link origins
                                      as a line strip (grey) and points; ``world/arm/tcp`` the gripper
``world/chunk``                       the last predicted chunk as a gripper path (green line, points)
``world/queue``                       the fused queue ahead (orange line), from ``/smolvla/queue_ahead``
``world/cameras/<name>``              each camera's optical frame (REP 103: z forward, x right, y down) from
                                      forward kinematics and the camera mounts of ``/robot_description``
                                      (so_arm_description.cameras); with its ``camera_info`` a frustum
``cameras/<name>``                    camera images (JPEG-compressed unless ``jpeg_quality`` is 0)
``plots/threshold_g``                 threshold g in force (``/smolvla/queue_status``)
``plots/latency_ms``                  round trip of the last request; ``plots/inference_ms`` chunk time
``plots/idle_ticks``                  ticks with an empty queue (cumulative); ``plots/queue_size``
``joints/<name>``                     joint positions [rad]; ``action/<name>`` streamed commands
====================================  ===================================================================

Timeline ``time`` (a duration in seconds): since the viewer's first message (live), since the bag's start, or
the dataset frame's timestamp.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from so_arm_description import kinematics
from so_arm_description.cameras import CameraMount, camera_frames, default_mounts, optical_frame
from so_arm_description.joints import JOINT_NAMES

#: Timeline of every log (seconds).
TIMELINE = "time"
ARM = "world/arm"
CHUNK = "world/chunk"
QUEUE = "world/queue"
WORLD_CAMERAS = "world/cameras"
#: distance of the image plane drawn in a camera frustum [m]
FRUSTUM_DEPTH = 0.05
CAMERAS = "cameras"
PLOTS = "plots"
JOINTS = "joints"
#: colours (RGB 0..255)
ARM_COLOR = (170, 170, 170)
CHUNK_COLOR = (40, 200, 60)
QUEUE_COLOR = (255, 140, 0)
#: QueueStatus fields shown as time series -> entity names under plots/
STATUS_SERIES = {
    "threshold": "threshold_g",
    "last_latency_ms": "latency_ms",
    "idle_ticks": "idle_ticks",
    "queue_size": "queue_size",
}


def _rr() -> Any:
    import rerun as rr

    return rr


def reorder(
    values: Sequence[float], names: Sequence[str], order: Sequence[str] = JOINT_NAMES
) -> np.ndarray | None:
    """``values`` (named by ``names``) in ``order``; None when a joint of ``order`` is missing."""
    idx = {n: i for i, n in enumerate(names)}
    try:
        return np.array([float(values[idx[n]]) for n in order], dtype=np.float64)
    except (KeyError, IndexError):
        return None


def trajectory_positions(traj: Any, order: Sequence[str] = JOINT_NAMES) -> np.ndarray | None:
    """(N, 6) positions of a JointTrajectory-like message in ``order`` (None if a joint is missing)."""
    names = list(traj.joint_names) or list(order)
    rows = [reorder(list(p.positions), names, order) for p in traj.points]
    if not rows or any(r is None for r in rows):
        return None
    return np.stack(rows)  # type: ignore[arg-type]


def stamp_seconds(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


@dataclass
class ViewerStats:
    """What was logged (counts per kind; ``rejected`` counts messages that could not be shown)."""

    logged: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, ok: bool = True) -> None:
        d = self.logged if ok else self.rejected
        d[kind] = d.get(kind, 0) + 1


def blueprint(cameras: Iterable[str]) -> Any:
    """The default layout: 3D arm and paths on the left; cameras and the time series on the right."""
    import rerun.blueprint as rrb

    cams = [rrb.Spatial2DView(origin=f"{CAMERAS}/{c}", name=f"{c} camera") for c in cameras]
    plots = rrb.Horizontal(
        rrb.TimeSeriesView(origin=PLOTS, contents=[f"{PLOTS}/threshold_g"], name="threshold g"),
        rrb.TimeSeriesView(
            origin=PLOTS, contents=[f"{PLOTS}/latency_ms", f"{PLOTS}/inference_ms"], name="latency [ms]"
        ),
        rrb.TimeSeriesView(
            origin=PLOTS,
            contents=[f"{PLOTS}/queue_size", f"{PLOTS}/idle_ticks"],
            name="queue size, idle ticks",
        ),
    )
    right = rrb.Vertical(
        rrb.Horizontal(*cams) if cams else rrb.TextLogView(origin="log"),
        plots,
        rrb.TimeSeriesView(origin=JOINTS, name="joints [rad]"),
        row_shares=[2, 1.3, 1.3],
    )
    return rrb.Blueprint(
        rrb.Horizontal(rrb.Spatial3DView(origin="world", name="arm (base_link)"), right),
        collapse_panels=True,
    )


class ViewerLog:
    """Logs the suite's data to one Rerun recording (see the module docstring for the layout)."""

    def __init__(
        self,
        recording: Any,
        robot: str = "so101",
        jpeg_quality: int = 80,
    ) -> None:
        self.rec = recording
        self.robot = robot
        self.jpeg_quality = int(jpeg_quality)
        self.stats = ViewerStats()
        self._last_chunk: tuple[int, np.ndarray] | None = None
        #: camera name -> mount (the simulator's until /robot_description names the arm's cameras)
        self.camera_mounts: dict[str, CameraMount] = default_mounts(robot)
        self._pinholes: dict[str, tuple[float, ...]] = {}
        rr = _rr()
        self.rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        for name, color in (("threshold_g", (60, 120, 255)), ("latency_ms", (255, 80, 80))):
            self.rec.log(f"{PLOTS}/{name}", rr.SeriesLines(colors=[color], names=[name]), static=True)

    # -- time -----------------------------------------------------------------------------------------------
    def set_time(self, seconds: float) -> None:
        self.rec.set_time(TIMELINE, duration=float(seconds))

    # -- plain data -----------------------------------------------------------------------------------------
    def arm(self, q: np.ndarray) -> None:
        """The arm at joint positions ``q`` (6, contract order, radians) from forward kinematics."""
        rr = _rr()
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(JOINT_NAMES),) or not np.isfinite(q).all():
            self.stats.count("arm", ok=False)
            return
        frames = kinematics.link_frames(q, robot=self.robot)
        chain = kinematics.get_chain(self.robot)
        pts = np.array([frames[link][:3, 3] for link in chain.links])
        self.rec.log(ARM, rr.LineStrips3D([pts], colors=[ARM_COLOR], radii=[0.008]))
        self.rec.log(f"{ARM}/joints", rr.Points3D(pts, colors=[ARM_COLOR], radii=[0.012]))
        tcp = frames[chain.tcp_link]
        self.rec.log(
            f"{ARM}/tcp",
            rr.Transform3D(translation=tcp[:3, 3], mat3x3=tcp[:3, :3]),
            rr.TransformAxes3D(axis_length=0.05),
        )
        self._camera_poses(q)
        for name, value in zip(JOINT_NAMES, q):
            self.rec.log(f"{JOINTS}/{name}", rr.Scalars(float(value)))
        self.stats.count("arm")

    def _camera_poses(self, q: np.ndarray) -> None:
        """Each camera's optical frame at ``world/cameras/<name>`` (the frame of its images' frame_id)."""
        rr = _rr()
        try:
            poses = camera_frames(q, self.robot, self.camera_mounts)
        except ValueError:  # a mount on a link this arm's chain lacks
            self.stats.count("camera poses", ok=False)
            return
        for name in self.camera_mounts:
            pose = poses[optical_frame(name)]
            self.rec.log(
                f"{WORLD_CAMERAS}/{name}",
                rr.Transform3D(translation=pose[:3, 3], mat3x3=pose[:3, :3]),
                rr.TransformAxes3D(axis_length=0.03),
            )

    def path(self, entity: str, actions: np.ndarray, color: tuple[int, int, int]) -> None:
        """A gripper path: forward kinematics of each action (N, 6) as a line strip with points."""
        rr = _rr()
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != len(JOINT_NAMES) or not np.isfinite(a).all():
            self.stats.count(entity, ok=False)
            return
        if a.shape[0] == 0:
            self.rec.log(entity, rr.Clear(recursive=True))
            return
        xyz = kinematics.forward_kinematics(a, robot=self.robot)
        self.rec.log(entity, rr.LineStrips3D([xyz], colors=[color], radii=[0.004]))
        self.rec.log(f"{entity}/points", rr.Points3D(xyz, colors=[color], radii=[0.007]))
        self.stats.count(entity)

    def image(self, camera: str, rgb: np.ndarray) -> None:
        rr = _rr()
        img = rr.Image(np.ascontiguousarray(rgb), color_model="RGB")
        if self.jpeg_quality > 0:
            img = img.compress(jpeg_quality=self.jpeg_quality)
        self.rec.log(f"{CAMERAS}/{camera}", img)
        self.stats.count(f"camera {camera}")

    def scalar(self, name: str, value: float) -> None:
        self.rec.log(f"{PLOTS}/{name}", _rr().Scalars(float(value)))

    # -- messages (rclpy or rosbags) ------------------------------------------------------------------------
    def joint_state(self, msg: Any) -> None:
        q = reorder(list(msg.position), list(msg.name))
        if q is None:
            self.stats.count("arm", ok=False)
            return
        self.arm(q)

    def camera_image(self, camera: str, msg: Any) -> None:
        from smolvla_common.image_conversion import ImageConversionError, image_to_numpy

        try:
            arr = image_to_numpy(msg)
        except ImageConversionError:
            self.stats.count(f"camera {camera}", ok=False)
            return
        if msg.encoding == "bgr8":
            arr = arr[..., ::-1]
        elif msg.encoding in ("mono8",) or arr.shape[-1] == 1:
            arr = np.repeat(arr[..., :1], 3, axis=-1)
        elif msg.encoding in ("rgba8", "bgra8"):
            arr = arr[..., :3] if msg.encoding == "rgba8" else arr[..., 2::-1]
        if arr.dtype != np.uint8:
            self.stats.count(f"camera {camera}", ok=False)
            return
        self.image(camera, arr)

    def camera_info(self, camera: str, msg: Any) -> None:
        """sensor_msgs/CameraInfo: the camera's frustum (pinhole K, image size) in the 3D view, logged when
        it changes."""
        try:
            k = np.asarray(list(msg.k), dtype=np.float64).reshape(3, 3)
            size = (int(msg.width), int(msg.height))
        except (TypeError, ValueError):
            self.stats.count(f"camera_info {camera}", ok=False)
            return
        if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0 or min(size) <= 0:
            self.stats.count(f"camera_info {camera}", ok=False)
            return
        key = (*k.reshape(-1).tolist(), *size)
        if self._pinholes.get(camera) == key:
            return
        self._pinholes[camera] = key
        rr = _rr()
        self.rec.log(
            f"{WORLD_CAMERAS}/{camera}",
            rr.Pinhole(
                image_from_camera=k,
                resolution=list(size),
                camera_xyz=rr.ViewCoordinates.RDF,  # the optical frame: x right, y down, z forward
                image_plane_distance=FRUSTUM_DEPTH,
            ),
        )
        self.stats.count(f"camera_info {camera}")

    def compressed_image(self, camera: str, msg: Any) -> None:
        rr = _rr()
        fmt = str(msg.format).lower()
        media = "image/png" if "png" in fmt else "image/jpeg"
        self.rec.log(f"{CAMERAS}/{camera}", rr.EncodedImage(contents=bytes(msg.data), media_type=media))
        self.stats.count(f"camera {camera}")

    def action_chunk(self, msg: Any) -> None:
        """smolvla_msgs/ActionChunk: the predicted gripper path; inference time as a series."""
        a = trajectory_positions(msg.trajectory)
        if a is None:
            self.stats.count(CHUNK, ok=False)
            return
        self._last_chunk = (int(msg.start_timestep), a)
        self.path(CHUNK, a, CHUNK_COLOR)
        self.scalar("inference_ms", float(msg.inference_ms))

    def queue_ahead(self, msg: Any) -> None:
        """JointTrajectory of the fused queue's actions still ahead (``/smolvla/queue_ahead``)."""
        a = trajectory_positions(msg) if len(msg.points) else np.zeros((0, len(JOINT_NAMES)))
        if a is None:
            self.stats.count(QUEUE, ok=False)
            return
        self.path(QUEUE, a, QUEUE_COLOR)

    def queue_status(self, msg: Any) -> None:
        """smolvla_msgs/QueueStatus: g, latency, idle ticks, queue size as time series."""
        for fieldname, series in STATUS_SERIES.items():
            self.scalar(series, float(getattr(msg, fieldname)))
        self.stats.count("queue_status")

    def command(self, msg: Any) -> None:
        """trajectory_msgs/JointTrajectory on /joint_commands: the streamed target as series."""
        a = trajectory_positions(msg)
        if a is None:
            return
        for name, value in zip(JOINT_NAMES, a[0]):
            self.rec.log(f"action/{name}", _rr().Scalars(float(value)))

    def robot_description(self, urdf_text: str) -> None:
        from so_arm_description.robot_model import camera_mounts_from_urdf, robot_from_urdf

        try:
            self.robot = robot_from_urdf(urdf_text, default=self.robot)
            # the cameras where this arm's description puts them (a description without cameras: defaults)
            self.camera_mounts = camera_mounts_from_urdf(urdf_text) or default_mounts(self.robot)
        except ValueError:
            self.stats.count("robot_description", ok=False)
