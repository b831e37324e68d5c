"""rosbag2 bags -> LeRobot v3.0 dataset (``smolvla_train bag2lerobot``; also ``convert()`` for Python).

Two passes per bag. Pass 1 reads the joint streams, the recorder's episode events, the task and the robot
description, and only the header stamps of the image messages (parsed from the raw CDR, no pixel copy).
Episodes are then cut (recorder events / ``metadata.yaml`` custom_data / one per bag / gaps) and aligned on
the frame grid (``smolvla_train.sync``). Pass 2 reads the image topics again and decodes only the selected
messages, streaming them into the video encoders in frame order. Nothing is written unless the whole run
succeeds (``smolvla_train.lerobot_dataset.DatasetWriter``); every bag is checked for the mapped topics first.

Units: lerobot's SO-10x convention by default (degrees; gripper 0..100 % of the calibrated range, taken
from ``--calibration FILE`` or the bag's ``/robot_description``, or the nominal limits of ``--robot``);
``--units radians`` keeps ROS units. info.json key ``smolvla_units`` says which.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smolvla_train import lerobot_format as lf
from smolvla_train.bagio import Bag, BagError, find_bags, header_stamp_ns, open_bag
from smolvla_train.lerobot_dataset import DatasetError, DatasetSpec, DatasetWriter
from smolvla_train.mapping import (
    ACTION_TYPES,
    IMAGE_TYPES,
    STATE_TYPES,
    Mapping,
    MappingError,
    Stream,
    default_yaml,
    load_mapping,
)
from smolvla_train.sync import NS, EpisodeSync, align, split_gaps

REPORT_NAME = "meta/smolvla_sync_report.json"
EXIT_MISSING_TOPICS = 3
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class ConversionError(RuntimeError):
    exit_code = EXIT_FAILED


class MissingTopicsError(ConversionError):
    exit_code = EXIT_MISSING_TOPICS


@dataclass
class ConvertOptions:
    mapping: Mapping = field(default_factory=Mapping)
    units: str = "lerobot"  # lerobot | radians
    calibration: Path | None = None
    robot: str | None = None  # so101 | so100: nominal limits when the bag has no /robot_description
    task: str | None = None
    codec: str = "av1"
    crf: int | None = None
    gop: int | None = None
    preset: Any = None
    encoder_threads: int = 0
    append: bool = False
    overwrite: bool = False
    salvage: bool = False
    progress: bool = True
    report_path: Path | None = None


# -- image decoding ------------------------------------------------------------------------------------
def decode_image(msg: Any, msgtype: str) -> np.ndarray:
    """sensor_msgs Image (rgb8, bgr8, mono8, rgba8, bgra8) or CompressedImage (JPEG/PNG) -> RGB uint8."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        import cv2

        img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise BagError(f"cannot decode a CompressedImage (format '{msg.format}')")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    enc = msg.encoding.lower()
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "8uc1": 1, "rgba8": 4, "bgra8": 4, "8uc3": 3}.get(enc)
    if channels is None:
        raise BagError(f"unsupported image encoding '{msg.encoding}' (rgb8, bgr8, mono8, rgba8, bgra8)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if data.size < h * step or step < w * channels:
        raise BagError(f"image data {data.size} bytes is too short for {w}x{h} {msg.encoding} (step {step})")
    img = data[: h * step].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])


# -- pass 1 --------------------------------------------------------------------------------------------
@dataclass
class Series:
    times: list[int] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(self.times, dtype=np.int64)
        order = np.argsort(t, kind="stable")
        v = np.stack(self.values)[order] if self.values else np.zeros((0, 0))
        return t[order], v


@dataclass
class BagScan:
    bag: Bag
    cameras: dict[str, Stream]
    state: Series = field(default_factory=Series)
    action: Series = field(default_factory=Series)
    images: dict[str, list[int]] = field(default_factory=dict)  # camera -> stamp per message ordinal
    image_first: dict[str, int] = field(default_factory=dict)  # camera -> ordinal of its first valid image
    tasks: list[tuple[int, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    robot_description: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, what: str) -> None:
        self.skipped[what] = self.skipped.get(what, 0) + 1


def _joint_vector(names: list[str], values: Any, wanted: tuple[str, ...]) -> np.ndarray | None:
    index = {n: i for i, n in enumerate(names)}
    if any(j not in index for j in wanted) or len(values) < len(names):
        return None
    return np.array([float(values[index[j]]) for j in wanted])


def _stamp(msg_stamp: Any, log_ns: int, mode: str) -> int:
    if mode == "receive":
        return log_ns
    s = int(msg_stamp.sec) * NS + int(msg_stamp.nanosec)
    return s if s > 0 else log_ns


def check_topics(bag: Bag, mapping: Mapping) -> tuple[dict[str, Stream], list[str]]:
    """The bag's cameras and the problems (missing or mistyped mapped topics)."""
    types = {t.name: t.msgtype for t in bag.topics.values()}
    problems = []
    for key, stream, allowed in (
        ("observation.state", mapping.state, STATE_TYPES),
        ("action", mapping.action, ACTION_TYPES),
    ):
        if stream.topic not in types:
            problems.append(f"{key}: topic {stream.topic} is not in the bag")
        elif types[stream.topic] not in allowed:
            problems.append(
                f"{key}: topic {stream.topic} has type {types[stream.topic]}, expected {' or '.join(allowed)}"
            )
    cameras = mapping.resolve_cameras(types)
    if mapping.cameras is None and not cameras:
        problems.append(
            "cameras: no /cameras/<name>/image_raw[/compressed] topic in the bag (list them in the mapping)"
        )
    for cam, s in cameras.items():
        if s.topic not in types:
            problems.append(f"observation.images.{cam}: topic {s.topic} is not in the bag")
        elif types[s.topic] not in IMAGE_TYPES:
            problems.append(
                f"observation.images.{cam}: topic {s.topic} has type {types[s.topic]}, expected an image"
            )
    for s in [mapping.state, mapping.action, *cameras.values()]:
        if s.topic in types and bag.topics[s.topic].count == 0:
            problems.append(f"topic {s.topic} has no messages")
    return cameras, problems


def scan(bag: Bag, mapping: Mapping, cameras: dict[str, Stream], progress: bool) -> BagScan:
    """Pass 1: joint streams, events, task, description, image stamps."""
    from tqdm import tqdm

    sc = BagScan(bag, cameras, images={c: [] for c in cameras})
    cam_of = {s.topic: c for c, s in cameras.items()}
    aux = [
        t
        for t in (mapping.episode_topic, mapping.task_topic, mapping.robot_description)
        if t and t in bag.topics
    ]
    topics = [mapping.state.topic, mapping.action.topic, *cam_of, *aux]
    total = sum(bag.topics[t].count for t in topics if t in bag.topics)
    action_type = bag.topics[mapping.action.topic].msgtype
    last_traj: list[
        tuple[int, int]
    ] = []  # (index in action series, time) of the previous trajectory's points
    bar = tqdm(total=total, desc=f"scan {bag.path.name}", unit="msg", disable=not progress, leave=False)
    # image topics: only the header stamps are needed here (the reader may skip the pixels)
    for topic, log_ns, raw in bag.quick_messages(topics, head_only=list(cam_of)):
        bar.update(1)
        if topic in cam_of:
            cam = cam_of[topic]
            try:
                stamp = log_ns if mapping.stamp == "receive" else header_stamp_ns(raw)
            except BagError:
                sc.skip(f"{topic}: unreadable header")
                stamp = -1
            if cam not in sc.image_first and stamp >= 0:
                sc.image_first[cam] = len(sc.images[cam])
            sc.images[cam].append(stamp if stamp > 0 else (log_ns if stamp == 0 else -1))
            continue
        try:
            msg = bag.deserialize(topic, raw)
        except BagError:
            sc.skip(f"{topic}: undecodable message")
            continue
        if topic == mapping.state.topic:
            v = _joint_vector(list(msg.name), msg.position, mapping.joint_names)
            if v is None:
                sc.skip(f"{topic}: message without all mapped joints")
                continue
            sc.state.times.append(_stamp(msg.header.stamp, log_ns, mapping.stamp))
            sc.state.values.append(v)
        if topic == mapping.action.topic:
            if action_type == "sensor_msgs/msg/JointState":
                v = _joint_vector(list(msg.name), msg.position, mapping.joint_names)
                if v is None:
                    sc.skip(f"{topic}: message without all mapped joints")
                    continue
                sc.action.times.append(_stamp(msg.header.stamp, log_ns, mapping.stamp))
                sc.action.values.append(v)
            else:
                t0 = _stamp(msg.header.stamp, log_ns, mapping.stamp)
                pts = list(msg.points)
                names = list(msg.joint_names)
                if not pts:
                    sc.skip(f"{topic}: trajectory without points")
                    continue
                # a new trajectory replaces the not yet reached points of the previous one
                for i, t in last_traj:
                    if t > t0:
                        sc.action.times[i] = -1
                last_traj = []
                for p in pts:
                    v = _joint_vector(names, p.positions, mapping.joint_names)
                    if v is None:
                        sc.skip(f"{topic}: trajectory point without all mapped joints")
                        continue
                    dt = int(p.time_from_start.sec) * NS + int(p.time_from_start.nanosec)
                    t = t0 if len(pts) == 1 else t0 + dt
                    last_traj.append((len(sc.action.times), t))
                    sc.action.times.append(t)
                    sc.action.values.append(v)
        if topic == mapping.episode_topic:
            try:
                ev = json.loads(msg.data)
                ev["_log_ns"] = log_ns
                if ev.get("event") in ("start", "end"):
                    sc.events.append(ev)
            except (ValueError, TypeError, AttributeError):
                sc.skip(f"{topic}: not an episode event")
        if topic == mapping.task_topic:
            sc.tasks.append((log_ns, str(msg.data)))
        if topic == mapping.robot_description:
            sc.robot_description = str(msg.data)
    bar.close()
    # drop superseded trajectory points
    keep = [i for i, t in enumerate(sc.action.times) if t >= 0]
    sc.action.times = [sc.action.times[i] for i in keep]
    sc.action.values = [sc.action.values[i] for i in keep]
    return sc


# -- episodes ------------------------------------------------------------------------------------------
@dataclass
class Window:
    start: int | None
    end: int | None
    task: str | None = None
    source: str = "bag"


def episode_windows(sc: BagScan, mapping: Mapping) -> list[Window]:
    cd = sc.bag.custom_data
    receive = mapping.stamp == "receive"
    if mapping.episodes in ("auto",) and sc.events:
        wins: list[Window] = []
        open_ev: dict[str, Any] | None = None
        for ev in sc.events:
            t = int(ev["_log_ns"]) if receive else int(ev.get("time_ns", ev["_log_ns"]))
            if ev["event"] == "start":
                open_ev = {**ev, "_t": t}
            elif open_ev is not None:
                wins.append(
                    Window(open_ev["_t"], t, open_ev.get("task") or ev.get("task"), "recorder events")
                )
                open_ev = None
        if open_ev is not None:
            wins.append(Window(open_ev["_t"], None, open_ev.get("task"), "recorder events (no end)"))
        if wins:
            return wins
    if mapping.episodes == "auto" and ("smolvla.start_ns" in cd or "smolvla.task" in cd) and not receive:
        start = int(cd["smolvla.start_ns"]) if cd.get("smolvla.start_ns") else None
        end = int(cd["smolvla.end_ns"]) if cd.get("smolvla.end_ns") else None
        return [Window(start, end, cd.get("smolvla.task"), "metadata custom_data")]
    if mapping.episodes == "gap":
        t = np.sort(np.asarray(sc.state.times, dtype=np.int64))
        return [Window(a, b, None, "gap split") for a, b in split_gaps(t, int(mapping.gap * NS))]
    return [Window(None, None, cd.get("smolvla.task"), "whole bag")]


def _task_for(win: Window, sc: BagScan, opts: ConvertOptions) -> str:
    if opts.task:
        return opts.task
    if win.task:
        return str(win.task)
    if sc.bag.custom_data.get("smolvla.task"):
        return sc.bag.custom_data["smolvla.task"]
    if sc.tasks:
        ref = win.end if win.end is not None else sc.tasks[-1][0]
        before = [t for ts, t in sc.tasks if ts <= ref]
        return before[-1] if before else sc.tasks[0][1]
    raise ConversionError(
        f"{sc.bag.path}: no task for the episode (no recorder events, no smolvla.task in metadata.yaml, "
        f"no task topic): pass --task TEXT"
    )


# -- units ---------------------------------------------------------------------------------------------
def make_units(opts: ConvertOptions, robot_description: str | None, joint_names: tuple[str, ...]):
    """(converter or None for radians, info.json units dict, robot key or None)."""
    if opts.units == "radians":
        return None, {"kind": "radians", "description": "ROS units: radians (REP 103), as recorded"}, None
    from so_arm_description import robot_model
    from so_arm_description.units import JointUnits

    robot = None
    if opts.calibration is not None:
        try:
            data = json.loads(Path(opts.calibration).read_text())
            limits = robot_model.limits_from_calibration(data)
        except (OSError, ValueError) as exc:
            raise ConversionError(f"cannot use calibration {opts.calibration}: {exc}") from exc
        source = f"calibration file {opts.calibration}"
    elif robot_description:
        try:
            limits = robot_model.limits_from_urdf(robot_description)
        except ValueError as exc:
            raise ConversionError(f"the bag's robot description is unusable: {exc}") from exc
        try:
            robot = robot_model.robot_from_urdf(robot_description)
        except ValueError:
            robot = None
        source = "the bag's /robot_description"
    elif opts.robot:
        limits = robot_model.default_limits(opts.robot)
        robot = opts.robot
        source = f"nominal {opts.robot} limits (--robot)"
    else:
        raise ConversionError(
            "lerobot units need the gripper's calibrated range: the bag has no /robot_description; pass "
            "--calibration FILE (lerobot calibration JSON), --robot so101|so100 (nominal limits) or "
            "--units radians"
        )
    try:
        units = JointUnits.lerobot(limits, names=joint_names)
    except ValueError as exc:
        raise ConversionError(f"lerobot units: {exc} (limits from {source})") from exc
    info = {
        "kind": "lerobot",
        "description": "lerobot SO-10x convention: arm joints in degrees about the calibrated middle, "
        "gripper 0..100 % of the calibrated range",
        "joints": units.describe(),
        "limits_source": source,
        "limits_rad": {k: list(v) for k, v in limits.items() if k in joint_names},
    }
    return units, info, robot


# -- the conversion ------------------------------------------------------------------------------------
@dataclass
class _PlannedEpisode:
    sync: EpisodeSync
    task: str
    state: np.ndarray
    action: np.ndarray
    ordinals: dict[str, np.ndarray]  # camera -> message ordinal per kept frame
    report: dict[str, Any]


def _plan(sc: BagScan, mapping: Mapping, opts: ConvertOptions, units: Any) -> list[_PlannedEpisode]:
    st_t, st_v = sc.state.sorted()
    ac_t, ac_v = sc.action.sorted()
    cam_sorted = {}
    for cam, stamps in sc.images.items():
        t = np.asarray(stamps, dtype=np.int64)
        valid = np.nonzero(t >= 0)[0]
        order = valid[np.argsort(t[valid], kind="stable")]
        cam_sorted[cam] = (t[order], order)
    ages = {"observation.state": mapping.age(mapping.state), "action": mapping.age(mapping.action)}
    for cam, s in sc.cameras.items():
        ages[lf.image_key(cam)] = mapping.age(s)
    planned = []
    for win in episode_windows(sc, mapping):
        series = {"observation.state": st_t, "action": ac_t}
        for cam, (t, _) in cam_sorted.items():
            series[lf.image_key(cam)] = t
        es = align(series, mapping.fps, {k: int(a * NS) for k, a in ages.items()}, win.start, win.end)
        task = _task_for(win, sc, opts)
        rep = {"task": task, "window": win.source, **es.report()}
        if es.frames == 0:
            rep["skipped"] = "no frame with every feature within max_age"
            planned.append(_PlannedEpisode(es, task, np.zeros((0, 0)), np.zeros((0, 0)), {}, rep))
            continue
        state = st_v[es.features["observation.state"].indices]
        action = ac_v[es.features["action"].indices]
        if units is not None:
            state, action = units.to_model(state), units.to_model(action)
        ords = {cam: cam_sorted[cam][1][es.features[lf.image_key(cam)].indices] for cam in sc.cameras}
        planned.append(
            _PlannedEpisode(es, task, state.astype(np.float32), action.astype(np.float32), ords, rep)
        )
    return planned


def _image_at(bag: Bag, topic: str, ordinal: int) -> np.ndarray:
    """The decoded ``ordinal``-th image message of ``topic``."""
    for k, (_, _, raw) in enumerate(bag.messages([topic])):
        if k == ordinal:
            return decode_image(bag.deserialize(topic, raw), bag.topics[topic].msgtype)
    raise ConversionError(f"{bag.path}: {topic} has no message {ordinal}")


def _write_images(sc: BagScan, planned: list[_PlannedEpisode], writer: DatasetWriter, progress: bool) -> None:
    """Pass 2: decode the selected image messages and push them to the encoders in frame order."""
    from tqdm import tqdm

    eps = [p for p in planned if p.sync.frames > 0]
    if not eps:
        return
    cams = list(sc.cameras)
    if not cams:  # a dataset without cameras (mapping `cameras: {}`)
        for p in eps:
            writer.begin_episode(p.task, p.sync.frames)
            writer.end_episode(p.state, p.action)
        return
    topic_cam = {s.topic: c for c, s in sc.cameras.items()}
    # per camera: the ordinal of each frame over all episodes, and how often each ordinal is used
    seq = {c: np.concatenate([p.ordinals[c] for p in eps]) for c in cams}
    uses = {c: {} for c in cams}
    for c in cams:
        u, n = np.unique(seq[c], return_counts=True)
        uses[c] = dict(zip(u.tolist(), n.tolist()))
    pos = dict.fromkeys(cams, 0)  # next frame to push, per camera
    cache: dict[str, dict[int, np.ndarray]] = {c: {} for c in cams}
    pending: dict[str, deque] = {c: deque() for c in cams}
    count = dict.fromkeys(cams, 0)
    state = {"ep": 0}
    writer.begin_episode(eps[0].task, eps[0].sync.frames)
    total = sum(sc.bag.topics[s.topic].count for s in sc.cameras.values())
    bar = tqdm(total=total, desc=f"video {sc.bag.path.name}", unit="img", disable=not progress, leave=False)

    def drain(c: str) -> None:
        while pos[c] < len(seq[c]) and int(seq[c][pos[c]]) in cache[c]:
            o = int(seq[c][pos[c]])
            img = cache[c][o]
            uses[c][o] -= 1
            if uses[c][o] == 0:
                del cache[c][o]
            pending[c].append(img)
            pos[c] += 1
        flush()

    def flush() -> None:
        while True:
            e = state["ep"]
            if e >= len(eps):
                return
            for c in cams:
                while pending[c] and writer_frames(c) < eps[e].sync.frames:
                    writer.add_image(c, pending[c].popleft())
            if all(writer_frames(c) == eps[e].sync.frames for c in cams):
                writer.end_episode(eps[e].state, eps[e].action)
                state["ep"] = e + 1
                if e + 1 < len(eps):
                    writer.begin_episode(eps[e + 1].task, eps[e + 1].sync.frames)
                continue
            return

    def writer_frames(c: str) -> int:
        return writer.frames_written(c)

    for topic, _, raw in sc.bag.messages(list(topic_cam)):
        bar.update(1)
        c = topic_cam[topic]
        o = count[c]
        count[c] += 1
        if o not in uses[c]:
            continue
        msg = sc.bag.deserialize(topic, raw)
        try:
            img = decode_image(msg, sc.bag.topics[topic].msgtype)
        except BagError as exc:
            raise ConversionError(f"{sc.bag.path}: {topic} message {o}: {exc}") from exc
        h, w = writer.spec.cameras[c]
        if img.shape[:2] != (h, w):
            raise ConversionError(
                f"{sc.bag.path}: {topic} message {o} is {img.shape[1]}x{img.shape[0]}, "
                f"the dataset's {c} is {w}x{h}"
            )
        cache[c][o] = img
        drain(c)
    bar.close()
    if state["ep"] < len(eps):
        missing = {c: int(len(seq[c]) - pos[c]) for c in cams}
        raise ConversionError(f"{sc.bag.path}: images ended early (frames missing per camera: {missing})")


def convert(
    inputs: list[str | Path], output: str | Path, opts: ConvertOptions | None = None
) -> dict[str, Any]:
    """Convert bags (bag dirs, bag files, or dirs of bags) into the dataset at ``output``; returns the report.

    Raises MissingTopicsError (nothing written) when a bag lacks a mapped topic, BagError for unreadable
    bags, ConversionError / DatasetError otherwise; the output is untouched on any error.
    """
    opts = opts or ConvertOptions()
    mapping = opts.mapping
    mapping.validate()
    paths: list[Path] = []
    for i in inputs:
        paths.extend(find_bags(i))
    # pre-flight: every bag opens and has the mapped topics; cameras agree
    bags: list[Bag] = []
    problems: list[str] = []
    cams_per_bag: list[dict[str, Stream]] = []
    try:
        for p in paths:
            bag = open_bag(p, salvage=opts.salvage)
            bags.append(bag)
            cams, probs = check_topics(bag, mapping)
            cams_per_bag.append(cams)
            problems += [f"{p}: {x}" for x in probs]
        if problems:
            raise MissingTopicsError("mapped topics missing, nothing written:\n  " + "\n  ".join(problems))
        if not mapping.fps_given:
            rates = {b.custom_data.get("smolvla.fps") for b in bags}
            if len(rates) == 1 and None not in rates:
                with contextlib.suppress(ValueError):  # bags written by lerobot2bag keep the dataset's fps
                    mapping.fps = int(next(iter(rates)))
                mapping.validate()
        names = {tuple(sorted(c)) for c in cams_per_bag}
        if len(names) > 1:
            raise MissingTopicsError(
                f"the bags have different camera sets {sorted(names)}; map the cameras explicitly"
            )
        return _convert(bags, cams_per_bag, Path(output), opts)
    finally:
        for b in bags:
            b.close()


def _convert(
    bags: list[Bag], cams_per_bag: list[dict[str, Stream]], output: Path, opts: ConvertOptions
) -> dict:
    mapping = opts.mapping
    writer: DatasetWriter | None = None
    report: dict[str, Any] = {"fps": mapping.fps, "stamp": mapping.stamp, "bags": []}
    try:
        for bag, cams in zip(bags, cams_per_bag):
            sc = scan(bag, mapping, cams, opts.progress)
            units, units_info, robot = make_units(opts, sc.robot_description, mapping.joint_names)
            planned = _plan(sc, mapping, opts, units)
            if writer is None:
                sizes = {}
                for cam in cams:
                    if cam not in sc.image_first:
                        raise ConversionError(f"{bag.path}: camera {cam} has no readable image")
                    sizes[cam] = _image_at(bag, cams[cam].topic, sc.image_first[cam]).shape[:2]
                robot_key = robot or bag.custom_data.get("smolvla.robot") or opts.robot or "so101"
                spec = DatasetSpec(
                    fps=mapping.fps,
                    joint_names=mapping.joint_names,
                    cameras=sizes,
                    robot_type=f"{robot_key}_follower" if not robot_key.endswith("_follower") else robot_key,
                    codec=opts.codec,
                    crf=opts.crf,
                    gop=opts.gop,
                    preset=opts.preset,
                    units=units_info,
                    encoder_threads=opts.encoder_threads,
                )
                writer = DatasetWriter(output, spec, append=opts.append, overwrite=opts.overwrite)
                report["units"] = units_info
            first = writer.next_episode_index
            _write_images(sc, planned, writer, opts.progress)
            eps_rep = []
            k = first
            for p in planned:
                r = dict(p.report)
                if p.sync.frames > 0:
                    r["episode_index"] = k
                    k += 1
                eps_rep.append(r)
            report["bags"].append(
                {
                    "bag": str(bag.path),
                    "storage": bag.storage,
                    "notes": list(bag.notes),
                    "skipped_messages": sc.skipped,
                    "episodes": eps_rep,
                }
            )
        if writer is None or writer.episode_count == 0:
            raise ConversionError("no episode with frames: nothing written (see the sync report)")
        report["total_episodes"] = writer.episode_count
        report["total_frames"] = sum(
            e["frames"] for b in report["bags"] for e in b["episodes"] if "episode_index" in e
        )
        report["output"] = str(output.absolute())
        old_runs = []
        if opts.append and (output / REPORT_NAME).exists():
            try:
                old_runs = json.loads((output / REPORT_NAME).read_text()).get("runs", [])
            except (OSError, ValueError):
                old_runs = []
        writer.extra_files[REPORT_NAME] = json.dumps({"runs": [*old_runs, report]}, indent=2).encode()
        writer.finish()
        writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if opts.report_path is not None:
        Path(opts.report_path).write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = []
    for b in report["bags"]:
        lines.append(f"{b['bag']} ({b['storage']})")
        for n in b["notes"]:
            lines.append(f"  note: {n}")
        for what, n in b["skipped_messages"].items():
            lines.append(f"  skipped {n}: {what}")
        for e in b["episodes"]:
            idx = e.get("episode_index", "-")
            skipped = f" SKIPPED: {e['skipped']}" if "skipped" in e else ""
            lines.append(
                f"  episode {idx}: {e['frames']} frames "
                f"({e['dropped_frames']} dropped of {e['grid_frames']}), "
                f"task '{e['task']}', {e['window']}{skipped}"
            )
            for f, r in e["features"].items():
                lines.append(
                    f"    {f:<32} drops {r['drops']:>5}  as-of age max {r['max_age_ms']} ms  "
                    f"mean {r['mean_age_ms']} ms"
                )
    lines.append(
        f"total: {report['total_episodes']} episodes, {report['total_frames']} frames -> {report['output']}"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smolvla_train bag2lerobot",
        description="Convert rosbag2 bags (MCAP or sqlite3; bag dirs, bag files or dirs of episode bags) "
        "into a LeRobot v3.0 dataset. Nothing is written unless the whole conversion succeeds.",
    )
    p.add_argument(
        "inputs", nargs="*", type=Path, help="bag directories, .mcap/.db3 files, or directories of bags"
    )
    p.add_argument("-o", "--output", type=Path, help="dataset root directory")
    p.add_argument(
        "--mapping", type=Path, help="mapping YAML (defaults: the ROS graph contract; --print-mapping)"
    )
    p.add_argument("--print-mapping", action="store_true", help="print the default mapping YAML and exit")
    p.add_argument("--fps", type=int, help="frame rate of the dataset (overrides the mapping; default 30)")
    p.add_argument(
        "--max-age",
        type=float,
        help="as-of age limit in seconds for every feature, the action included (overrides the mapping; "
        "defaults 0.1, action 0.5)",
    )
    p.add_argument("--stamp", choices=["header", "receive"], help="time source (default header stamps)")
    p.add_argument("--episodes", choices=["auto", "bag", "gap"], help="episode boundaries (default auto)")
    p.add_argument("--task", help="task text for every episode (overrides the recorded one)")
    p.add_argument(
        "--units",
        choices=["lerobot", "radians"],
        default="lerobot",
        help="lerobot: degrees + gripper 0..100 (default); radians: ROS units, noted in info.json",
    )
    p.add_argument("--calibration", type=Path, help="lerobot calibration JSON for the gripper range")
    p.add_argument(
        "--robot", choices=["so101", "so100"], help="nominal limits if the bag has no /robot_description"
    )
    p.add_argument(
        "--codec", choices=["av1", "h264"], default="av1", help="video codec (default av1 like lerobot)"
    )
    p.add_argument("--crf", type=int, help="encoder quality (default: av1 30, h264 23)")
    p.add_argument("--gop", type=int, help="keyframe interval (default 2, like lerobot)")
    p.add_argument("--encoder-threads", type=int, default=0, help="threads per encoder (0 = codec default)")
    p.add_argument("--append", action="store_true", help="add the episodes to an existing dataset")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--salvage", action="store_true", help="read damaged bags up to the damage")
    p.add_argument("--report", type=Path, help="also write the sync report JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-q", "--quiet", action="store_true", help="print no report")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.print_mapping:
        print(default_yaml(), end="")
        return 0
    if not args.inputs or args.output is None:
        print("bag2lerobot: give at least one input bag and --output DIR (see --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        mapping = load_mapping(args.mapping)
        for key, val in (
            ("fps", args.fps),
            ("max_age", args.max_age),
            ("stamp", args.stamp),
            ("episodes", args.episodes),
        ):
            if val is not None:
                setattr(mapping, key, val)
        if args.max_age is not None:  # one limit for every feature
            for stream in mapping.streams().values():
                stream.max_age = None
        mapping.fps_given = mapping.fps_given or args.fps is not None
        mapping.validate()
        for key, val, lo, hi in (
            ("--crf", args.crf, 0, 63),
            ("--gop", args.gop, 1, 1000),
            ("--encoder-threads", args.encoder_threads, 0, 64),
        ):
            if val is not None and not lo <= val <= hi:
                raise MappingError(f"{key} must be within {lo}..{hi}")
    except MappingError as exc:
        print(f"bag2lerobot: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    opts = ConvertOptions(
        mapping=mapping,
        units=args.units,
        calibration=args.calibration,
        robot=args.robot,
        task=args.task,
        codec=args.codec,
        crf=args.crf,
        gop=args.gop,
        encoder_threads=args.encoder_threads,
        append=args.append,
        overwrite=args.overwrite,
        salvage=args.salvage,
        progress=not args.no_progress and sys.stderr.isatty(),
        report_path=args.report,
    )
    try:
        report = convert(args.inputs, args.output, opts)
    except MissingTopicsError as exc:
        print(f"bag2lerobot: {exc}", file=sys.stderr)
        return exc.exit_code
    except (BagError, ConversionError, DatasetError, lf.FormatError) as exc:
        print(f"bag2lerobot: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
