"""LeRobot v3.0 dataset -> one rosbag2 MCAP bag per episode (``smolvla_train lerobot2bag``).

Any v3.0 dataset (written here or by lerobot itself) becomes bags on the graph contract's topics in ROS units,
so it can be replayed into the graph (``replay`` backend, rviz) or viewed in ROS tools, and converted back:

* ``/joint_states`` sensor_msgs/JointState (``observation.state``, radians), one per frame;
* ``/joint_commands`` trajectory_msgs/JointTrajectory, one point = the frame's ``action`` (radians);
* ``/cameras/<cam>/image_raw`` sensor_msgs/Image rgb8 (decoded video frames) + ``camera_info`` (size only),
  frame_id ``<cam>_camera_optical_frame`` (so_arm_description.cameras: the frame in the URDF);
* ``/robot_description`` std_msgs/String (URDF with the limits used for the gripper's 0..100 %);
* ``/smolvla/episode`` std_msgs/String JSON start/end events, and ``metadata.yaml`` custom_data
  (``smolvla.task``, ``smolvla.episode_index``, ``smolvla.start_ns``, ``smolvla.end_ns``, ``smolvla.robot``)
  as the episode recorder writes them (contract B).

Frame k is stamped ``start + k / fps`` (header stamps = log times). Units: the dataset's ``smolvla_units``
(info.json) if present; else lerobot's SO-10x convention with the gripper range from ``--calibration`` or
the nominal limits of ``--robot`` (default so101). Each bag is written as ``<name>.partial`` and renamed
when complete. Plain Python (rosbags writer), no rclpy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from smolvla_train import lerobot_format as lf
from smolvla_train.lerobot_dataset import DatasetReader, joint_names
from so_arm_description.cameras import optical_frame

NS = 1_000_000_000
#: Default stamp of frame 0 of the first episode (2023-11-14T22:13:20Z); episodes follow 1 s apart.
DEFAULT_START_NS = 1_700_000_000 * NS


class ExportError(RuntimeError):
    pass


def dataset_units(
    info: dict[str, Any], names: list[str], calibration: Path | None, robot: str
) -> tuple[Any, dict[str, tuple[float, float]], str]:
    """(converter or None, joint limits for the URDF, source text)."""
    from so_arm_description import robot_model
    from so_arm_description.units import JointUnits

    units = info.get(lf.UNITS_KEY) or {}
    if calibration is not None:
        try:
            limits = robot_model.limits_from_calibration(json.loads(Path(calibration).read_text()))
        except (OSError, ValueError) as exc:
            raise ExportError(f"cannot use calibration {calibration}: {exc}") from exc
        source = f"calibration file {calibration}"
    elif units.get("limits_rad"):
        limits = {k: (float(v[0]), float(v[1])) for k, v in units["limits_rad"].items()}
        source = "the dataset's smolvla_units"
    else:
        limits = robot_model.default_limits(robot)
        source = f"nominal {robot} limits"
    full = dict(robot_model.default_limits(robot))
    full.update(limits)
    if units.get("kind") == "radians":
        return None, full, "dataset in radians (smolvla_units)"
    try:
        conv = JointUnits.lerobot(full, names=names)
    except ValueError as exc:
        raise ExportError(f"lerobot units for joints {names}: {exc}") from exc
    return conv, full, f"lerobot units, gripper range from {source}"


def _contract_names(names: list[str]) -> list[str]:
    """lerobot feature names such as 'shoulder_pan.pos' -> 'shoulder_pan'."""
    return [n[:-4] if n.endswith(".pos") else n for n in names]


def export(
    dataset: str | Path,
    out_dir: str | Path,
    episodes: list[int] | None = None,
    calibration: Path | None = None,
    robot: str = "so101",
    start_ns: int = DEFAULT_START_NS,
    storage: str = "mcap",
    progress: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Write one bag per episode into ``out_dir``; returns the bag directories."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import StoragePlugin
    from rosbags.typesys import Stores, get_typestore
    from tqdm import tqdm

    from so_arm_description.robot_model import build_urdf

    reader = DatasetReader(dataset)
    info = reader.info
    fps = reader.fps
    names = _contract_names(joint_names(info, lf.STATE))
    act_names = _contract_names(joint_names(info, lf.ACTION)) if lf.ACTION in info["features"] else []
    conv, limits, units_text = dataset_units(info, names, calibration, robot)
    conv_act = conv
    if act_names and act_names != names:
        conv_act, _, _ = dataset_units(info, act_names, calibration, robot)
    robot_key = robot
    rt = str(info.get("robot_type") or "")
    if rt.startswith(("so100", "so101")):
        robot_key = rt[:5]
    try:
        urdf = build_urdf(robot_key, dict(limits))
    except ValueError:
        urdf = build_urdf(robot_key, None)
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = episodes if episodes is not None else reader.episode_indices()
    cams = [lf.camera_of(k) for k in reader.video_keys]
    # the frame of the camera in the URDF (so_arm_description.cameras), as sim_node and camera_node stamp it;
    # a dataset key such as lerobot's "observation.image" gives "observation_image_camera_optical_frame"
    frame_ids = {c: optical_frame(re.sub(r"[^A-Za-z0-9_]", "_", c) or "camera") for c in cams}
    written = []
    t_ep = start_ns
    for e in tqdm(todo, desc="episodes", unit="ep", disable=not progress):
        ep = reader.episode(e)
        n = len(ep.state)
        name = f"episode_{e:06d}"
        final = out_dir / name
        if final.exists():
            if not overwrite:
                raise ExportError(f"{final} exists (use --overwrite)")
            shutil.rmtree(final)
        partial = out_dir / f"{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        bag_dir = partial / name
        times = t_ep + np.round(np.arange(n) * (NS / fps)).astype(np.int64)
        state = conv.to_ros(ep.state) if conv is not None else ep.state.astype(np.float64)
        action = None
        if ep.action.size:
            action = conv_act.to_ros(ep.action) if conv_act is not None else ep.action.astype(np.float64)

        def header(t: int, frame: str = "") -> Any:
            return T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=int(t) // NS, nanosec=int(t) % NS), frame_id=frame
            )

        writer = Writer(
            bag_dir,
            version=9,
            storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3,
        )
        try:
            writer.open()
            c_js = writer.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
            c_cmd = writer.add_connection(
                "/joint_commands", "trajectory_msgs/msg/JointTrajectory", typestore=ts
            )
            c_desc = writer.add_connection("/robot_description", "std_msgs/msg/String", typestore=ts)
            c_ev = writer.add_connection("/smolvla/episode", "std_msgs/msg/String", typestore=ts)
            c_img = {
                c: writer.add_connection(f"/cameras/{c}/image_raw", "sensor_msgs/msg/Image", typestore=ts)
                for c in cams
            }
            c_info = {
                c: writer.add_connection(
                    f"/cameras/{c}/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts
                )
                for c in cams
            }

            def write(conn: Any, t: int, msg: Any, mt: str, w: Any = writer) -> None:
                w.write(conn, int(t), ts.serialize_cdr(msg, mt))

            s = "std_msgs/msg/String"
            write(c_desc, times[0] - 1, T[s](data=urdf), s)
            ev = {"event": "start", "episode_index": e, "task": ep.task, "time_ns": int(times[0])}
            write(c_ev, times[0], T[s](data=json.dumps(ev)), s)
            frames = {c: reader.frames(ep, lf.image_key(c)) for c in cams}
            for k in range(n):
                t = int(times[k])
                if action is not None:
                    pt = T["trajectory_msgs/msg/JointTrajectoryPoint"](
                        positions=action[k].astype(np.float64),
                        velocities=np.zeros(0),
                        accelerations=np.zeros(0),
                        effort=np.zeros(0),
                        time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0),
                    )
                    mt = "trajectory_msgs/msg/JointTrajectory"
                    write(c_cmd, t, T[mt](header=header(t), joint_names=act_names or names, points=[pt]), mt)
                mt = "sensor_msgs/msg/JointState"
                js = T[mt](
                    header=header(t),
                    name=names,
                    position=state[k].astype(np.float64),
                    velocity=np.zeros(0),
                    effort=np.zeros(0),
                )
                write(c_js, t, js, mt)
                for c in cams:
                    try:
                        img = next(frames[c])
                    except StopIteration:
                        raise ExportError(f"episode {e}: video {c} has fewer than {n} frames") from None
                    h, w = img.shape[:2]
                    mt = "sensor_msgs/msg/Image"
                    msg = T[mt](
                        header=header(t, frame_ids[c]),
                        height=h,
                        width=w,
                        encoding="rgb8",
                        is_bigendian=0,
                        step=w * 3,
                        data=np.ascontiguousarray(img).reshape(-1),
                    )
                    write(c_img[c], t, msg, mt)
                    if k == 0:
                        ci = "sensor_msgs/msg/CameraInfo"
                        write(
                            c_info[c],
                            t,
                            T[ci](
                                header=header(t, frame_ids[c]),
                                height=h,
                                width=w,
                                distortion_model="",
                                d=np.zeros(0),
                                k=np.zeros(9),
                                r=np.zeros(9),
                                p=np.zeros(12),
                                binning_x=0,
                                binning_y=0,
                                roi=T["sensor_msgs/msg/RegionOfInterest"](
                                    x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
                                ),
                            ),
                            ci,
                        )
            ev = {"event": "end", "episode_index": e, "task": ep.task, "time_ns": int(times[-1])}
            write(c_ev, times[-1], T[s](data=json.dumps(ev)), s)
            for key, val in {
                "smolvla.task": ep.task,
                "smolvla.episode_index": str(e),
                "smolvla.start_ns": str(int(times[0])),
                "smolvla.end_ns": str(int(times[-1])),
                "smolvla.outcome": "unknown",
                "smolvla.robot": robot_key,
                "smolvla.source": f"lerobot dataset {Path(dataset).absolute()} episode {e}",
                "smolvla.units": units_text,
                "smolvla.fps": str(fps),
            }.items():
                writer.set_custom_data(key, val)
            writer.close()
        except BaseException:
            with contextlib.suppress(Exception):  # error path
                writer.close()
            shutil.rmtree(partial, ignore_errors=True)
            raise
        # <out>/<name>.partial/<name>/ -> <out>/<name>/
        bag_dir.rename(final)
        partial.rmdir()
        written.append(final)
        t_ep = int(times[-1]) + NS
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="smolvla_train lerobot2bag",
        description="Write one rosbag2 bag per episode of a LeRobot v3.0 dataset, on the graph contract's "
        "topics in ROS units (radians), e.g. to replay it into the graph or to view it in ROS tools.",
    )
    p.add_argument("dataset", type=Path, help="LeRobot v3.0 dataset root")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="directory for the bags (episode_XXXXXX/)"
    )
    p.add_argument("--episodes", help="comma-separated episode indices (default: all)")
    p.add_argument("--calibration", type=Path, help="lerobot calibration JSON for the gripper's 0..100 range")
    p.add_argument(
        "--robot",
        choices=["so101", "so100"],
        default="so101",
        help="nominal limits when the dataset does not record its own (default so101)",
    )
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--start-ns", type=int, default=DEFAULT_START_NS, help="stamp of the first frame (ns)")
    p.add_argument("--overwrite", action="store_true", help="replace existing episode bags")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        eps = [int(x) for x in args.episodes.split(",")] if args.episodes else None
        bags = export(
            args.dataset,
            args.output,
            eps,
            args.calibration,
            args.robot,
            args.start_ns,
            args.storage,
            progress=not args.no_progress and sys.stderr.isatty(),
            overwrite=args.overwrite,
        )
    except (ExportError, lf.FormatError, ValueError, OSError) as exc:
        print(f"lerobot2bag: {exc}", file=sys.stderr)
        return 1
    for b in bags:
        print(b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
