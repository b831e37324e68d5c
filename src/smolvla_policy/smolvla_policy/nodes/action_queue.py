"""``action_queue``: the thin ROS node around :class:`smolvla_policy.queue.ActionQueueCore` (Algorithm 1).

Every control tick (a timer at ``fps``; sim time when ``use_sim_time``) the node captures the latest joint
state and the latest image of every camera in ``cameras`` (each younger than ``max_observation_age``), hands
them to the core, sends the PredictChunk goal the core asks for (non-blocking; one in flight), and publishes
the command the core returns on ``/joint_commands`` (one point, joint names of the contract, radians), then
``/smolvla/queue_status``. An empty queue holds the last command (before the first chunk: the measured
position), counts an idle tick and never stays silent. ``/diagnostics`` at ~1 Hz.

Joint limits (the clamp of every command): the arm's own, from ``/robot_description`` (the driver's
calibration or the simulator's arm); until it arrives, those of the ``robot`` parameter's description;
``limits_from_robot_description:=false`` uses ``joint_lower_limits``/``joint_upper_limits`` instead.

Services ``~/start`` and ``~/stop`` (std_srvs/Trigger): stop holds the current command and cancels the request
in flight. The timeline, the order within a tick and the fusion rules are documented in
:mod:`smolvla_policy.queue.core`. All callbacks run on one thread (SingleThreadedExecutor); a lock still
guards the core in case the node is spun by a multi-threaded executor.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from smolvla_common import robot_description
from smolvla_common.node_main import run_node
from smolvla_msgs.action import PredictChunk
from smolvla_msgs.msg import Observation, QueueStatus
from smolvla_policy.queue import AGGREGATE_NAMES, ActionQueueCore, ObservationRequest, QueueConfig
from so_arm_description.robot_model import default_limits, limits_from_urdf, robot_from_urdf
from so_arm_description.robot_spec import JOINT_NAMES, SO101_LIMITS, robot_names

try:  # rclpy raises RCLError when the context goes away under a running executor
    from rclpy._rclpy_pybind11 import RCLError
except ImportError:  # pragma: no cover
    RCLError = RuntimeError  # type: ignore[misc, assignment]

#: Parameters mapped 1:1 onto QueueConfig fields (runtime-tunable, validated by the core).
CORE_PARAMS = (
    "fps",
    "chunk_threshold",
    "auto_threshold",
    "auto_threshold_margin",
    "aggregate_fn",
    "blend_ramp",
    "similarity_epsilon",
    "max_step",
    "request_timeout",
    "retry_backoff",
    "retry_backoff_max",
    "latency_window",
    "rtc_execution_horizon",
)
WARN_PERIOD = 2.0  # seconds between repeated warnings of one kind


def _frange(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]


def _desc(
    text: str,
    ptype: int,
    *,
    frange: tuple[float, float] | None = None,
    irange: tuple[int, int] | None = None,
    read_only: bool = False,
    constraints: str = "",
) -> ParameterDescriptor:
    d = ParameterDescriptor(
        description=text, type=ptype, read_only=read_only, additional_constraints=constraints
    )
    # numbers may be given as integers (chunk_threshold:=0, fps:=30): accepted and checked by _check_number
    d.dynamic_typing = ptype == ParameterType.PARAMETER_DOUBLE
    if frange is not None:
        d.floating_point_range = _frange(*frange)
    if irange is not None:
        d.integer_range = [IntegerRange(from_value=irange[0], to_value=irange[1], step=1)]
    return d


D, S, B, INT = (
    ParameterType.PARAMETER_DOUBLE,
    ParameterType.PARAMETER_STRING,
    ParameterType.PARAMETER_BOOL,
    ParameterType.PARAMETER_INTEGER,
)
SA, DA = ParameterType.PARAMETER_STRING_ARRAY, ParameterType.PARAMETER_DOUBLE_ARRAY

PARAMETERS: dict[str, tuple[object, ParameterDescriptor]] = {
    "fps": (30.0, _desc("Control rate in Hz (one command per tick).", D, frange=(0.1, 1000.0))),
    "chunk_threshold": (
        0.7,
        _desc("g: request a chunk when queue_size <= g * chunk_size; 0 = sync mode.", D, frange=(0.0, 1.0)),
    ),
    "auto_threshold": (
        False,
        _desc(
            "Choose g = E[latency] / period / chunk_size + auto_threshold_margin from measured latency.", B
        ),
    ),
    "auto_threshold_margin": (0.1, _desc("Margin added to the automatic g.", D, frange=(0.0, 1.0))),
    "aggregate_fn": (
        "weighted_average",
        _desc("Fusion on overlapping ticks.", S, constraints="one of: " + ", ".join(AGGREGATE_NAMES)),
    ),
    "blend_ramp": (
        10.0,
        _desc("blend: ticks over which the weight on the new chunk ramps to 1.", D, frange=(0.0, 10000.0)),
    ),
    "similarity_epsilon": (
        0.01,
        _desc(
            "Skip observations within this joint-space L2 distance (rad); negative disables.",
            D,
            frange=(-1.0, 100.0),
        ),
    ),
    "task": ("", _desc("Language instruction sent with each observation (empty: server default).", S)),
    "cameras": (
        ["top", "wrist"],
        _desc(
            "Camera names; images from /cameras/<name>/image_raw. Empty strings are ignored.",
            SA,
            read_only=True,
        ),
    ),
    "max_observation_age": (
        0.5,
        _desc(
            "Observations (joint state, images) older than this (s) are not sent.", D, frange=(0.001, 3600.0)
        ),
    ),
    "request_timeout": (
        10.0,
        _desc("A request older than this (s) is cancelled and retried.", D, frange=(0.01, 3600.0)),
    ),
    "retry_backoff": (
        0.2,
        _desc("First retry delay after a failed request (s); doubles.", D, frange=(0.0, 60.0)),
    ),
    "retry_backoff_max": (2.0, _desc("Longest retry delay (s).", D, frange=(0.0, 600.0))),
    "latency_window": (20, _desc("Requests averaged for the latency estimate.", INT, irange=(1, 10000))),
    "rtc_execution_horizon": (
        0,
        _desc(
            "aggregate_fn rtc: queued actions that guide the new chunk (0 = the policy server's setting).",
            INT,
            irange=(0, 100000),
        ),
    ),
    "max_step": (
        0.1,
        _desc("Largest command change per tick per joint (rad); 0 disables.", D, frange=(0.0, 10.0)),
    ),
    "joint_names": (
        list(JOINT_NAMES),
        _desc("Joint order of commands and observations.", SA, read_only=True),
    ),
    "robot": (
        "so101",
        _desc("Arm (so101 | so100): its description's joint limits until /robot_description arrives.", S),
    ),
    "limits_from_robot_description": (
        True,
        _desc(
            "Clamp to the arm's limits from /robot_description (else the robot's description); false = "
            "joint_lower_limits / joint_upper_limits.",
            B,
        ),
    ),
    "joint_lower_limits": (
        [SO101_LIMITS[j][0] for j in JOINT_NAMES],
        _desc("Lower joint limits (rad), parallel to joint_names (limits_from_robot_description false).", DA),
    ),
    "joint_upper_limits": (
        [SO101_LIMITS[j][1] for j in JOINT_NAMES],
        _desc("Upper joint limits (rad), parallel to joint_names (limits_from_robot_description false).", DA),
    ),
    "action_server": ("/smolvla/predict_chunk", _desc("PredictChunk action name.", S, read_only=True)),
    "autostart": (True, _desc("Run the loop at start-up (else wait for ~/start).", B, read_only=True)),
    "hold_when_stopped": (True, _desc("While stopped keep publishing the held command.", B)),
    "diagnostics_period": (1.0, _desc("Period of /diagnostics (s).", D, frange=(0.05, 60.0), read_only=True)),
}
#: Double parameters (declared with dynamic typing so that integers are accepted too).
DOUBLE_PARAMS = frozenset(n for n, (_, d) in PARAMETERS.items() if d.type == D)


@dataclass
class _Latest:
    msg: object | None = None
    received: float = 0.0  # node clock, seconds


@dataclass
class _Request:
    request_id: int
    timestep: int
    goal_handle: object | None = None
    cancelled: bool = False


class ActionQueueNode(Node):
    def __init__(self, **kwargs: object) -> None:
        super().__init__("action_queue", **kwargs)
        for name, (default, desc) in PARAMETERS.items():
            self.declare_parameter(name, default, copy.deepcopy(desc))  # rclpy mutates descriptors
        self.joint_names: list[str] = list(self.get_parameter("joint_names").value)
        self.cameras: list[str] = [c for c in self.get_parameter("cameras").value if c]
        self._lock = threading.RLock()
        robot = str(self.get_parameter("robot").value)
        if robot not in robot_names():
            raise ValueError(f"parameter 'robot' must be one of {', '.join(robot_names())}, got {robot!r}")
        self._arm_limits = default_limits(robot)  # until /robot_description arrives
        self._arm_limits_source = f"the {robot} description"
        self.core = ActionQueueCore(
            len(self.joint_names),
            self._config_from(dict.fromkeys(PARAMETERS)),
            running=bool(self.get_parameter("autostart").value),
        )
        self._warned: dict[str, float] = {}
        self._requests: dict[int, _Request] = {}
        self._tick_wall: deque[float] = deque(maxlen=600)
        self._last_auto_g: float | None = None

        self._state = _Latest()
        self._images: dict[str, _Latest] = {c: _Latest() for c in self.cameras}
        self.create_subscription(JointState, "/joint_states", self._on_joint_state, qos_profile_sensor_data)
        for cam in self.cameras:
            self.create_subscription(
                Image,
                f"/cameras/{cam}/image_raw",
                lambda m, c=cam: self._on_image(c, m),
                qos_profile_sensor_data,
            )
        self._cmd_pub = self.create_publisher(JointTrajectory, "/joint_commands", QoSProfile(depth=10))
        robot_description.subscribe(self, self._on_robot_description)
        self._status_pub = self.create_publisher(QueueStatus, "/smolvla/queue_status", QoSProfile(depth=10))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self._client = ActionClient(self, PredictChunk, self.get_parameter("action_server").value)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)

        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._timer = self.create_timer(self.core.config.period, self._on_tick)
        self.create_timer(float(self.get_parameter("diagnostics_period").value), self._publish_diagnostics)
        cfg = self.core.config
        self.get_logger().info(
            f"action queue: {cfg.fps:g} Hz, g={cfg.chunk_threshold:g}"
            f"{' (auto)' if cfg.auto_threshold else ''}, aggregate={cfg.aggregate_fn}, "
            f"cameras={self.cameras}, "
            f"server={self.get_parameter('action_server').value}, running={self.core.running}"
        )

    # -- parameters --------------------------------------------------------------------------------
    def _config_from(self, changes: dict[str, object]) -> QueueConfig:
        """QueueConfig from the current parameters, overridden by ``changes`` (None = current value)."""

        def value(name: str) -> object:
            v = changes.get(name)
            return self.get_parameter(name).value if v is None else v

        kw: dict[str, object] = {n: value(n) for n in CORE_PARAMS}
        for n in CORE_PARAMS:
            if n in DOUBLE_PARAMS:
                kw[n] = self._check_number(n, kw[n])
        kw["latency_window"] = int(kw["latency_window"])  # type: ignore[call-overload]
        kw["rtc_execution_horizon"] = int(kw["rtc_execution_horizon"])  # type: ignore[call-overload]
        kw["lower_limits"] = tuple(float(x) for x in value("joint_lower_limits"))  # type: ignore[union-attr]
        kw["upper_limits"] = tuple(float(x) for x in value("joint_upper_limits"))  # type: ignore[union-attr]
        if value("limits_from_robot_description"):  # the arm's limits, per joint where the arm has the joint
            params = zip(kw["lower_limits"], kw["upper_limits"])  # type: ignore[call-overload]
            pairs = [self._arm_limits.get(j, p) for j, p in zip(self.joint_names, params)]
            kw["lower_limits"] = tuple(lo for lo, _ in pairs)
            kw["upper_limits"] = tuple(hi for _, hi in pairs)
        cfg = QueueConfig(**kw)  # type: ignore[arg-type]
        cfg.validate(len(self.joint_names))
        return cfg

    @staticmethod
    def _check_number(name: str, value: object) -> float:
        """A double parameter given as int or float, inside its declared range; ValueError otherwise."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        ranges = PARAMETERS[name][1].floating_point_range
        if ranges and not ranges[0].from_value <= value <= ranges[0].to_value:
            raise ValueError(
                f"{name} must be in [{ranges[0].from_value:g}, {ranges[0].to_value:g}], got {value}"
            )
        return float(value)

    def _validate_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        try:
            for name, value in changes.items():
                if name in DOUBLE_PARAMS:
                    self._check_number(name, value)
                if name == "robot" and value not in robot_names():
                    raise ValueError(f"robot must be one of {', '.join(robot_names())}, got {value!r}")
            self._config_from(changes)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: Sequence[Parameter]) -> None:
        names = {p.name for p in params}
        if "robot" in names and not self._arm_limits_source.startswith("/"):
            robot = str(self.get_parameter("robot").value)
            self._arm_limits, self._arm_limits_source = default_limits(robot), f"the {robot} description"
        limit_params = {"joint_lower_limits", "joint_upper_limits", "limits_from_robot_description", "robot"}
        if not names & (set(CORE_PARAMS) | limit_params):
            return
        old_period = self.core.config.period
        with self._lock:
            cfg = self._config_from({})
            self.core.update_config(**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__})
        if "fps" in names and cfg.period != old_period:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(cfg.period, self._on_tick)
        self.get_logger().info("parameters set: " + ", ".join(f"{p.name}={p.value}" for p in params))

    # -- the arm's joint limits ----------------------------------------------------------------------
    def _on_robot_description(self, urdf_text: str) -> None:
        try:
            limits, robot = limits_from_urdf(urdf_text), robot_from_urdf(urdf_text)
        except ValueError as exc:
            self._warn("description", f"ignored /robot_description: {exc}")
            return
        missing = [j for j in self.joint_names if j not in limits]
        if missing:
            self._warn("description", f"/robot_description has no joint {missing[0]}: keeping its old limits")
        self._arm_limits, self._arm_limits_source = limits, "/robot_description"
        if not self.get_parameter("limits_from_robot_description").value:
            return
        with self._lock:
            cfg = self._config_from({})
            self.core.update_config(lower_limits=cfg.lower_limits, upper_limits=cfg.upper_limits)
        bounds = zip(self.joint_names, cfg.lower_limits or (), cfg.upper_limits or ())
        shown = ", ".join(f"{j} {lo:.4f}..{hi:.4f}" for j, lo, hi in bounds)
        self.get_logger().info(f"joint limits of the {robot} from /robot_description: {shown}")

    # -- inputs ------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, msg: JointState) -> None:
        self._state = _Latest(msg, self._now())

    def _on_image(self, camera: str, msg: Image) -> None:
        self._images[camera] = _Latest(msg, self._now())

    def _age(self, latest: _Latest, now: float) -> float:
        stamp = getattr(latest.msg, "header", None)
        t = Time.from_msg(stamp.stamp).nanoseconds * 1e-9 if stamp is not None else 0.0
        return now - (t if t > 0 else latest.received)

    def _capture(self, now: float) -> tuple[np.ndarray | None, bool, str]:
        """Latest joint state in joint_names order, whether the whole observation is fresh, and why not."""
        msg = self._state.msg
        if msg is None:
            return None, False, "no joint state received yet"
        try:
            index = {n: i for i, n in enumerate(msg.name)}
            state = np.array([msg.position[index[j]] for j in self.joint_names], dtype=np.float64)
        except (KeyError, IndexError):
            missing = [j for j in self.joint_names if j not in msg.name]
            return None, False, f"joint state lacks joints {missing} or positions"
        if not np.all(np.isfinite(state)):
            return None, False, "joint state has non-finite positions"
        max_age = float(self.get_parameter("max_observation_age").value)
        age = self._age(self._state, now)
        if age > max_age:
            return state, False, f"joint state is {age:.3f} s old (max_observation_age {max_age:g} s)"
        if age < -max_age:
            return state, False, f"joint state stamp is {-age:.3f} s ahead of the node clock (use_sim_time?)"
        for cam, latest in self._images.items():
            if latest.msg is None:
                return state, False, f"no image from camera '{cam}' yet"
            age = self._age(latest, now)
            if age > max_age:
                return state, False, f"image of camera '{cam}' is {age:.3f} s old (max {max_age:g} s)"
            if age < -max_age:
                return state, False, f"image of camera '{cam}' is stamped {-age:.3f} s ahead of the clock"
        return state, True, ""

    def _warn(self, key: str, text: str) -> None:
        t = time.monotonic()
        if t - self._warned.get(key, -math.inf) >= WARN_PERIOD:
            self._warned[key] = t
            self.get_logger().warning(text)

    # -- control loop ------------------------------------------------------------------------------
    def _on_tick(self) -> None:
        self._tick_wall.append(time.monotonic())
        now = self._now()
        state, fresh, why = self._capture(now)
        with self._lock:
            res = self.core.tick(now, state, fresh)
            running = self.core.running
        # the command goes out first (steady output period); the request, captured before the pop, follows
        if res.command is not None:
            if running or bool(self.get_parameter("hold_when_stopped").value):
                self._publish_command(res.command)
        else:
            self._warn(
                "nocmd", f"nothing to command or hold yet ({why or 'no joint state'}); arm not commanded"
            )
        if res.cancel_request is not None:
            self._warn("timeout", f"request {res.cancel_request} timed out; retrying with backoff")
            self._cancel(res.cancel_request)
        if res.stale:
            self._warn("stale", f"no request sent: {why}")
        if res.request is not None:
            try:
                self._send(res.request.request_id, res.request.timestep, state, now, res.request)
            except Exception as exc:  # noqa: BLE001 (a bad observation must not stop the control loop)
                with self._lock:
                    self.core.on_request_failed(res.request.request_id, now, f"could not send: {exc!r}")
                self._warn("send", f"could not send the observation: {exc!r}")
        self._publish_status()
        self._report_auto_threshold()

    def _publish_command(self, command: np.ndarray) -> None:
        msg = JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.joint_names = list(self.joint_names)
        period = self.core.config.period
        point = JointTrajectoryPoint(positions=[float(x) for x in command])
        point.time_from_start = Duration(sec=int(period), nanosec=int(round((period % 1.0) * 1e9)))
        msg.points = [point]
        self._cmd_pub.publish(msg)

    def _publish_status(self) -> None:
        core, c = self.core, self.core.counters
        msg = QueueStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.queue_size = core.queue_size
        msg.chunk_size = core.chunk_size
        msg.threshold = float(core.threshold)
        msg.auto_threshold = bool(core.config.auto_threshold)
        msg.tick = c.ticks
        msg.idle_ticks = c.idle_ticks
        msg.observations_sent = c.observations_sent
        msg.observations_filtered = c.observations_filtered
        msg.chunks_received = c.chunks_received
        msg.actions_dropped_late = c.actions_dropped_late
        msg.requests_failed = c.requests_failed
        msg.last_latency_ms = float(core.latency.last * 1000.0) if core.latency.last is not None else 0.0
        msg.running = core.running
        msg.request_in_flight = core.request_in_flight
        self._status_pub.publish(msg)

    def _report_auto_threshold(self) -> None:
        cfg = self.core.config
        if not cfg.auto_threshold or self.core.latency.mean is None or self.core.chunk_size == 0:
            return
        g = self.core.threshold
        if self._last_auto_g is None or abs(g - self._last_auto_g) >= 0.01:
            self._last_auto_g = g
            self.get_logger().info(
                f"auto threshold: g = {g:.3f} (mean latency {self.core.latency.mean * 1000:.0f} ms, "
                f"period {cfg.period * 1000:.1f} ms, chunk size {self.core.chunk_size}, "
                f"margin {cfg.auto_threshold_margin:g})"
            )

    # -- requests ----------------------------------------------------------------------------------
    def _send(
        self,
        request_id: int,
        timestep: int,
        state: np.ndarray | None,
        now: float,
        request: ObservationRequest | None = None,
    ) -> None:
        if not self._client.server_is_ready():
            with self._lock:
                self.core.on_request_failed(request_id, now, "action server not available")
            self._warn("server", "PredictChunk server not available; holding and retrying with backoff")
            return
        obs = Observation()
        js: JointState = self._state.msg  # type: ignore[assignment]
        obs.header.stamp = (
            js.header.stamp if Time.from_msg(js.header.stamp).nanoseconds else self.get_clock().now().to_msg()
        )
        obs.header.frame_id = js.header.frame_id
        obs.timestep = int(timestep)
        obs.task = str(self.get_parameter("task").value)
        obs.camera_names = list(self.cameras)
        obs.images = [self._images[c].msg for c in self.cameras]  # type: ignore[misc]
        obs.state = JointState(
            header=js.header, name=list(self.joint_names), position=[float(x) for x in state]
        )  # type: ignore[union-attr]
        req = _Request(request_id, timestep)
        self._requests[request_id] = req
        goal = PredictChunk.Goal(observation=obs)
        if request is not None and request.rtc_prefix is not None:  # aggregate_fn rtc: real-time chunking
            goal.rtc_prefix = np.asarray(request.rtc_prefix, dtype=np.float64).reshape(-1).tolist()
            goal.rtc_inference_delay = int(request.rtc_inference_delay)
            goal.rtc_execution_horizon = int(self.core.config.rtc_execution_horizon)
        future = self._client.send_goal_async(goal)
        future.add_done_callback(lambda f, r=req: self._on_goal_response(r, f))

    def _on_goal_response(self, req: _Request, future: object) -> None:
        try:
            handle = future.result()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 (any transport error counts as a failed request)
            self._fail(req, f"goal not sent: {exc}")
            return
        if handle is None or not handle.accepted:
            self._fail(req, "goal rejected by the server")
            return
        req.goal_handle = handle
        with self._lock:
            current = self.core.in_flight_id == req.request_id
        if not current:  # timed out or stopped meanwhile
            self._cancel(req.request_id)
            return
        handle.get_result_async().add_done_callback(lambda f, r=req: self._on_result(r, f))

    def _on_result(self, req: _Request, future: object) -> None:
        self._requests.pop(req.request_id, None)
        now = self._now()
        try:
            response = future.result()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001
            self._fail(req, f"no result: {exc}")
            return
        status, result = response.status, response.result
        if status != GoalStatus.STATUS_SUCCEEDED or result.error:
            self._fail(req, f"request failed (status {status}): {result.error or 'no chunk'}")
            return
        chunk = result.chunk
        names = list(chunk.trajectory.joint_names) or list(self.joint_names)
        try:
            cols = [names.index(j) for j in self.joint_names]
            actions = np.array(
                [[p.positions[i] for i in cols] for p in chunk.trajectory.points], dtype=np.float64
            )
        except (ValueError, IndexError):
            self._fail(req, f"chunk joints {names} do not cover {self.joint_names}")
            return
        with self._lock:
            outcome = self.core.on_chunk(req.request_id, int(chunk.start_timestep), actions, now)
        if not outcome.accepted and outcome.reason and "not the request in flight" not in outcome.reason:
            self._warn("chunk", f"chunk rejected: {outcome.reason}")

    def _fail(self, req: _Request, reason: str) -> None:
        self._requests.pop(req.request_id, None)
        with self._lock:
            counted = self.core.on_request_failed(req.request_id, self._now(), reason)
        if counted:
            self._warn("fail", f"request {req.request_id}: {reason}; retrying with backoff")

    def _cancel(self, request_id: int) -> None:
        req = self._requests.pop(request_id, None)
        if req is None:
            return
        req.cancelled = True
        if req.goal_handle is not None:
            req.goal_handle.cancel_goal_async()  # type: ignore[attr-defined]
        else:  # the goal response is still on its way: _on_goal_response cancels it
            self._requests[request_id] = req

    # -- services ----------------------------------------------------------------------------------
    def _on_start(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._lock:
            was = self.core.running
            self.core.start()
        resp.success, resp.message = True, "already running" if was else "started"
        self.get_logger().info(f"start: {resp.message}")
        return resp

    def _on_stop(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._lock:
            was = self.core.running
            cancelled = self.core.stop()
        if cancelled is not None:
            self._cancel(cancelled)
        resp.success = True
        resp.message = ("stopped" if was else "already stopped") + (
            f"; cancelled request {cancelled}" if cancelled is not None else ""
        )
        self.get_logger().info(f"stop: {resp.message}; holding the last command")
        return resp

    # -- diagnostics -------------------------------------------------------------------------------
    def period_jitter(self) -> tuple[float, float] | None:
        """p50 / p99 of |tick interval - period| (wall clock, seconds) over the last ticks."""
        if len(self._tick_wall) < 3:
            return None
        dev = np.abs(np.diff(np.asarray(self._tick_wall)) - self.core.config.period)
        return float(np.percentile(dev, 50)), float(np.percentile(dev, 99))

    def _publish_diagnostics(self) -> None:
        core, c = self.core, self.core.counters
        st = DiagnosticStatus(name=f"{self.get_name()}: action queue", hardware_id="smolvla")
        level, message = DiagnosticStatus.OK, "running" if core.running else "stopped (holding)"
        if core.running and c.ticks and core.queue_size == 0:
            level, message = DiagnosticStatus.WARN, "queue empty: holding the last command"
        if core.last_error and core.running and not core.latency.count:
            level, message = DiagnosticStatus.WARN, f"no chunk yet: {core.last_error}"
        st.level, st.message = level, message
        values: dict[str, object] = {
            "running": core.running,
            "queue_size": core.queue_size,
            "chunk_size": core.chunk_size,
            "threshold": f"{core.threshold:.3f}",
            "auto_threshold": core.config.auto_threshold,
            "aggregate_fn": core.config.aggregate_fn,
            "timestep": core.timestep,
            **{k: getattr(c, k) for k in c.__dataclass_fields__},
            "request_in_flight": core.request_in_flight,
            "last_error": core.last_error,
        }
        if core.latency.mean is not None:
            values["latency_mean_ms"] = f"{core.latency.mean * 1000:.1f}"
            values["latency_p90_ms"] = f"{core.latency.percentile(90) * 1000:.1f}"  # type: ignore[operator]
        jitter = self.period_jitter()
        if jitter is not None:
            values["period_jitter_p50_ms"] = f"{jitter[0] * 1000:.2f}"
            values["period_jitter_p99_ms"] = f"{jitter[1] * 1000:.2f}"
        st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[st])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node("action_queue", ActionQueueNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
