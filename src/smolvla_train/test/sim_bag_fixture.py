"""Test fixture: a real rosbag2 bag written with the ``rosbags`` writer from MuJoCo simulator frames.

``write_sim_bag()`` steps ``smolvla_sim.sim.ArmSim`` along a smooth joint trajectory and writes what the
simulator node would publish on the graph contract's topics (``/joint_states`` at 60 Hz, ``/joint_commands``
single-point JointTrajectory at 30 Hz, ``/cameras/{top,wrist}/image_raw`` rgb8 at 30 Hz with per-camera
exposure offsets, ``/robot_description``, the recorder's ``/smolvla/episode`` events and ``metadata.yaml``
custom_data as in contract B), with receive (log) times a few ms after the header stamps. It returns every
published sample so a test can compute the expected dataset independently of the converter.

This is not the episode recorder (H11's ``episode_recorder``); it is a stand-in that writes the same bag
layout from simulator frames without a ROS graph, so the converter's tests run in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
BASE_NS = 1_700_000_000 * 1_000_000_000
NS = 1_000_000_000
TASK = "pick up the cube and put it in the tray"


@dataclass
class Published:
    """What the fixture published: stamps (ns) and values per topic."""

    joint_t: list[int] = field(default_factory=list)
    joint_q: list[np.ndarray] = field(default_factory=list)
    cmd_t: list[int] = field(default_factory=list)
    cmd_q: list[np.ndarray] = field(default_factory=list)
    image_t: dict[str, list[int]] = field(default_factory=dict)
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    task: str = TASK


def write_sim_bag(
    path: str | Path,
    seconds: float = 2.0,
    width: int = 64,
    height: int = 48,
    storage: str = "mcap",
    compression: bool = False,
    seed: int = 3,
    camera_gap: tuple[float, float] | None = None,
    description: bool = True,
    events: bool = True,
    custom_data: bool = True,
    cameras: tuple[str, ...] = ("top", "wrist"),
    image_rate: int = 30,
    task: str = TASK,
    keep_images: bool = True,
    marker: bool = False,
    image_format: str = "rgb8",
) -> Published:
    """Write the bag directory ``path``; ``camera_gap=(t0, t1)`` s: no wrist camera images then.

    Messages are written in receive-time order as they are produced (a small heap absorbs the latency
    offsets), so long bags need little memory; ``keep_images=False`` does not keep the images in the result.
    ``marker=True`` paints a 12x12 block in the top-left corner whose grey level depends on the image's
    sequence number, so neighbouring frames differ clearly (content checks cannot pass off by one).
    ``image_format``: ``rgb8``, ``bgr8`` (rows padded: step > width * 3), ``mono8`` (the published image is
    the grey level, kept as RGB in the result), or ``jpeg`` / ``png`` (CompressedImage on
    ``/cameras/<cam>/image_raw/compressed``; the result keeps the uncompressed image).
    """
    import heapq
    import json

    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
    from rosbags.typesys import Stores, get_typestore

    from smolvla_sim.model import robot_limits
    from smolvla_sim.sim import HOME_POSE, ArmSim, SimConfig
    from so_arm_description.robot_model import build_urdf

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    path = Path(path)
    sim = ArmSim(SimConfig(control_rate=60.0, image_width=width, image_height=height, cameras=cameras))
    sim.reset(seed)
    pub = Published(limits=robot_limits("so101"), task=task)
    writer = Writer(
        path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    )
    if compression:
        writer.set_compression(
            CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE, CompressionFormat.ZSTD
        )
    writer.open()
    suffix = "/compressed" if image_format in ("jpeg", "png") else ""
    types = {
        "/joint_commands": "trajectory_msgs/msg/JointTrajectory",
        "/joint_states": "sensor_msgs/msg/JointState",
        "/robot_description": "std_msgs/msg/String",
        "/smolvla/episode": "std_msgs/msg/String",
        **{
            f"/cameras/{c}/image_raw{suffix}": "sensor_msgs/msg/CompressedImage"
            if suffix
            else "sensor_msgs/msg/Image"
            for c in cameras
        },
    }
    conns = {t: writer.add_connection(t, mt, typestore=ts) for t, mt in types.items()}
    out: list[tuple[int, int, str, object]] = []  # heap of (log_ns, seq, topic, msg)
    seq = [0]

    def emit(log_ns: int, topic: str, msg: object) -> None:
        heapq.heappush(out, (log_ns, seq[0], topic, msg))
        seq[0] += 1

    def flush(before_ns: int) -> None:
        while out and out[0][0] < before_ns:
            log_ns, _, topic, msg = heapq.heappop(out)
            writer.write(conns[topic], log_ns, ts.serialize_cdr(msg, types[topic]))

    def header(stamp: int, frame: str = "") -> object:
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS), frame_id=frame
        )

    pub.start_ns = BASE_NS + 100_000_000
    pub.end_ns = BASE_NS + int((seconds - 0.1) * NS)
    if description:
        emit(
            BASE_NS - 1, "/robot_description", T["std_msgs/msg/String"](data=build_urdf("so101", pub.limits))
        )
    if events:
        for ev, t in (("start", pub.start_ns), ("end", pub.end_ns)):
            data = json.dumps({"event": ev, "episode_index": 0, "task": task, "time_ns": t})
            emit(t, "/smolvla/episode", T["std_msgs/msg/String"](data=data))
    exposure = {"top": 3_000_000, "wrist": 7_000_000}
    steps = int(round(seconds * 60))
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 6)
    for k in range(steps):
        t = BASE_NS + int(round(k * NS / 60))
        s = k / 60
        target = np.asarray(HOME_POSE) + 0.25 * np.sin(2 * np.pi * 0.4 * s + phase) * np.array(
            [1, 1, 1, 1, 1, 0.5]
        )
        if k % 2 == 0:  # commands at 30 Hz
            point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=target.astype(np.float64),
                velocities=np.zeros(0),
                accelerations=np.zeros(0),
                effort=np.zeros(0),
                time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
            )
            msg = T["trajectory_msgs/msg/JointTrajectory"](
                header=header(t), joint_names=list(JOINTS), points=[point]
            )
            emit(t + 500_000, "/joint_commands", msg)
            pub.cmd_t.append(t)
            pub.cmd_q.append(target.copy())
        flush(t - 50_000_000)
        sim.step(target)
        q = np.asarray(sim.joint_positions, dtype=np.float64).copy()
        js = T["sensor_msgs/msg/JointState"](
            header=header(t), name=list(JOINTS), position=q, velocity=np.zeros(6), effort=np.zeros(6)
        )
        emit(t + 1_000_000, "/joint_states", js)
        pub.joint_t.append(t)
        pub.joint_q.append(q)
        if k % (60 // image_rate) == 0:
            for cam in cameras:
                if cam == "wrist" and camera_gap and camera_gap[0] <= s < camera_gap[1]:
                    continue
                img = np.ascontiguousarray(sim.render(cam))
                if marker:
                    img[:12, :12] = (53 * len(pub.image_t.get(cam, []))) % 256
                stamp = t + exposure.get(cam, 0)
                msg = _image_message(T, header(stamp, f"{cam}_camera_optical_frame"), img, image_format)
                if image_format == "mono8":
                    img = np.repeat(np.asarray(msg.data).reshape(height, width, 1), 3, axis=2)
                emit(stamp + 5_000_000, f"/cameras/{cam}/image_raw{suffix}", msg)
                pub.image_t.setdefault(cam, []).append(stamp)
                if keep_images:
                    pub.images.setdefault(cam, []).append(img)
    sim.close()
    flush(2**63 - 1)
    if custom_data:
        for k, v in {
            "smolvla.task": task,
            "smolvla.episode_index": "0",
            "smolvla.start_ns": str(pub.start_ns),
            "smolvla.end_ns": str(pub.end_ns),
            "smolvla.outcome": "unknown",
            "smolvla.robot": "so101",
        }.items():
            writer.set_custom_data(k, v)
    writer.close()
    return pub


def _image_message(T: dict, header: object, img: np.ndarray, image_format: str) -> object:
    """A sensor_msgs Image / CompressedImage carrying the RGB image ``img`` in ``image_format``."""
    import cv2

    h, w = img.shape[:2]
    if image_format in ("jpeg", "png"):
        ok, buf = cv2.imencode(
            ".jpg" if image_format == "jpeg" else ".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        )
        assert ok
        return T["sensor_msgs/msg/CompressedImage"](header=header, format=image_format, data=buf.reshape(-1))
    if image_format == "mono8":
        data, step = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).reshape(-1), w
    elif image_format == "bgr8":
        step = w * 3 + 4
        rows = np.zeros((h, step), dtype=np.uint8)
        rows[:, : w * 3] = img[:, :, ::-1].reshape(h, w * 3)
        data = rows.reshape(-1)
    else:
        data, step = img.reshape(-1), w * 3
    return T["sensor_msgs/msg/Image"](
        header=header, height=h, width=w, encoding=image_format, is_bigendian=0, step=step, data=data
    )
