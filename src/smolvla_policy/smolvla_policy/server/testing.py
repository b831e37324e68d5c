"""Helpers for tests and benchmarks: PredictChunk goals, a PredictChunk client (rclpy imported lazily), and a
plug-in backend whose loading waits for a file."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smolvla_common.action_client import send_goal_async
from smolvla_common.image_conversion import numpy_to_image
from so_arm_description.robot_spec import JOINT_NAMES


def camera_images(
    names: Sequence[str] = ("top", "wrist"), height: int = 64, width: int = 64, seed: int = 0
) -> dict[str, np.ndarray]:
    """Deterministic random HxWx3 uint8 images, one per camera name."""
    rng = np.random.default_rng(seed)
    return {n: rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for n in names}


def make_observation(
    images: Mapping[str, np.ndarray] | None = None,
    *,
    joint_names: Sequence[str] = JOINT_NAMES,
    positions: Sequence[float] | None = None,
    task: str = "pick up the cube",
    timestep: int = 0,
    stamp: tuple[int, int] = (0, 0),
    frame_id: str = "base_link",
    encoding: str = "rgb8",
) -> Any:
    """An smolvla_msgs/Observation; HxWx3 RGB arrays are converted to ``encoding`` (rgb8 | bgr8 | mono8)."""
    from builtin_interfaces.msg import Time

    from smolvla_msgs.msg import Observation

    obs = Observation()
    obs.header.stamp = Time(sec=int(stamp[0]), nanosec=int(stamp[1]))
    obs.header.frame_id = frame_id
    obs.timestep = int(timestep)
    obs.task = task
    imgs = dict(images if images is not None else camera_images())
    msgs = []
    for arr in imgs.values():
        if encoding == "bgr8":
            msgs.append(numpy_to_image(np.ascontiguousarray(arr[..., ::-1]), "bgr8"))
        elif encoding == "mono8":
            msgs.append(numpy_to_image(arr[..., 0], "mono8"))
        else:
            msgs.append(numpy_to_image(arr, encoding))
    obs.camera_names = list(imgs)
    obs.images = msgs
    obs.state.header = obs.header
    obs.state.name = list(joint_names)
    pos = np.zeros(len(joint_names)) if positions is None else np.asarray(positions, dtype=np.float64)
    obs.state.position = [float(p) for p in pos]
    return obs


def gated_scripted_backend(options: Mapping[str, Any]) -> Any:
    """Plug-in factory (``smolvla_policy.server.testing:gated_scripted_backend``): a scripted backend whose
    loading blocks until the file ``options['wait_for_file']`` exists (at most ``timeout_s``, default 60 s).

    Lets a test hold the server in its "loading" state without relying on timing.
    """
    from pathlib import Path

    from smolvla_policy.server.backends import ScriptedBackend

    gate = Path(str(options["wait_for_file"]))
    deadline = time.monotonic() + float(options.get("timeout_s", 60.0))
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate file {gate} did not appear")
        time.sleep(0.02)
    return ScriptedBackend.from_options(options)


class _PauseWatch:
    """The longest time this process's threads were not scheduled while a wait lasted (a thread that sleeps
    20 ms and measures how late it wakes): tells a stalled machine from a lost message in a failure report."""

    _lock = threading.Lock()
    _thread: threading.Thread | None = None
    _gaps: list[tuple[float, float]] = []  # (monotonic time of the wake, lateness [s]) of the late wakes

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    @classmethod
    def start(cls) -> _PauseWatch:
        with cls._lock:
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._run, name="pause-watch", daemon=True)
                cls._thread.start()
        return cls()

    @classmethod
    def _run(cls) -> None:
        period = 0.02
        last = time.monotonic()
        while True:
            time.sleep(period)
            now = time.monotonic()
            late = now - last - period
            if late > 0.25:
                with cls._lock:
                    cls._gaps.append((now, late))
                    del cls._gaps[:-1000]
            last = now

    def describe(self) -> str:
        with self._lock:
            gaps = [late for t, late in self._gaps if t >= self.t0]
        if not gaps:
            return "this process was never paused longer than 0.25 s meanwhile"
        return f"this process was paused {len(gaps)} times meanwhile, the longest {max(gaps):.1f} s"


NO_ANSWER = "no answer from the policy server"


@dataclass
class GoalRef:
    handle: Any
    feedback: list = field(default_factory=list)


class PolicyClient:
    """A test-side rclpy node with a PredictChunk action client, spun by its own executor thread."""

    def __init__(
        self, action_name: str = "/smolvla/predict_chunk", node_name: str = "policy_test_client"
    ) -> None:
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import MultiThreadedExecutor
        from visualization_msgs.msg import MarkerArray

        from smolvla_msgs.action import PredictChunk
        from smolvla_msgs.msg import ActionChunk

        self.PredictChunk = PredictChunk
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node(node_name, context=self.context)
        self.action = ActionClient(self.node, PredictChunk, action_name)
        self.chunks: list[Any] = []
        self.sent: list[GoalRef] = []  # accepted goals, for cancel_outstanding()
        self.markers: list[Any] = []
        self.node.create_subscription(ActionChunk, "/smolvla/predicted_chunk", self.chunks.append, 10)
        self.node.create_subscription(MarkerArray, "/smolvla/chunk_markers", self.markers.append, 10)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def wait_for_server(self, timeout: float = 60.0) -> None:
        """Wait until the action server is discovered; on timeout, say what this client's graph shows (nodes
        and the action's topics) so a discovery failure is told from a missing server."""
        if self.action.wait_for_server(timeout_sec=timeout):
            return
        nodes = sorted(f"{ns.rstrip('/')}/{name}" for name, ns in self.node.get_node_names_and_namespaces())
        topics = sorted(t for t, _ in self.node.get_topic_names_and_types() if "_action" in t)
        raise TimeoutError(
            f"no PredictChunk server on '{self.action._action_name}' within {timeout:.0f} s; this client "
            f"sees nodes {nodes} and action topics {topics}"
        )

    def close(self) -> None:
        import rclpy

        from smolvla_common.executor_shutdown import shutdown_executor

        shutdown_executor(self.executor, self.thread)  # no "exception was never retrieved" (issue 19)
        self.thread.join(10.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    @staticmethod
    def _wait(future: Any, timeout: float, what: str = NO_ANSWER) -> Any:
        return PolicyClient._wait_any([future], timeout, what)

    def send(self, obs: Any, timeout: float = 120.0, **goal_fields: Any) -> GoalRef:
        """Send a goal (``goal_fields``: further Goal fields, e.g. rtc_prefix) and wait for its acceptance."""
        ref = GoalRef(None)
        goal = self.PredictChunk.Goal(observation=obs, **goal_fields)
        future = send_goal_async(
            self.action, goal, feedback_callback=lambda m: ref.feedback.append(m.feedback)
        )
        ref.handle = self._wait(future, timeout, "the policy server did not answer the goal request")
        if not ref.handle.accepted:
            raise RuntimeError("goal rejected")
        self.sent.append(ref)
        return ref

    def result(self, ref: GoalRef, timeout: float = 120.0, ask_again_s: float = 5.0) -> tuple[int, Any]:
        """The goal's (status, result). The request is sent again every ``ask_again_s`` until one is answered:
        a service response can be lost in the middleware (rmw_fastrtps drops it, "client will not receive
        response", when the server has not matched this client's response reader within 100 ms, or no longer
        matches it after a lease expiry), and the server answers every request for a goal it keeps."""
        deadline = time.monotonic() + timeout
        pauses = _PauseWatch.start()
        futures: list[Any] = []
        while True:
            futures.append(ref.handle.get_result_async())
            wait = min(ask_again_s, deadline - time.monotonic())
            try:
                res = self._wait_any(futures, max(wait, 0.0))
                return res.status, res.result
            except TimeoutError:
                if time.monotonic() < deadline:
                    continue
            raise TimeoutError(
                f"no result from the policy server in {timeout:.0f} s ({len(futures)} requests); the goal's "
                f"last status seen by this client: {status_name(ref.handle.status)}, {len(ref.feedback)} "
                f"feedback messages; {pauses.describe()}"
            ) from None

    @staticmethod
    def _wait_any(futures: Sequence[Any], timeout: float, what: str = NO_ANSWER) -> Any:
        """The result of the first of ``futures`` done: woken by their done callbacks, and also looking at
        ``done()`` itself every 50 ms (a done callback is delivered by the executor as a task; the answer must
        not depend on that)."""
        done = threading.Event()
        for future in futures:
            future.add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + timeout
        while True:
            for future in futures:
                if future.done():
                    return future.result()
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            done.wait(0.05)

    def cancel_outstanding(self, timeout: float = 30.0) -> None:
        """Cancel every goal this client sent that has not ended (a failed test must not leave a slow goal
        running into the next one)."""
        from action_msgs.msg import GoalStatus

        ended = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED)
        for ref in self.sent:
            if ref.handle.status not in ended:
                with contextlib.suppress(TimeoutError):
                    self.cancel(ref, timeout)
        self.sent.clear()

    def cancel(self, ref: GoalRef, timeout: float = 30.0) -> Any:
        return self._wait(ref.handle.cancel_goal_async(), timeout)

    def set_parameters(self, server: str = "policy_server", **values: Any) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        cli = self.node.create_client(SetParameters, f"/{server}/set_parameters")
        if not cli.wait_for_service(timeout_sec=30.0):
            raise TimeoutError("no parameter service")
        req = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        res = self._wait(cli.call_async(req), 30.0)
        self.node.destroy_client(cli)
        failed = [r.reason for r in res.results if not r.successful]
        if failed:
            raise ValueError(f"parameters rejected: {failed}")


def status_name(status: int) -> str:
    from action_msgs.msg import GoalStatus

    return {
        GoalStatus.STATUS_SUCCEEDED: "succeeded",
        GoalStatus.STATUS_ABORTED: "aborted",
        GoalStatus.STATUS_CANCELED: "canceled",
    }.get(status, str(status))
