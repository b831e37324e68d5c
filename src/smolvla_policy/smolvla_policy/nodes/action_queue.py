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

import array
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from smolvla_common import robot_description
from smolvla_common.action_client import send_goal_async
from smolvla_common.image_conversion import image_to_rgb8, numpy_to_image
from smolvla_common.node_main import run_node
from smolvla_common.node_parameters import NodeParameters
from smolvla_common.parameters import Param, ParameterError, ParameterTable
from smolvla_msgs.action import PredictChunk
from smolvla_msgs.msg import Observation, QueueStatus
from smolvla_policy.compact_observation import (
    JPEG_FORMAT,
    CompactObservationError,
    CompactSettings,
    compact_camera,
    parse_image_size,
    preload,
)
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


def _queue_config(values: dict[str, object], lower: object = None, upper: object = None) -> QueueConfig:
    """The core's configuration from validated parameter values (limits: the parameters' unless given)."""
    kw: dict[str, object] = {n: values[n] for n in CORE_PARAMS}
    kw["lower_limits"] = tuple(values["joint_lower_limits"] if lower is None else lower)  # type: ignore[call-overload]
    kw["upper_limits"] = tuple(values["joint_upper_limits"] if upper is None else upper)  # type: ignore[call-overload]
    cfg = QueueConfig(**kw)  # type: ignore[arg-type]
    cfg.validate(len(values["joint_names"]))  # type: ignore[arg-type]
    return cfg


def _check_all(values: dict[str, object]) -> str | None:
    try:
        _queue_config(values)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _image_size_check(text: str) -> str | None:
    try:
        parse_image_size(text)
    except CompactObservationError as exc:
        return str(exc)
    return None


def _distinct(names: list[str]) -> str | None:
    return None if len(set(names)) == len(names) and all(names) else "names must be distinct and non-empty"


#: Every parameter of action_queue, declared once (smolvla_common.parameters: integers accepted for doubles,
#: named errors, applied after validation); config/action_queue.yaml is checked against this table by a test.
PARAMETERS = ParameterTable(
    "action_queue",
    [
        Param("fps", 30.0, "Control rate in Hz (one command per tick).", "double", 0.1, 1000.0),
        Param(
            "chunk_threshold",
            0.7,
            "g: request a chunk when queue_size <= g * chunk_size; 0 = sync mode.",
            "double",
            0.0,
            1.0,
        ),
        Param(
            "auto_threshold",
            False,
            "Choose g = E[latency] / period / chunk_size + auto_threshold_margin from measured latency.",
            "bool",
        ),
        Param("auto_threshold_margin", 0.1, "Margin added to the automatic g.", "double", 0.0, 1.0),
        Param(
            "aggregate_fn",
            "weighted_average",
            "Fusion on overlapping ticks.",
            "string",
            choices=AGGREGATE_NAMES,
        ),
        Param(
            "blend_ramp",
            10.0,
            "blend: ticks over which the weight on the new chunk ramps to 1.",
            "double",
            0.0,
            10000.0,
        ),
        Param(
            "similarity_epsilon",
            0.01,
            "Skip observations within this joint-space L2 distance (rad); negative disables.",
            "double",
            -1.0,
            100.0,
        ),
        Param(
            "task", "", "Language instruction sent with each observation (empty: server default).", "string"
        ),
        Param(
            "cameras",
            ["top", "wrist"],
            "Camera names; images from /cameras/<name>/image_raw. Empty strings are ignored.",
            "string_array",
            read_only=True,
        ),
        Param(
            "max_observation_age",
            0.5,
            "Observations (joint state, images) older than this (s) are not sent.",
            "double",
            0.001,
            3600.0,
        ),
        Param(
            "request_timeout",
            10.0,
            "A request older than this (s) is cancelled and retried.",
            "double",
            0.01,
            3600.0,
        ),
        Param(
            "retry_backoff",
            0.2,
            "First retry delay after a failed request (s); doubles.",
            "double",
            0.0,
            60.0,
        ),
        Param("retry_backoff_max", 2.0, "Longest retry delay (s).", "double", 0.0, 600.0),
        Param("latency_window", 20, "Requests averaged for the latency estimate.", "int", 1, 10000),
        Param(
            "rtc_execution_horizon",
            0,
            "aggregate_fn rtc: queued actions that guide the new chunk (0 = the policy server's setting).",
            "int",
            0,
            100000,
        ),
        Param(
            "max_step",
            0.1,
            "Largest command change per tick per joint (rad); 0 disables.",
            "double",
            0.0,
            10.0,
        ),
        Param(
            "joint_names",
            list(JOINT_NAMES),
            "Joint order of commands and observations.",
            "string_array",
            read_only=True,
            check=_distinct,
        ),
        Param(
            "robot",
            "so101",
            "Arm: its description's joint limits until /robot_description arrives.",
            "string",
            choices=tuple(robot_names()),
        ),
        Param(
            "limits_from_robot_description",
            True,
            "Clamp to the arm's limits from /robot_description (else the robot's description); false = "
            "joint_lower_limits / joint_upper_limits.",
            "bool",
        ),
        Param(
            "joint_lower_limits",
            [SO101_LIMITS[j][0] for j in JOINT_NAMES],
            "Lower joint limits (rad), parallel to joint_names (limits_from_robot_description false).",
            "double_array",
        ),
        Param(
            "joint_upper_limits",
            [SO101_LIMITS[j][1] for j in JOINT_NAMES],
            "Upper joint limits (rad), parallel to joint_names (limits_from_robot_description false).",
            "double_array",
        ),
        Param(
            "action_server", "/smolvla/predict_chunk", "PredictChunk action name.", "string", read_only=True
        ),
        Param(
            "observation_image_size",
            "",
            "Compact observations (docs/remote_policy.md): '' sends the cameras' frames as they are; 'auto' "
            "resizes each with the model's resize-with-pad to the size the policy server reports (raw until "
            "its first result); WIDTHxHEIGHT (e.g. 512x512) to that size. The padding is left out.",
            "string",
            check=_image_size_check,
        ),
        Param(
            "observation_jpeg_quality",
            0,
            "0: images as sensor_msgs/Image; 1..100: JPEG-encoded (Observation.compressed_images) at this "
            "quality, after the resize.",
            "int",
            0,
            100,
        ),
        Param("autostart", True, "Run the loop at start-up (else wait for ~/start).", "bool", read_only=True),
        Param("hold_when_stopped", True, "While stopped keep publishing the held command.", "bool"),
        Param("diagnostics_period", 1.0, "Period of /diagnostics (s).", "double", 0.05, 60.0, read_only=True),
    ],
    check=_check_all,
    source="smolvla_policy.nodes.action_queue:PARAMETERS",
)


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
        # declared and validated (ParameterError names the parameter and the allowed values); run-time
        # changes are validated first and applied by _apply_parameters afterwards
        self.params = NodeParameters(self, PARAMETERS, on_change=self._apply_parameters)
        self.joint_names: list[str] = list(self.params["joint_names"])
        self.cameras: list[str] = [c for c in self.params["cameras"] if c]
        self._lock = threading.RLock()
        robot = str(self.params["robot"])
        self._arm_limits = default_limits(robot)  # until /robot_description arrives
        self._arm_limits_source = f"the {robot} description"
        self.core = ActionQueueCore(
            len(self.joint_names),
            self._config_from(),
            running=bool(self.get_parameter("autostart").value),
        )
        self._warned: dict[str, float] = {}
        self._requests: dict[int, _Request] = {}
        self._tick_wall: deque[float] = deque(maxlen=600)
        self._last_auto_g: float | None = None

        self._state = _Latest()
        self._images: dict[str, _Latest] = {c: _Latest() for c in self.cameras}
        self._server_image_size: tuple[int, int] | None = None  # from PredictChunk results (issue 17)
        preload(self._compact_settings())  # torch / OpenCV imported now, not in a control tick
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
        # the fused queue ahead after each merged chunk (viewer / rviz: the path the arm will follow)
        self._ahead_pub = self.create_publisher(JointTrajectory, "/smolvla/queue_ahead", QoSProfile(depth=2))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self._client = ActionClient(self, PredictChunk, self.get_parameter("action_server").value)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)

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
    def _config_from(self) -> QueueConfig:
        """QueueConfig from the validated parameters, with the arm's limits when they are used."""
        values = self.params.values
        lower, upper = values["joint_lower_limits"], values["joint_upper_limits"]
        if values["limits_from_robot_description"]:  # the arm's limits, per joint where the arm has the joint
            pairs = [self._arm_limits.get(j, p) for j, p in zip(self.joint_names, zip(lower, upper))]
            lower, upper = [lo for lo, _ in pairs], [hi for _, hi in pairs]
        return _queue_config(values, lower, upper)

    def _apply_parameters(self, changes: dict[str, object]) -> None:
        """Validated run-time changes (post-set callback)."""
        names = set(changes)
        if names & {"observation_image_size", "observation_jpeg_quality"}:
            preload(self._compact_settings())
        if "robot" in names and not self._arm_limits_source.startswith("/"):
            robot = str(self.params["robot"])
            self._arm_limits, self._arm_limits_source = default_limits(robot), f"the {robot} description"
        limit_params = {"joint_lower_limits", "joint_upper_limits", "limits_from_robot_description", "robot"}
        if not names & (set(CORE_PARAMS) | limit_params):
            return
        old_period = self.core.config.period
        with self._lock:
            cfg = self._config_from()
            self.core.update_config(**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__})
        if "fps" in names and cfg.period != old_period:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(cfg.period, self._on_tick)
        self.get_logger().info("parameters set: " + ", ".join(f"{n}={v}" for n, v in changes.items()))

    # -- the arm's joint limits ----------------------------------------------------------------------
    def _on_robot_description(self, urdf_text: str) -> None:
        try:
            limits = limits_from_urdf(urdf_text)
            robot = robot_from_urdf(urdf_text, default=str(self.get_parameter("robot").value))
        except ValueError as exc:
            self._warn("description", f"ignored /robot_description: {exc}")
            return
        missing = [j for j in self.joint_names if j not in limits]
        if missing:
            self._warn("description", f"/robot_description has no joint {missing[0]}: keeping its old limits")
        self._arm_limits = {**self._arm_limits, **limits}
        self._arm_limits_source = "/robot_description"
        if not self.get_parameter("limits_from_robot_description").value:
            return
        with self._lock:
            cfg = self._config_from()
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

    def _publish_queue_ahead(self, actions: np.ndarray) -> None:
        """``/smolvla/queue_ahead``: the queued actions, point i at ``time_from_start = (i + 1) * period``."""
        msg = JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.joint_names = list(self.joint_names)
        period = self.core.config.period
        for i, action in enumerate(actions):
            ns = int(round((i + 1) * period * 1e9))
            point = JointTrajectoryPoint(positions=[float(x) for x in action])
            point.time_from_start = Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            msg.points.append(point)
        self._ahead_pub.publish(msg)

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
        self._fill_cameras(obs)
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
        future = send_goal_async(self._client, goal)  # rclpy 9.1.2's loses early answers, leaks a future
        future.add_done_callback(lambda f, r=req: self._on_goal_response(r, f))

    def _compact_settings(self) -> CompactSettings:
        return CompactSettings(
            parse_image_size(str(self.get_parameter("observation_image_size").value)),
            int(self.get_parameter("observation_jpeg_quality").value),
        )

    def _fill_cameras(self, obs: Observation) -> None:
        """The cameras as received, or compact (resized and/or JPEG: smolvla_policy.compact_observation)."""
        msgs = [self._images[c].msg for c in self.cameras]
        settings = self._compact_settings()
        if settings.target(self._server_image_size) is None and settings.jpeg_quality == 0:
            obs.images = msgs  # type: ignore[assignment]
            return
        images, compressed = [], []
        for msg in msgs:
            pixels, data = compact_camera(image_to_rgb8(msg), settings, self._server_image_size)
            if data is None:
                out = numpy_to_image(pixels, "rgb8")
                out.header = msg.header  # type: ignore[attr-defined]
                images.append(out)
            else:
                cmsg = CompressedImage(format=JPEG_FORMAT)
                cmsg.header = msg.header  # type: ignore[attr-defined]
                cmsg.data = array.array("B", data)
                compressed.append(cmsg)
        obs.images, obs.compressed_images = images, compressed

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
        size = (int(getattr(result, "image_width", 0)), int(getattr(result, "image_height", 0)))
        if size[0] > 0 and size[1] > 0 and size != self._server_image_size:
            self._server_image_size = size
            self.get_logger().info(f"policy server's camera input size: {size[0]}x{size[1]}")
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
            ahead = self.core.queued_actions if outcome.accepted else None
        if ahead is not None:
            self._publish_queue_ahead(ahead)
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
    return run_node("action_queue", ActionQueueNode, args=args, startup_errors=(ParameterError,))


if __name__ == "__main__":
    raise SystemExit(main())
