"""SO-100/SO-101 arm driver core: connect/configure, read-clamp-write cycle, watchdog, error counting.

Plain Python (no rclpy); the ROS node (``nodes/driver_node.py``) only adapts parameters, topics and
services.

One :meth:`ArmDriver.cycle` is: one sync read of Present_Position (+ velocity, load, temperature when asked)
-> joint sample in radians -> goal from :class:`so_arm_description.command_following.CommandFollower` (the
command semantics shared with the simulator: a streamed target, or a trajectory followed by its
``time_from_start``; the last written goal when the watchdog fired; clamped to the calibrated limits; change
limited to ``max_step`` rad per cycle) -> one sync write of Goal_Position.

Failures never raise: a failed read skips that cycle's write and counts a consecutive error; after
``max_consecutive_errors`` the driver is in ERROR and stops writing; the first good read afterwards recovers
it (goals reset to the present positions, the old command is dropped, so the arm does not jump).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from so_arm_description.command_following import Command, CommandFollower
from so_arm_description.robot_spec import JOINT_NAMES
from so_arm_driver import bus as busmod
from so_arm_driver import control_table as ct
from so_arm_driver.calibration import Calibration, MotorCalibration

#: Torque (N m) used to turn Present_Load (per mille of the maximum torque) into an effort; STS3215 ~3.35.
STS3215_MAX_TORQUE_NM = 3.35


class DriverState(Enum):
    DISCONNECTED = "disconnected"
    OK = "ok"
    ERROR = "error"


class DriverStartupError(RuntimeError):
    """Connect/configure failed (missing servo, wrong model, port, calibration): the message names the id."""


@dataclass
class DriverConfig:
    joint_names: tuple[str, ...] = JOINT_NAMES
    max_step: float = 0.1  # rad per cycle
    command_timeout: float = 0.5  # s without a command -> hold
    max_consecutive_errors: int = 5
    read_velocity: bool = True
    read_load: bool = True
    read_temperature: bool = False
    disable_torque_on_exit: bool = True
    model_number: int = ct.STS3215_MODEL_NUMBER
    gripper_joint: str = "gripper"
    configure_motors: bool = True
    write_calibration: bool = True  # write the file's homing offset / limits into servos that differ
    torque_on_connect: bool = True
    effort_per_load: float = STS3215_MAX_TORQUE_NM / 1000.0
    #: A leader arm (moved by hand): torque is never enabled, nothing is written but the configuration a
    #: leader needs (lerobot's SO leader: torque off, return delay, acceleration, position mode, phase, the
    #: calibration's homing offset and limits), commands are refused.
    leader: bool = False


@dataclass
class JointSample:
    """One read of all joints (SI units, joint order of the config)."""

    capture_time: float  # time.monotonic() at the middle of the read transaction
    position: list[float]
    velocity: list[float] = field(default_factory=list)
    effort: list[float] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    temperature: list[int] = field(default_factory=list)


@dataclass
class CycleResult:
    sample: JointSample | None
    wrote: bool
    goal: list[float] | None = None
    errors: list[busmod.BusError] = field(default_factory=list)
    limited: bool = False  # max_step limited at least one joint this cycle
    clamped: bool = False  # a target was outside the calibrated limits
    duration: float = 0.0


class ArmDriver:
    """The driver core. Thread-safe: cycle(), commands and torque calls may come from different threads."""

    def __init__(
        self,
        bus: busmod.FeetechBus,
        calibration: Calibration,
        config: DriverConfig | None = None,
        logger=None,
    ) -> None:  # type: ignore[no-untyped-def]
        self.bus = bus
        self.config = config or DriverConfig()
        self.calibration = calibration
        self.log = logger
        names = self.config.joint_names
        missing = [n for n in names if n not in calibration]
        if missing:
            raise DriverStartupError(f"calibration has no entry for joint(s) {', '.join(missing)}")
        self.cals: list[MotorCalibration] = [calibration[n] for n in names]
        self.ids: list[int] = [c.id for c in self.cals]
        self.index = {n: i for i, n in enumerate(names)}
        self.limits: list[tuple[float, float]] = [c.limits_radians() for c in self.cals]
        self.state = DriverState.DISCONNECTED
        self.torque_enabled = False
        self._lock = threading.RLock()
        # targets, trajectories, clamp, step cap and watchdog: the same code as the simulator's
        self.follower = CommandFollower(
            names, self.limits, self.config.max_step, self.config.command_timeout, on_hold=self._warn
        )
        self.last_sample: JointSample | None = None
        # statistics
        self.cycles = 0
        self.read_errors = 0
        self.write_errors = 0
        self.consecutive_errors = 0
        self.recoveries = 0
        self.last_error = ""
        self.hardware_errors: dict[int, int] = {}
        self.cycle_times: deque[float] = deque(maxlen=1000)
        self._read_names = ["Present_Position"]
        if self.config.read_velocity:
            self._read_names.append("Present_Velocity")
        if self.config.read_load:
            self._read_names.append("Present_Load")
        if self.config.read_temperature:
            self._read_names.append("Present_Temperature")

    def _info(self, msg: str) -> None:
        if self.log is not None:
            self.log.info(msg)

    def _warn(self, msg: str) -> None:
        if self.log is not None:
            self.log.warning(msg)

    def _error(self, msg: str) -> None:
        if self.log is not None:
            self.log.error(msg)

    # -- connect -----------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the bus, check every servo (id and model), configure like lerobot, hold the present pose."""
        try:
            self.bus.open()
        except busmod.BusOpenError as exc:
            raise DriverStartupError(str(exc)) from exc
        problems = []
        for name, motor_id in zip(self.config.joint_names, self.ids):
            model, err = self.bus.ping(motor_id)
            if err is not None:
                problems.append(
                    f"servo id {motor_id} ({name}) does not answer on {self.bus.port_name}: {err}; "
                    "check power, cabling, id and baud rate"
                )
            elif model != self.config.model_number:
                problems.append(
                    f"servo id {motor_id} ({name}) has model number {model}, expected "
                    f"{self.config.model_number} (STS3215)"
                )
        if problems:
            self.bus.close()
            raise DriverStartupError("; ".join(problems))
        if self.config.configure_motors:
            try:
                self._configure()
            except DriverStartupError:
                self.bus.close()
                raise
        sample = self._read_sample()
        if isinstance(sample, list):
            self.bus.close()
            raise DriverStartupError("initial read failed: " + "; ".join(map(str, sample)))
        with self._lock:
            self.last_sample = sample
            self._reset_goals(sample.position)
            self.state = DriverState.OK
        if self.config.torque_on_connect and not self.config.leader:
            ok, msg = self.set_torque(True)
            if not ok:
                raise DriverStartupError(msg)

    def _configure(self) -> None:
        errors: list[busmod.BusError] = []
        for name, cal in zip(self.config.joint_names, self.cals):
            i = cal.id
            w = self.bus.write
            registers = [
                ("Torque_Enable", 0),
                ("Lock", 0),
                ("Return_Delay_Time", 0),
                ("Maximum_Acceleration", 254),
                ("Acceleration", 254),
                ("Operating_Mode", 0),
            ]
            if not self.config.leader:  # the follower's position loop and gripper protection
                registers += [("P_Coefficient", 16), ("I_Coefficient", 0), ("D_Coefficient", 32)]
            for reg, value in registers:
                if (e := w(i, reg, value)) is not None:
                    errors.append(e)
            phase, e = self.bus.read(i, "Phase")
            if e is not None or phase & 0x10 and (e := w(i, "Phase", phase & ~0x10)) is not None:
                errors.append(e)
            if name == self.config.gripper_joint and not self.config.leader:
                for reg, value in (
                    ("Max_Torque_Limit", 500),
                    ("Protection_Current", 250),
                    ("Overload_Torque", 25),
                ):
                    if (e := w(i, reg, value)) is not None:
                        errors.append(e)
            if self.config.write_calibration:
                errors += self._sync_calibration(name, cal)
        if errors:
            raise DriverStartupError("configuration failed: " + "; ".join(map(str, errors)))

    def _sync_calibration(self, name: str, cal: MotorCalibration) -> list[busmod.BusError]:
        """Write the file's homing offset and position limits into the servo if they differ (like lerobot)."""
        if cal.wraps:
            self._warn(
                f"servo id {cal.id} ({name}): calibrated range {cal.range_min}..{cal.range_max} crosses the "
                "0/4095 seam; the servo cannot move across it in position mode: run so_arm_calibrate"
            )
        lo, hi = (0, ct.MAX_RAW) if cal.wraps else (cal.range_min, cal.range_max)
        wanted = {"Homing_Offset": cal.homing_offset, "Min_Position_Limit": lo, "Max_Position_Limit": hi}
        errors = []
        for reg, value in wanted.items():
            current, e = self.bus.read(cal.id, reg)
            if e is not None:
                errors.append(e)
                continue
            if current != value:
                self._info(
                    f"servo id {cal.id} ({name}): writing {reg} {current} -> {value} from the calibration"
                )
                if (e := self.bus.write(cal.id, reg, value)) is not None:
                    errors.append(e)
        return errors

    def close(self) -> list[busmod.BusError]:
        """Torque off (if configured) and close the port; safe to call twice. Returns the errors of the
        torque-off writes (empty: torque is off on every servo, or torque off on exit is not configured)."""
        errs: list[busmod.BusError] = []
        with self._lock:
            if self.bus.is_open and self.config.disable_torque_on_exit:
                errs = self._torque_writes(False)
                for _ in range(2):  # a lost status packet must not leave a servo powered: retry those
                    failed = sorted({e.motor_id for e in errs if e.motor_id is not None})
                    if not failed:
                        break
                    errs = self._torque_writes(False, failed)
                if errs:
                    self._warn("torque off on exit failed: " + "; ".join(map(str, errs)))
                else:
                    self.torque_enabled = False
            self.bus.close()
            self.state = DriverState.DISCONNECTED
        return errs

    # -- commands ----------------------------------------------------------------------------------
    @property
    def watchdog_active(self) -> bool:
        """True while holding (no command yet, or none for ``command_timeout``)."""
        return self.follower.holding

    @property
    def rejected_commands(self) -> int:
        return self.follower.stats.rejected

    @property
    def last_command_error(self) -> str:
        return self.follower.stats.last_error

    def reject(self, reason: str) -> str:
        """Count and remember a rejected command (also used by the node for checks it makes itself)."""
        return self.follower.reject(reason)

    def command(self, cmd: Command, now: float | None = None, clock_now: float | None = None) -> str | None:
        """A ``/joint_commands`` message (see :mod:`so_arm_description.command_following`) received at ``now``
        (monotonic); ``clock_now`` = the node's ROS clock (s) then. Returns a rejection reason or None."""
        if self.config.leader:
            return self.follower.reject("a leader arm takes no commands")
        now = time.monotonic() if now is None else now
        return self.follower.command(cmd, now, clock_now)

    def set_target(
        self, names: Sequence[str], positions: Sequence[float], now: float | None = None
    ) -> str | None:
        """A streamed target for some joints (rad). Returns a rejection reason, or None if accepted."""
        if self.config.leader:
            return self.follower.reject("a leader arm takes no commands")
        now = time.monotonic() if now is None else now
        return self.follower.set_target(names, positions, now)

    def set_trajectory(
        self,
        names: Sequence[str],
        points: Sequence[tuple[float, Sequence[float]]],
        start: float | None = None,
        now: float | None = None,
    ) -> str | None:
        """Follow ``points`` = [(time_from_start s, positions rad)], starting at ``start`` (monotonic); one
        point is a streamed target (as on ``/joint_commands``)."""
        if self.config.leader:
            return self.follower.reject("a leader arm takes no commands")
        now = time.monotonic() if now is None else now
        if len(points) == 1:
            return self.follower.command(Command(list(names), [(p[0], list(p[1])) for p in points]), now)
        return self.follower.set_trajectory(names, points, now if start is None else start, now)

    # -- cycle -------------------------------------------------------------------------------------
    def _read_sample(self) -> JointSample | list[busmod.BusError]:
        res = self.bus.sync_read(self._read_names, self.ids)
        self.hardware_errors = res.hardware_errors
        if not res.ok:
            return res.errors
        pos, vel, eff, raw, temp = [], [], [], [], []
        for cal in self.cals:
            v = res.values[cal.id]
            r = v["Present_Position"]
            raw.append(r)
            pos.append(cal.to_radians(r))
            if "Present_Velocity" in v:
                vel.append(cal.velocity_to_radians(v["Present_Velocity"]))
            if "Present_Load" in v:
                eff.append(v["Present_Load"] * self.config.effort_per_load)
            if "Present_Temperature" in v:
                temp.append(v["Present_Temperature"])
        return JointSample(res.capture_time, pos, vel, eff, raw, temp)

    def _reset_goals(self, position: Sequence[float]) -> None:
        self.follower.hold(position)

    def _fail(self, errors: Sequence[busmod.BusError], what: str) -> None:
        self.consecutive_errors += 1
        self.last_error = f"{what}: " + "; ".join(str(e) for e in errors[:3])
        if self.consecutive_errors == self.config.max_consecutive_errors and self.state != DriverState.ERROR:
            self.state = DriverState.ERROR
            self._error(
                f"{self.consecutive_errors} consecutive failed cycles, stopped writing: {self.last_error}"
            )

    def cycle(self, now: float | None = None) -> CycleResult:
        """One read-clamp-write cycle (never raises on bus errors)."""
        t0 = time.monotonic()
        with self._lock:
            self.cycles += 1
            sample = self._read_sample()
            if isinstance(sample, list):
                self.read_errors += 1
                self._fail(sample, "read")
                return CycleResult(None, False, errors=list(sample), duration=time.monotonic() - t0)
            self.last_sample = sample
            if self.state == DriverState.ERROR:
                self.recoveries += 1
                self.state = DriverState.OK
                self._reset_goals(sample.position)
                self._info("bus answers again: recovered, holding the present position")
            self.consecutive_errors = 0
            if not self.torque_enabled:
                self._reset_goals(sample.position)
                return CycleResult(sample, False, duration=time.monotonic() - t0)
            now = time.monotonic() if now is None else now
            self.follower.max_step = self.config.max_step  # tunable at run time through the config
            self.follower.command_timeout = self.config.command_timeout
            step = self.follower.next_goal(now)
            goal, limited, clamped = step.goal, step.limited, step.clamped
            raw = {cal.id: cal.from_radians(q) for cal, q in zip(self.cals, goal)}
            err = self.bus.sync_write("Goal_Position", raw)
            if err is not None:
                self.write_errors += 1
                self._fail([err], "write")
                return CycleResult(sample, False, errors=[err], duration=time.monotonic() - t0)
            self.follower.commit(goal)
            dur = time.monotonic() - t0
            self.cycle_times.append(dur)
            return CycleResult(sample, True, goal=list(goal), limited=limited, clamped=clamped, duration=dur)

    # -- torque ------------------------------------------------------------------------------------
    def _torque_writes(self, enable: bool, ids: Sequence[int] | None = None) -> list[busmod.BusError]:
        errors = []
        for motor_id in self.ids if ids is None else ids:
            seq = (("Torque_Enable", 1), ("Lock", 1)) if enable else (("Torque_Enable", 0), ("Lock", 0))
            for reg, value in seq:
                if (e := self.bus.write(motor_id, reg, value)) is not None:
                    errors.append(e)
        return errors

    def set_torque(self, enable: bool) -> tuple[bool, str]:
        """Torque on (goals first set to the present pose, no jump) or off. Returns (success, message)."""
        with self._lock:
            if enable and self.config.leader:
                return False, "torque on refused: this is a leader arm (moved by hand, torque stays off)"
            if enable:
                sample = self._read_sample()
                if isinstance(sample, list):
                    return False, "torque on refused, cannot read positions: " + "; ".join(map(str, sample))
                self._reset_goals(sample.position)
                raw = {cal.id: cal.from_radians(q) for cal, q in zip(self.cals, self.follower.goal)}
                errors = self.bus.write_all("Goal_Position", raw)
                if not errors:
                    errors = self._torque_writes(True)
            else:
                errors = self._torque_writes(False)
            if errors:
                return False, f"torque {'on' if enable else 'off'} failed: " + "; ".join(map(str, errors))
            self.torque_enabled = enable
            return True, f"torque {'enabled' if enable else 'disabled'}"

    # -- status ------------------------------------------------------------------------------------
    def cycle_time_stats(self) -> dict[str, float]:
        if not self.cycle_times:
            return {}
        xs = sorted(self.cycle_times)
        return {
            "median_ms": 1000.0 * xs[len(xs) // 2],
            "p95_ms": 1000.0 * xs[min(len(xs) - 1, int(0.95 * len(xs)))],
            "max_ms": 1000.0 * xs[-1],
        }

    def status(self) -> tuple[str, str, dict[str, str]]:
        """(level 'OK'|'WARN'|'ERROR', message, key/values) for diagnostics."""
        with self._lock:
            values: dict[str, str] = {
                "state": self.state.value,
                "port": self.bus.port_name,
                "torque_enabled": str(self.torque_enabled),
                "watchdog_holding": str(self.watchdog_active),
                "cycles": str(self.cycles),
                "read_errors": str(self.read_errors),
                "write_errors": str(self.write_errors),
                "consecutive_errors": str(self.consecutive_errors),
                "recoveries": str(self.recoveries),
                "rejected_commands": str(self.rejected_commands),
                "last_error": self.last_error,
                "last_command_error": self.last_command_error,
                "bus_transactions": str(self.bus.transactions),
                "bus_failed_transactions": str(self.bus.failed_transactions),
            }
            for k, v in self.cycle_time_stats().items():
                values[f"cycle_time_{k}"] = f"{v:.3f}"
            for motor_id, bits in self.hardware_errors.items():
                values[f"servo_{motor_id}_alarm"] = busmod.describe_hardware_error(bits)
            if self.last_sample is not None and self.last_sample.temperature:
                for motor_id, t in zip(self.ids, self.last_sample.temperature):
                    values[f"servo_{motor_id}_temperature_c"] = str(t)
            if self.state == DriverState.ERROR:
                return "ERROR", f"bus failing, not writing: {self.last_error}", values
            if self.state == DriverState.DISCONNECTED:
                return "ERROR", "disconnected", values
            if self.consecutive_errors or self.hardware_errors:
                msg = self.last_error or "servo alarm " + str(self.hardware_errors)
                return "WARN", msg, values
            return "OK", "holding position" if self.watchdog_active else "following commands", values


def sample_to_dict(names: Sequence[str], sample: JointSample) -> Mapping[str, float]:
    return dict(zip(names, sample.position))
