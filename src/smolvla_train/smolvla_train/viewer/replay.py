"""``smolvla_train view DATASET|BAG``: a LeRobot v3.0 dataset or a rosbag2 bag in Rerun's web viewer.

The same layout as the live ``viewer`` node (:mod:`smolvla_train.viewer.core`): the arm in 3D from forward
kinematics, the cameras, g / latency / idle ticks, the predicted chunks and the queue ahead (bags recorded
with those topics), joint positions and commands as time series.

- a **bag** (directory, .mcap or .db3; or a directory of episode bags): every message of the contract's topics
  at its log time (``time`` = seconds since the bag's start; several bags follow each other with a 1 s gap);
- a **dataset**: each episode's ``observation.state`` (the arm), ``action`` (``action/<joint>`` series and
  the whole episode's gripper path in ``world/chunk``) and the decoded camera videos; units converted to
  radians as ``lerobot2bag`` does (the dataset's ``smolvla_units`` or lerobot's degrees / 0..100 gripper).

It serves the result on 127.0.0.1 (``--web-port``, default 9090) until Ctrl-C, and/or writes an .rrd file
(``--save``; with ``--no-serve`` it exits afterwards). Datasets and bags are read with this package's readers
(``lerobot_dataset.DatasetReader``, ``bagio.open_bag``).

    smolvla_train view ~/demos_sim/episode_000000                # one bag
    smolvla_train view ~/datasets/pick_place --episodes 0 3      # two episodes of a dataset
    smolvla_train view ~/datasets/pick_place --save pick.rrd --no-serve
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from smolvla_train.viewer.core import CHUNK, CHUNK_COLOR, ViewerLog

BAG_GAP_S = 1.0


class ViewError(RuntimeError):
    pass


def _camera_of(topic: str) -> tuple[str, bool] | None:
    from smolvla_train.mapping import CAMERA_TOPIC

    m = CAMERA_TOPIC.match(topic)
    return (m.group("name"), bool(m.group("compressed"))) if m else None


def bag_cameras(paths: list[Path]) -> list[str]:
    from smolvla_train.bagio import open_bag

    names: list[str] = []
    for p in paths:
        with open_bag(p) as bag:
            for topic in bag.topics:
                cam = _camera_of(topic)
                if cam and cam[0] not in names:
                    names.append(cam[0])
    return names


def log_bag(log: ViewerLog, path: Path, offset_s: float = 0.0, progress: bool = True) -> float:
    """Log one bag; returns its duration [s]."""
    from tqdm import tqdm

    from smolvla_train.bagio import BagError, open_bag

    with open_bag(path) as bag:
        handlers: dict[str, Any] = {}
        for name, info in bag.topics.items():
            t = info.msgtype
            cam = _camera_of(name)
            if cam is not None and t == "sensor_msgs/msg/Image":
                handlers[name] = lambda m, c=cam[0]: log.camera_image(c, m)
            elif cam is not None and t == "sensor_msgs/msg/CompressedImage":
                handlers[name] = lambda m, c=cam[0]: log.compressed_image(c, m)
            elif t == "sensor_msgs/msg/CameraInfo" and name.startswith("/cameras/") and name.count("/") == 3:
                info_camera = name.split("/")[2]
                handlers[name] = lambda m, c=info_camera: log.camera_info(c, m)
            elif t == "sensor_msgs/msg/JointState" and name == "/joint_states":
                handlers[name] = log.joint_state
            elif t == "trajectory_msgs/msg/JointTrajectory" and name == "/joint_commands":
                handlers[name] = log.command
            elif t == "trajectory_msgs/msg/JointTrajectory" and name == "/smolvla/queue_ahead":
                handlers[name] = log.queue_ahead
            elif t == "smolvla_msgs/msg/ActionChunk":
                handlers[name] = log.action_chunk
            elif t == "smolvla_msgs/msg/QueueStatus":
                handlers[name] = log.queue_status
            elif t == "std_msgs/msg/String" and name == "/robot_description":
                handlers[name] = lambda m: log.robot_description(str(m.data))
        total = sum(bag.topics[n].count for n in handlers)
        bar = tqdm(total=total, desc=path.name, unit="msg", disable=not progress)
        for topic, ns, raw in bag.messages(sorted(handlers)):
            bar.update(1)
            try:
                msg = bag.deserialize(topic, raw)
            except BagError:
                log.stats.count(topic, ok=False)
                continue
            log.set_time(offset_s + (ns - bag.start_ns) / 1e9)
            handlers[topic](msg)
        bar.close()
        return (bag.end_ns - bag.start_ns) / 1e9 if bag.end_ns else 0.0


def log_dataset(
    log: ViewerLog,
    root: Path,
    episodes: list[int] | None = None,
    robot: str = "so101",
    progress: bool = True,
) -> list[int]:
    """Log episodes of a LeRobot v3.0 dataset; returns the episode indices shown."""
    from tqdm import tqdm

    from smolvla_train.lerobot2bag import _contract_names, dataset_units
    from smolvla_train.lerobot_dataset import DatasetReader, joint_names

    reader = DatasetReader(root)
    names = _contract_names(list(joint_names(reader.info)))
    conv, _limits, _source = dataset_units(reader.info, names, None, robot)
    available = reader.episode_indices()
    chosen = available if episodes is None else episodes
    missing = [e for e in chosen if e not in available]
    if missing:
        raise ViewError(f"{root}: no episode(s) {missing} (episodes: {available[:20]}...)")
    from smolvla_train.viewer.core import reorder

    def to_rad(x: np.ndarray) -> np.ndarray:
        return conv.to_ros(x) if conv is not None else np.asarray(x, dtype=np.float64)

    offset = 0.0
    for index in tqdm(chosen, desc="episodes", unit="ep", disable=not progress or len(chosen) < 2):
        ep = reader.episode(index)
        t = np.asarray(ep.timestamp, dtype=np.float64) - float(ep.timestamp[0]) + offset
        state = to_rad(ep.state) if ep.state.size else None
        action = to_rad(ep.action) if ep.action.size else None
        log.set_time(float(t[0]))
        log.rec.log("episode", _text(f"episode {index}: {ep.task}"))
        if action is not None:
            full = np.array([reorder(a, names) for a in action])
            log.path(CHUNK, full, CHUNK_COLOR)  # the episode's whole gripper path
        for k in range(len(t)):
            log.set_time(float(t[k]))
            if state is not None:
                q = reorder(state[k], names)
                if q is not None:
                    log.arm(q)
            if action is not None:
                for name, value in zip(names, action[k]):
                    log.rec.log(f"action/{name}", _scalar(value))
        for key in reader.video_keys:
            cam = key.split(".")[-1]
            for k, img in enumerate(reader.frames(ep, key)):
                if k >= len(t):
                    break
                log.set_time(float(t[k]))
                log.image(cam, img)
        offset = float(t[-1]) + 1.0 / reader.fps + BAG_GAP_S
    return chosen


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _text(text: str) -> Any:
    import rerun as rr

    return rr.TextLog(text)


def _scalar(value: float) -> Any:
    import rerun as rr

    return rr.Scalars(float(value))


def dataset_cameras(root: Path) -> list[str]:
    from smolvla_train import lerobot_format as lf

    return [k.split(".")[-1] for k in lf.video_keys(lf.read_info(root))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smolvla_train view",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path", type=Path, help="LeRobot v3.0 dataset directory, or a rosbag2 bag / bag directory"
    )
    parser.add_argument(
        "--episodes", type=int, nargs="+", default=None, help="dataset episodes (default: all)"
    )
    parser.add_argument(
        "--robot", choices=("so101", "so100"), default="so101", help="arm model (default so101)"
    )
    parser.add_argument("--save", type=Path, default=None, help="also write the recording to this .rrd file")
    parser.add_argument("--no-serve", action="store_true", help="do not serve the web viewer (with --save)")
    parser.add_argument("--web-port", type=int, default=9090, help="web viewer port on 127.0.0.1 (0: free)")
    parser.add_argument("--grpc-port", type=int, default=9876, help="Rerun gRPC port on 127.0.0.1 (0: free)")
    parser.add_argument("--jpeg-quality", type=int, default=85, help="JPEG quality of images (0: raw)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.no_serve and args.save is None:
        parser.error("--no-serve without --save shows nothing")
    from smolvla_train import lerobot_format as lf
    from smolvla_train.bagio import BagError, find_bags
    from smolvla_train.viewer.serve import ViewerServerError, new_recording, start_server

    path: Path = args.path.expanduser()
    if not path.exists():
        parser.error(f"{path}: no such file or directory")
    is_dataset = (path / "meta" / "info.json").exists()
    try:
        bags = [] if is_dataset else find_bags(path)
        cameras = dataset_cameras(path) if is_dataset else bag_cameras(bags)
    except (BagError, lf.FormatError) as exc:
        print(f"smolvla_train view: {exc}", file=sys.stderr)
        return 2
    server = None
    if not args.no_serve:
        try:
            server = start_server(grpc_port=args.grpc_port, web_port=args.web_port)
        except ViewerServerError as exc:
            print(f"smolvla_train view: {exc}", file=sys.stderr)
            return 1
    partial = args.save.with_name(args.save.name + ".partial") if args.save else None
    rec = new_recording("smolvla_view", cameras, server=server, save=partial)
    log = ViewerLog(rec, robot=args.robot, jpeg_quality=args.jpeg_quality)
    try:
        if server is not None:
            print(f"smolvla_train view: open {server.url}", flush=True)
        try:
            if is_dataset:
                shown = log_dataset(log, path, args.episodes, args.robot, progress=not args.no_progress)
                what = f"{len(shown)} episode(s) of {path}"
            else:
                offset = 0.0
                for bag in bags:
                    offset += log_bag(log, bag, offset, progress=not args.no_progress) + BAG_GAP_S
                what = f"{len(bags)} bag(s) in {path}"
        except (BagError, lf.FormatError, ViewError, ValueError) as exc:
            print(f"smolvla_train view: {exc}", file=sys.stderr)
            return 2
        rec.flush()
        if partial is not None:
            rec.disconnect()
            partial.replace(args.save)
            print(f"smolvla_train view: wrote {args.save}")
        rejected = sum(log.stats.rejected.values())
        print(
            f"smolvla_train view: {what}: {sum(log.stats.logged.values())} items shown"
            + (f", {rejected} not shown ({log.stats.rejected})" if rejected else "")
        )
        if server is not None:
            print(f"smolvla_train view: serving on {server.url} until Ctrl-C", flush=True)
            signal.signal(signal.SIGTERM, _interrupt)
            try:
                while server.process.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        if server is not None:
            server.close()
