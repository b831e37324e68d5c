"""The episode recorder core (no rclpy): topics in, one bag per episode out.

The ``episode_recorder`` node subscribes to every configured topic for its whole life (raw serialized
messages, each topic's offered QoS) and hands each message to :meth:`EpisodeRecorder.on_message` with its
receive time on the node's ROS clock. Between episodes messages are only counted; during an episode they are
queued for a writer thread that appends them to the episode's bag (so a slow disk never blocks the DDS
callbacks; the queue is bounded in bytes and an overflow is counted as a loss). Latched (transient-local)
topics such as ``/robot_description`` arrive once: their last message is written at the start of every
episode. The episode boundaries and the task go into the bag as ``/smolvla/episode`` (std_msgs/String with
JSON ``{"event", "episode_index", "task", "time_ns"}``) and into ``metadata.yaml`` ``custom_data``.

Episode membership is decided on the receive-time axis, not by when a callback happens to run (issue 11):
an episode holds exactly the messages received in ``[start, end]`` of the recorder's clock (``clock``, the
clock of the ``received_ns`` handed to :meth:`EpisodeRecorder.on_message`). Callbacks may lag behind the
middleware by seconds on a loaded machine, so

- a message received before the start but handed over after it belongs to no episode;
- :meth:`EpisodeRecorder.end` closes the window, then calls ``drain`` (the node: "hand over every message
  the middleware holds now") and only then finishes the bag, so a message received before the end but
  handed over late is still written;
- the episode is active from its start on while its bag is being opened (its messages queue behind the
  opening on the writer thread);
- a message handed over after its episode was saved (the middleware holds received messages back until a
  missing earlier one is repaired, seconds after a stall) cannot go into the bag any more: it is counted
  for that episode (``smolvla.late``, added to ``smolvla.dropped`` in its ``metadata.yaml``, ``on_warning``),
  like a sequence gap whose missing messages fall into a saved episode's window;
- the repaired message itself is received (stamped) only when the repair arrives, after the messages
  published after it: its receive time can lie after the end although a later message of its publisher was
  received before it. A message's receive time is therefore taken as the earliest receive time of it and of
  the later messages of its publisher (causal order): a message received after an end is held back (its
  data only while that episode drains) until its publisher's next message says where it belongs.

Losses counted per topic during an episode: gaps in the publication sequence numbers, tracked per publisher
(a topic may have several), attributed to the episode whose window the missing messages' receive times fall
into (interpolated between the two messages around the gap; a gap between two recorded messages is always
counted whole); DDS message-lost events (:meth:`add_lost`; the larger of the two per topic, they count the
same losses); and write-queue overflows.
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
from collections.abc import Callable
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
    update_custom_data,
)
from smolvla_train.recording.typedefs import TypeLibrary

EPISODE_TOPIC = "/smolvla/episode"
EPISODE_TYPE = "std_msgs/msg/String"
OUTCOMES = ("success", "failure", "unknown")
DISCARD_DIR = ".discarded"
#: Saved episodes whose window late messages are still checked against (see _Finished).
FINISHED_KEPT = 16
#: Messages received up to this long after an episode's end are held back per publisher until its next
#: message gives their causal receive time (a repair after a stall takes seconds) [ns].
HOLD_HORIZON_NS = 30 * 10**9
#: At most this many held messages per publisher (the oldest go first).
HOLD_MAX = 2000


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
    start_ns: int = 0  # the window on the receive-time axis (the recorder's clock)
    end_ns: int = 0
    drained: bool = True  # every message received before the end was handed over before the bag was closed


@dataclass
class EpisodeStatus:
    recording: bool
    episode_index: int
    task: str
    elapsed: float
    counts: dict[str, int]
    dropped: int
    start_ns: int = 0


@dataclass
class _Topic:
    name: str
    spec: TopicSpec
    latched: bool
    latched_data: bytes | None = None
    received: int = 0  # whole life
    # per publisher (its GID; None when the caller does not tell): last sequence number and its receive time
    publishers: dict[object, tuple[int, int]] = field(default_factory=dict)
    # per publisher: messages received after an episode's end, waiting for their causal receive time:
    # (receive time, stamp, data or None once no episode is draining)
    held: dict[object, list[tuple[int, int, bytes | memoryview | None]]] = field(default_factory=dict)


@dataclass
class _Episode:
    bag: EpisodeBag | None  # None while it is being opened on the writer thread
    index: int
    task: str
    start_ns: int  # bag time of the start event (simulated time with use_sim_time)
    time_limit: float
    window_start: int  # receive-time axis
    window_end: int | None = None  # set by end(): the episode is closing (being drained)
    received: dict[str, int] = field(default_factory=dict)
    lost_seq: dict[str, int] = field(default_factory=dict)
    lost_events: dict[str, int] = field(default_factory=dict)
    lost_queue: dict[str, int] = field(default_factory=dict)
    error: str = ""

    def in_window(self, received_ns: int) -> bool:
        return self.window_start <= received_ns and (
            self.window_end is None or received_ns <= self.window_end
        )

    @property
    def lost(self) -> dict[str, int]:
        """Per topic: sequence gaps or middleware events (the larger; both see the same losses) + overflow."""
        topics = set(self.lost_seq) | set(self.lost_events) | set(self.lost_queue)
        lost = {
            t: max(self.lost_seq.get(t, 0), self.lost_events.get(t, 0)) + self.lost_queue.get(t, 0)
            for t in sorted(topics)
        }
        return {t: n for t, n in lost.items() if n}


@dataclass
class _Finished:
    """An ended episode: messages of its window handed over after it (late) are counted, not lost silently."""

    index: int
    window_start: int
    window_end: int
    bag_path: Path | None = None  # set when the bag is saved
    dropped: int = 0  # reported in the result (lost during the episode)
    late: int = 0  # received in its window, handed over after it was drained
    late_lost: int = 0  # sequence gaps whose missing messages fall into its window, seen after it ended
    written: tuple[int, int] = (0, 0)  # (late, late_lost) in its metadata.yaml
    update_pending: bool = False


def lost_in_window(gap: int, before_ns: int, after_ns: int, start_ns: int, end_ns: int | None) -> int:
    """How many of ``gap`` messages missing between two received at ``before_ns`` and ``after_ns`` fall
    into the window ``[start_ns, end_ns]`` (end None: open). Their receive times are unknown: they are spread
    evenly between the two (a publisher's period); a gap between two messages in the window counts whole."""
    if gap <= 0:
        return 0
    end = end_ns if end_ns is not None else max(after_ns, before_ns)
    if start_ns <= before_ns and after_ns <= end:
        return gap
    if after_ns <= before_ns:  # clock went backwards: place them all at the later message
        return gap if start_ns <= after_ns <= end else 0
    n = 0
    for k in range(1, gap + 1):
        t = before_ns + (after_ns - before_ns) * k // (gap + 1)
        if start_ns <= t <= end:
            n += 1
    return n


class EpisodeRecorder:
    """Thread-safe: ``on_message``/``add_lost`` from any thread; episodes from one controlling thread.

    ``clock``: the receive-time clock (ns) of the ``received_ns`` given to :meth:`on_message`; episode windows
    are read from it at :meth:`start`/:meth:`end`. Without it the window is the ``stamp_ns`` given to them.
    ``drain(timeout) -> bool``: called by :meth:`end` after the window closed; hands every message the
    middleware has received so far to :meth:`on_message` (False: could not within ``timeout`` seconds).
    """

    def __init__(
        self,
        config: RecorderConfig,
        types: TypeLibrary | None = None,
        *,
        clock: Callable[[], int] | None = None,
        drain: Callable[[float], bool] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = config
        self._clock = clock
        self._drain = drain
        self._on_warning = on_warning
        self._finished: collections.deque[_Finished] = collections.deque(maxlen=FINISHED_KEPT)
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

    def on_message(
        self,
        topic: str,
        data: bytes,
        stamp_ns: int,
        seq: int | None = None,
        publisher: object = None,
        received_ns: int | None = None,
    ) -> None:
        """One received message. ``stamp_ns``: its log time in the bag; ``received_ns``: when the middleware
        received it on the ``clock`` axis (default ``stamp_ns``), which decides its episode; ``seq``: its
        publication sequence number, ``publisher``: its publisher's id (GID; gaps per publisher)."""
        received = int(stamp_ns if received_ns is None else received_ns)
        with self._lock:
            t = self._topics.get(topic)
            if t is None:
                return
            t.received += 1
            gap, before = 0, received
            if seq is not None and seq > 0:
                last = t.publishers.get(publisher)
                if last is not None and seq > last[0] + 1:
                    gap, before = seq - last[0] - 1, last[1]
                t.publishers[publisher] = (int(seq), received)
            if t.latched:
                t.latched_data = bytes(data)
            ep = self._episode
            held = t.held.pop(publisher, None) if seq is not None and seq > 0 else None
            if gap:
                if ep is not None and not ep.error:
                    n = lost_in_window(gap, before, received, ep.window_start, ep.window_end)
                    if n:
                        ep.lost_seq[topic] = ep.lost_seq.get(topic, 0) + n
                for fin in self._finished:  # missing messages of an episode that has ended already
                    n = lost_in_window(gap, before, received, fin.window_start, fin.window_end)
                    if n:
                        fin.late_lost += n
                        self._schedule_late_locked(fin)
            if ep is not None and not ep.error and ep.in_window(received):
                if held:  # sent before this one: in the episode too if received after it
                    self._place_held_locked(topic, held, received, stamp_ns, ep, None)
                ep.received[topic] = ep.received.get(topic, 0) + 1
                self._enqueue_locked(ep, topic, stamp_ns, data)
                return
            for fin in self._finished:  # received during an ended episode, handed over after its end
                if fin.window_start <= received <= fin.window_end:
                    if held:
                        self._place_held_locked(topic, held, received, stamp_ns, None, fin)
                    fin.late += 1
                    self._schedule_late_locked(fin)
                    return
            # in no episode: the held ones keep waiting (a later message may still have been received earlier)
            if seq is None or seq <= 0:
                return
            waiting = [(min(own, received), stamp, kept) for own, stamp, kept in held or ()]
            if self._just_after_an_end_locked(received):
                draining = ep is not None and ep.window_end is not None and not ep.error
                waiting.append((received, int(stamp_ns), data if draining else None))
            if waiting:
                t.held[publisher] = waiting[-HOLD_MAX:]

    def _just_after_an_end_locked(self, received: int) -> bool:
        """Whether ``received`` lies after the newest episode end, within :data:`HOLD_HORIZON_NS`."""
        ep = self._episode
        if ep is not None and ep.window_end is not None:
            end = ep.window_end
        elif self._finished:
            end = self._finished[-1].window_end
        else:
            return False
        return end < received <= end + HOLD_HORIZON_NS

    def _place_held_locked(
        self,
        topic: str,
        held: list[tuple[int, int, bytes | memoryview | None]],
        received: int,
        stamp_ns: int,
        ep: _Episode | None,
        fin: _Finished | None,
    ) -> None:
        """Messages held after an end, now that a later message of their publisher, received at ``received``,
        was placed in ``ep`` (running or draining) or ``fin`` (saved): a held one received after it was sent
        before it (a repair) and goes there too; one received before it stays in no episode."""
        for own, stamp, data in held:
            if own <= received:
                continue
            if fin is not None:
                fin.late += 1
            elif ep is not None:
                if data is None:  # held while no episode drained: cannot be written any more
                    ep.lost_seq[topic] = ep.lost_seq.get(topic, 0) + 1
                    continue
                ep.received[topic] = ep.received.get(topic, 0) + 1
                self._enqueue_locked(ep, topic, min(stamp, int(stamp_ns)), data)

    def _schedule_late_locked(self, fin: _Finished) -> None:
        if not fin.update_pending:
            fin.update_pending = True
            self._submit_locked(lambda: self._write_late(fin))

    def _write_late(self, fin: _Finished) -> None:
        """On the writer thread: the late counts into the saved bag's metadata.yaml."""
        with self._lock:
            fin.update_pending = False
            counts = (fin.late, fin.late_lost)
            if fin.bag_path is None or counts == fin.written:
                return  # not saved (yet: the finish writes them) / nothing new
            fin.written = counts
        try:
            update_custom_data(
                fin.bag_path,
                {"smolvla.dropped": str(fin.dropped + sum(counts)), "smolvla.late": str(sum(counts))},
            )
        except Exception as exc:  # noqa: BLE001 (the bag was moved or deleted: say so, go on)
            self._warn(f"episode {fin.index}: could not record {sum(counts)} late messages: {exc}")
            return
        self._warn(
            f"episode {fin.index}: {sum(counts)} messages received during it were handed over (or found "
            f"missing) after it was saved; not in {fin.bag_path}, counted in its smolvla.dropped/smolvla.late"
        )

    def _warn(self, text: str) -> None:
        if self._on_warning is not None:
            with contextlib.suppress(Exception):  # a logger failing at shutdown
                self._on_warning(text)

    def add_lost(self, topic: str, count: int) -> None:
        """Messages the middleware reports lost on ``topic`` (counted against the running episode)."""
        if count <= 0:
            return
        with self._lock:
            ep = self._episode
            if ep is not None:
                ep.lost_events[topic] = ep.lost_events.get(topic, 0) + int(count)

    def _enqueue_locked(self, ep: _Episode, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        size = len(data)
        if self._queued_bytes + size > self._max_bytes and self._queue:
            ep.lost_queue[topic] = ep.lost_queue.get(topic, 0) + 1
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

    def start(
        self,
        task: str,
        stamp_ns: int | None = None,
        *,
        episode_index: int = -1,
        time_limit: float = 0.0,
        timeout: float = 60.0,
    ) -> int:
        """Start an episode; returns its index. Raises BagError/ValueError with the reason on refusal.

        The episode's window opens now on the receive-time clock (``stamp_ns`` without a clock), before its
        bag is open: messages received from here on queue behind the opening (issue 11: a message received
        while the bag was being created used to be dropped silently). ``stamp_ns``: bag time of the start
        event (default: the window start)."""
        if not isinstance(task, str) or not task.strip():
            raise ValueError("task must be a non-empty text")
        if not (time_limit >= 0.0) or time_limit != time_limit:
            raise ValueError(f"time_limit must be >= 0 s, got {time_limit!r}")
        if stamp_ns is None and self._clock is None:
            raise ValueError("stamp_ns is needed when the recorder has no clock")
        if self.recording:
            raise BagError("an episode is being recorded already")
        index = self.next_index() if episode_index < 0 else int(episode_index)
        name = self.cfg.name_format.format(index=index)
        with self._lock:
            if self._episode is not None:
                raise BagError("an episode is being recorded already")
            window = int(self._clock()) if self._clock is not None else int(stamp_ns)  # type: ignore[arg-type]
            start_ns = window if stamp_ns is None else int(stamp_ns)
            ep = _Episode(None, index, task, start_ns, float(time_limit), window)
            custom = self._custom_data(task, index, start_ns, None, None)

            def open_bag() -> None:  # on the writer thread, before any message of this episode
                ep.bag = EpisodeBag(
                    self.out_dir,
                    name,
                    storage=self.cfg.storage,
                    compression=self.cfg.compression,
                    version=self.cfg.bag_version,
                    report={"custom_data": custom},
                )

            box = self._submit_locked(open_bag)
            self._episode = ep
            ep.received[EPISODE_TOPIC] = 1
            self._queue.append(
                ("msg", ep, EPISODE_TOPIC, start_ns, self._event_bytes("start", index, task, start_ns))
            )
            for t in self._topics.values():
                if t.latched and t.latched_data is not None:
                    ep.received[t.name] = ep.received.get(t.name, 0) + 1
                    self._enqueue_locked(ep, t.name, start_ns, t.latched_data)
            self._cond.notify_all()
        try:
            self._wait(box, timeout)
        except BaseException as exc:
            with self._lock:
                if self._episode is ep:
                    self._episode = None
                ep.error = f"cannot open the bag: {exc}"
            if isinstance(exc, TimeoutError):  # the opening may still happen: remove what it leaves
                self._submit(lambda: ep.bag.discard() if ep.bag is not None else None)
            raise
        return index

    @property
    def episode_start_ns(self) -> int | None:
        """Bag time of the running episode's start event (None when no episode runs)."""
        with self._lock:
            return self._episode.start_ns if self._episode is not None else None

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
                ep.start_ns,
            )

    def time_limit_reached(self, now_ns: int) -> bool:
        with self._lock:
            ep = self._episode
            return ep is not None and ep.time_limit > 0 and (now_ns - ep.start_ns) * 1e-9 >= ep.time_limit

    def end(
        self, stamp_ns: int | None = None, outcome: str = "unknown", timeout: float = 120.0
    ) -> EpisodeResult:
        """End the episode: its window closes now on the receive-time clock (``stamp_ns`` without a clock),
        every message received until then is handed over (``drain``) and written, then the bag is finished
        and renamed. ``stamp_ns``: bag time of the end event (default: the window end)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        if stamp_ns is None and self._clock is None:
            raise ValueError("stamp_ns is needed when the recorder has no clock")
        with self._lock:
            ep = self._episode
            if ep is None:
                raise BagError("no episode is being recorded")
            if ep.window_end is not None:
                raise BagError("the episode is ending already")
            window = int(self._clock()) if self._clock is not None else int(stamp_ns)  # type: ignore[arg-type]
            ep.window_end = max(window, ep.window_start)  # later receptions belong to no episode
        end_ns = ep.window_end if stamp_ns is None else int(stamp_ns)
        drained = True
        if self._drain is not None:  # messages received before the end but not handed over yet (lag)
            try:
                drained = bool(self._drain(min(timeout, 30.0)))
            except Exception:  # noqa: BLE001 (reported as not drained)
                drained = False
        fin = _Finished(ep.index, ep.window_start, ep.window_end)
        with self._lock:
            if self._episode is ep:
                self._episode = None
            self._finished.append(fin)  # from now on its late messages are counted there
            event = self._event_bytes("end", ep.index, ep.task, end_ns)
            self._queue.append(("msg", ep, EPISODE_TOPIC, end_ns, event))
            self._cond.notify_all()
        duration = (end_ns - ep.start_ns) * 1e-9
        window = (ep.window_start, ep.window_end)

        def result(path: str, counts: dict[str, int], error: str, late: int = 0) -> EpisodeResult:
            lost = ep.lost
            if late:
                lost["(late)"] = late
            return EpisodeResult(
                path, ep.index, counts, sum(lost.values()), duration, outcome, error, lost, *window, drained
            )

        def finish() -> EpisodeResult:  # on the writer thread, after every message queued before it
            bag = ep.bag
            counts = dict(bag.counts) if bag is not None else {}
            if ep.error or bag is None:
                if bag is not None:
                    bag.mark_failed(ep.error)
                return result("", counts, ep.error or "the bag was never opened")
            custom = self._custom_data(ep.task, ep.index, ep.start_ns, end_ns, outcome)
            with self._lock:  # late messages seen between the drain and now are in this bag's report
                fin.dropped = sum(ep.lost.values())
                fin.written = (fin.late, fin.late_lost)
                late = sum(fin.written)
            custom["smolvla.dropped"] = str(fin.dropped + late)
            if late:
                custom["smolvla.late"] = str(late)
            if not drained:
                custom["smolvla.drained"] = "false"
            try:
                path = bag.finish(custom)
            except Exception as exc:  # noqa: BLE001 (disk full, permissions: reported, the partial stays)
                error = f"could not finish the bag: {exc}"
                bag.mark_failed(error)
                return result("", counts, error, late)
            with self._lock:
                fin.bag_path = path
            return result(str(path), counts, "", late)

        try:
            res = self._call(finish, timeout)
        except TimeoutError:
            ep.error = f"the writer did not catch up within {timeout:g} s"
            return result("", {}, ep.error)
        if res.bag_path:
            self.session_bags.append(Path(res.bag_path))
        return res

    def abort(self, reason: str = "aborted") -> None:
        """Drop the running episode (nothing is saved)."""
        with self._lock:
            ep = self._episode
            self._episode = None
        if ep is not None:
            ep.error = reason
            self._call(lambda: ep.bag.discard() if ep.bag is not None else None, 120.0)

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

    def close(self, stamp_ns: int | None = None) -> None:
        """Stop the writer thread; a running episode is ended and saved (outcome unknown; ``stamp_ns``: bag
        time of its end event, default the window end)."""
        if self.recording:
            if stamp_ns is None and self._clock is None:
                stamp_ns = time.time_ns()
            with contextlib.suppress(Exception):
                self.end(stamp_ns, "unknown", timeout=30.0)
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

    def _submit_locked(self, fn) -> dict:  # type: ignore[no-untyped-def]
        box: dict = {"done": threading.Event()}
        self._queue.append(("call", fn, box))
        self._cond.notify_all()
        return box

    def _submit(self, fn) -> dict:  # type: ignore[no-untyped-def]
        with self._lock:
            return self._submit_locked(fn)

    def _call(self, fn, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        """Run ``fn`` on the writer thread after everything queued so far; its result or exception."""
        return self._wait(self._submit(fn), timeout)

    def _wait(self, box: dict, timeout: float):  # type: ignore[no-untyped-def]
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
                if (
                    self._episode is not None
                    and self._episode.bag is not None
                    and time.monotonic() - last_flush >= self.cfg.flush_period
                ):
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
                if not ep.error and ep.bag is not None and not ep.bag.closed:
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
