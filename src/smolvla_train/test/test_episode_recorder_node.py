"""episode_recorder as an installed executable: the action, its end service, cancel, discard-last, refusals.

A publisher in the test process sends numbered messages; a bag must hold an unbroken run of them (the
publisher's numbering is the reference) or report every gap in ``dropped``, the latched topic once at the
start of every episode.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

import ros_harness
from ros_harness import wait_for

pytestmark = pytest.mark.slow
rclpy = pytest.importorskip("rclpy")
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from smolvla_msgs.action import RecordEpisode  # noqa: E402
from smolvla_train.recording.bag import list_bags  # noqa: E402


class Client:
    def __init__(self, context, executor, depth: int = 50) -> None:  # type: ignore[no-untyped-def]
        self.node = rclpy.create_node("recorder_test_client", context=context)
        self.pub = self.node.create_publisher(
            String, "/numbers", QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        )
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.latched_pub = self.node.create_publisher(String, "/robot_description", latched)
        self.latched_pub.publish(String(data="<robot name='test'/>"))
        self.action = ActionClient(self.node, RecordEpisode, "/episode_recorder/record")
        self.end = self.node.create_client(SetBool, "/episode_recorder/end_episode")
        self.discard = self.node.create_client(Trigger, "/episode_recorder/discard_last")
        self.feedback: list = []
        self.sent = 0
        self.published = 0  # the last number whose publish() returned
        self._stop = threading.Event()
        executor.add_node(self.node)
        self.thread = threading.Thread(target=self._publish, daemon=True)
        self.thread.start()

    def _publish(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            self.pub.publish(String(data=str(self.sent)))
            self.published = self.sent
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5.0)

    def wait(self, future, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        assert wait_for(future.done, timeout), "no answer"
        return future.result()

    def send(self, task: str, time_limit: float = 0.0):  # type: ignore[no-untyped-def]
        goal = RecordEpisode.Goal(task=task, time_limit=time_limit)
        return self.wait(self.action.send_goal_async(goal, feedback_callback=self.feedback.append))


def _read(bag: Path) -> tuple[dict, dict[str, list]]:
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    msgs: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for conn, t, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype).data))
    return meta, msgs


def _missing(msgs: dict[str, list]) -> int:
    numbers = [int(d) for _, d in msgs["/numbers"]]
    return numbers[-1] - numbers[0] + 1 - len(numbers)


def _assert_unbroken(msgs: dict[str, list]) -> int:
    numbers = [int(d) for _, d in msgs["/numbers"]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "a /numbers message is missing"
    return len(numbers)


def test_record_end_cancel_discard(tmp_path: Path, ros_context, ros_executor, run_node) -> None:  # type: ignore[no-untyped-def]
    rec = run_node(
        "smolvla_train",
        "episode_recorder",
        parameters={
            "out_dir": str(tmp_path),
            "topics": ["/numbers", "/robot_description"],
            "feedback_period": 0.2,
        },
    )
    client = Client(ros_context, ros_executor)
    try:
        assert client.action.wait_for_server(timeout_sec=30.0)
        assert rec.wait_for_output("subscribed /numbers") and rec.wait_for_output(
            "subscribed /robot_description"
        )
        # 1: ends at its time limit, outcome unknown
        handle = client.send("stack the blocks", time_limit=1.5)
        assert handle.accepted
        assert not client.send("second at once").accepted  # one episode at a time
        result = client.wait(handle.get_result_async()).result
        assert result.error == "" and result.outcome == "unknown"
        assert result.duration >= 1.5 and client.feedback and client.feedback[-1].feedback.elapsed > 0.5
        meta, msgs = _read(Path(result.bag_path))
        # DDS itself can lose messages on a loaded machine (a publisher's history overflows while the
        # recorder process gets no CPU); the recorder must report every gap (issue 11)
        n = len(msgs["/numbers"]) if result.dropped else _assert_unbroken(msgs)
        assert _missing(msgs) <= result.dropped, (_missing(msgs), result.dropped)
        assert dict(zip(result.topics, result.message_counts))["/numbers"] == n
        assert n + result.dropped > 50
        assert [d for _, d in msgs["/robot_description"]] == ["<robot name='test'/>"]
        assert meta["custom_data"]["smolvla.task"] == "stack the blocks"
        # 2: ended through ~/end_episode (failure): the service answers with the saved bag
        handle = client.send("stack the blocks again")
        assert handle.accepted
        time.sleep(0.5)
        response = client.wait(client.end.call_async(SetBool.Request(data=False)))
        result = client.wait(handle.get_result_async()).result
        assert response.success and response.message == result.bag_path
        meta, msgs = _read(Path(result.bag_path))
        assert (
            meta["custom_data"]["smolvla.outcome"] == "failure"
            and meta["custom_data"]["smolvla.episode_index"] == "1"
        )
        # every gap is in the reported drop count (issue 11: none may be lost silently)
        assert _missing(msgs) <= result.dropped, (_missing(msgs), result.dropped)
        events = [json.loads(d) for _, d in msgs["/smolvla/episode"]]
        assert [e["event"] for e in events] == ["start", "end"]
        # 3: canceled: kept, outcome unknown
        handle = client.send("third")
        time.sleep(0.5)
        client.wait(handle.cancel_goal_async())
        result = client.wait(handle.get_result_async()).result
        assert result.bag_path.endswith("episode_000002") and result.outcome == "unknown"
        # re-record: discard the last one, its index comes back
        response = client.wait(client.discard.call_async(Trigger.Request()))
        assert response.success and response.message.endswith("episode_000002")
        assert [b.name for b in list_bags(tmp_path)] == ["episode_000000", "episode_000001"]
        handle = client.send("third, take two", time_limit=0.5)
        result = client.wait(handle.get_result_async()).result
        assert result.bag_path.endswith("episode_000002")
        # bad goals are refused with a reason, the node lives on
        handle = client.send("   ")
        result = client.wait(handle.get_result_async()).result
        assert result.bag_path == "" and "task" in result.error
        response = client.wait(client.end.call_async(SetBool.Request(data=True)))
        assert not response.success and "no episode" in response.message
        assert rec.alive()
    finally:
        client.stop()


def _dropped_in_metadata(bag: Path) -> int:
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return int(meta["custom_data"]["smolvla.dropped"])


def _reported_within(bag: Path, n: int, timeout: float) -> bool:
    return wait_for(lambda: _dropped_in_metadata(bag) >= n, timeout)


def _freeze(proc, seconds: float, client: Client) -> int:  # type: ignore[no-untyped-def]
    """The recorder process gets no CPU for ``seconds`` (a loaded machine): its DDS threads stop too, what
    is published meanwhile waits in its shared-memory port and is received when it runs again, ahead of
    anything sent later; its callbacks then lag behind. Returns the last number published before it ran."""
    os.kill(proc.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
        return client.published
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)


def test_no_message_lost_at_episode_boundaries_when_the_recorder_lags_at_100hz(  # type: ignore[no-untyped-def]
    tmp_path: Path, ros_context, ros_executor, run_node
) -> None:
    """Issue 11: at 100 Hz the recorder lost messages at the episode boundaries without reporting them. Its
    callbacks lag behind the middleware when it is short of CPU; the episode used to be whatever the callbacks
    handed over between start and end, so messages received before the end but handed over after it were
    dropped silently (tail) and messages received before the start were recorded (head). Here the recorder is
    frozen (SIGSTOP) right before each start (0.3 s) and each end (0.9 s: 90 messages wait in its port; below
    Fast DDS's 1 s shared-memory health check, beyond which the middleware itself may deliver them after a
    repair, i.e. received after the end): every /numbers message published after the start and before the
    end was requested must be in the bag or counted as dropped, and none received outside the episode window
    ([smolvla.start_ns, smolvla.end_ns]) may be in it. The old recorder failed both (50-95 of ~140 lost)."""
    rec = run_node(
        "smolvla_train",
        "episode_recorder",
        parameters={"out_dir": str(tmp_path), "topics": ["/numbers"], "queue_depth": 1000},
    )
    client = Client(ros_context, ros_executor, depth=1000)
    try:
        assert client.action.wait_for_server(timeout_sec=30.0)
        assert rec.wait_for_output("subscribed /numbers")
        for k in range(3):
            _freeze(rec, 0.3, client)  # lagging at the start: a backlog received before the start
            handle = client.send(f"episode {k}")
            assert handle.accepted
            first = client.published + 1  # published after the episode started
            time.sleep(0.5)
            published = _freeze(rec, 0.9, client)  # lagging at the end: a backlog received before the end
            response = client.wait(client.end.call_async(SetBool.Request(data=True)))
            result = client.wait(handle.get_result_async()).result
            assert response.success and result.error == "", (response.message, result.error)
            meta, msgs = _read(Path(result.bag_path))
            start_ns = int(meta["custom_data"]["smolvla.start_ns"])
            end_ns = int(meta["custom_data"]["smolvla.end_ns"])
            stamps = [t for t, _ in msgs.get("/numbers", [])]
            numbers = {int(d) for _, d in msgs.get("/numbers", [])}
            assert all(start_ns <= t <= end_ns for t in stamps), "a message from outside the window"
            missing = set(range(first, published + 1)) - numbers
            if numbers:
                assert _missing(msgs) <= result.dropped  # a gap inside the bag is known when it is saved
            assert "smolvla.drained" not in meta["custom_data"]
            # after a stall longer than Fast DDS's shared-memory health check (1 s) the middleware can hold
            # received messages back until after the episode was saved; they are then counted in its
            # metadata (smolvla.late, smolvla.dropped) when they are handed over
            bag = Path(result.bag_path)
            assert len(missing) <= result.dropped or _reported_within(bag, len(missing), 30.0), (
                sorted(missing),
                result.dropped,
                _dropped_in_metadata(bag),
            )
        assert rec.alive()
    finally:
        client.stop()


def test_invalid_parameters_are_a_startup_error(tmp_path: Path) -> None:
    proc = ros_harness.NodeProcess(
        "smolvla_train", "episode_recorder", parameters={"out_dir": str(tmp_path), "storage": "tape"}
    )
    try:
        assert wait_for(lambda: not proc.alive(), 30.0)
        assert proc.proc.returncode == 1
        out = proc.output()
        assert "storage" in out and "tape" in out and "mcap" in out  # names the parameter, value, choices
    finally:
        proc.stop()
