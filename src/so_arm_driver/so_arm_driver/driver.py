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

Reliability (issue 19):

- **USB replug.** A serial I/O error (device unplugged) closes the port at once (a held file descriptor
  would make the returning adapter a new device, ttyACM1); it is reopened every ``reconnect_period``
  seconds until the device is back.
- **Brown-out / power cycle.** Every servo's configuration (torque, lock, PID, acceleration, limits, homing
  offset, gripper protection) is read back in one sync read after any failed cycle and every
  ``verify_period`` seconds; a difference is logged and the configuration written again; torque is enabled
  again (goals = the present pose, the command dropped) if it was on, else the failure is reported on
  diagnostics and ``torque_enabled`` says what the servos say.
- **No motion at connect.** Torque on (at connect and through :meth:`ArmDriver.set_torque`) holds the
  present pose. A joint outside its calibrated range by more than ``max_step`` would run to the limit at full
  servo speed (the servo clamps its goal to its own limits): torque is refused and the joints are named
  (within ``max_step``, the clamp is one capped step and allowed). The same holds for the holds after a
  failure (recovery from ERROR, restored configuration): a reading outside the range by more than
  ``max_step`` is not held (a hold writes the clamped pose, the limit, at once): the cycle fails, nothing is
  written, the servos keep their goals (issue 19: the 37.8 s jump of the graph soak held a bad reading).
- **A recovery holds what the servos hold.** After a bus failure whose read-back shows every servo kept its
  configuration and torque, the servos still hold the last goal written to them: the recovery holds that
  goal (no change is written), not the reading. A reading can be one request old and look fresh (a late
  reply of the same length: the bus cannot tell them apart), and holding it while the servos still moved
  towards their goal sent them back at full speed (the intermittent over-cap writes of the short soak).
- **Truthful exit.** :meth:`ArmDriver.close` reports a torque off it could not do, also when the port is
  gone.
"""

from __future__ import annotations

import math
import re
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
    """Connect/configure failed (missing servo, wrong model, port, calibration): the message names the id.
    ``transient``: a communication failure (no reply, a failed write or read) that a bus hiccup explains and
    a new attempt may not meet, unlike a missing port, a wrong model or a missing calibration entry."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


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
    #: s between attempts to reopen a port that failed with an I/O error (USB adapter unplugged)
    reconnect_period: float = 1.0
    #: s between read-backs of every servo's configuration (one sync read; also after every failed cycle);
    #: 0 = only after failed cycles
    verify_period: float = 1.0
    #: s during which :meth:`ArmDriver.connect` tries again after a communication failure (a servo that does
    #: not answer, a failed configuration write or first read: a bus hiccup, a servo supply still coming up)
    #: before it gives up; 0 = one attempt. A missing port or a wrong servo model fails at once.
    connect_retry: float = 5.0


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
        # recovery (issue 19)
        self.torque_wanted = False  # torque on asked for (connect / set_torque): restored after a brown-out
        self.torque_refused = ""  # why torque on was refused (a joint outside its range), "" if it was not
        self.reconnects = 0  # port reopened after an I/O error
        self.restorations = 0  # servo configuration found changed and written again
        self.restore_error = ""  # the last restoration that did not complete
        self.recovery_times: deque[float] = deque(maxlen=1000)  # s from the first failed cycle to OK again
        self._failing_since: float | None = None
        self._last_reopen = -math.inf
        self._last_verify = -math.inf
        self._last_restore_log = ("", -math.inf)
        self.last_reopen_error = ""
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
        """Open the bus, check every servo (id and model), configure like lerobot, hold the present pose.
        Communication failures are tried again for ``connect_retry`` seconds (each one logged)."""
        deadline = time.monotonic() + max(0.0, self.config.connect_retry)
        attempt = 1
        while True:
            try:
                self._connect_once()
                return
            except DriverStartupError as exc:
                left = deadline - time.monotonic()
                if not exc.transient or left <= 0.0:
                    raise
                self._warn(f"connect attempt {attempt} failed: {exc}; trying again ({left:.1f} s left)")
                attempt += 1
                time.sleep(min(0.25, left))

    def _connect_once(self) -> None:
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
            silent = all("does not answer" in p for p in problems)  # no reply at all: maybe a hiccup
            raise DriverStartupError("; ".join(problems), transient=silent)
        if self.config.configure_motors:
            try:
                self._configure()
            except DriverStartupError:
                self.bus.close()
                raise
        sample = self._read_sample()
        if isinstance(sample, list):
            self.bus.close()
            raise DriverStartupError("initial read failed: " + "; ".join(map(str, sample)), transient=True)
        with self._lock:
            self.last_sample = sample
            self._reset_goals(sample.position)
            self.state = DriverState.OK
        if self.config.torque_on_connect and not self.config.leader:
            ok, msg = self.set_torque(True)
            if not ok and self.torque_refused:
                self._warn(msg)  # the node stays up, holding nothing (torque off), and says so
            elif not ok:
                raise DriverStartupError(msg)

    def _configure(self) -> None:
        errors = self._configure_errors()
        if errors:
            raise DriverStartupError("configuration failed: " + "; ".join(map(str, errors)), transient=True)

    def _configured_registers(self, name: str) -> list[tuple[str, int]]:
        """What the configuration writes into servo ``name`` (besides torque, lock, phase, calibration)."""
        registers = [
            ("Return_Delay_Time", 0),
            ("Maximum_Acceleration", 254),
            ("Acceleration", 254),
            ("Operating_Mode", 0),
        ]
        if not self.config.leader:  # the follower's position loop and gripper protection
            registers += [("P_Coefficient", 16), ("I_Coefficient", 0), ("D_Coefficient", 32)]
        if name == self.config.gripper_joint and not self.config.leader:
            registers += [("Max_Torque_Limit", 500), ("Protection_Current", 250), ("Overload_Torque", 25)]
        return registers

    @staticmethod
    def _calibration_registers(cal: MotorCalibration) -> dict[str, int]:
        lo, hi = (0, ct.MAX_RAW) if cal.wraps else (cal.range_min, cal.range_max)
        return {"Homing_Offset": cal.homing_offset, "Min_Position_Limit": lo, "Max_Position_Limit": hi}

    def _configure_errors(self) -> list[busmod.BusError]:
        """Torque off, then the configuration like lerobot's (returns the failed writes)."""
        errors: list[busmod.BusError] = []
        for name, cal in zip(self.config.joint_names, self.cals):
            i = cal.id
            w = self.bus.write
            for reg, value in [("Torque_Enable", 0), ("Lock", 0), *self._configured_registers(name)]:
                if (e := w(i, reg, value)) is not None:
                    errors.append(e)
            phase, e = self.bus.read(i, "Phase")
            if e is not None or phase & 0x10 and (e := w(i, "Phase", phase & ~0x10)) is not None:
                errors.append(e)
            if self.config.write_calibration:
                errors += self._sync_calibration(name, cal)
        return errors

    def _sync_calibration(self, name: str, cal: MotorCalibration) -> list[busmod.BusError]:
        """Write the file's homing offset and position limits into the servo if they differ (like lerobot)."""
        if cal.wraps:
            self._warn(
                f"servo id {cal.id} ({name}): calibrated range {cal.range_min}..{cal.range_max} crosses the "
                "0/4095 seam; the servo cannot move across it in position mode: run so_arm_calibrate"
            )
        wanted = self._calibration_registers(cal)
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
            if not self.bus.is_open and self.state != DriverState.DISCONNECTED:
                try:  # closed after an I/O error: the adapter may be back
                    self.bus.open()
                except busmod.BusOpenError as exc:
                    if self.config.disable_torque_on_exit:
                        errs = [
                            busmod.BusError(
                                None,
                                "Torque_Enable",
                                busmod.ERR_NOT_OPEN,
                                f"port gone, torque not turned off: {exc}",
                            )
                        ]
                        self._warn("torque off on exit failed: " + "; ".join(map(str, errs)))
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
        if self.consecutive_errors == 0:
            self._failing_since = time.monotonic()
        if any(e.code == busmod.ERR_IO for e in errors) and self.bus.is_open:
            # release the device at once: a held descriptor makes the replugged adapter a new device node
            self.bus.close()
            self._last_reopen = -math.inf
            self._warn(
                f"serial I/O error on {self.bus.port_name} ({self.bus.last_io_error}): port closed, reopening"
            )
        self.consecutive_errors += 1
        self.last_error = f"{what}: " + "; ".join(str(e) for e in errors[:3])
        if self.consecutive_errors == self.config.max_consecutive_errors and self.state != DriverState.ERROR:
            self.state = DriverState.ERROR
            self._error(
                f"{self.consecutive_errors} consecutive failed cycles, stopped writing: {self.last_error}"
            )

    def _reopen(self, t: float) -> busmod.BusError | None:
        """Reopen a port closed after an I/O error (at most every ``reconnect_period`` s)."""
        if t - self._last_reopen >= self.config.reconnect_period:
            self._last_reopen = t
            try:
                self.bus.open()
            except busmod.BusOpenError as exc:
                self.last_reopen_error = str(exc)
            else:
                self.reconnects += 1
                self._info(f"port {self.bus.port_name} reopened (reconnect {self.reconnects})")
                return None
        return busmod.BusError(
            None,
            None,
            busmod.ERR_NOT_OPEN,
            f"port {self.bus.port_name} closed after an I/O error (unplugged?); reopening every "
            f"{self.config.reconnect_period:g} s",
        )

    def _check_configuration(self) -> list[str] | list[busmod.BusError]:
        """Read every servo's configuration back (one sync read): the differences from what the driver wrote
        (and from the torque state it believes), or the read errors."""
        names = {"Torque_Enable"}
        if self.config.configure_motors:
            names |= {"Lock", "Phase"}
            for name in self.config.joint_names:
                names |= {reg for reg, _ in self._configured_registers(name)}
            if self.config.write_calibration:
                names |= {"Homing_Offset", "Min_Position_Limit", "Max_Position_Limit"}
        res = self.bus.sync_read(sorted(names, key=lambda n: ct.register(n).address), self.ids)
        if not res.ok:
            return res.errors
        diffs: list[str] = []
        for name, cal in zip(self.config.joint_names, self.cals):
            got = res.values[cal.id]
            want = {"Torque_Enable": int(self.torque_enabled)}
            if self.config.configure_motors:
                want["Lock"] = int(self.torque_enabled)
                want.update(self._configured_registers(name))
                if self.config.write_calibration:
                    want.update(self._calibration_registers(cal))
                if got["Phase"] & 0x10:
                    diffs.append(f"id {cal.id} ({name}) Phase 0x{got['Phase']:02x}")
            diffs += [
                f"id {cal.id} ({name}) {reg} {got[reg]}, expected {value}"
                for reg, value in want.items()
                if got[reg] != value
            ]
        return diffs

    def _restore(self, diffs: Sequence[str]) -> list[busmod.BusError]:
        """The servos lost (part of) their configuration: write it again, torque on again if it was."""
        self.restorations += 1
        text = "; ".join(diffs[:4]) + (f"; ... ({len(diffs)} differences)" if len(diffs) > 4 else "")
        t = time.monotonic()
        if text != self._last_restore_log[0] or t - self._last_restore_log[1] > 5.0:
            self._last_restore_log = (text, t)
            self._warn(f"servo configuration changed (brown-out or power cycle?): {text}; restoring it")
        self.torque_enabled = False
        errors = self._configure_errors() if self.config.configure_motors else self._torque_writes(False)
        if errors:
            self.restore_error = "restoring the configuration failed: " + "; ".join(map(str, errors[:3]))
            return errors
        self.restore_error = ""
        if self.torque_wanted and not self.config.leader:
            ok, msg = self._enable_torque()
            if not ok:
                self.restore_error = "configuration restored, torque left off: " + msg
                self._error(self.restore_error)
                return []
        self._info(
            "servo configuration restored"
            + (": torque on, holding the present position" if self.torque_enabled else " (torque off)")
        )
        return []

    def cycle(self, now: float | None = None) -> CycleResult:
        """One read-clamp-write cycle (never raises on bus errors)."""
        t0 = time.monotonic()
        with self._lock:
            self.cycles += 1
            if not self.bus.is_open and (err := self._reopen(t0)) is not None:
                self.read_errors += 1
                self._fail([err], "read")
                return CycleResult(None, False, errors=[err], duration=time.monotonic() - t0)
            sample = self._read_sample()
            if isinstance(sample, list):
                self.read_errors += 1
                self._fail(sample, "read")
                return CycleResult(None, False, errors=list(sample), duration=time.monotonic() - t0)
            recovering = self.consecutive_errors > 0 or self.state == DriverState.ERROR
            verify = recovering
            if self.config.verify_period > 0 and t0 - self._last_verify >= self.config.verify_period:
                verify = True
            restored = False  # the configuration was written again in this cycle (torque was off meanwhile)
            if verify:
                diffs = self._check_configuration()
                if diffs and isinstance(diffs[0], busmod.BusError):
                    if recovering:  # no writes before the configuration is confirmed after a failure
                        self.read_errors += 1
                        self._fail(diffs, "configuration read-back")  # type: ignore[arg-type]
                        return CycleResult(None, False, errors=list(diffs), duration=time.monotonic() - t0)
                    diffs = []  # a periodic check that did not get through: control goes on, retried
                else:
                    self._last_verify = t0
                if diffs:
                    errors = self._restore(diffs)  # type: ignore[arg-type]
                    sample = errors if errors else self._read_sample()  # the homing offset may be new
                    if isinstance(sample, list):
                        self.write_errors += 1
                        self._fail(sample, "restore")
                        return CycleResult(None, False, errors=list(sample), duration=time.monotonic() - t0)
                    if (bad := self._hold_refused(sample)) is not None:
                        self.read_errors += 1
                        self._fail([bad], "hold after restore")
                        return CycleResult(sample, False, errors=[bad], duration=time.monotonic() - t0)
                    self._reset_goals(sample.position)
                    restored = True
            self.last_sample = sample
            if self.state == DriverState.ERROR and (bad := self._hold_refused(sample)) is not None:
                self.read_errors += 1
                self._fail([bad], "recovery")
                return CycleResult(sample, False, errors=[bad], duration=time.monotonic() - t0)
            if self.state == DriverState.ERROR:
                self.recoveries += 1
                self.state = DriverState.OK
                if restored or not self.torque_enabled:
                    self._reset_goals(sample.position)  # torque was off: the servos are where they read
                    held = "the present position"
                else:  # torque kept (read back): the servos hold their last goal; hold it, write no change
                    self._reset_goals(self.follower.goal)
                    held = "the last goal (the servos kept their torque)"
                if self._failing_since is not None:
                    self.recovery_times.append(time.monotonic() - self._failing_since)
                self._info(f"bus answers again: recovered, holding {held}")
            self.consecutive_errors = 0
            self._failing_since = None
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

    def out_of_range(self, position: Sequence[float]) -> str:
        """The joints farther than ``max_step`` outside their calibrated range ("" if none): torque on would
        run them to the limit at full servo speed (the servo clamps its goal to its position limits)."""
        far = []
        for name, q, (lo, hi) in zip(self.config.joint_names, position, self.limits):
            excess = max(lo - q, q - hi)
            if excess > self.config.max_step + 1e-9:
                far.append(
                    f"{name} at {q:.3f} rad is {excess:.3f} rad outside its range [{lo:.3f}, {hi:.3f}]"
                )
        return "; ".join(far)

    def _hold_refused(self, sample: JointSample) -> busmod.BusError | None:
        """With torque on, a hold at ``sample`` writes its pose clamped to the limits at once: a joint outside
        its range by more than ``max_step`` would run to the limit at full speed. Such a reading (a bad read,
        or the arm forced) is not held: the error to fail the cycle with, or None."""
        if not self.torque_enabled:
            return None
        far = self.out_of_range(sample.position)
        if not far:
            return None
        return busmod.BusError(
            None,
            "Present_Position",
            busmod.ERR_OUT_OF_RANGE,
            f"not holding a reading outside the range: {far}",
        )

    def _enable_torque(self) -> tuple[bool, str]:
        sample = self._read_sample()
        if isinstance(sample, list):
            return False, "torque on refused, cannot read positions: " + "; ".join(map(str, sample))
        far = self.out_of_range(sample.position)
        if far:
            self.torque_refused = (
                f"torque on refused: {far}; the servo would run to its limit at full speed (more than "
                f"max_step {self.config.max_step:g} rad): move the joint into its range by hand, then call "
                "~/set_torque"
            )
            return False, self.torque_refused
        self._reset_goals(sample.position)
        raw = {cal.id: cal.from_radians(q) for cal, q in zip(self.cals, self.follower.goal)}
        errors = self.bus.write_all("Goal_Position", raw)
        if not errors:
            errors = self._torque_writes(True)
        if errors:
            return False, "torque on failed: " + "; ".join(map(str, errors))
        self.torque_enabled = True
        self.torque_refused = ""
        return True, "torque enabled"

    def set_torque(self, enable: bool) -> tuple[bool, str]:
        """Torque on (goals first set to the present pose, no jump; refused when a joint is outside its range
        by more than ``max_step``) or off. Returns (success, message)."""
        with self._lock:
            if enable and self.config.leader:
                return False, "torque on refused: this is a leader arm (moved by hand, torque stays off)"
            if not self.bus.is_open:
                return False, f"torque {'on' if enable else 'off'} failed: port closed (reconnecting)"
            if enable:
                ok, msg = self._enable_torque()
                if ok:
                    self.torque_wanted = True
                return ok, msg
            errors = self._torque_writes(False)
            self.torque_wanted = False
            if errors:
                return False, "torque off failed: " + "; ".join(map(str, errors))
            self.torque_enabled = False
            self.torque_refused = ""
            return True, "torque disabled"

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
                "reconnects": str(self.reconnects),
                "restorations": str(self.restorations),
                "torque_wanted": str(self.torque_wanted),
                "rejected_commands": str(self.rejected_commands),
                "last_error": self.last_error,
                "last_command_error": self.last_command_error,
                "bus_transactions": str(self.bus.transactions),
                "bus_failed_transactions": str(self.bus.failed_transactions),
                "bus_stale_packets": str(getattr(self.bus, "stale_packets", 0)),
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
            if self.restore_error:
                return "ERROR", self.restore_error, values
            if self.torque_refused and not self.torque_enabled:
                return "WARN", self.torque_refused, values
            if self.consecutive_errors or self.hardware_errors:
                msg = self.last_error or "servo alarm " + str(self.hardware_errors)
                return "WARN", msg, values
            return "OK", "holding position" if self.watchdog_active else "following commands", values


def rejection_key(reason: str) -> str:
    """The kind of a command rejection: its text without the values (numbers, lists, names in brackets,
    exception arguments), so "point 3: non-finite value" and "point 7: non-finite value" are one kind."""
    return re.sub(r"\s+", " ", re.sub(r"[\[(].*|\d+(\.\d*)?(e-?\d+)?", "", reason)).strip()[:80]


class ThrottledLog:
    """Log a message at most once per ``period`` seconds *per kind* (issue 19: a NaN command right after a
    wrong-name one was never logged when one throttle covered every reason); suppressed ones are counted
    and the count is added to the next message of that kind. At most ``max_kinds`` kinds are remembered."""

    def __init__(self, log, period: float = 1.0, max_kinds: int = 64) -> None:  # type: ignore[no-untyped-def]
        self.log = log  # callable(str)
        self.period = period
        self.max_kinds = max_kinds
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (time logged, suppressed since)
        self._lock = threading.Lock()

    def __call__(self, message: str, kind: str | None = None, now: float | None = None) -> bool:
        """Log ``message`` unless one of its kind was logged less than ``period`` ago; True if logged."""
        kind = rejection_key(message) if kind is None else kind
        now = time.monotonic() if now is None else now
        with self._lock:
            last, suppressed = self._last.get(kind, (-math.inf, 0))
            if now - last < self.period:
                self._last[kind] = (last, suppressed + 1)
                return False
            if kind not in self._last and len(self._last) >= self.max_kinds:
                self._last.pop(min(self._last, key=lambda k: self._last[k][0]))
            self._last[kind] = (now, 0)
        self.log(message + (f" (and {suppressed} more like it)" if suppressed else ""))
        return True


def sample_to_dict(names: Sequence[str], sample: JointSample) -> Mapping[str, float]:
    return dict(zip(names, sample.position))
