"""STS3215 servo-bus emulator on a pseudo-terminal (``so_arm_emulator``); plain Python, no rclpy.

Six (or any number of) emulated Feetech STS3215 servos answer the real ``scservo_sdk`` through the slave end
of a pty (both ends raw). One thread ``select()``s on the master end, parses instruction packets (resync on
``FF FF``, bad checksums dropped without reply), and answers with status packets:

- PING, READ, WRITE, REG_WRITE/ACTION, SYNC_READ (answered in the id-list order), SYNC_WRITE, broadcast;
- a 128-byte memory map per servo with the STS3215 addresses, read-only areas, and the EEPROM lock: writes
  below address 40 are ignored while Lock = 1 (stricter than the hardware, which applies them without
  saving);
- sign-magnitude encodings (Homing_Offset bit 11, positions/velocities bit 15, load bit 10);
- Present_Position = (actual - Homing_Offset) mod 4096; goals clamped to Min/Max_Position_Limit;
- goal-seeking motion at a finite speed (Goal_Velocity, or ``speed`` steps/s when it is 0) and acceleration
  (Acceleration x 100 steps/s^2, 0 = unlimited); no motion with torque off;
- fault injection: reply latency (USB adapter latency plus a wire-time model at ``baudrate``), dropped
  replies (probability, or a burst on request), garbled replies (a corrupted byte: the SDK sees a bad
  checksum), missing ids, model number per id, USB unplug/replug (:meth:`Emulator.unplug` closes the pty,
  the device and the ``link`` vanish; :meth:`Emulator.replug` opens a new pty behind the same ``link``, the
  servos kept their state: only USB was lost) and brown-out (:meth:`Emulator.brownout`: every servo silent
  for a while, then back as after power-up: torque off, RAM registers at their defaults, goal = present
  position; with ``lose_eeprom`` also the EEPROM configuration back to factory values), and late replies
  (:meth:`Emulator.hold_replies`: a reply held back and sent just before the answer to the next request, as
  when it comes later than the host's timeout and after its next request went out).

Use it in-process (``Emulator(...).start()`` returns the port path; call ``sys.setswitchinterval(0.0005)``
in tests, see ENVIRONMENT.md §9 quirk 3) or as a process: ``so_arm_emulator --port-file /tmp/port``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import select
import signal
import sys
import threading
import time
import tty
from collections.abc import Iterable, Mapping
from pathlib import Path

from smolvla_common.node_main import StopSignals
from so_arm_driver import control_table as ct

INST_PING, INST_READ, INST_WRITE, INST_REG_WRITE, INST_ACTION = 1, 2, 3, 4, 5
INST_SYNC_READ, INST_SYNC_WRITE = 0x82, 0x83
DEFAULT_SPEED = 3400.0  # steps/s when Goal_Velocity is 0
#: FeetechBus timing for talking to an emulator (``FeetechBus(port, **EMULATED_BUS_TIMING)``). A real servo
#: answers within microseconds and its reply waits in the kernel's tty buffer however late the host reads it;
#: the emulator is a thread or process that competes for the CPU with everything else, so on a loaded
#: machine its replies come late and the SDK's 34 ms timeout (latency timer 16 ms) fails transactions that a
#: real bus would not. Tests whose subject is not a timeout use this timing.
EMULATED_BUS_TIMING: dict[str, float] = {"retries": 5, "retry_budget_s": 5.0, "latency_timer_ms": 50.0}
_PRESENT_AREA = range(56, 72)
_READ_ONLY = set(range(0, 5)) | set(_PRESENT_AREA)


class EmulatedServo:
    """One STS3215: memory map plus a motion model (thread-safety is the emulator's lock)."""

    def __init__(
        self,
        motor_id: int,
        position: float = 2048.0,
        model_number: int = ct.STS3215_MODEL_NUMBER,
        speed: float = DEFAULT_SPEED,
    ) -> None:
        self.mem = bytearray(ct.MEMORY_SIZE)
        self.speed = speed
        self.actual = float(position) % ct.RESOLUTION  # encoder position (before the homing offset)
        self.velocity = 0.0  # steps/s in the present frame
        self.reg_write: tuple[int, bytes] | None = None
        self._last = time.monotonic()
        defaults = {
            "Firmware_Major_Version": 3,
            "Firmware_Minor_Version": 10,
            "Model_Number": model_number,
            "ID": motor_id,
            "Baud_Rate": 0,
            "Return_Delay_Time": 250,
            "Response_Status_Level": 1,
            "Min_Position_Limit": 0,
            "Max_Position_Limit": ct.MAX_RAW,
            "Max_Temperature_Limit": 70,
            "Max_Voltage_Limit": 140,
            "Min_Voltage_Limit": 40,
            "Max_Torque_Limit": 1000,
            "Phase": 0x1C,
            "P_Coefficient": 32,
            "D_Coefficient": 32,
            "I_Coefficient": 0,
            "Protection_Current": 500,
            "Homing_Offset": 0,
            "Operating_Mode": 0,
            "Overload_Torque": 80,
            "Torque_Enable": 0,
            "Acceleration": 0,
            "Goal_Velocity": 0,
            "Torque_Limit": 1000,
            "Lock": 1,
            "Present_Voltage": 120,
            "Present_Temperature": 30,
            "Maximum_Acceleration": 0,
        }
        for name, value in defaults.items():
            self.set(name, value)
        self.set("Goal_Position", self.present_position)
        self.refresh(self._last)

    # memory access by register name (no lock check: the emulator's own view)
    def get(self, name: str) -> int:
        reg = ct.register(name)
        return reg.from_bytes(self.mem[reg.address : reg.address + reg.size])

    def set(self, name: str, value: int) -> None:
        reg = ct.register(name)
        self.mem[reg.address : reg.address + reg.size] = bytes(reg.to_bytes(value))

    @property
    def motor_id(self) -> int:
        return self.mem[5]

    @property
    def torque_enabled(self) -> bool:
        return bool(self.mem[40])

    @property
    def present_float(self) -> float:
        return (self.actual - self.get("Homing_Offset")) % ct.RESOLUTION

    @property
    def present_position(self) -> int:
        return int(round(self.present_float)) % ct.RESOLUTION

    @property
    def goal_position(self) -> int:
        return self.get("Goal_Position")

    def set_actual(self, raw: float) -> None:
        """Move the horn by hand (encoder ticks before the homing offset)."""
        self.actual = float(raw) % ct.RESOLUTION
        self.velocity = 0.0

    def set_present(self, raw: float) -> None:
        """Move the horn by hand so that Present_Position reads ``raw``."""
        self.set_actual(raw + self.get("Homing_Offset"))

    def _limits(self) -> tuple[int, int]:
        lo, hi = self.get("Min_Position_Limit"), self.get("Max_Position_Limit")
        return (lo, hi) if hi > lo else (0, ct.MAX_RAW)

    def target(self) -> float:
        lo, hi = self._limits()
        return float(min(max(self.goal_position, lo), hi))

    def advance(self, now: float) -> None:
        dt = max(0.0, now - self._last)
        self._last = now
        if not self.torque_enabled or dt == 0.0:
            if not self.torque_enabled:
                self.velocity = 0.0
            return
        pos = self.present_float
        err = self.target() - pos
        vmax = float(self.get("Goal_Velocity")) or self.speed
        vmax = abs(vmax)
        accel = self.mem[41] * 100.0
        if accel <= 0.0:
            step = math.copysign(min(abs(err), vmax * dt), err)
            self.velocity = step / dt
        else:
            v_des = math.copysign(min(vmax, math.sqrt(2.0 * accel * abs(err))), err)
            dv = max(-accel * dt, min(accel * dt, v_des - self.velocity))
            self.velocity += dv
            step = self.velocity * dt
            if abs(step) >= abs(err):
                step, self.velocity = err, 0.0
        pos += step
        self.actual = (pos + self.get("Homing_Offset")) % ct.RESOLUTION

    def refresh(self, now: float) -> None:
        """Advance the motion model and update the Present_* registers."""
        self.advance(now)
        self.set("Present_Position", self.present_position)
        self.set("Present_Velocity", int(round(max(-32767, min(32767, self.velocity)))))
        err = self.target() - self.present_float if self.torque_enabled else 0.0
        self.set("Present_Load", int(max(-1000, min(1000, round(err * 2.0)))))
        self.mem[66] = 1 if self.torque_enabled and abs(err) > 1.0 else 0
        self.set("Present_Current", int(min(500, abs(err) * 0.5)))

    def write(self, address: int, data: bytes) -> None:
        """A WRITE as the servo applies it: EEPROM lock, read-only bytes skipped, side effects."""
        locked = self.mem[55] != 0
        for i, byte in enumerate(data):
            addr = address + i
            if addr >= ct.MEMORY_SIZE or addr in _READ_ONLY:
                continue
            if addr < ct.EEPROM_END and locked:
                continue
            self.mem[addr] = byte
        if self.mem[40] == 0:
            self.velocity = 0.0


class Emulator:
    """Emulated STS3215 servos behind a pseudo-terminal."""

    def __init__(
        self,
        ids: Iterable[int] = range(1, 7),
        positions: Mapping[int, float] | None = None,
        models: Mapping[int, int] | None = None,
        missing_ids: Iterable[int] = (),
        latency_s: float = 0.0,
        baudrate: int | None = None,
        drop_probability: float = 0.0,
        speed: float = DEFAULT_SPEED,
        seed: int = 0,
        link: str | os.PathLike | None = None,
    ) -> None:
        positions = dict(positions or {})
        models = dict(models or {})
        self.servos: dict[int, EmulatedServo] = {
            i: EmulatedServo(i, positions.get(i, 2048.0), models.get(i, ct.STS3215_MODEL_NUMBER), speed)
            for i in ids
        }
        self.missing: set[int] = set(missing_ids)
        self.latency_s = latency_s
        self.baudrate = baudrate
        self.drop_probability = drop_probability
        self.link = Path(link) if link else None
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._drop_count = 0
        self._drop_until = 0.0
        self.garble_probability = 0.0
        self._garble_count = 0
        self._silent_until = 0.0  # brown-out: no servo answers before this time.monotonic()
        self._hold_count = 0  # late replies: replies of this many answered requests are held back ...
        self._hold_after = 0  # ... after this many more answered ones
        self._held = b""  # held-back replies, sent before the next answer
        self._master: int | None = None
        self._slave: int | None = None
        self._port: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._buf = bytearray()
        #: set to a list to record (time, id, goal) of every synced Goal_Position write (tests, benchmarks)
        self.goal_log: list[tuple[float, int, int]] | None = None
        #: set to a list to record (time, id, goal, present position before the write) of every synced
        #: Goal_Position write (the soak tells a jump from a hold where the arm stopped)
        self.goal_present_log: list[tuple[float, int, int, int]] | None = None
        self.stats = {
            "packets": 0,
            "replies": 0,
            "dropped": 0,
            "garbled": 0,
            "bad_checksum": 0,
            "sync_writes": 0,
            "unplugs": 0,
            "brownouts": 0,
            "held": 0,
        }

    # -- life cycle --------------------------------------------------------------------------------
    @property
    def port(self) -> str:
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def plugged(self) -> bool:
        return self._thread is not None

    def start(self) -> str:
        """Open the pty, start the serving thread; returns the slave path (the port to give the SDK)."""
        if self._thread is not None:
            return self.port
        self._buf.clear()
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        self._port = os.ttyname(self._slave)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            self.link.symlink_to(self._port)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="so-arm-emulator", daemon=True)
        self._thread.start()
        return self._port

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self.link is not None and self.link.is_symlink():
            with contextlib.suppress(OSError):
                self.link.unlink()

    def unplug(self) -> None:
        """USB cable pulled: the pty (and ``link``) vanish, the driver's open port gets I/O errors; the
        servos keep their state (torque, goals): they are powered by their own supply."""
        with self._lock:
            self.stats["unplugs"] += 1
        self.stop()

    def replug(self) -> str:
        """USB cable back: a new pty behind the same ``link`` (use ``link`` as the driver's port, like
        /dev/serial/by-id/...); returns the new slave path."""
        return self.start()

    def brownout(self, duration_s: float = 1.0, lose_eeprom: bool = False) -> None:
        """Servo supply drops: every servo is silent for ``duration_s`` and comes back as after power-up
        (torque off, Lock 1, acceleration/speed/torque limit at their defaults, goal = present position).
        EEPROM values written unlocked survive, unless ``lose_eeprom`` (factory configuration: PID, limits,
        homing offset, gripper protection lost). The horns stay where they are (no gravity model)."""
        with self._lock:
            now = time.monotonic()
            self.stats["brownouts"] += 1
            self._silent_until = max(self._silent_until, now + duration_s)
            for motor_id, servo in self.servos.items():
                servo.refresh(now)
                fresh = EmulatedServo(motor_id, servo.actual, servo.get("Model_Number"), servo.speed)
                if not lose_eeprom:
                    fresh.mem[: ct.EEPROM_END] = servo.mem[: ct.EEPROM_END]
                fresh.set("Goal_Position", fresh.present_position)
                fresh.refresh(now)
                servo.mem[:] = fresh.mem
                servo.velocity = 0.0
                servo.reg_write = None

    def hold_replies(self, count: int = 1, after: int = 0) -> None:
        """Late replies: the replies to ``count`` requests (after the next ``after`` answered ones) are held
        back and sent just before the replies to the next answered request, as when a reply comes later than
        the host's timeout and after its next request went out (a loaded host, a slow USB adapter): the
        host's input flush before that request cannot catch them."""
        with self._lock:
            self._hold_count, self._hold_after = int(count), int(after)

    def garble_replies(self, count: int = 0, probability: float | None = None) -> None:
        """Corrupt one byte of the next ``count`` status packets (and/or each with ``probability``)."""
        with self._lock:
            self._garble_count = max(self._garble_count, int(count))
            if probability is not None:
                self.garble_probability = float(probability)

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control for tests and users ---------------------------------------------------------------
    def servo(self, motor_id: int) -> EmulatedServo:
        return self.servos[motor_id]

    @contextlib.contextmanager
    def locked(self):  # type: ignore[no-untyped-def]
        """Hold the emulator lock (consistent multi-servo reads/changes while it serves)."""
        with self._lock:
            now = time.monotonic()
            for servo in self.servos.values():
                servo.refresh(now)
            yield self

    def present_positions(self) -> dict[int, int]:
        with self.locked():
            return {i: s.present_position for i, s in self.servos.items()}

    def goal_positions(self) -> dict[int, int]:
        with self._lock:
            return {i: s.goal_position for i, s in self.servos.items()}

    def set_present(self, motor_id: int, raw: float) -> None:
        with self.locked():
            self.servos[motor_id].set_present(raw)

    def set_actual(self, motor_id: int, raw: float) -> None:
        with self.locked():
            self.servos[motor_id].set_actual(raw)

    def drop_replies(self, count: int = 0, duration_s: float = 0.0) -> None:
        """Drop the next ``count`` status packets and/or every status packet for ``duration_s`` seconds."""
        with self._lock:
            self._drop_count = max(self._drop_count, int(count))
            if duration_s > 0:
                self._drop_until = max(self._drop_until, time.monotonic() + duration_s)

    def set_missing(self, motor_id: int, missing: bool = True) -> None:
        with self._lock:
            (self.missing.add if missing else self.missing.discard)(motor_id)

    # -- protocol ----------------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._master is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 4096)
            except OSError:
                time.sleep(0.01)  # EIO while no slave is open; keep serving
                continue
            self._buf.extend(chunk)
            self._parse()

    def _parse(self) -> None:
        buf = self._buf
        while True:
            start = buf.find(b"\xff\xff")
            if start < 0:
                del buf[: max(0, len(buf) - 1)]
                return
            if start:
                del buf[:start]
            if len(buf) >= 3 and buf[2] == 0xFF:  # FF FF FF ...: resync one byte later
                del buf[0]
                continue
            if len(buf) < 4:
                return
            length = buf[3]
            total = length + 4
            if length < 2:
                del buf[:2]
                continue
            if len(buf) < total:
                return
            packet = bytes(buf[:total])
            del buf[:total]
            if ct.checksum(packet[2:-1]) != packet[-1]:
                self.stats["bad_checksum"] += 1
                continue  # a servo does not answer a corrupt packet
            self.stats["packets"] += 1
            self._handle(packet[2], packet[4], packet[5:-1], len(packet))

    def _dropping(self, now: float) -> bool:
        if self._drop_count > 0:
            self._drop_count -= 1
            return True
        if now < self._drop_until:
            return True
        return self.drop_probability > 0.0 and self._rng.random() < self.drop_probability

    def _status(self, motor_id: int, params: bytes = b"", error: int = 0) -> bytes:
        body = bytes([motor_id, len(params) + 2, error]) + params
        return b"\xff\xff" + body + bytes([ct.checksum(body)])

    def _alive(self, motor_id: int) -> EmulatedServo | None:
        servo = self.servos.get(motor_id)
        if time.monotonic() < self._silent_until:
            return None  # brown-out: unpowered servos neither answer nor apply writes
        return None if servo is None or motor_id in self.missing else servo

    def _garbling(self) -> bool:
        if self._garble_count > 0:
            self._garble_count -= 1
            return True
        return self.garble_probability > 0.0 and self._rng.random() < self.garble_probability

    def _maybe_garble(self, reply: bytes) -> bytes:
        if not self._garbling():
            return reply
        self.stats["garbled"] += 1
        data = bytearray(reply)
        k = self._rng.randrange(2, len(data))  # after the FF FF header: id, length, error, params, checksum
        data[k] ^= 1 << self._rng.randrange(8)
        return bytes(data)

    def _handle(self, motor_id: int, inst: int, params: bytes, request_len: int) -> None:
        replies: list[bytes] = []
        with self._lock:
            now = time.monotonic()
            if inst == INST_SYNC_WRITE and len(params) >= 2:
                self.stats["sync_writes"] += 1
                addr, n = params[0], params[1]
                for k in range(2, len(params) - n + 1, n + 1):
                    servo = self._alive(params[k])
                    if servo is not None:
                        servo.refresh(now)
                        present = servo.present_position
                        servo.write(addr, params[k + 1 : k + 1 + n])
                        if self.goal_present_log is not None and addr == 42:
                            self.goal_present_log.append((now, servo.motor_id, servo.goal_position, present))
                        if self.goal_log is not None and addr == 42:
                            self.goal_log.append((now, servo.motor_id, servo.goal_position))
                return
            if inst == INST_SYNC_READ and len(params) >= 2:
                addr, n = params[0], params[1]
                for target in params[2:]:
                    servo = self._alive(target)
                    if servo is None:
                        continue
                    servo.refresh(now)
                    if self._dropping(now):
                        self.stats["dropped"] += 1
                        continue
                    replies.append(
                        self._maybe_garble(self._status(target, bytes(servo.mem[addr : addr + n])))
                    )
            else:
                targets = list(self.servos) if motor_id == ct.BROADCAST_ID else [motor_id]
                for target in targets:
                    servo = self._alive(target)
                    if servo is None:
                        continue
                    servo.refresh(now)
                    reply = self._apply(servo, inst, params)
                    if reply is None or motor_id == ct.BROADCAST_ID:
                        continue
                    if servo.mem[8] == 0 and inst not in (INST_PING, INST_READ):
                        continue  # Response_Status_Level 0: only PING and READ are answered
                    if self._dropping(now):
                        self.stats["dropped"] += 1
                        continue
                    replies.append(self._maybe_garble(reply))
            late = b""
            if replies:
                late, self._held = self._held, b""  # late replies of earlier requests arrive first
                if self._hold_count > 0 and self._hold_after > 0:
                    self._hold_after -= 1
                elif self._hold_count > 0:
                    self._hold_count -= 1
                    self._held = b"".join(replies)
                    self.stats["held"] += len(replies)
                    replies = []
        if not replies and not late:
            return
        delay = self.latency_s
        if self.baudrate:
            delay += (request_len + sum(len(r) for r in replies)) * 10.0 / self.baudrate
        if delay > 0:
            time.sleep(delay)
        data = late + b"".join(replies)
        try:
            os.write(self._master, data)  # type: ignore[arg-type]
            self.stats["replies"] += len(replies)
        except OSError:
            pass

    def _apply(self, servo: EmulatedServo, inst: int, params: bytes) -> bytes | None:
        mid = servo.motor_id
        if inst == INST_PING:
            return self._status(mid)
        if inst == INST_READ and len(params) >= 2:
            addr, n = params[0], params[1]
            return self._status(mid, bytes(servo.mem[addr : addr + n]))
        if inst == INST_WRITE and params:
            old_id = mid
            servo.write(params[0], params[1:])
            if servo.motor_id != old_id:  # ID changed (EEPROM, unlocked)
                self.servos[servo.motor_id] = self.servos.pop(old_id)
            return self._status(servo.motor_id)
        if inst == INST_REG_WRITE and params:
            servo.reg_write = (params[0], bytes(params[1:]))
            return self._status(mid)
        if inst == INST_ACTION:
            if servo.reg_write is not None:
                servo.write(*servo.reg_write)
                servo.reg_write = None
            return self._status(mid)
        return None


# -- command line ----------------------------------------------------------------------------------
def _parse_map(items: Iterable[str], what: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[int(key)] = float(value)
        except ValueError:
            raise SystemExit(f"bad {what} '{item}': expected ID=VALUE") from None
    return out


def positions_from_calibration(path: str | os.PathLike) -> dict[int, float]:
    """Initial positions at the middle of each motor's calibrated range (encoder ticks, homing included)."""
    data = json.loads(Path(path).read_text())
    out = {}
    for entry in data.values():
        lo, hi = int(entry["range_min"]), int(entry["range_max"])
        mid = (lo + hi) / 2.0 if hi >= lo else ((lo + hi + ct.RESOLUTION) / 2.0) % ct.RESOLUTION
        out[int(entry["id"])] = (mid + int(entry.get("homing_offset", 0))) % ct.RESOLUTION
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="so_arm_emulator", description="Emulated STS3215 servos on a pseudo-terminal."
    )
    p.add_argument("--ids", default="1,2,3,4,5,6", help="comma-separated servo ids (default 1..6)")
    p.add_argument(
        "--position",
        action="append",
        default=[],
        metavar="ID=RAW",
        help="initial encoder position of a servo (repeatable; default 2048)",
    )
    p.add_argument(
        "--calibration", help="lerobot calibration file: start each servo at the middle of its range"
    )
    p.add_argument(
        "--model", action="append", default=[], metavar="ID=NUMBER", help="model number of a servo"
    )
    p.add_argument("--missing-id", action="append", type=int, default=[], help="a servo that never answers")
    p.add_argument("--latency-ms", type=float, default=0.0, help="reply latency (USB adapter), ms")
    p.add_argument("--baud", type=int, default=0, help="model the wire time at this baud rate (0 = off)")
    p.add_argument("--drop-probability", type=float, default=0.0, help="probability to drop a status packet")
    p.add_argument(
        "--speed", type=float, default=DEFAULT_SPEED, help="speed when Goal_Velocity is 0 (steps/s)"
    )
    p.add_argument(
        "--burst-on-sigusr1",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="on SIGUSR1, drop every reply for this long (default 1 s)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port-file", help="write the port path to this file")
    p.add_argument("--link", help="create this symlink to the port")
    p.add_argument(
        "--parent-pid",
        type=int,
        default=0,
        help="exit when this process (the driver that started the emulator) is gone",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ids = [int(x) for x in args.ids.split(",") if x.strip()]
    positions = positions_from_calibration(args.calibration) if args.calibration else {}
    positions.update(_parse_map(args.position, "position"))
    emu = Emulator(
        ids=ids,
        positions=positions,
        models={k: int(v) for k, v in _parse_map(args.model, "model").items()},
        missing_ids=args.missing_id,
        latency_s=args.latency_ms / 1000.0,
        baudrate=args.baud or None,
        drop_probability=args.drop_probability,
        speed=args.speed,
        seed=args.seed,
        link=args.link,
    )
    # the handlers only record the signal: Event.set() there can deadlock the main thread inside Event.wait()
    signals = StopSignals().install()
    signals.phase = "running"
    signal.signal(signal.SIGUSR1, lambda *_: emu.drop_replies(duration_s=args.burst_on_sigusr1))
    port = emu.start()
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(port + "\n")
        tmp.replace(args.port_file)
    print(port, flush=True)
    try:
        # the driver starts it in a session of its own (a terminal's Ctrl-C must not stop it before the torque
        # is off), but it must not outlive the driver, even one killed with SIGKILL: os.getppid() then changes
        while not signals.requested:
            if args.parent_pid and os.getppid() != args.parent_pid:
                break
            time.sleep(0.2)
    finally:
        emu.stop()
        if args.port_file:
            with contextlib.suppress(OSError):
                Path(args.port_file).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
