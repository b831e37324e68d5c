"""policy_server: the PredictChunk action server (thin ROS adapter over smolvla_policy.server).

Goals are converted and checked on arrival (a bad goal is aborted with an ``error`` saying why), queued in
the :class:`GoalScheduler` (one inference at a time; a newer goal preempts a waiting one; cancel at the next
step) and answered with an ActionChunk, also published on ``/smolvla/predicted_chunk`` and, through the arm's
forward kinematics, as a gripper path on ``/smolvla/chunk_markers``. The backend loads on a background thread
after the node is up; goals that arrive meanwhile are answered once it is ready.
The arm's joint limits come from ``/robot_description`` (the driver's calibration, or the simulator's arm;
until one arrives, the ``robot`` parameter's description defaults): the backends' lerobot unit mapping
(gripper 0..100 % of the calibrated range), their clamps and the markers' kinematics follow them.
Parameters: config/policy_server.yaml.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from visualization_msgs.msg import MarkerArray

from smolvla_common import robot_description
from smolvla_common.executor_shutdown import shutdown_executor
from smolvla_common.node_main import SPIN_PERIOD, StopSignals, bound_the_exit, enable_stack_dumps
from smolvla_common.node_parameters import NodeParameters
from smolvla_msgs.action import PredictChunk
from smolvla_msgs.msg import ActionChunk
from smolvla_policy.backend import BadRequest
from smolvla_policy.server.backends import RobotModel, make_backend
from smolvla_policy.server.builders import (
    build_action_chunk,
    build_chunk_markers,
    build_prefix_markers,
    load_forward_kinematics,
)
from smolvla_policy.server.config import SPECS, TABLE, ServerConfig
from smolvla_policy.server.conversion import RequestLimits, observation_to_request
from smolvla_policy.server.rtc import guided_prefix_length, rtc_from_goal
from smolvla_policy.server.scheduler import ABORTED, CANCELLED, SUCCEEDED, GoalScheduler, Job, Outcome

try:  # rclpy raises this when the context goes away under a running executor
    from rclpy._rclpy_pybind11 import RCLError
except ImportError:  # pragma: no cover
    RCLError = RuntimeError  # type: ignore[misc,assignment]


class PolicyServerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("policy_server", **kwargs)
        # declared once in smolvla_policy.server.config (shared scheme): integers accepted for doubles, a bad
        # value is a named error (exit code 2, no traceback), run-time changes applied after validation
        try:
            self.params = NodeParameters(self, TABLE, on_change=self._apply_parameters)
            self.config = ServerConfig.from_values(self.params.values)
        except ValueError as exc:  # ParameterError included
            self.get_logger().fatal(f"invalid parameters: {exc}")
            print(f"policy_server cannot start: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

        self._jobs: dict[bytes, Job] = {}
        self._jobs_lock = threading.Lock()
        self._cancelled_before_accepted: set[bytes] = set()
        self._fk: Any = None
        self._fk_checked = False
        self._robot_model = RobotModel.defaults(self.config.robot)
        # the model and the backend it was handed to change together (the description may arrive while the
        # loader thread creates the backend): one lock, and the loaded backend kept here, not in the scheduler
        self._model_lock = threading.Lock()
        self._model_backend: Any = None
        self._default_num_steps: int | None = None
        self.scheduler = GoalScheduler(
            latency_s=lambda: self.config.latency_ms / 1000.0, logger=self.get_logger()
        )

        self.chunk_pub = self.create_publisher(ActionChunk, "/smolvla/predicted_chunk", 10)
        self.marker_pub = self.create_publisher(MarkerArray, "/smolvla/chunk_markers", 2)
        # Goal, cancel and result requests are handled one at a time, in the order they arrived: "a newer goal
        # preempts the waiting one" needs the arrival order, and a cancel must find the goal's job. In a
        # reentrant group a goal whose acceptance took longer (image decoding) was submitted after the next
        # one and preempted it, and a cancel that came while its goal was being accepted was refused. The
        # execute callbacks, which wait for their job, run as executor tasks outside the group.
        self.action_server = ActionServer(
            self,
            PredictChunk,
            self.config.action_name,
            execute_callback=self._execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=self._on_cancel,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        robot_description.subscribe(self, self._on_robot_description, callback_group=ReentrantCallbackGroup())

        self.get_logger().info(
            f"policy server on '{self.config.action_name}', backend '{self.config.backend}' loading"
        )
        self._closing = False
        self._reload = threading.Event()
        self._reload.set()
        self._loader = threading.Thread(target=self._load_loop, name="policy-loader", daemon=True)
        self._loader.start()

    # ---- parameters ----------------------------------------------------------------------------------------
    def _apply_parameters(self, changes: dict[str, Any]) -> None:
        """Validated run-time changes (post-set callback)."""
        self.config = ServerConfig.from_values(self.params.values)
        names = set(changes)
        if any(SPECS[n].reload for n in names if n in SPECS):
            self.get_logger().info(f"parameters {sorted(names)} changed: reloading the policy backend")
            self._reload.set()
        elif "num_steps" in names:
            self._apply_num_steps(self.scheduler.backend)
        if "robot" in names:
            with self._model_lock:
                if not self._robot_model.from_arm:
                    self._robot_model = RobotModel.defaults(self.config.robot)
                    self._apply_robot_model(self._model_backend)

    # ---- the arm's joint limits ----------------------------------------------------------------------------
    def _on_robot_description(self, urdf_text: str) -> None:
        try:
            model = RobotModel.from_urdf(urdf_text, default_robot=self.config.robot)
        except ValueError as exc:
            self.get_logger().error(f"ignored /robot_description: {exc}")
            return
        if model.robot != self.config.robot:
            self.get_logger().info(
                f"/robot_description is a {model.robot} (parameter robot: {self.config.robot})"
            )
        with self._model_lock:
            self._robot_model = model
            self._apply_robot_model(self._model_backend)

    def _apply_robot_model(self, backend: Any) -> None:
        """Hand the current joint limits to ``backend`` (backends without ``set_robot_model`` ignore them)."""
        model = self._robot_model
        if backend is None or not callable(getattr(backend, "set_robot_model", None)):
            return
        try:
            backend.set_robot_model(model)
        except Exception as exc:  # a plug-in's problem must not stop the server
            self.get_logger().error(f"backend rejected the robot model: {type(exc).__name__}: {exc}")
            return
        units = getattr(backend, "units", None)
        mapping = f"; units: {units.describe()}" if callable(getattr(units, "describe", None)) else ""
        self.get_logger().info(f"joint limits of the {model.robot} from {model.source}{mapping}")

    def _apply_num_steps(self, backend: Any) -> None:
        if backend is None:
            return
        steps = self.config.num_steps or self._default_num_steps
        if steps:
            try:
                backend.num_steps = int(steps)
            except AttributeError:
                self.get_logger().warning(
                    f"backend {type(backend).__name__} does not allow setting num_steps"
                )

    # ---- backend loading -----------------------------------------------------------------------------------
    def _load_loop(self) -> None:
        while True:
            self._reload.wait()
            if self._closing:
                return
            self._reload.clear()
            cfg = self.config
            self.scheduler.set_loading()
            t0 = time.monotonic()
            try:
                backend = make_backend(cfg.backend, cfg.factory_options())
                with self._model_lock:
                    self._model_backend = backend
                    self._apply_robot_model(backend)
                self._default_num_steps = int(getattr(backend, "num_steps", 0) or 0) or None
                self._apply_num_steps(backend)
                if cfg.warmup:
                    backend.warmup()
            except Exception as exc:
                reason = f"loading backend '{cfg.backend}' failed: {type(exc).__name__}: {exc}"
                self.get_logger().error(reason)
                self.scheduler.set_failed(reason)
                continue
            if self._closing:
                return
            self.scheduler.set_backend(backend)
            self.get_logger().info(
                f"policy backend '{cfg.backend}' ready in {time.monotonic() - t0:.2f} s "
                f"(chunk_size {backend.chunk_size}, num_steps {backend.num_steps})"
            )

    # ---- action server -------------------------------------------------------------------------------------
    def _on_accepted(self, goal_handle: ServerGoalHandle) -> None:
        key = bytes(goal_handle.goal_id.uuid)
        cfg = self.config
        if not self._robot_model.from_arm:
            self.get_logger().warning(
                f"no /robot_description yet: joint limits (and the gripper's 0..100 % in lerobot units) are "
                f"the {self._robot_model.robot} description's defaults, not the arm's calibration",
                once=True,
            )
        limits = RequestLimits(
            default_task=cfg.default_task,
            max_image_pixels=cfg.max_image_pixels,
            max_observation_age=cfg.max_observation_age,
            seed=None if cfg.seed < 0 else cfg.seed,
        )
        try:
            request = observation_to_request(
                goal_handle.request.observation, limits, now_s=self.get_clock().now().nanoseconds * 1e-9
            )
            request.rtc = rtc_from_goal(goal_handle.request, request, cfg.rtc_settings())
            check = getattr(self.scheduler.backend, "check", None)  # optional early check by the backend
            if callable(check):
                check(request)
        except BadRequest as exc:
            job = Job(key, None)  # type: ignore[arg-type]
            job.finish(Outcome(ABORTED, error=str(exc)))
        else:
            request.extras["fps"] = cfg.fps
            guided = guided_prefix_length(request.rtc)
            if not getattr(self.scheduler.backend, "supports_rtc", False):
                guided = 0  # the backend does not guide its chunks (replay, scripted, ...)
            delay = request.rtc.inference_delay if guided else 0

            def feedback(step: int, num_steps: int) -> None:
                goal_handle.publish_feedback(
                    PredictChunk.Feedback(
                        step=step, num_steps=num_steps, rtc_prefix_length=guided, rtc_inference_delay=delay
                    )
                )

            job = Job(key, request, on_step=feedback)
        with self._jobs_lock:
            self._jobs[key] = job
            cancelled_early = key in self._cancelled_before_accepted
            self._cancelled_before_accepted.discard(key)
        if cancelled_early:  # a cancel came before this callback (cannot happen in order; kept as a guard)
            job.finish(Outcome(CANCELLED, error="cancelled before it started"))
        if not job.done:
            preempted = self.scheduler.submit(job)
            if preempted is not None:
                self.get_logger().warning(f"goal {preempted.id.hex()[:8]} preempted by goal {key.hex()[:8]}")
        goal_handle.execute()

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        key = bytes(goal_handle.goal_id.uuid)
        with self._jobs_lock:
            job = self._jobs.get(key)
            if job is None and goal_handle.is_active:  # accepted, its job not made yet: cancelled on arrival
                self._cancelled_before_accepted.add(key)
                return CancelResponse.ACCEPT
        if job is None or job.done:
            return CancelResponse.REJECT
        self.scheduler.cancel(job)
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle: ServerGoalHandle) -> Any:
        key = bytes(goal_handle.goal_id.uuid)
        with self._jobs_lock:
            job = self._jobs.get(key)
        result = PredictChunk.Result()
        size = getattr(self.scheduler.backend, "image_input_size", None)  # compact observations (issue 17)
        if size:
            result.image_width, result.image_height = int(size[0]), int(size[1])
        if job is None:  # cannot happen: every accepted goal gets a job
            result.error = "internal error: unknown goal"
            self._transition(goal_handle, goal_handle.abort)
            return result
        outcome = job.wait()
        with self._jobs_lock:
            self._jobs.pop(key, None)
        assert outcome is not None
        if outcome.status == SUCCEEDED:
            try:
                chunk_msg = self._publish(job, outcome)
            except Exception as exc:  # a message that cannot be built must not kill the server
                outcome = Outcome(ABORTED, error=f"building the result failed: {type(exc).__name__}: {exc}")
            else:
                result.chunk = chunk_msg
                self._transition(goal_handle, goal_handle.succeed)
                return result
        result.error = outcome.error
        if outcome.status == CANCELLED:
            # The cancel request's state change lands just after our cancel callback returns.
            deadline = time.monotonic() + 2.0
            while not (goal_handle.is_cancel_requested or self._closing) and time.monotonic() < deadline:
                time.sleep(0.002)
            if goal_handle.is_cancel_requested:
                self._transition(goal_handle, goal_handle.canceled)
                self.get_logger().info(f"goal {key.hex()[:8]} cancelled")
                return result
        self.get_logger().warning(f"goal {key.hex()[:8]} aborted: {outcome.error}")
        self._transition(goal_handle, goal_handle.abort)
        return result

    def _transition(self, goal_handle: ServerGoalHandle, method: Any) -> None:
        """Move the goal to its terminal state. A refused transition is logged, not raised: rclpy then aborts
        the goal itself if it is still active (and when that fails too its result is never sent: the log
        says why)."""
        try:
            method()
        except Exception as exc:
            if self._closing or not goal_handle.is_active:
                return  # the context is going away, or the goal was already finished
            self.get_logger().error(
                f"goal {bytes(goal_handle.goal_id.uuid).hex()[:8]}: {method.__name__}() failed in state "
                f"{goal_handle.status}: {type(exc).__name__}: {exc}"
            )

    def _publish(self, job: Job, outcome: Outcome) -> Any:
        cfg, req = self.config, job.request
        stamp = req.extras["stamp"]
        msg = build_action_chunk(
            outcome.chunk,
            req.joint_names,
            stamp=stamp,
            frame_id=str(req.extras.get("frame_id") or cfg.base_frame),
            start_timestep=req.timestep,
            fps=float(req.extras.get("fps", cfg.fps)),
            inference_ms=outcome.inference_ms,
        )
        self.chunk_pub.publish(msg)
        if cfg.publish_markers and self.marker_pub.get_subscription_count() > 0:
            self._publish_markers(outcome, req.joint_names, stamp, req.rtc)
        return msg

    def _publish_markers(
        self, outcome: Outcome, joint_names: list[str], stamp: tuple[int, int], rtc: Any = None
    ) -> None:
        if not self._fk_checked:
            self._fk_checked = True
            self._fk, reason = load_forward_kinematics()
            if self._fk is None:
                self.get_logger().warning(f"no chunk markers: {reason}")
        if self._fk is None:
            return
        try:
            markers = build_chunk_markers(
                outcome.chunk,
                joint_names,
                self._fk,
                frame_id=self.config.base_frame,
                stamp=stamp,
                robot=self._robot_model.robot,
            )
            if (
                markers is not None
                and rtc is not None
                and getattr(self.scheduler.backend, "supports_rtc", False)
            ):
                markers.markers.extend(  # the previous chunk (RTC prefix) in another colour
                    build_prefix_markers(
                        rtc.prefix,
                        joint_names,
                        self._fk,
                        guided=guided_prefix_length(rtc),
                        frame_id=self.config.base_frame,
                        stamp=stamp,
                        robot=self._robot_model.robot,
                        lifetime_s=len(rtc.prefix) / max(self.config.fps, 1e-3),
                    )
                )
        except Exception as exc:
            self.get_logger().warning(
                f"chunk markers failed: {type(exc).__name__}: {exc}", throttle_duration_sec=10.0
            )
            return
        if markers is not None:
            self.marker_pub.publish(markers)

    def wait_idle(self, timeout: float) -> None:
        """Wait until every goal's execute callback has returned (its result is then on its way)."""
        deadline = time.monotonic() + timeout
        while self._jobs and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the result responses go out from the executor right after

    # ---- shutdown ------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._closing = True
        self._reload.set()
        self.scheduler.shutdown()
        self._loader.join(timeout=1.0)  # a model load in progress is left to finish as a daemon thread


#: The longest the policy server's shutdown may take before the process ends itself [s] (launch sends SIGKILL
#: 10 s after the first SIGINT; the stack dump of a stall must come before that).
SHUTDOWN_BUDGET_S = 6.0


def main(args: list[str] | None = None) -> None:
    # OpenMP threads that sleep instead of spinning between the model's kernels: on a machine shared with
    # the other nodes this cut a chunk's CPU time by a third (benchmarks/policy_latency.py). Must be set
    # before torch loads; a value from the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Own SIGINT/SIGTERM handling: finish every goal (aborted, "shutting down") and send the results while
    # the context is still valid, then stop the executor, join its thread and shut rclpy down.
    # The handlers only record the signal (StopSignals: no lock). They used to call threading.Event.set(),
    # whose lock the main thread holds for a moment in each Event.wait(): a signal handled there deadlocked
    # the main thread, and the server ignored every later signal until launch's SIGKILL (CI, twice).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signals = StopSignals().install()
    enable_stack_dumps()  # kill -USR2 <pid>: every thread's stack on stderr
    node: PolicyServerNode | None = None
    executor = MultiThreadedExecutor(num_threads=8)
    thread: threading.Thread | None = None
    try:
        node = PolicyServerNode()
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, name="executor", daemon=True)
        thread.start()
        if signals.phase == "starting":
            signals.phase = "running"
        while not signals.requested and thread.is_alive():
            time.sleep(SPIN_PERIOD)
    except (KeyboardInterrupt, ExternalShutdownException, RCLError):
        pass
    finally:
        signals.phase = "stopping"
        # nothing below protects hardware or data (the goals' results are a courtesy): the whole shutdown is
        # bounded, a stall ends the process with every thread's stack (a CI run's policy server once did not
        # exit within launch's 10 s and was SIGKILLed)
        bound_the_exit("policy_server", 0, SHUTDOWN_BUDGET_S)
        if node is not None:
            node.close()
            node.wait_idle(timeout=2.0)
        shutdown_executor(executor, thread, timeout_sec=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        # the process ends: Python's finalization resets handled signals to their default, so a late SIGINT
        # (launch's own, after the terminal's) would kill it with -2; SIG_IGN stays (issue 18)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    main()
