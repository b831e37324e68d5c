"""Action and episode sources on small hand-written rosbag2 bags (no cameras: mapping ``cameras: {}``):
a leader arm's JointState as the action, multi-point JointTrajectories (points at stamp + time_from_start, a
newer trajectory replacing the unreached points), receive-time stamps, joint order by name, episodes split at
gaps, and the task from a String topic. Expected values are written down by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smolvla_train.bag2lerobot import ConvertOptions, convert
from smolvla_train.lerobot_dataset import DatasetReader
from smolvla_train.mapping import load_mapping

NS = 1_000_000_000
MS = 1_000_000
BASE = 1_000 * NS
JOINTS = ["a", "b"]


def _write(path: Path, msgs: list[tuple[int, str, str, object]]) -> None:
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import StoragePlugin
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    with w:
        conns: dict[str, object] = {}
        for log, topic, mt, msg in sorted(msgs, key=lambda m: m[0]):
            if topic not in conns:
                conns[topic] = w.add_connection(topic, mt, typestore=ts)
            w.write(conns[topic], log, ts.serialize_cdr(msg, mt))


def _types():  # type: ignore[no-untyped-def]
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED).types


def _header(T, t: int):  # type: ignore[no-untyped-def]
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=t // NS, nanosec=t % NS), frame_id=""
    )


def _js(T, t: int, names: list[str], pos: list[float]):  # type: ignore[no-untyped-def]
    return T["sensor_msgs/msg/JointState"](
        header=_header(T, t),
        name=names,
        position=np.array(pos, float),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )


def _traj(T, t: int, points: list[tuple[int, list[float]]]):  # type: ignore[no-untyped-def]
    pts = [
        T["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.array(p, float),
            velocities=np.zeros(0),
            accelerations=np.zeros(0),
            effort=np.zeros(0),
            time_from_start=T["builtin_interfaces/msg/Duration"](sec=dt // NS, nanosec=dt % NS),
        )
        for dt, p in points
    ]
    return T["trajectory_msgs/msg/JointTrajectory"](header=_header(T, t), joint_names=JOINTS, points=pts)


def _opts(**mapping: object) -> ConvertOptions:
    data = {"fps": 10, "joint_names": JOINTS, "cameras": {}, **mapping}
    return ConvertOptions(mapping=load_mapping(data=data), units="radians", task="t", progress=False)


def test_leader_joint_state_as_action_and_joint_order_by_name(tmp_path: Path) -> None:
    T = _types()
    msgs = []
    for k in range(11):  # 1 s at 10 Hz: follower (names in another order) and leader
        t = BASE + k * 100 * MS
        msgs.append(
            (t + MS, "/joint_states", "sensor_msgs/msg/JointState", _js(T, t, ["b", "a"], [k + 0.5, k]))
        )
        msgs.append(
            (t + MS, "/leader/joint_states", "sensor_msgs/msg/JointState", _js(T, t, ["a", "b"], [-k, 2 * k]))
        )
    _write(tmp_path / "bag", msgs)
    convert([tmp_path / "bag"], tmp_path / "ds", _opts(action="/leader/joint_states"))
    ep = DatasetReader(tmp_path / "ds").episode(0)
    k = np.arange(11)
    np.testing.assert_allclose(ep.state, np.stack([k, k + 0.5], 1))
    np.testing.assert_allclose(ep.action, np.stack([-k, 2 * k], 1))


def test_multi_point_trajectories_and_replacement(tmp_path: Path) -> None:
    T = _types()
    msgs = []
    for k in range(11):
        t = BASE + k * 100 * MS
        msgs.append((t, "/joint_states", "sensor_msgs/msg/JointState", _js(T, t, JOINTS, [k, k])))
    # at 0 s: points at 0, 0.3, 0.6, 0.9 s; at 0.5 s a new trajectory: 0.5 s and 0.7 s (0.6/0.9 are dropped)
    first = _traj(T, BASE, [(0, [1, 1]), (300 * MS, [2, 2]), (600 * MS, [3, 3]), (900 * MS, [4, 4])])
    msgs.append((BASE, "/joint_commands", "trajectory_msgs/msg/JointTrajectory", first))
    msgs.append(
        (
            BASE + 500 * MS,
            "/joint_commands",
            "trajectory_msgs/msg/JointTrajectory",
            _traj(T, BASE + 500 * MS, [(0, [5, 5]), (200 * MS, [6, 6])]),
        )
    )
    _write(tmp_path / "bag", msgs)
    convert([tmp_path / "bag"], tmp_path / "ds", _opts(action={"topic": "/joint_commands", "max_age": 1.0}))
    ep = DatasetReader(tmp_path / "ds").episode(0)
    # grid 0.0 .. 0.7 s (the last command sample is at 0.7 s); as-of commands by hand:
    assert ep.action[:, 0].tolist() == [1, 1, 1, 2, 2, 5, 5, 6]
    assert ep.state[:, 0].tolist() == list(range(8))


def test_receive_time_stamps(tmp_path: Path) -> None:
    T = _types()
    msgs = []
    for k in range(6):
        t = BASE + k * 100 * MS
        # header stamps are nonsense (all 5 s later); receive times are the truth here
        msgs.append((t, "/joint_states", "sensor_msgs/msg/JointState", _js(T, t + 5 * NS, JOINTS, [k, 0])))
        msgs.append((t, "/joint_commands", "trajectory_msgs/msg/JointTrajectory", _traj(T, 0, [(0, [k, 1])])))
    _write(tmp_path / "bag", msgs)
    report = convert([tmp_path / "bag"], tmp_path / "ds", _opts(stamp="receive"))
    assert report["bags"][0]["episodes"][0]["start_ns"] == BASE
    ep = DatasetReader(tmp_path / "ds").episode(0)
    np.testing.assert_allclose(ep.state[:, 0], ep.action[:, 0])


@pytest.mark.parametrize("episodes", ["gap", "bag"])
def test_episodes_split_at_gaps_and_task_topic(tmp_path: Path, episodes: str) -> None:
    T = _types()
    msgs = []
    for start, n in ((0, 5), (3 * NS, 4)):  # two bursts 3 s apart
        for k in range(n):
            t = BASE + start + k * 100 * MS
            msgs.append((t, "/joint_states", "sensor_msgs/msg/JointState", _js(T, t, JOINTS, [k, 0])))
            msgs.append(
                (t, "/joint_commands", "trajectory_msgs/msg/JointTrajectory", _traj(T, t, [(0, [k, 0])]))
            )
    msgs.append((BASE - 1, "/task", "std_msgs/msg/String", T["std_msgs/msg/String"](data="first")))
    msgs.append((BASE + 2 * NS, "/task", "std_msgs/msg/String", T["std_msgs/msg/String"](data="second")))
    _write(tmp_path / "bag", msgs)
    opts = _opts(
        episodes=episodes,
        gap=1.0,
        task_topic="/task",
        max_age=5.0,
        action={"topic": "/joint_commands", "max_age": 5.0},
    )
    opts.task = None
    convert([tmp_path / "bag"], tmp_path / "ds", opts)
    r = DatasetReader(tmp_path / "ds")
    if episodes == "gap":
        assert [len(r.episode(e).state) for e in r.episode_indices()] == [5, 4]
        assert [r.episode(e).task for e in r.episode_indices()] == ["first", "second"]
    else:  # one episode over the whole bag, the pause bridged by max_age 5 s
        assert r.episode_indices() == [0] and len(r.episode(0).state) == 34
        assert r.episode(0).task == "second"
