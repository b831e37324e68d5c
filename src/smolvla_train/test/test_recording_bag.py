"""Episode bags from the recorder core (no ROS graph): what rosbags, mcap and mcap-ros2 read back.

Independent references: the rosidl-generated type hashes (``share/<pkg>/msg/<T>.json``), ``mcap_ros2``'s
decoder (it decodes the payload with the definition stored in the MCAP schema, not with rclpy), rclpy's own
serialization, and a recorder process killed with SIGKILL (a real crash).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime  # noqa: E402

from smolvla_train.recording.bag import BagError, list_bags, list_partials, read_report, recover_partial  # noqa: E402
from smolvla_train.recording.recorder import EpisodeRecorder, RecorderConfig  # noqa: E402
from smolvla_train.recording.typedefs import TypeLibrary, ament_prefixes  # noqa: E402


def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


QOS = Qos(
    QosHistory.KEEP_LAST,
    10,
    QosReliability.RELIABLE,
    QosDurability.VOLATILE,
    QosTime(0, 0),
    QosTime(0, 0),
    QosLiveliness.AUTOMATIC,
    QosTime(0, 0),
    False,
)
T0 = 1_700_000_000_000_000_000


STORE = TypeLibrary().store
_T = STORE.types


def _cdr(msg: object, msgtype: str) -> bytes:
    # rosbags' serializer: rclpy's serialize_message pads its buffer with stray bytes that a strict CDR
    # reader rejects (messages received from DDS are exact)
    return bytes(STORE.serialize_cdr(msg, msgtype))


def _header(frame_id: str = "") -> object:
    return _T["std_msgs/msg/Header"](
        stamp=_T["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=frame_id
    )


def _joint_state(i: int) -> bytes:
    msg = _T["sensor_msgs/msg/JointState"](
        header=_header(),
        name=["a", "b"],
        position=np.array([float(i), -float(i)]),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )
    return _cdr(msg, "sensor_msgs/msg/JointState")


def _image(i: int, w: int = 64, h: int = 48) -> bytes:
    msg = _T["sensor_msgs/msg/Image"](
        header=_header(f"frame{i}"),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=3 * w,
        data=np.full(3 * w * h, i % 256, dtype=np.uint8),
    )
    return _cdr(msg, "sensor_msgs/msg/Image")


def _string(text: str) -> bytes:
    return _cdr(_T["std_msgs/msg/String"](data=text), "std_msgs/msg/String")


def _queue_status() -> bytes:
    lib = TypeLibrary()
    lib.info("smolvla_msgs/msg/QueueStatus")
    cls = lib.store.types["smolvla_msgs/msg/QueueStatus"]
    values: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        kind = str(f.type)
        values[f.name] = _header() if "Header" in kind else {"bool": False, "float": 0.0}.get(kind, 0)
    values.update(queue_size=7, tick=3)
    return bytes(lib.store.serialize_cdr(cls(**values), "smolvla_msgs/msg/QueueStatus"))


def _record(out: Path, storage: str = "mcap", compression: str = "none", n: int = 50) -> EpisodeRecorder:
    rec = EpisodeRecorder(RecorderConfig(out_dir=str(out), storage=storage, compression=compression))
    rec.register_topic("/joint_states", "sensor_msgs/msg/JointState", [QOS])
    rec.register_topic("/cameras/top/image_raw", "sensor_msgs/msg/Image", [QOS])
    rec.register_topic("/smolvla/queue_status", "smolvla_msgs/msg/QueueStatus", [QOS])
    rec.register_topic("/robot_description", "std_msgs/msg/String", [QOS], latched=True)
    rec.on_message("/robot_description", _string("<robot name='so101'/>"), T0 - 10**9)
    return rec


def _fill(rec: EpisodeRecorder, n: int = 50, t0: int = T0) -> None:
    for i in range(n):
        rec.on_message("/joint_states", _joint_state(i), t0 + i * 20_000_000, seq=i + 1)
        rec.on_message("/cameras/top/image_raw", _image(i), t0 + i * 20_000_000 + 1, seq=i + 1)
    rec.on_message("/smolvla/queue_status", _queue_status(), t0 + 5)


@pytest.mark.parametrize("storage,compression", [("mcap", "none"), ("mcap", "zstd"), ("sqlite3", "none")])
def test_episode_bag_reads_back_with_rosbags(tmp_path: Path, storage: str, compression: str) -> None:
    rec = _record(tmp_path, storage, compression)
    index = rec.start("pick the red cube", T0)
    _fill(rec)
    res = rec.end(T0 + 2 * 10**9, "success")
    rec.close()
    assert res.error == "" and index == 0 and res.dropped == 0
    bag = Path(res.bag_path)
    assert bag == tmp_path / "episode_000000"
    assert list_bags(tmp_path) == [bag] and list_partials(tmp_path) == []
    ext = "mcap" if storage == "mcap" else "db3"
    assert sorted(p.name for p in bag.iterdir()) == sorted(["metadata.yaml", f"episode_000000_0.{ext}"])
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["relative_file_paths"] == [f"episode_000000_0.{ext}"]
    assert meta["custom_data"] == {
        "smolvla.task": "pick the red cube",
        "smolvla.episode_index": "0",
        "smolvla.start_ns": str(T0),
        "smolvla.end_ns": str(T0 + 2 * 10**9),
        "smolvla.outcome": "success",
        "smolvla.robot": "so101",
        "smolvla.dropped": "0",
    }
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    assert topics["/joint_states"]["message_count"] == 50
    assert topics["/joint_states"]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "reliable"
    with AnyReader([bag]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {
            "/smolvla/episode": 2,
            "/robot_description": 1,
            "/joint_states": 50,
            "/cameras/top/image_raw": 50,
            "/smolvla/queue_status": 1,
        }
        events, positions, frames = [], [], []
        for conn, stamp, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == "/smolvla/episode":
                events.append((stamp, json.loads(msg.data)))
            elif conn.topic == "/joint_states":
                positions.append((stamp, msg.position[0]))
            elif conn.topic == "/cameras/top/image_raw":
                frames.append(msg.header.frame_id)
            elif conn.topic == "/robot_description":
                assert msg.data == "<robot name='so101'/>" and stamp == T0  # latched: written at the start
            elif conn.topic == "/smolvla/queue_status":
                assert (msg.queue_size, msg.tick) == (7, 3)
    assert events == [
        (T0, {"event": "start", "episode_index": 0, "task": "pick the red cube", "time_ns": T0}),
        (
            T0 + 2 * 10**9,
            {"event": "end", "episode_index": 0, "task": "pick the red cube", "time_ns": T0 + 2 * 10**9},
        ),
    ]
    assert positions == [(T0 + i * 20_000_000, float(i)) for i in range(50)]  # log time = given receive time
    assert frames == [f"frame{i}" for i in range(50)]


def test_mcap_schemas_hold_the_definitions_and_hashes(tmp_path: Path) -> None:
    """mcap_ros2 decodes every message from the schema text alone; hashes equal rosidl's generated ones."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    rec = _record(tmp_path)
    rec.start("task", T0)
    _fill(rec, 5)
    res = rec.end(T0 + 10**9, "failure")
    rec.close()
    path = Path(res.bag_path) / "episode_000000_0.mcap"
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert {s.name for s in summary.schemas.values()} == {
            "std_msgs/msg/String",
            "sensor_msgs/msg/JointState",
            "sensor_msgs/msg/Image",
            "smolvla_msgs/msg/QueueStatus",
        }
        assert all(s.encoding == "ros2msg" for s in summary.schemas.values())
        qos = {c.topic: c.metadata.get("offered_qos_profiles", "") for c in summary.channels.values()}
        assert "reliability: reliable" in qos["/joint_states"]
        decoded = {}
        for _schema, channel, _message, msg in reader.iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append(msg)
    assert [m.position for m in decoded["/joint_states"]] == [[float(i), -float(i)] for i in range(5)]
    assert decoded["/smolvla/queue_status"][0].queue_size == 7
    assert json.loads(decoded["/smolvla/episode"][1].data)["event"] == "end"
    # the hashes written to metadata.yaml are the ones rosidl generated for the installed packages
    meta = yaml.safe_load((Path(res.bag_path) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    for t in meta["topics_with_message_count"]:
        msgtype = t["topic_metadata"]["type"]
        pkg, _, name = msgtype.split("/")
        ref = next(
            p / "share" / pkg / "msg" / f"{name}.json"
            for p in ament_prefixes()
            if (p / "share" / pkg / "msg" / f"{name}.json").is_file()
        )
        hashes = json.loads(ref.read_text())["type_hashes"]
        assert t["topic_metadata"]["type_description_hash"] == hashes[0]["hash_string"]


def test_type_library_resolves_project_types_from_installed_msg_files() -> None:
    lib = TypeLibrary()
    info = lib.info("smolvla_msgs/QueueStatus")
    assert info.msgtype == "smolvla_msgs/msg/QueueStatus"
    assert info.msgdef.startswith("std_msgs/Header header\n")
    assert "MSG: builtin_interfaces/Time" in info.msgdef
    with pytest.raises(KeyError):
        lib.info("no_such_pkg/msg/Nothing")


def test_sequence_gaps_and_middleware_losses_are_counted(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    rec.on_message("/joint_states", _joint_state(0), T0 - 1, seq=10)  # before the episode: only tracked
    rec.start("task", T0)
    rec.on_message("/joint_states", _joint_state(1), T0 + 1, seq=11)
    rec.on_message("/joint_states", _joint_state(2), T0 + 2, seq=14)  # 12 and 13 never arrived
    rec.add_lost("/cameras/top/image_raw", 3)
    res = rec.end(T0 + 10, "unknown")
    rec.close()
    assert res.dropped == 5
    assert res.lost_by_topic == {"/joint_states": 2, "/cameras/top/image_raw": 3}
    meta = yaml.safe_load((Path(res.bag_path) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["custom_data"]["smolvla.dropped"] == "5"


def _numbers(bag: Path, topic: str = "/joint_states") -> list[tuple[int, int]]:
    """(log time, message number) of ``topic`` (the number is position[0] of _joint_state)."""
    with AnyReader([bag]) as reader:
        return [
            (t, int(reader.deserialize(raw, c.msgtype).position[0]))
            for c, t, raw in reader.messages()
            if c.topic == topic
        ]


def test_no_message_lost_at_episode_start_while_the_bag_opens(tmp_path: Path) -> None:
    """Issue 11: messages received while the episode's bag was being created (seconds on a loaded machine)
    were dropped without a trace; the episode runs from its start on, its messages wait for the opening."""
    import threading

    rec = EpisodeRecorder(RecorderConfig(out_dir=str(tmp_path)))
    rec.register_topic("/joint_states", "sensor_msgs/msg/JointState", [QOS])
    entered, release = threading.Event(), threading.Event()

    def stall() -> None:  # a slow disk: the writer thread cannot create the bag yet
        entered.set()
        release.wait(60.0)

    threading.Thread(target=lambda: rec._call(stall, 60.0), daemon=True).start()
    assert entered.wait(10.0)
    started = threading.Thread(target=lambda: rec.start("task", T0), daemon=True)
    started.start()
    wait_until(lambda: rec.recording, 5.0)  # the episode runs while its bag is not open yet
    for i in range(1, 11):  # received after the start, while the bag is being opened
        rec.on_message("/joint_states", _joint_state(i), T0 + i * 10_000_000, seq=i)
    release.set()
    started.join(10.0)
    res = rec.end(T0 + 10**9)
    rec.close()
    assert res.error == "" and res.dropped == 0
    assert _numbers(Path(res.bag_path)) == [(T0 + i * 10_000_000, i) for i in range(1, 11)]


def test_episode_is_its_receive_time_window_and_end_drains_late_messages(tmp_path: Path) -> None:
    """Issue 11: callbacks lag behind the middleware on a loaded machine. A message belongs to the episode
    its *receive* time falls into, whenever its callback runs: received before the start -> not in the bag;
    received before the end but handed over late (during the drain) -> in the bag; after the end -> not."""
    clock = [T0]
    late: list[tuple[int, int]] = []  # (number, receive time) still inside the middleware at the end
    drained: list[float] = []

    def drain(timeout: float) -> bool:  # what the node's subscription thread does at the end
        drained.append(timeout)
        for i, t in late:
            rec.on_message("/joint_states", _joint_state(i), t, seq=i, publisher=b"A")
        return True

    rec = EpisodeRecorder(RecorderConfig(out_dir=str(tmp_path)), clock=lambda: clock[0], drain=drain)
    rec.register_topic("/joint_states", "sensor_msgs/msg/JointState", [QOS])
    rec.on_message("/joint_states", _joint_state(1), T0 - 20_000_000, seq=1, publisher=b"A")
    assert rec.start("task") == 0
    assert rec.episode_start_ns == T0
    # handed over after the start, received before it (lag): not part of the episode
    rec.on_message("/joint_states", _joint_state(2), T0 - 10_000_000, seq=2, publisher=b"A")
    for i in range(3, 8):  # received during the episode
        rec.on_message("/joint_states", _joint_state(i), T0 + i * 10_000_000, seq=i, publisher=b"A")
    # still in the middleware when the episode ends: two received before the end, one after it
    late.extend([(8, T0 + 80_000_000), (9, T0 + 90_000_000), (10, T0 + 110_000_000)])
    clock[0] = T0 + 100_000_000
    res = rec.end(outcome="success")
    rec.close()
    assert drained and res.drained and res.dropped == 0
    assert (res.start_ns, res.end_ns) == (T0, T0 + 100_000_000)
    assert _numbers(Path(res.bag_path)) == [(T0 + i * 10_000_000, i) for i in range(3, 10)]
    meta = yaml.safe_load((Path(res.bag_path) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["custom_data"]["smolvla.end_ns"] == str(T0 + 100_000_000)
    assert "smolvla.drained" not in meta["custom_data"]


def test_messages_handed_over_after_their_episode_was_saved_are_counted_in_it(tmp_path: Path) -> None:
    """Issue 11: after a stall the middleware can hold received messages back (in order, behind a missing
    one being repaired) until after their episode was drained and saved. They cannot go into its bag any
    more; they and the gaps in its window are counted in its metadata (smolvla.late, smolvla.dropped)."""
    clock = [T0]
    warnings: list[str] = []
    rec = EpisodeRecorder(
        RecorderConfig(out_dir=str(tmp_path)), clock=lambda: clock[0], on_warning=warnings.append
    )
    rec.register_topic("/joint_states", "sensor_msgs/msg/JointState", [QOS])
    ms = 1_000_000

    def message(i: int, received: int) -> None:
        rec.on_message("/joint_states", _joint_state(i), received, seq=i, publisher=b"A")

    rec.start("first")
    for i in range(1, 6):
        message(i, T0 + i * 10 * ms)
    clock[0] = T0 + 100 * ms
    first = rec.end()
    assert first.dropped == 0 and _numbers(Path(first.bag_path)) == [
        (T0 + i * 10 * ms, i) for i in range(1, 6)
    ]
    clock[0] = T0 + 200 * ms
    rec.start("second")
    for i in (6, 7, 8):  # received during the first episode, handed over now
        message(i, T0 + (i * 10) * ms)
    message(12, T0 + 90 * ms)  # 9..11 never arrived; received during the first episode too
    clock[0] = T0 + 300 * ms
    second = rec.end()  # the writer thread has updated the first bag's metadata before this one is saved
    rec.close()
    assert second.dropped == 0 and _numbers(Path(second.bag_path)) == []
    meta = yaml.safe_load((Path(first.bag_path) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["custom_data"]["smolvla.late"] == "7" and meta["custom_data"]["smolvla.dropped"] == "7"
    assert meta["custom_data"]["smolvla.task"] == "first"  # the rest of the metadata is unchanged
    assert _numbers(Path(first.bag_path)) == [(T0 + i * 10 * ms, i) for i in range(1, 6)]  # still readable
    assert warnings and "episode 0: 7 messages" in warnings[-1]


def test_a_message_repaired_after_the_end_is_in_the_episode_its_successor_was_received_in(
    tmp_path: Path,
) -> None:
    """CI run 11 of session 4 (test_no_message_lost_at_episode_boundaries_when_the_recorder_lags_at_100hz):
    after the recorder was frozen, one message published before the end was lost in the shared-memory port and
    repaired; the middleware stamps a repaired message when the repair arrives, after the end, while the
    messages published after it, held back behind it, kept their receive times inside the window. It was in
    no bag and counted nowhere. A message is sent before every later message of its publisher: its receive
    time is taken as the earliest of its own and theirs (during the drain: into the bag; after the episode
    was saved: counted late in it). Messages really received after the end stay out."""
    clock = [T0]
    ms = 1_000_000
    handed: list[tuple[int, int]] = []

    def drain(timeout: float) -> bool:  # the backlog, in sequence order, as the middleware hands it over
        for i, t in handed:
            rec.on_message("/joint_states", _joint_state(i), t, seq=i, publisher=b"A")
        return True

    rec = EpisodeRecorder(RecorderConfig(out_dir=str(tmp_path)), clock=lambda: clock[0], drain=drain)
    rec.register_topic("/joint_states", "sensor_msgs/msg/JointState", [QOS])
    rec.start("first")
    for i in range(1, 4):
        rec.on_message("/joint_states", _joint_state(i), T0 + i * 10 * ms, seq=i, publisher=b"A")
    # 4 and 5 were lost and repaired at T0+150 ms, after the end (T0+100 ms); 6 and 7 were received before
    # the end and waited behind them; 8 was received after the end
    handed.extend([(4, T0 + 150 * ms), (5, T0 + 151 * ms), (6, T0 + 60 * ms), (7, T0 + 70 * ms)])
    handed.append((8, T0 + 160 * ms))
    clock[0] = T0 + 100 * ms
    first = rec.end()
    assert first.dropped == 0
    assert _numbers(Path(first.bag_path)) == [(T0 + i * 10 * ms, i) for i in range(1, 4)] + [
        (T0 + 60 * ms, 4),
        (T0 + 60 * ms, 5),
        (T0 + 60 * ms, 6),
        (T0 + 70 * ms, 7),
    ]

    # the same after the episode was saved: the repaired one is counted late in it, not lost silently
    clock[0] = T0 + 200 * ms
    rec.start("second")
    for i in range(9, 12):
        rec.on_message("/joint_states", _joint_state(i), T0 + (200 + i) * ms, seq=i, publisher=b"A")
    handed.clear()
    clock[0] = T0 + 300 * ms
    second = rec.end()
    rec.on_message("/joint_states", _joint_state(12), T0 + 350 * ms, seq=12, publisher=b"A")  # repaired
    rec.on_message("/joint_states", _joint_state(13), T0 + 290 * ms, seq=13, publisher=b"A")
    rec.on_message("/joint_states", _joint_state(14), T0 + 360 * ms, seq=14, publisher=b"A")  # after it
    rec.close()  # the writer thread has updated the metadata
    meta = yaml.safe_load((Path(second.bag_path) / "metadata.yaml").read_text())[
        "rosbag2_bagfile_information"
    ]
    assert meta["custom_data"]["smolvla.late"] == "2"  # 12 and 13, not 14
    assert [i for _, i in _numbers(Path(second.bag_path))] == [9, 10, 11]


def test_sequence_gaps_are_counted_per_publisher_and_by_receive_time(tmp_path: Path) -> None:
    """Two publishers on one topic (their numbers interleave: no gap), a gap inside the episode (counted
    whole), a gap across the start (only the part whose interpolated receive times fall into the window)."""
    clock = [T0]
    rec = EpisodeRecorder(RecorderConfig(out_dir=str(tmp_path)), clock=lambda: clock[0])
    rec.register_topic("/joint_states", "sensor_msgs/msg/JointState", [QOS])
    ms = 1_000_000
    # publisher A: 1 received at T0-50ms, 2..10 lost, 11 at T0+50ms: the 9 missing ones spread evenly
    # (T0-50+10k ms, k=1..9: T0-40 .. T0+40 ms); the 5 at T0 .. T0+40 ms fall into the window
    rec.on_message("/joint_states", _joint_state(1), T0 - 50 * ms, seq=1, publisher=b"A")
    rec.start("task")
    rec.on_message("/joint_states", _joint_state(11), T0 + 50 * ms, seq=11, publisher=b"A")
    # publisher B interleaves with its own numbering: no gap
    for k, i in enumerate(range(100, 104)):
        rec.on_message("/joint_states", _joint_state(i), T0 + (51 + k) * ms, seq=k + 1, publisher=b"B")
    rec.on_message("/joint_states", _joint_state(12), T0 + 60 * ms, seq=12, publisher=b"A")
    rec.on_message("/joint_states", _joint_state(15), T0 + 90 * ms, seq=15, publisher=b"A")  # 13, 14 lost
    clock[0] = T0 + 200 * ms
    res = rec.end()
    rec.close()
    assert res.lost_by_topic == {"/joint_states": 5 + 2} and res.dropped == 7
    assert [i for _, i in _numbers(Path(res.bag_path))] == [11, 100, 101, 102, 103, 12, 15]


def test_discard_last_moves_the_bag_away_and_reuses_its_index(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    for k in range(2):
        rec.start(f"task {k}", T0 + k * 10**10)
        _fill(rec, 3, T0 + k * 10**10)
        rec.end(T0 + k * 10**10 + 10**9, "success")
    assert [p.name for p in list_bags(tmp_path)] == ["episode_000000", "episode_000001"]
    assert rec.discard_last().endswith("episode_000001")
    assert [p.name for p in list_bags(tmp_path)] == ["episode_000000"]
    assert len(list((tmp_path / ".discarded").iterdir())) == 1
    assert rec.start("again", T0 + 5 * 10**10) == 1  # re-recorded under the same index
    rec.abort()  # a running episode can be dropped as well: nothing remains of it
    assert list_partials(tmp_path) == [] and [p.name for p in list_bags(tmp_path)] == ["episode_000000"]
    rec.close()


def test_refuses_bad_requests_without_leaving_files(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    with pytest.raises(ValueError):
        rec.start("   ", T0)
    with pytest.raises(ValueError):
        rec.start("task", T0, time_limit=float("nan"))
    with pytest.raises(BagError):
        rec.end(T0, "success")  # nothing recording
    rec.start("task", T0)
    with pytest.raises(BagError):
        rec.start("task", T0)  # one at a time
    with pytest.raises(ValueError):
        rec.end(T0 + 1, "great")
    rec.end(T0 + 1, "success")
    with pytest.raises(BagError):
        rec.start("task", T0, episode_index=0)  # never overwrites a recorded episode
    rec.close()
    assert [p.name for p in tmp_path.iterdir()] == ["episode_000000"]


CRASH_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from smolvla_train.recording.recorder import EpisodeRecorder, RecorderConfig, episode_event_cdr
    from smolvla_train.recording.typedefs import TypeLibrary
    rec = EpisodeRecorder(RecorderConfig(out_dir=sys.argv[1], storage=sys.argv[2], flush_period=0.2))
    rec.register_topic("/joint_states", "std_msgs/msg/String")
    t0 = 1_700_000_000_000_000_000
    rec.start("crash test", t0)
    for i in range(200):
        rec.on_message("/joint_states", episode_event_cdr(TypeLibrary(), str(i)),
                       t0 + i * 1_000_000, seq=i + 1)
    time.sleep(1.0)  # several flush periods: everything above is on disk
    print("written", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_crash_leaves_a_readable_partial_bag_that_recovers(tmp_path: Path, storage: str) -> None:
    """Regression: a recorder killed mid-episode must not leave a bag that looks complete; ``recover-bags``
    finishes it (sqlite3 too: the committed rows, a new index and metadata.yaml, what ``ros2 bag reindex``
    would give)."""
    import sqlite3

    from mcap.records import Message
    from mcap.stream_reader import StreamReader

    from smolvla_train import ros2cli
    from smolvla_train.recording.bag import recover_main

    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(tmp_path), storage],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert list_bags(tmp_path) == []  # nothing that looks finished
    (partial,) = list_partials(tmp_path)
    assert partial.name == "episode_000000.partial"
    report = read_report(partial)
    assert report["status"] == "recording" and report["custom_data"]["smolvla.task"] == "crash test"
    files = sorted(p.name for p in (partial / "episode_000000_0").iterdir())
    n = 0
    if storage == "mcap":
        assert files == ["episode_000000_0.mcap"]  # no metadata.yaml
        with open(partial / "episode_000000_0" / files[0], "rb") as f:
            try:
                for record in StreamReader(f).records:
                    n += isinstance(record, Message)
            except Exception:  # noqa: BLE001 (the file ends without a footer)
                pass
    else:  # the database as the crash left it (a journal of the interrupted transaction may lie next to it)
        assert "episode_000000_0.db3" in files and "metadata.yaml" not in files
        db = sqlite3.connect(partial / "episode_000000_0" / "episode_000000_0.db3")
        (n,) = db.execute("SELECT COUNT(*) FROM messages").fetchone()
        db.close()
    assert n == 201  # 200 joint states + the start event, read without any summary / metadata
    if storage == "mcap":
        bag, recovered = recover_partial(partial)
    else:  # through the command line
        assert recover_main([str(tmp_path)]) == 0
        bag, recovered = tmp_path / "episode_000000", 201
    assert recovered == 201 and list_partials(tmp_path) == [] and list_bags(tmp_path) == [bag]
    ext = "mcap" if storage == "mcap" else "db3"
    assert sorted(p.name for p in bag.iterdir()) == sorted(["metadata.yaml", f"episode_000000_0.{ext}"])
    with AnyReader([bag]) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {
            "/smolvla/episode": 1,
            "/joint_states": 200,
        }
        stamps = [t for c, t, _ in reader.messages() if c.topic == "/joint_states"]
        assert stamps == [1_700_000_000_000_000_000 + i * 1_000_000 for i in range(200)]
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == storage and meta["message_count"] == 201
    assert meta["custom_data"]["smolvla.outcome"] == "partial"
    assert meta["custom_data"]["smolvla.task"] == "crash test"
    assert ros2cli.main(["bag", "info", str(bag)]) == 0  # what `ros2 bag info` reads
    if storage == "sqlite3":  # the index rosbag2 reads by time
        db = sqlite3.connect(bag / "episode_000000_0.db3")
        assert ("timestamp_idx",) in db.execute(
            "SELECT name FROM sqlite_master WHERE type='index'"
        ).fetchall()
        db.close()


def test_write_backlog_overflow_is_counted_as_lost(tmp_path: Path) -> None:
    """A stalled disk: beyond max_queue_mb of backlog, messages are dropped and counted, never blocking."""
    import threading

    rec = EpisodeRecorder(RecorderConfig(out_dir=str(tmp_path), max_queue_mb=0.05))  # ~52 KB backlog
    rec.register_topic("/cameras/top/image_raw", "sensor_msgs/msg/Image", [QOS])
    rec.start("task", T0)
    entered, release = threading.Event(), threading.Event()

    def stall() -> None:
        entered.set()
        release.wait(60.0)

    stalled = threading.Thread(target=lambda: rec._call(stall, 60.0), daemon=True)
    stalled.start()
    assert entered.wait(10.0)  # the writer thread now waits: nothing leaves the queue
    frame = _image(0)  # 64x48 rgb8: 9.3 KB
    for i in range(20):
        rec.on_message("/cameras/top/image_raw", frame, T0 + i, seq=i + 1)
    release.set()
    stalled.join(10.0)
    res = rec.end(T0 + 10**9, "unknown")
    rec.close()
    kept = res.counts["/cameras/top/image_raw"]
    assert 0 < kept < 20 and res.dropped == 20 - kept == res.lost_by_topic["/cameras/top/image_raw"]
    assert kept * len(frame) <= 0.05 * 1024 * 1024 + len(frame)
