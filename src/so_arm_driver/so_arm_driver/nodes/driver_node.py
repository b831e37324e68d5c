"""ROS 2 node ``so_arm_driver``: a thin adapter around :class:`so_arm_driver.driver.ArmDriver`.

Publishes ``/joint_states`` (capture stamps), ``/diagnostics`` and ``/robot_description`` (the URDF with the
calibrated joint limits, transient local); subscribes ``/joint_commands``
(trajectory_msgs/JointTrajectory: one point = a streamed target, several points = a trajectory followed by
``time_from_start``); serves ``~/set_torque`` (std_srvs/SetBool). ``port:=emulated`` starts a servo-bus
emulator process so the stack can be tried without an arm. ``leader:=true`` runs a leader arm for
teleoperation instead: read only (torque never enabled), ``leader/joint_states``, lerobot's leader
calibration file, no commands and no ``/robot_description``. Parameters and defaults:
``config/so_arm_driver.yaml``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from smolvla_common import robot_description
from smolvla_common.node_main import run_node
from smolvla_common.node_parameters import NodeParameters
from smolvla_common.parameters import Param, ParameterError, ParameterTable
from so_arm_description.cameras import mounts_with, parse_pose
from so_arm_description.command_following import Command, command_from_message
from so_arm_description.robot_model import build_urdf
from so_arm_description.robot_spec import JOINT_NAMES, MOTOR_IDS, joint_limits
from so_arm_driver import calibration as calib
from so_arm_driver.bus import FeetechBus
from so_arm_driver.driver import ArmDriver, DriverConfig, DriverStartupError, ThrottledLog

EMULATED = "emulated"
ROBOTS = ("so100", "so101")


def _joint_names(names: list[str]) -> str | None:
    if len(names) != len(JOINT_NAMES) or len(set(names)) != len(names) or not all(names):
        return f"{len(JOINT_NAMES)} distinct non-empty names are needed"
    return None


def _pose_error(text: str) -> str | None:
    """Why ``text`` is not a camera pose ('' is the default mount), or None."""
    if not text.strip():
        return None
    try:
        parse_pose(text, "base_link")
    except ValueError as exc:
        return str(exc)
    return None


#: Every parameter of the driver node, declared once (smolvla_common.parameters); config/so_arm_driver.yaml
#: is checked against this table by a test. Read-only ones are read at start-up.
PARAMETERS = ParameterTable(
    "so_arm_driver",
    [
        Param(
            "port",
            "/dev/ttyACM0",
            "Serial device of the Feetech bus (/dev/ttyACM0, /dev/serial/by-id/...), or 'emulated' to start "
            "a servo-bus emulator (default calibration if none is found).",
            "string",
            read_only=True,
            check=lambda v: None if v.strip() else "must not be empty",
        ),
        Param(
            "robot",
            "so101",
            "Arm model (reported on /diagnostics and /robot_description).",
            "string",
            choices=ROBOTS,
            read_only=True,
        ),
        Param(
            "top_camera_pose",
            "",
            "Overhead camera in base_link, 'x y z roll pitch yaw' (m, rad), for the camera frames of "
            "/robot_description ('' = the simulator's mount).",
            "string",
            read_only=True,
            check=_pose_error,
        ),
        Param(
            "wrist_camera_pose",
            "",
            "Wrist camera in gripper_link, 'x y z roll pitch yaw' (m, rad), for the camera frames of "
            "/robot_description ('' = the simulator's mount).",
            "string",
            read_only=True,
            check=_pose_error,
        ),
        Param(
            "robot_id",
            "follower",
            "lerobot robot id: the calibration is $HF_LEROBOT_CALIBRATION/robots/so_follower/<robot_id>.json "
            "(default ~/.cache/huggingface/lerobot/calibration).",
            "string",
            read_only=True,
        ),
        Param(
            "calibration_file",
            "",
            "lerobot calibration JSON; '' = lerobot's default location for robot_id.",
            "string",
            read_only=True,
        ),
        Param(
            "baudrate", 1_000_000, "Bus baud rate (lerobot: 1 Mbaud).", "int", 4800, 1_000_000, read_only=True
        ),
        Param(
            "read_retries",
            2,
            "Extra attempts per bus transaction (lerobot: 2).",
            "int",
            0,
            10,
            read_only=True,
        ),
        Param(
            "latency_timer_ms",
            16.0,
            "USB-serial adapter latency timer [ms]: a servo's reply is waited for 2x this + 2 ms (the SDK's "
            "rule; 16 is the usual FTDI/CH34x default). Raise it for a slow adapter or a loaded host.",
            "double",
            1.0,
            1000.0,
            read_only=True,
        ),
        Param(
            "retry_budget",
            0.2,
            "Longest time spent retrying one bus transaction [s] (retries stop once it is spent).",
            "double",
            0.0,
            10.0,
            read_only=True,
        ),
        Param(
            "connect_retry",
            5.0,
            "How long the start-up connect tries again after a communication failure (a servo that does not "
            "answer, a failed configuration write or first read) before the node gives up [s]; 0 = once. A "
            "missing port or a wrong servo model fails at once.",
            "double",
            0.0,
            120.0,
            read_only=True,
        ),
        Param("rate", 50.0, "Read/write cycle and /joint_states rate [Hz].", "double", 1.0, 500.0),
        Param(
            "max_step",
            0.1,
            "Largest change of the goal per cycle [rad] (0.1 at 50 Hz = 5 rad/s).",
            "double",
            1e-4,
            3.2,
        ),
        Param(
            "command_timeout",
            0.5,
            "Hold position when no /joint_commands message arrived for this long [s] (after a trajectory: "
            "after its end).",
            "double",
            0.01,
            60.0,
        ),
        Param("disable_torque_on_exit", True, "Torque off when the node exits.", "bool"),
        Param(
            "max_consecutive_errors",
            5,
            "Failed cycles in a row before ERROR on /diagnostics; writes stop until the bus answers again.",
            "int",
            1,
            10000,
        ),
        Param(
            "read_velocity",
            True,
            "Read Present_Velocity (JointState.velocity [rad/s]).",
            "bool",
            read_only=True,
        ),
        Param(
            "read_load",
            True,
            "Read Present_Load (JointState.effort [N m], an estimate).",
            "bool",
            read_only=True,
        ),
        Param(
            "read_temperature", False, "Read Present_Temperature (on /diagnostics).", "bool", read_only=True
        ),
        Param(
            "joint_names",
            list(JOINT_NAMES),
            "Published joint names for shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll, "
            "gripper (in this order).",
            "string_array",
            read_only=True,
            check=_joint_names,
        ),
        Param(
            "leader",
            False,
            "Leader arm (moved by hand, for teleoperation): torque never enabled, nothing written but the "
            "configuration a leader needs; joint states on leader/joint_states; calibration from lerobot's "
            "teleoperators/so_leader/<robot_id>.json; no /joint_commands, no /robot_description.",
            "bool",
            read_only=True,
        ),
        Param(
            "reconnect_period",
            1.0,
            "After a serial I/O error (USB adapter unplugged) the port is closed and reopened this often "
            "until the device is back [s]; give a stable port name (/dev/serial/by-id/...).",
            "double",
            0.05,
            60.0,
        ),
        Param(
            "verify_period",
            1.0,
            "Read back every servo's configuration (torque, PID, limits, gripper protection; one sync read) "
            "this often and after every failed cycle, restore it after a brown-out [s]; 0 = only after "
            "failed cycles.",
            "double",
            0.0,
            3600.0,
        ),
        Param(
            "diagnostics_period",
            1.0,
            "/diagnostics period [s] (also published at once on a state change).",
            "double",
            0.05,
            60.0,
        ),
    ],
    source="so_arm_driver.nodes.driver_node:PARAMETERS",
)


@dataclass
class DriverNodeConfig:
    """The validated values of :data:`PARAMETERS` (defaults there)."""

    port: str
    robot: str
    top_camera_pose: str
    wrist_camera_pose: str
    robot_id: str
    calibration_file: str
    baudrate: int
    read_retries: int
    latency_timer_ms: float
    retry_budget: float
    connect_retry: float
    rate: float
    max_step: float
    command_timeout: float
    disable_torque_on_exit: bool
    max_consecutive_errors: int
    read_velocity: bool
    read_load: bool
    read_temperature: bool
    joint_names: list[str]
    leader: bool
    reconnect_period: float
    verify_period: float
    diagnostics_period: float


class DriverNode(Node):
    def __init__(self, **kwargs: object) -> None:
        super().__init__("so_arm_driver", **kwargs)
        # declared and validated (ParameterError names the parameter and the allowed values); run-time
        # changes are applied after validation by _apply_parameters
        self.params = NodeParameters(self, PARAMETERS, on_change=self._apply_parameters)
        self.cfg = DriverNodeConfig(**self.params.values)
        self._started = False
        self.to_motor = dict(zip(self.cfg.joint_names, JOINT_NAMES))
        self._emulator: subprocess.Popen | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self.driver: ArmDriver | None = None
        self._last_level: str | None = None
        # rejected commands logged at most once a second per kind of reason (issue 19)
        self._log_rejection = ThrottledLog(
            lambda m: self.get_logger().warning(f"ignored /joint_commands message: {m}"), period=1.0
        )
        self._cycle_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._io_group = MutuallyExclusiveCallbackGroup()
        self.joint_pub = self.create_publisher(
            JointState, "leader/joint_states" if self.cfg.leader else "joint_states", 10
        )
        self.diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.timer = None
        self.diag_timer = None
        self.description_pub = None

    # -- start-up -------------------------------------------------------------------------------------------
    def _calibration(self) -> calib.Calibration:
        path = (
            Path(self.cfg.calibration_file).expanduser()
            if self.cfg.calibration_file
            else (
                calib.default_leader_calibration_path(self.cfg.robot_id)
                if self.cfg.leader
                else calib.default_calibration_path(self.cfg.robot_id)
            )
        )
        if path.exists() or self.cfg.port != EMULATED:
            cal = calib.load(path)
            self.get_logger().info(f"calibration: {path}")
        else:
            cal = calib.default_calibration(joint_limits(self.cfg.robot), MOTOR_IDS)
            self.get_logger().warning(f"no calibration at {path}: using a default one for the emulated arm")
        problems = calib.validate(cal, JOINT_NAMES)
        if problems:
            raise DriverStartupError(f"calibration {path}: " + "; ".join(problems))
        inverted = [n for n in JOINT_NAMES if cal[n].drive_mode]
        if inverted:  # lerobot's SO-10x calibration always writes drive_mode 0
            self.get_logger().warning(
                f"calibration {path}: drive_mode 1 for {', '.join(inverted)} is not applied (radians follow "
                "the raw direction, like lerobot's degrees); lerobot would invert the gripper's 0..100 %"
            )
        return cal

    def _start_emulator(self, cal: calib.Calibration) -> str:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="so_arm_emulator-")
        cal_path = calib.save(cal, Path(self._tmpdir.name) / "calibration.json")
        port_file = Path(self._tmpdir.name) / "port"
        # the emulator starts each servo at the middle of its calibrated range (encoder ticks incl. offset)
        cmd = [
            sys.executable,
            "-m",
            "so_arm_driver.emulator",
            "--port-file",
            str(port_file),
            "--calibration",
            str(cal_path),
            "--parent-pid",
            str(os.getpid()),
        ]
        # own session: a Ctrl-C in the terminal must not stop it before the driver turned the torque off
        self._emulator = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20.0
        while not port_file.exists():
            if self._emulator.poll() is not None or time.monotonic() > deadline:
                raise DriverStartupError("the servo-bus emulator did not start")
            time.sleep(0.02)
        port = port_file.read_text().strip()
        self.get_logger().info(f"started a servo-bus emulator on {port}")
        return port

    def start(self) -> None:
        """Connect and start the cycle (DriverStartupError names the failing servo/port/file)."""
        try:
            cal = self._calibration()
        except calib.CalibrationError as exc:
            raise DriverStartupError(str(exc)) from exc
        port = self._start_emulator(cal) if self.cfg.port == EMULATED else self.cfg.port
        bus = FeetechBus(
            port,
            baudrate=self.cfg.baudrate,
            retries=self.cfg.read_retries,
            retry_budget_s=self.cfg.retry_budget,
            latency_timer_ms=self.cfg.latency_timer_ms,
        )
        self.driver = ArmDriver(bus, cal, self._driver_config(), logger=self.get_logger())
        self.driver.connect()
        if self.cfg.leader:
            self.get_logger().info(
                f"connected to the {self.cfg.robot} leader arm on {port}: {len(JOINT_NAMES)} servos, "
                f"{self.cfg.rate:g} Hz, torque off (read only)"
            )
        else:
            # the calibrated limits the driver clamps to, for every node (queue, policy units, rviz, bags)
            limits = dict(zip(JOINT_NAMES, self.driver.limits))
            cameras = mounts_with(self.cfg.robot, self.cfg.top_camera_pose, self.cfg.wrist_camera_pose)
            self.description_pub = robot_description.publish(
                self, build_urdf(self.cfg.robot, limits, cameras)
            )
            self.get_logger().info(
                f"connected to {self.cfg.robot} on {port}: {len(JOINT_NAMES)} servos, {self.cfg.rate:g} Hz, "
                f"max_step {self.cfg.max_step:g} rad"
            )
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self.create_subscription(
                JointTrajectory, "joint_commands", self._on_command, qos, callback_group=self._io_group
            )
        self.create_service(SetBool, "~/set_torque", self._on_set_torque, callback_group=self._service_group)
        self.timer = self.create_timer(1.0 / self.cfg.rate, self._on_cycle, callback_group=self._cycle_group)
        self.diag_timer = self.create_timer(
            self.cfg.diagnostics_period, self._publish_diagnostics, callback_group=self._io_group
        )
        self._started = True
        self._publish_diagnostics()

    def _driver_config(self) -> DriverConfig:
        return DriverConfig(
            joint_names=JOINT_NAMES,
            max_step=self.cfg.max_step,
            command_timeout=self.cfg.command_timeout,
            max_consecutive_errors=self.cfg.max_consecutive_errors,
            read_velocity=self.cfg.read_velocity,
            read_load=self.cfg.read_load,
            read_temperature=self.cfg.read_temperature,
            disable_torque_on_exit=self.cfg.disable_torque_on_exit,
            leader=self.cfg.leader,
            reconnect_period=self.cfg.reconnect_period,
            verify_period=self.cfg.verify_period,
            connect_retry=self.cfg.connect_retry,
        )

    # -- parameters -----------------------------------------------------------------------------------------
    def _apply_parameters(self, changes: dict[str, object]) -> None:
        """Validated run-time changes (post-set callback; start-up ones are read-only)."""
        for name, value in changes.items():
            setattr(self.cfg, name, value)
            if self.driver is not None and name in (
                "max_step",
                "command_timeout",
                "max_consecutive_errors",
                "disable_torque_on_exit",
                "reconnect_period",
                "verify_period",
            ):
                setattr(self.driver.config, name, value)
        if "rate" in changes and self.timer is not None:
            self.timer.timer_period_ns = int(1e9 / self.cfg.rate)
        if "diagnostics_period" in changes and self.diag_timer is not None:
            self.diag_timer.timer_period_ns = int(1e9 * self.cfg.diagnostics_period)

    # -- callbacks ------------------------------------------------------------------------------------------
    def _ros_stamp(self, mono: float):  # type: ignore[no-untyped-def]
        now = self.get_clock().now()
        return rclpy.time.Time(nanoseconds=now.nanoseconds - int((time.monotonic() - mono) * 1e9)).to_msg()

    def _on_cycle(self) -> None:
        assert self.driver is not None
        d = self.driver
        before = (d.state, d.torque_enabled, d.restorations, d.reconnects, d.restore_error)
        res = d.cycle()
        if res.sample is not None:
            msg = JointState()
            msg.header.stamp = self._ros_stamp(res.sample.capture_time)
            msg.name = list(self.cfg.joint_names)
            msg.position = res.sample.position
            msg.velocity = res.sample.velocity
            msg.effort = res.sample.effort
            self.joint_pub.publish(msg)
        if (d.state, d.torque_enabled, d.restorations, d.reconnects, d.restore_error) != before:
            self._publish_diagnostics()  # at once on a state change (failure, recovery, restoration)

    def _on_command(self, msg: JointTrajectory) -> None:
        assert self.driver is not None
        try:
            unknown = [n for n in msg.joint_names if n not in self.to_motor]
            if unknown:
                reason = f"unknown joint name(s) {unknown}; known: {self.cfg.joint_names}"
                self.driver.reject(reason)
                self._log_rejection(reason)
                return
            cmd = command_from_message(msg)  # semantics: so_arm_description.command_following
            cmd = Command([self.to_motor[n] for n in cmd.names], cmd.points, cmd.stamp)
            clock_now = self.get_clock().now().nanoseconds * 1e-9
            reason = self.driver.command(cmd, now=time.monotonic(), clock_now=clock_now)
            if reason is not None:
                self._log_rejection(reason)
        except Exception as exc:  # noqa: BLE001 (a malformed message must never kill the node)
            self.driver.reject(f"malformed command: {exc!r}")
            self._log_rejection(f"malformed command: {exc!r}")

    def _on_set_torque(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        assert self.driver is not None
        ok, message = self.driver.set_torque(bool(request.data))
        response.success, response.message = ok, message
        (self.get_logger().info if ok else self.get_logger().error)(message)
        self._publish_diagnostics()
        return response

    def _publish_diagnostics(self) -> None:
        if self.driver is None:
            return
        level, message, values = self.driver.status()
        status = DiagnosticStatus()
        status.level = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN}.get(
            level, DiagnosticStatus.ERROR
        )
        status.name = f"{self.get_name()}: Feetech bus"
        status.message = message
        status.hardware_id = f"{self.cfg.robot}:{self.driver.bus.port_name}"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.diag_pub.publish(msg)
        if level != self._last_level:
            if level == "ERROR":
                self.get_logger().error(f"diagnostics ERROR: {message}")
            elif self._last_level == "ERROR":
                self.get_logger().info(f"diagnostics {level}: {message}")
            self._last_level = level

    # -- shutdown -------------------------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """Torque off if configured, close the bus, stop the emulator (safe to call twice). Returns False
        when the torque could not be turned off (reported on stderr; run_node then exits with code 1)."""
        ok = True
        if self.timer is not None:
            self.timer.cancel()
        if self.driver is not None:
            torque_off = self.driver.config.disable_torque_on_exit
            errors = self.driver.close()
            if torque_off and errors:
                ok = False
                print(
                    "[so_arm_driver] TORQUE OFF ON EXIT FAILED, the arm may still be powered: "
                    + "; ".join(map(str, errors)),
                    file=sys.stderr,
                    flush=True,
                )
            elif torque_off:
                print("[so_arm_driver] torque disabled on exit", flush=True)
            self.driver = None
        if self._emulator is not None:
            self._emulator.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._emulator.wait(5.0)
            if self._emulator.poll() is None:
                self._emulator.kill()
            self._emulator = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        return ok


def main(args: list[str] | None = None) -> int:
    return run_node(
        "so_arm_driver",
        DriverNode,
        args=args,
        start=True,
        startup_errors=(DriverStartupError, ParameterError),
        num_threads=3,
    )


if __name__ == "__main__":
    sys.exit(main())
