"""``episode_recorder``: record demonstrations, one rosbag2 bag per episode (thin adapter around
:class:`smolvla_train.recording.recorder.EpisodeRecorder`).

- Subscribes (raw serialized, no deserialization) to every topic in ``topics`` as soon as it has a publisher,
  with a QoS adapted to the publishers' offered QoS (reliable / transient-local only if every publisher
  offers it), and keeps the subscriptions for its whole life; messages are written only during an episode,
  stamped with their receive time on the node's ROS clock (``use_sim_time`` follows ``/clock``).
- The subscriptions live on a helper node of the same name in ``<namespace>/_subscriptions`` spun by a
  single-threaded executor in a thread of their own (issue 11): the action, services and discovery never
  delay them, and an episode's end waits until that executor has handed over every message the middleware
  received before the end (on a loaded machine callbacks lag seconds behind the middleware; such messages
  used to be dropped silently). An episode holds the messages *received* (middleware receive time) between
  its start and its end.
- Action ``~/record`` (``smolvla_msgs/action/RecordEpisode``): goal = task text and time limit. One episode
  at a time. Feedback about once per second (elapsed, messages per topic, losses). The episode ends at the
  time limit, when ``~/end_episode`` is called, or when the goal is canceled; the bag is then finished
  (``metadata.yaml``) and renamed to ``<out_dir>/episode_<index>``; the result holds its path, the counts and
  the losses.
- ``~/end_episode`` (std_srvs/SetBool; ``data`` = the task succeeded): end the running episode with outcome
  success/failure and save it; answers with the bag path once it is saved (also when the episode was already
  ending at its time limit or by a cancel: then the outcome stays ``unknown``; never left unanswered).
- ``~/discard_last`` (std_srvs/Trigger): drop the running episode, or move the last saved one to
  ``<out_dir>/.discarded/`` (re-record: its index is used again).
- Publishes ``/smolvla/episode`` (std_msgs/String, JSON start/end events; also written into the bag).

Parameters: ``config/episode_recorder.yaml``. Partial recordings left by a crash are reported at start-up
(``smolvla_train recover-bags <out_dir>`` turns them into finished bags).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import threading
import time
from dataclasses import dataclass

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from smolvla_common.node_main import run_node
from smolvla_common.node_parameters import NodeParameters
from smolvla_common.parameters import Param, ParameterError, ParameterTable
from smolvla_msgs.action import RecordEpisode
from smolvla_train.recording.bag import COMPRESSIONS, STORAGES, list_partials, read_report
from smolvla_train.recording.episode_control import EndRequests
from smolvla_train.recording.qos import offered_qos, subscription_qos
from smolvla_train.recording.recorder import (
    EPISODE_TOPIC,
    EpisodeRecorder,
    EpisodeResult,
    RecorderConfig,
)

DEFAULT_TOPICS = [
    "/joint_states",
    "/joint_commands",
    "/cameras/top/image_raw",
    "/cameras/wrist/image_raw",
    "/cameras/top/image_raw/compressed",
    "/cameras/wrist/image_raw/compressed",
    "/cameras/top/camera_info",
    "/cameras/wrist/camera_info",
    "/robot_description",
    "/smolvla/queue_status",
]


#: Longest wait of ``~/end_episode`` for the episode to be saved [s] (a last resort: see _on_end_episode).
END_WAIT = 300.0
#: A drain is complete after this many executor passes in a row found no message (see _drain_ready).
IDLE_PASSES = 3
#: Namespace (below the recorder's) of the helper node that holds the subscriptions.
SUBSCRIPTION_NAMESPACE = "_subscriptions"


def _absolute_topics(topics: list[str]) -> str | None:
    bad = [t for t in topics if not t.startswith("/")]
    return f"topics must be absolute names (starting with /), got {bad}" if bad else None


#: Every parameter of episode_recorder, declared once (smolvla_common.parameters: integers accepted for
#: doubles, named errors, applied after validation); config/episode_recorder.yaml is checked against it.
PARAMETERS = ParameterTable(
    "episode_recorder",
    [
        Param(
            "out_dir",
            "~/smolvla_demonstrations",
            "Directory of the episode bags, one rosbag2 bag per episode: <out_dir>/episode_<index:06d>/ "
            "(created if missing).",
            "string",
            read_only=True,
            check=lambda v: None if v.strip() else "must be a non-empty path",
        ),
        Param(
            "topics",
            list(DEFAULT_TOPICS),
            "Topics to record (absolute names); topics without a publisher are absent from the bag; "
            "/smolvla/episode (the recorder's own start/end events) is always recorded.",
            "string_array",
            read_only=True,
            check=_absolute_topics,
        ),
        Param("storage", "mcap", "Bag storage.", "string", choices=tuple(STORAGES), read_only=True),
        Param(
            "compression",
            "none",
            "MCAP: zstd-compressed chunks; sqlite3: per message.",
            "string",
            choices=tuple(COMPRESSIONS),
            read_only=True,
        ),
        Param(
            "robot",
            "so101",
            "Robot named in each bag's metadata (custom_data smolvla.robot).",
            "string",
            choices=("so101", "so100"),
        ),
        Param(
            "max_queue_mb",
            512.0,
            "Largest write backlog [MiB]; beyond it incoming messages are dropped and counted as lost.",
            "double",
            8.0,
            65536.0,
            read_only=True,
        ),
        Param("queue_depth", 100, "Subscription history depth per topic.", "int", 1, 10000, read_only=True),
        Param(
            "discovery_period",
            0.5,
            "How often new publishers are looked for [s].",
            "double",
            0.05,
            60.0,
            read_only=True,
        ),
        Param("feedback_period", 1.0, "Action feedback period [s].", "double", 0.05, 60.0),
        Param(
            "flush_period",
            1.0,
            "The bag being written is made readable (chunk closed, file flushed) at least this often [s].",
            "double",
            0.1,
            60.0,
        ),
    ],
    source="smolvla_train.nodes.episode_recorder:PARAMETERS",
)


@dataclass
class RecorderNodeConfig:
    """The validated values of :data:`PARAMETERS` (defaults there)."""

    out_dir: str
    topics: list[str]
    storage: str
    compression: str
    robot: str
    max_queue_mb: float
    queue_depth: int
    discovery_period: float
    feedback_period: float
    flush_period: float


class RecorderStartupError(RuntimeError):
    pass


def _message_class(msgtype: str) -> type:
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class EpisodeRecorderNode(Node):
    def __init__(self, **kwargs: object) -> None:
        super().__init__("episode_recorder", **kwargs)
        # declared and validated (ParameterError names the parameter and the allowed values); run-time
        # changes are applied after validation by _apply_parameters
        self.params = NodeParameters(self, PARAMETERS, on_change=self._apply_parameters)
        self.cfg = RecorderNodeConfig(**self.params.values)
        # episode windows on the middleware's receive-time axis (info['received_timestamp']: system clock)
        self.core = EpisodeRecorder(
            RecorderConfig(
                out_dir=self.cfg.out_dir,
                storage=self.cfg.storage,
                compression=self.cfg.compression,
                robot=self.cfg.robot,
                max_queue_mb=self.cfg.max_queue_mb,
                flush_period=self.cfg.flush_period,
            ),
            clock=time.time_ns,
            drain=self._drain_subscriptions,
            on_warning=lambda text: self.get_logger().warning(text),
        )
        self._subs: dict[str, object] = {}
        self._warned: set[str] = set()
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        # end requests, time limit and cancel meet here (an end request while the episode is ending at its
        # time limit is answered with the saved result, not left waiting)
        self._control = EndRequests()
        self._last_result: EpisodeResult | None = None

        # the subscriptions: a node of their own, spun in a thread of its own (see the module docstring); same
        # name in the namespace <ns>/_subscriptions, so "the subscriptions of node episode_recorder" (by node
        # name, e.g. record-sim's readiness check) stays true
        self._sub_node = Node(
            self.get_name(),
            namespace=self.get_namespace().rstrip("/") + "/" + SUBSCRIPTION_NAMESPACE,
            context=self.context,
            use_global_arguments=False,
            enable_rosout=False,
            start_parameter_services=False,
        )
        self._sub_executor = SingleThreadedExecutor(context=self.context)
        self._sub_executor.add_node(self._sub_node)
        self._handled = 0  # messages and loss events handed to the core (drain: "nothing left")
        self._drain_lock = threading.Lock()
        self._drain_requests: list[list] = []  # [threading.Event, drained: bool]
        self._drain_guard = self._sub_node.create_guard_condition(lambda: None)  # wakes the thread
        self._sub_stop = threading.Event()
        self._sub_thread = threading.Thread(
            target=self._spin_subscriptions, name="recorder-subscriptions", daemon=True
        )
        self._sub_thread.start()
        self._ctl_group = ReentrantCallbackGroup()
        self.event_pub = self.create_publisher(String, EPISODE_TOPIC, 10)
        self.action_server = ActionServer(
            self,
            RecordEpisode,
            "~/record",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=self._ctl_group,
        )
        self.create_service(SetBool, "~/end_episode", self._on_end_episode, callback_group=self._ctl_group)
        self.create_service(Trigger, "~/discard_last", self._on_discard_last, callback_group=self._ctl_group)
        # its own mutually exclusive group: two discoveries at once would subscribe a topic twice (every
        # message recorded twice; seen with the reentrant control group)
        self._discovery_lock = threading.Lock()
        self.create_timer(
            self.cfg.discovery_period, self._discover, callback_group=MutuallyExclusiveCallbackGroup()
        )
        for partial in list_partials(self.core.out_dir):
            report = read_report(partial)
            self.get_logger().warning(
                f"partial recording {partial} ({report.get('status', 'unknown status')}"
                f"{', ' + report['error'] if report.get('error') else ''}); "
                f"`smolvla_train recover-bags {self.core.out_dir}` turns it into a finished bag"
            )
        self.get_logger().info(
            f"recording {len(self.cfg.topics)} topics into {self.core.out_dir} ({self.cfg.storage}, "
            f"compression {self.cfg.compression}); next episode index {self.core.next_index()}"
        )

    # -- parameters ----------------------------------------------------------------------------------------
    def _apply_parameters(self, changes: dict[str, object]) -> None:
        """Validated run-time changes (post-set callback; the start-up ones are refused before)."""
        for name, value in changes.items():
            setattr(self.cfg, name, value)
        if "robot" in changes:
            self.core.cfg.robot = self.cfg.robot
        if "flush_period" in changes:
            self.core.cfg.flush_period = self.cfg.flush_period

    # -- time ----------------------------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # -- discovery and subscriptions -------------------------------------------------------------------------
    def _discover(self) -> None:
        with self._discovery_lock:
            self._discover_locked()

    def _discover_locked(self) -> None:
        try:
            types = dict(self.get_topic_names_and_types())
        except Exception:  # noqa: BLE001 (context shutting down)
            return
        for topic in self.cfg.topics:
            if topic == EPISODE_TOPIC:
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if topic in self._subs or not infos:
                continue
            type_names = types.get(topic, [])
            if len(type_names) != 1:
                if topic not in self._warned:
                    self._warned.add(topic)
                    self.get_logger().warning(f"not recording {topic}: several types {type_names}")
                continue
            msgtype = type_names[0]
            try:
                msg_cls = _message_class(msgtype)
                offered = [offered_qos(i.qos_profile) for i in infos]
                sub_qos, latched = subscription_qos([i.qos_profile for i in infos], self.cfg.queue_depth)
                self.core.register_topic(topic, msgtype, offered, latched=latched)
            except Exception as exc:  # noqa: BLE001 (an unknown type must not stop the others)
                if topic not in self._warned:
                    self._warned.add(topic)
                    self.get_logger().warning(f"not recording {topic} ({msgtype}): {exc}")
                continue
            self._subs[topic] = self._sub_node.create_subscription(
                msg_cls,
                topic,
                self._make_callback(topic),
                sub_qos,
                raw=True,
                event_callbacks=SubscriptionEventCallbacks(
                    message_lost=lambda info, t=topic: self._on_lost(t, int(info.total_count_change))
                ),
            )
            self.get_logger().info(
                f"subscribed {topic} ({msgtype}, {sub_qos.reliability.name.lower()}, "
                f"{sub_qos.durability.name.lower()}, depth {sub_qos.depth})"
            )

    def _make_callback(self, topic: str):  # type: ignore[no-untyped-def]
        core = self.core
        clock = self.get_clock()
        sim_time = self._sim_time

        def callback(data: bytes, info: dict) -> None:
            # when the middleware received it (system clock), not when this callback runs (it may lag)
            received = int(info.get("received_timestamp") or 0) or time.time_ns()
            stamp = clock.now().nanoseconds if sim_time else received
            gid = info.get("publisher_gid")
            publisher = bytes(gid["data"]) if isinstance(gid, dict) and gid.get("data") is not None else None
            self._handled += 1
            core.on_message(topic, data, stamp, info.get("publication_sequence_number"), publisher, received)

        return callback

    def _on_lost(self, topic: str, count: int) -> None:
        self._handled += 1
        self.core.add_lost(topic, count)

    # -- the subscription thread -----------------------------------------------------------------------------
    def _spin_subscriptions(self) -> None:
        while not self._sub_stop.is_set():
            try:
                self._sub_executor.spin_once(timeout_sec=0.1)
                with self._drain_lock:
                    requests, self._drain_requests = self._drain_requests, []
                if requests:
                    drained = self._drain_ready()
                    for request in requests:
                        request[1] = drained
                        request[0].set()
            except Exception as exc:  # noqa: BLE001 (context shut down; anything else is logged)
                if self._sub_stop.is_set() or not self.context.ok():
                    break
                self.get_logger().error(f"subscription thread: {exc!r}")
                time.sleep(0.1)
        with self._drain_lock:
            requests, self._drain_requests = self._drain_requests, []
        for request in requests:
            request[0].set()  # not drained (request[1] stays False)

    def _drain_ready(self, timeout: float = 30.0) -> bool:
        """Hand over every message the middleware holds now: run the executor without waiting until
        IDLE_PASSES passes in a row found nothing (a pass handles one ready entity; the one after the last
        handler of a wait set and the one consuming the wake-up guard find nothing without a fresh wait)."""
        deadline = time.monotonic() + timeout
        idle = 0
        while idle < IDLE_PASSES:
            if self._sub_stop.is_set() or time.monotonic() > deadline:
                return False
            before = self._handled
            self._sub_executor.spin_once(timeout_sec=0.0)
            idle = idle + 1 if self._handled == before else 0
        return True

    def _drain_subscriptions(self, timeout: float) -> bool:
        """Called by the core when an episode ends: returns once every message received until now has been
        handed to it (False: the subscription thread is not running or did not answer within ``timeout``)."""
        if threading.current_thread() is self._sub_thread or not self._sub_thread.is_alive():
            return False
        request: list = [threading.Event(), False]
        with self._drain_lock:
            self._drain_requests.append(request)
        self._drain_guard.trigger()
        return bool(request[0].wait(timeout) and request[1])

    def _stop_subscriptions(self) -> None:
        if not self._sub_stop.is_set():
            self._sub_stop.set()
            with contextlib.suppress(Exception):
                self._drain_guard.trigger()
            self._sub_thread.join(timeout=10.0)
            with contextlib.suppress(Exception):
                self._sub_executor.shutdown(timeout_sec=1.0)
            with contextlib.suppress(Exception):
                self._sub_node.destroy_node()

    # -- episodes ------------------------------------------------------------------------------------------
    def _publish_event(self, event: str, index: int, task: str, stamp_ns: int) -> None:
        text = json.dumps({"event": event, "episode_index": index, "task": task, "time_ns": int(stamp_ns)})
        self.event_pub.publish(String(data=text))

    def _on_goal(self, goal: RecordEpisode.Goal) -> GoalResponse:
        if self._control.busy or self.core.recording:
            self.get_logger().warning("RecordEpisode goal rejected: an episode is being recorded")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle) -> RecordEpisode.Result:  # type: ignore[no-untyped-def]
        goal = goal_handle.request
        result = RecordEpisode.Result()
        if not self._control.begin():
            result.error = "an episode is being recorded"
            goal_handle.abort()
            return result
        finished = [False]

        def finish(res: EpisodeResult | None) -> None:
            # before the goal's result goes out (the client's next goal must not find the recorder busy), and
            # always (saved, failed, discarded, exception): every ~/end_episode request gets its answer
            if not finished[0]:
                finished[0] = True
                self._control.finish(res)

        try:
            return self._record(goal_handle, goal, result, finish)
        finally:
            finish(None)

    def _record(self, goal_handle, goal, result, finish):  # type: ignore[no-untyped-def]
        # publishers that appeared since the last discovery tick are subscribed before the episode starts
        self._discover()
        try:
            # the window opens inside core.start (receive-time clock); with use_sim_time the events are
            # stamped in simulated time
            index = self.core.start(
                goal.task,
                self._now_ns() if self._sim_time else None,
                episode_index=int(goal.episode_index),
                time_limit=float(goal.time_limit),
            )
            start_ns = self.core.episode_start_ns or self._now_ns()
        except Exception as exc:  # noqa: BLE001 (refused: reason in the result)
            result.error = f"cannot start the episode: {exc}"
            self.get_logger().error(result.error)
            finish(None)
            goal_handle.abort()
            return result
        self._publish_event("start", index, goal.task, start_ns)
        missing = [t for t in self.cfg.topics if t not in self._subs and t != EPISODE_TOPIC]
        self.get_logger().info(
            f"episode {index} started: {goal.task!r}"
            + (f", time limit {goal.time_limit:g} s" if goal.time_limit > 0 else "")
            + (f" (no publisher yet: {', '.join(missing)})" if missing else "")
        )
        # several publishing nodes on one topic: intended, or another graph on this ROS_DOMAIN_ID?
        for topic in self._subs:
            try:
                names = sorted({i.node_name for i in self.get_publishers_info_by_topic(topic)})
            except Exception:  # noqa: BLE001 (diagnostics only)
                continue
            if len(names) > 1:
                self.get_logger().warning(f"{topic} has {len(names)} publishing nodes: {', '.join(names)}")
        next_feedback = time.monotonic() + self.cfg.feedback_period
        while True:
            if goal_handle.is_cancel_requested:
                break
            if not self.core.recording:  # discarded through ~/discard_last
                self._publish_event("end", index, goal.task, self._now_ns())
                result.episode_index = index
                result.error = "episode discarded (~/discard_last)"
                finish(None)
                goal_handle.abort()
                return result
            if self._control.requested() is not None:
                break
            if self.core.time_limit_reached(self._now_ns()):
                break
            if not self.context.ok():
                break
            if time.monotonic() >= next_feedback:
                next_feedback += self.cfg.feedback_period
                st = self.core.status(self._now_ns())
                fb = RecordEpisode.Feedback()
                fb.elapsed = float(st.elapsed)
                fb.topics = list(st.counts)
                fb.message_counts = [int(v) for v in st.counts.values()]
                fb.dropped = int(st.dropped)
                goal_handle.publish_feedback(fb)
            time.sleep(0.01)
        # from here on the outcome is decided: an end request coming now waits for this episode's result
        outcome = self._control.close() or "unknown"
        # the window closes inside core.end, which then waits for the subscription thread to hand over what
        # was received before (drain) and saves the bag
        res = self.core.end(self._now_ns() if self._sim_time else None, outcome)
        self._publish_event("end", index, goal.task, self._now_ns() if self._sim_time else res.end_ns)
        result.bag_path = res.bag_path
        result.episode_index = res.episode_index
        result.topics = list(res.counts)
        result.message_counts = [int(v) for v in res.counts.values()]
        result.dropped = int(res.dropped)
        result.duration = float(res.duration)
        result.outcome = res.outcome
        result.error = res.error
        if res.error:
            self.get_logger().error(f"episode {index} not saved: {res.error}")
        else:
            counts = ", ".join(f"{t} {n}" for t, n in res.counts.items())
            self.get_logger().info(
                f"episode {index} saved to {res.bag_path} ({res.duration:.1f} s, {outcome}, "
                f"lost {res.dropped}{' ' + str(res.lost_by_topic) if res.dropped else ''}): {counts}"
            )
            if not res.drained:
                self.get_logger().warning(
                    f"episode {index}: the subscriptions were not drained at its end; messages received "
                    "just before the end may be missing (smolvla.drained: false)"
                )
        self._last_result = res
        finish(res)
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif res.error:
            goal_handle.abort()
        else:
            goal_handle.succeed()
        return result

    def _on_end_episode(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        waiter = self._control.request("success" if request.data else "failure")
        if waiter is None:
            response.success, response.message = False, "no episode is being recorded"
            return response
        # the episode loop ends within ~10 ms and the bag writer has its own bound (RecorderCore.end: 120 s),
        # so this wait always ends; the bound here is only a last resort
        if not waiter.wait(timeout=END_WAIT):
            response.success, response.message = False, f"the episode did not end within {END_WAIT:g} s"
            return response
        res = waiter.result
        if res is None:
            response.success, response.message = False, "the episode was discarded"
            return response
        if not waiter.applied:
            self.get_logger().warning(
                f"~/end_episode ({waiter.outcome}) came while episode {res.episode_index} was ending "
                f"(time limit or cancel): saved with outcome {res.outcome}"
            )
        response.success = not res.error
        response.message = res.bag_path if response.success else res.error
        return response

    def _on_discard_last(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            if self.core.recording:
                self.core.abort("discarded")
                response.success, response.message = True, "running episode discarded"
            else:
                path = self.core.discard_last()
                response.success, response.message = True, f"discarded {path}"
        except Exception as exc:  # noqa: BLE001
            response.success, response.message = False, str(exc)
        self.get_logger().info(f"discard_last: {response.message}")
        return response

    def shutdown(self) -> None:
        # a running episode is saved (drained by the still running subscription thread)
        self.core.close(self._now_ns() if self._sim_time else None)
        self._stop_subscriptions()

    def destroy_node(self) -> None:
        self._stop_subscriptions()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(
        "episode_recorder",
        EpisodeRecorderNode,
        args=args,
        startup_errors=(RecorderStartupError, ParameterError),
        num_threads=4,
    )


if __name__ == "__main__":
    sys.exit(main())
