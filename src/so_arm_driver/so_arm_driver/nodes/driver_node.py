"""ROS 2 node ``so_arm_driver``: a thin adapter around :class:`so_arm_driver.driver.ArmDriver`.

Publishes ``/joint_states`` (capture stamps), ``/diagnostics`` and ``/robot_description`` (the URDF with the
calibrated joint limits, transient local); subscribes ``/joint_commands``
(trajectory_msgs/JointTrajectory: one point = a streamed target, several points = a trajectory followed by
``time_from_start``); serves ``~/set_torque`` (std_srvs/SetBool). ``port:=emulated`` starts a servo-bus
emulator process so the stack can be tried without an arm. Parameters and defaults:
``config/so_arm_driver.yaml``.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from smolvla_common import robot_description
from smolvla_common.node_main import run_node
from so_arm_description.robot_model import build_urdf
from so_arm_description.robot_spec import JOINT_NAMES, MOTOR_IDS, joint_limits
from so_arm_driver import calibration as calib
from so_arm_driver.bus import FeetechBus
from so_arm_driver.driver import ArmDriver, DriverConfig, DriverStartupError

EMULATED = "emulated"
ROBOTS = ("so100", "so101")
#: Parameters that need a restart; changing them at run time is rejected with a reason.
STARTUP_ONLY = (
    "port",
    "robot",
    "robot_id",
    "calibration_file",
    "baudrate",
    "read_retries",
    "joint_names",
    "read_velocity",
    "read_load",
    "read_temperature",
)


@dataclass
class DriverNodeConfig:
    port: str = "/dev/ttyACM0"
    robot: str = "so101"
    robot_id: str = "follower"
    calibration_file: str = ""
    baudrate: int = 1_000_000
    read_retries: int = 2
    rate: float = 50.0
    max_step: float = 0.1
    command_timeout: float = 0.5
    disable_torque_on_exit: bool = True
    max_consecutive_errors: int = 5
    read_velocity: bool = True
    read_load: bool = True
    read_temperature: bool = False
    joint_names: list[str] = field(default_factory=lambda: list(JOINT_NAMES))
    diagnostics_period: float = 1.0


def _float(desc: str, lo: float, hi: float) -> ParameterDescriptor:
    return ParameterDescriptor(
        description=desc,
        type=ParameterType.PARAMETER_DOUBLE,
        floating_point_range=[FloatingPointRange(from_value=lo, to_value=hi, step=0.0)],
    )


def _int(desc: str, lo: int, hi: int) -> ParameterDescriptor:
    return ParameterDescriptor(
        description=desc,
        type=ParameterType.PARAMETER_INTEGER,
        integer_range=[IntegerRange(from_value=lo, to_value=hi, step=1)],
    )


DESCRIPTORS: dict[str, ParameterDescriptor] = {
    "port": ParameterDescriptor(
        description="Feetech bus serial device (e.g. /dev/ttyACM0), or 'emulated' to start an emulator",
        type=ParameterType.PARAMETER_STRING,
    ),
    "robot": ParameterDescriptor(description="so100 | so101", type=ParameterType.PARAMETER_STRING),
    "robot_id": ParameterDescriptor(
        description="lerobot robot id: calibration at $HF_LEROBOT_CALIBRATION/robots/so_follower/<id>.json",
        type=ParameterType.PARAMETER_STRING,
    ),
    "calibration_file": ParameterDescriptor(
        description="lerobot calibration JSON; empty = lerobot's default location for robot_id",
        type=ParameterType.PARAMETER_STRING,
    ),
    "baudrate": _int("bus baud rate", 4800, 1_000_000),
    "read_retries": _int("extra attempts per bus transaction", 0, 10),
    "rate": _float("read/write cycle and /joint_states rate (Hz)", 1.0, 500.0),
    "max_step": _float("largest goal change per cycle (rad)", 1e-4, 3.2),
    "command_timeout": _float("hold position when no command arrived for this long (s)", 0.01, 60.0),
    "disable_torque_on_exit": ParameterDescriptor(
        description="torque off on shutdown", type=ParameterType.PARAMETER_BOOL
    ),
    "max_consecutive_errors": _int(
        "failed cycles before ERROR (writes stop until the bus answers)", 1, 10000
    ),
    "read_velocity": ParameterDescriptor(
        description="read Present_Velocity (JointState.velocity)", type=ParameterType.PARAMETER_BOOL
    ),
    "read_load": ParameterDescriptor(
        description="read Present_Load (JointState.effort, N m estimate)", type=ParameterType.PARAMETER_BOOL
    ),
    "read_temperature": ParameterDescriptor(
        description="read Present_Temperature (on /diagnostics)", type=ParameterType.PARAMETER_BOOL
    ),
    "joint_names": ParameterDescriptor(
        description="published joint names for shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, "
        "wrist_roll, gripper (in this order)",
        type=ParameterType.PARAMETER_STRING_ARRAY,
    ),
    "diagnostics_period": _float("/diagnostics period (s)", 0.05, 60.0),
}


def validate(name: str, value: object) -> str | None:
    """Reason why ``value`` is not acceptable for parameter ``name`` (None if fine)."""
    desc = DESCRIPTORS.get(name)
    if desc is None:
        return None
    if desc.floating_point_range:
        r = desc.floating_point_range[0]
        if (
            not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not r.from_value <= value <= r.to_value
        ):
            return f"{name} must be a number in [{r.from_value}, {r.to_value}], got {value!r}"
    if desc.integer_range:
        r = desc.integer_range[0]
        if not isinstance(value, int) or not r.from_value <= value <= r.to_value:
            return f"{name} must be an integer in [{r.from_value}, {r.to_value}], got {value!r}"
    if name == "robot" and value not in ROBOTS:
        return f"robot must be one of {ROBOTS}, got {value!r}"
    if name == "port" and not value:
        return "port must not be empty"
    if name == "joint_names":
        names = list(value)  # type: ignore[call-overload]
        if len(names) != len(JOINT_NAMES) or len(set(names)) != len(names) or not all(names):
            return f"joint_names must be {len(JOINT_NAMES)} distinct non-empty names, got {names}"
    return None


class DriverNode(Node):
    def __init__(self, **kwargs: object) -> None:
        super().__init__("so_arm_driver", **kwargs)
        defaults = DriverNodeConfig()
        for name, desc in DESCRIPTORS.items():
            try:
                self.declare_parameter(name, getattr(defaults, name), desc)
            except ParameterException as exc:  # e.g. rate:=50 (an integer) for a double parameter
                raise DriverStartupError(f"parameter '{name}': {exc}") from exc
        self.cfg = DriverNodeConfig(**{n: self.get_parameter(n).value for n in DESCRIPTORS})
        self.cfg.joint_names = list(self.cfg.joint_names)
        problems = [r for n in DESCRIPTORS if (r := validate(n, getattr(self.cfg, n)))]
        if problems:
            raise DriverStartupError("invalid parameters: " + "; ".join(problems))
        self._started = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.to_motor = dict(zip(self.cfg.joint_names, JOINT_NAMES))
        self._emulator: subprocess.Popen | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self.driver: ArmDriver | None = None
        self._last_level: str | None = None
        self._last_reject_log = 0.0
        self._cycle_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._io_group = MutuallyExclusiveCallbackGroup()
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.timer = None
        self.diag_timer = None
        self.description_pub = None

    # -- start-up -------------------------------------------------------------------------------------------
    def _calibration(self) -> calib.Calibration:
        path = (
            Path(self.cfg.calibration_file).expanduser()
            if self.cfg.calibration_file
            else (calib.default_calibration_path(self.cfg.robot_id))
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
        bus = FeetechBus(port, baudrate=self.cfg.baudrate, retries=self.cfg.read_retries)
        self.driver = ArmDriver(bus, cal, self._driver_config(), logger=self.get_logger())
        self.driver.connect()
        # the calibrated limits the driver clamps to, for every other node (queue, policy units, rviz, bags)
        limits = dict(zip(JOINT_NAMES, self.driver.limits))
        self.description_pub = robot_description.publish(self, build_urdf(self.cfg.robot, limits))
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
        )

    # -- parameters -----------------------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name in STARTUP_ONLY and self._started:
                return SetParametersResult(
                    successful=False, reason=f"{p.name} is read at start-up: restart the node"
                )
            if (reason := validate(p.name, p.value)) is not None:
                return SetParametersResult(successful=False, reason=reason)
        for p in params:
            if hasattr(self.cfg, p.name):
                setattr(self.cfg, p.name, p.value)
            if self.driver is not None and p.name in (
                "max_step",
                "command_timeout",
                "max_consecutive_errors",
                "disable_torque_on_exit",
            ):
                setattr(self.driver.config, p.name, p.value)
            if p.name == "rate" and self.timer is not None:
                self.timer.timer_period_ns = int(1e9 / p.value)
            if p.name == "diagnostics_period" and self.diag_timer is not None:
                self.diag_timer.timer_period_ns = int(1e9 * p.value)
        return SetParametersResult(successful=True)

    # -- callbacks ------------------------------------------------------------------------------------------
    def _ros_stamp(self, mono: float):  # type: ignore[no-untyped-def]
        now = self.get_clock().now()
        return rclpy.time.Time(nanoseconds=now.nanoseconds - int((time.monotonic() - mono) * 1e9)).to_msg()

    def _on_cycle(self) -> None:
        assert self.driver is not None
        level_before = self.driver.state
        res = self.driver.cycle()
        if res.sample is not None:
            msg = JointState()
            msg.header.stamp = self._ros_stamp(res.sample.capture_time)
            msg.name = list(self.cfg.joint_names)
            msg.position = res.sample.position
            msg.velocity = res.sample.velocity
            msg.effort = res.sample.effort
            self.joint_pub.publish(msg)
        if self.driver.state != level_before:
            self._publish_diagnostics()

    def _log_rejection(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_reject_log > 1.0:
            self._last_reject_log = now
            self.get_logger().warning(f"ignored /joint_commands message: {reason}")

    def _on_command(self, msg: JointTrajectory) -> None:
        assert self.driver is not None
        try:
            unknown = [n for n in msg.joint_names if n not in self.to_motor]
            if unknown:
                reason = f"unknown joint name(s) {unknown}; known: {self.cfg.joint_names}"
                self.driver.reject(reason)
                self._log_rejection(reason)
                return
            names = [self.to_motor[n] for n in msg.joint_names]
            if not msg.points:
                reason = self.driver.reject("trajectory without points")
            elif len(msg.points) == 1:
                reason = self.driver.set_target(names, list(msg.points[0].positions))
            else:
                now_mono = time.monotonic()
                stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                start = now_mono
                if stamp_ns > 0:
                    start = now_mono - (self.get_clock().now().nanoseconds - stamp_ns) * 1e-9
                points = [
                    (p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, list(p.positions))
                    for p in msg.points
                ]
                reason = self.driver.set_trajectory(names, points, start=start, now=now_mono)
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
    def shutdown(self) -> None:
        """Torque off if configured, close the bus, stop the emulator (safe to call twice)."""
        if self.timer is not None:
            self.timer.cancel()
        if self.driver is not None:
            torque_off = self.driver.config.disable_torque_on_exit and self.driver.torque_enabled
            self.driver.close()
            if torque_off:
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


def main(args: list[str] | None = None) -> int:
    return run_node(
        "so_arm_driver",
        DriverNode,
        args=args,
        start=True,
        startup_errors=(DriverStartupError,),
        num_threads=3,
    )


if __name__ == "__main__":
    sys.exit(main())
