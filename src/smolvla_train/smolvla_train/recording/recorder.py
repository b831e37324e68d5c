"""The episode recorder core (no rclpy): topics in, one bag per episode out.

The ``episode_recorder`` node subscribes to every configured topic for its whole life (raw serialized
messages, each topic's offered QoS) and hands each message to :meth:`EpisodeRecorder.on_message` with its
receive time on the node's ROS clock. Between episodes messages are only counted; during an episode they are
queued for a writer thread that appends them to the episode's bag (so a slow disk never blocks the DDS
callbacks; the queue is bounded in bytes and an overflow is counted as a loss). Latched (transient-local)
topics such as ``/robot_description`` arrive once: their last message is written at the start of every
episode. The episode boundaries and the task go into the bag as ``/smolvla/episode`` (std_msgs/String with
JSON ``{"event", "episode_index", "task", "time_ns"}``) and into ``metadata.yaml`` ``custom_data``.

Losses counted per topic during an episode: DDS message-lost events (:meth:`add_lost`), gaps in the
publication sequence numbers of a topic with a single publisher, and write-queue overflows.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import Qos

from smolvla_train.recording.bag import (
    PARTIAL_SUFFIX,
    BagError,
    EpisodeBag,
    TopicSpec,
    list_bags,
    list_partials,
)
from smolvla_train.recording.typedefs import TypeLibrary

EPISODE_TOPIC = "/smolvla/episode"
EPISODE_TYPE = "std_msgs/msg/String"
OUTCOMES = ("success", "failure", "unknown")
DISCARD_DIR = ".discarded"


@dataclass
class RecorderConfig:
    out_dir: str = "demonstrations"
    storage: str = "mcap"  # mcap | sqlite3
    compression: str = "none"  # none | zstd
    robot: str = "so101"
    name_format: str = "episode_{index:06d}"
    max_queue_mb: float = 512.0
    flush_period: float = 1.0  # [s] wall clock: make the partial bag readable at least this often
    bag_version: int = 9


@dataclass
class EpisodeResult:
    bag_path: str
    episode_index: int
    counts: dict[str, int]
    dropped: int
    duration: float
    outcome: str
    error: str = ""
    lost_by_topic: dict[str, int] = field(default_factory=dict)


@dataclass
class EpisodeStatus:
    recording: bool
    episode_index: int
    task: str
    elapsed: float
    counts: dict[str, int]
    dropped: int


@dataclass
class _Topic:
    name: str
    spec: TopicSpec
    latched: bool
    last_seq: int | None = None
    latched_data: bytes | None = None
    received: int = 0  # whole life


@dataclass
class _Episode:
    bag: EpisodeBag
    index: int
    task: str
    start_ns: int
    time_limit: float
    received: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    error: str = ""


class EpisodeRecorder:
    """Thread-safe: ``on_message``/``add_lost`` from any thread; episodes from one controlling thread."""

    def __init__(self, config: RecorderConfig, types: TypeLibrary | None = None) -> None:
        self.cfg = config
        self.out_dir = Path(config.out_dir).expanduser()
        self.types = types or TypeLibrary()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._topics: dict[str, _Topic] = {}
        self._episode: _Episode | None = None
        self._queue: collections.deque = collections.deque()
        self._queued_bytes = 0
        self._max_bytes = int(config.max_queue_mb * 1024 * 1024)
        self._stop = False
        self.session_bags: list[Path] = []
        self.episode_info = self.types.info(EPISODE_TYPE)
        self._thread = threading.Thread(target=self._writer_loop, name="bag-writer", daemon=True)
        self._thread.start()

    # -- topics --------------------------------------------------------------------------------------------
    def register_topic(
        self, topic: str, msgtype: str, qos: list[Qos] | None = None, latched: bool = False
    ) -> None:
        """Declare a topic (its type resolved to a definition + hash now; KeyError if not installed)."""
        info = self.types.info(msgtype)
        spec = TopicSpec(topic, info.msgtype, info.msgdef, info.rihs01, list(qos or []))
        with self._lock:
            old = self._topics.get(topic)
            self._topics[topic] = _Topic(topic, spec, latched, latched_data=old.latched_data if old else None)

    def topics(self) -> list[str]:
        with self._lock:
            return list(self._topics)

    def on_message(self, topic: str, data: bytes, stamp_ns: int, seq: int | None = None) -> None:
        """One received message (``seq``: publication sequence number when the topic has one publisher)."""
        with self._lock:
            t = self._topics.get(topic)
            if t is None:
                return
            t.received += 1
            gap = 0
            if seq is not None and seq > 0:
                if t.last_seq is not None and seq > t.last_seq + 1:
                    gap = seq - t.last_seq - 1
                t.last_seq = seq
            if t.latched:
                t.latched_data = bytes(data)
            ep = self._episode
            if ep is None or ep.error:
                return
            if gap:
                ep.lost[topic] = ep.lost.get(topic, 0) + gap
            ep.received[topic] = ep.received.get(topic, 0) + 1
            self._enqueue_locked(ep, topic, stamp_ns, data)

    def add_lost(self, topic: str, count: int) -> None:
        """Messages the middleware reports lost on ``topic`` (counted against the running episode)."""
        if count <= 0:
            return
        with self._lock:
            ep = self._episode
            if ep is not None:
                ep.lost[topic] = ep.lost.get(topic, 0) + int(count)

    def _enqueue_locked(self, ep: _Episode, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        size = len(data)
        if self._queued_bytes + size > self._max_bytes and self._queue:
            ep.lost[topic] = ep.lost.get(topic, 0) + 1
            return
        self._queue.append(("msg", ep, topic, int(stamp_ns), data))
        self._queued_bytes += size
        self._cond.notify_all()

    # -- episodes ------------------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        with self._lock:
            return self._episode is not None

    def next_index(self) -> int:
        used = [-1]
        pattern = re.compile(r"(\d+)$")
        for path in [*list_bags(self.out_dir), *list_partials(self.out_dir)]:
            stem = path.name[: -len(PARTIAL_SUFFIX)] if path.name.endswith(PARTIAL_SUFFIX) else path.name
            m = pattern.search(stem)
            if m:
                used.append(int(m.group(1)))
        return max(used) + 1

    def start(self, task: str, stamp_ns: int, *, episode_index: int = -1, time_limit: float = 0.0) -> int:
        """Start an episode; returns its index. Raises BagError/ValueError with the reason on refusal."""
        if not isinstance(task, str) or not task.strip():
            raise ValueError("task must be a non-empty text")
        if not (time_limit >= 0.0) or time_limit != time_limit:
            raise ValueError(f"time_limit must be >= 0 s, got {time_limit!r}")
        if self.recording:
            raise BagError("an episode is being recorded already")
        index = self.next_index() if episode_index < 0 else int(episode_index)
        name = self.cfg.name_format.format(index=index)
        custom = self._custom_data(task, index, stamp_ns, None, None)
        bag = self._call(
            lambda: EpisodeBag(
                self.out_dir,
                name,
                storage=self.cfg.storage,
                compression=self.cfg.compression,
                version=self.cfg.bag_version,
                report={"custom_data": custom},
            )
        )
        ep = _Episode(bag, index, task, int(stamp_ns), float(time_limit))
        event = self._event_bytes("start", index, task, stamp_ns)
        with self._lock:
            self._episode = ep
            ep.received[EPISODE_TOPIC] = 1
            self._queue.append(("msg", ep, EPISODE_TOPIC, int(stamp_ns), event))
            for t in self._topics.values():
                if t.latched and t.latched_data is not None:
                    ep.received[t.name] = ep.received.get(t.name, 0) + 1
                    self._enqueue_locked(ep, t.name, stamp_ns, t.latched_data)
            self._cond.notify_all()
        return index

    def status(self, now_ns: int) -> EpisodeStatus:
        """Messages received for the running episode per topic (queued or written), losses so far."""
        with self._lock:
            ep = self._episode
            if ep is None:
                return EpisodeStatus(False, -1, "", 0.0, {}, 0)
            return EpisodeStatus(
                True,
                ep.index,
                ep.task,
                (now_ns - ep.start_ns) * 1e-9,
                dict(ep.received),
                sum(ep.lost.values()),
            )

    def time_limit_reached(self, now_ns: int) -> bool:
        with self._lock:
            ep = self._episode
            return ep is not None and ep.time_limit > 0 and (now_ns - ep.start_ns) * 1e-9 >= ep.time_limit

    def end(self, stamp_ns: int, outcome: str = "unknown", timeout: float = 120.0) -> EpisodeResult:
        """End the episode: everything received so far is written, then the bag is finished and renamed."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        with self._lock:
            ep = self._episode
            if ep is None:
                raise BagError("no episode is being recorded")
            self._episode = None  # later messages belong to no episode
            event = self._event_bytes("end", ep.index, ep.task, stamp_ns)
            self._queue.append(("msg", ep, EPISODE_TOPIC, int(stamp_ns), event))
            self._cond.notify_all()
        duration = (stamp_ns - ep.start_ns) * 1e-9

        def finish() -> EpisodeResult:  # on the writer thread, after every message queued before it
            counts = dict(ep.bag.counts)
            dropped = sum(ep.lost.values())
            if ep.error:
                ep.bag.mark_failed(ep.error)
                return EpisodeResult(
                    "", ep.index, counts, dropped, duration, outcome, ep.error, dict(ep.lost)
                )
            custom = self._custom_data(ep.task, ep.index, ep.start_ns, int(stamp_ns), outcome)
            custom["smolvla.dropped"] = str(dropped)
            try:
                path = ep.bag.finish(custom)
            except Exception as exc:  # noqa: BLE001 (disk full, permissions: reported, the partial stays)
                error = f"could not finish the bag: {exc}"
                ep.bag.mark_failed(error)
                return EpisodeResult("", ep.index, counts, dropped, duration, outcome, error, dict(ep.lost))
            return EpisodeResult(str(path), ep.index, counts, dropped, duration, outcome, "", dict(ep.lost))

        try:
            result = self._call(finish, timeout)
        except TimeoutError:
            ep.error = f"the writer did not catch up within {timeout:g} s"
            return EpisodeResult("", ep.index, {}, sum(ep.lost.values()), duration, outcome, ep.error)
        if result.bag_path:
            self.session_bags.append(Path(result.bag_path))
        return result

    def abort(self, reason: str = "aborted") -> None:
        """Drop the running episode (nothing is saved)."""
        with self._lock:
            ep = self._episode
            self._episode = None
        if ep is not None:
            ep.error = reason
            self._call(ep.bag.discard, 120.0)

    def discard_last(self) -> str:
        """Move the last bag saved by this recorder to ``<out_dir>/.discarded/`` (its index is reused)."""
        if self.recording:
            raise BagError("cannot discard while an episode is being recorded")
        while self.session_bags:
            path = self.session_bags.pop()
            if path.exists():
                dest_dir = self.out_dir / DISCARD_DIR
                dest_dir.mkdir(exist_ok=True)
                dest = dest_dir / f"{path.name}-{time.strftime('%Y%m%dT%H%M%S')}"
                k = 1
                while dest.exists():
                    dest = dest_dir / f"{path.name}-{time.strftime('%Y%m%dT%H%M%S')}-{k}"
                    k += 1
                shutil.move(str(path), str(dest))
                return str(path)
        raise BagError("no episode recorded by this recorder to discard")

    def close(self) -> None:
        """Stop the writer thread; a running episode is ended and saved (outcome unknown)."""
        if self.recording:
            with contextlib.suppress(Exception):
                self.end(time.time_ns(), "unknown", timeout=30.0)
        with self._lock:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=30.0)

    # -- helpers -------------------------------------------------------------------------------------------
    def _custom_data(
        self, task: str, index: int, start_ns: int, end_ns: int | None, outcome: str | None
    ) -> dict[str, str]:
        data = {
            "smolvla.task": task,
            "smolvla.episode_index": str(index),
            "smolvla.start_ns": str(int(start_ns)),
            "smolvla.robot": self.cfg.robot,
        }
        if end_ns is not None:
            data["smolvla.end_ns"] = str(int(end_ns))
        if outcome is not None:
            data["smolvla.outcome"] = outcome
        return data

    def _event_bytes(self, event: str, index: int, task: str, stamp_ns: int) -> bytes:
        text = json.dumps({"event": event, "episode_index": index, "task": task, "time_ns": int(stamp_ns)})
        return episode_event_cdr(self.types, text)

    def _call(self, fn, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        """Run ``fn`` on the writer thread after everything queued so far; its result or exception."""
        box: dict = {"done": threading.Event()}
        with self._lock:
            self._queue.append(("call", fn, box))
            self._cond.notify_all()
        if not box["done"].wait(timeout):
            raise TimeoutError(f"the bag writer did not answer within {timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _writer_loop(self) -> None:
        last_flush = time.monotonic()
        while True:
            with self._lock:
                self._cond.wait_for(lambda: self._queue or self._stop, timeout=self.cfg.flush_period)
                if self._stop and not self._queue:
                    return
                item = self._queue.popleft() if self._queue else None
                if item is not None and item[0] == "msg" and item[2] != EPISODE_TOPIC:
                    self._queued_bytes -= len(item[4])
                flush_ep = None
                if self._episode is not None and time.monotonic() - last_flush >= self.cfg.flush_period:
                    flush_ep = self._episode
                    last_flush = time.monotonic()
            if item is not None and item[0] == "call":
                _, fn, box = item
                try:
                    box["result"] = fn()
                except BaseException as exc:  # noqa: BLE001 (handed to the caller)
                    box["error"] = exc
                box["done"].set()
            elif item is not None:
                _, ep, topic, stamp, data = item
                if not ep.error and not ep.bag.closed:
                    try:
                        if topic not in ep.bag.connections:
                            ep.bag.add_topic(self._spec(topic))
                        ep.bag.write(topic, stamp, data)
                    except Exception as exc:  # noqa: BLE001 (reported in the result; the node lives on)
                        ep.error = f"writing {topic} failed: {exc}"
            if flush_ep is not None and not flush_ep.error and not flush_ep.bag.closed:
                try:
                    flush_ep.bag.flush()
                except Exception as exc:  # noqa: BLE001
                    flush_ep.error = f"flushing the bag failed: {exc}"

    def _spec(self, topic: str) -> TopicSpec:
        if topic == EPISODE_TOPIC:
            info = self.episode_info
            return TopicSpec(EPISODE_TOPIC, info.msgtype, info.msgdef, info.rihs01, [])
        with self._lock:
            return self._topics[topic].spec


def episode_event_cdr(types: TypeLibrary, text: str) -> bytes:
    """std_msgs/msg/String ``text`` serialized as CDR (little endian), as a ROS publisher sends it."""
    store = types.store
    string_cls = store.types["std_msgs/msg/String"]
    return bytes(store.serialize_cdr(string_cls(data=text), "std_msgs/msg/String"))


def default_out_dir() -> str:
    return os.path.join(os.path.expanduser("~"), "smolvla_demonstrations")
