"""``so_arm_calibrate``: record a lerobot-compatible calibration for an SO-100/SO-101 follower (or, with
``--leader``, leader) arm.

Steps (as lerobot, plus a fix for the 0/4095 seam):

1. torque off, unlock, reset Homing_Offset = 0 and the position limits to 0..4095;
2. the user moves the arm to the middle of its range (ENTER);
3. the user sweeps every joint through its whole range (ENTER, or ``--sweep-seconds``); samples are unwrapped
   across the encoder seam, so a joint whose range crosses 0/4095 is recorded correctly (lerobot would record
   0..4095 for it);
4. per joint, the homing offset puts the middle of the swept range at raw 2047, so the recorded range never
   crosses the seam (``Present = Actual - Homing_Offset``); wrist_roll is full-turn: range 0..4095, offset
   from the middle pose;
5. Homing_Offset and Min/Max_Position_Limit are written to the servos' EEPROM and the file is saved at
   lerobot's location (or ``--output``).

Non-interactive use (tests, scripts): ``--yes`` skips the prompts and the sweep lasts ``--sweep-seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from so_arm_description.robot_spec import MOTOR_IDS
from so_arm_driver import calibration as calib
from so_arm_driver import control_table as ct
from so_arm_driver.bus import BusError, BusOpenError, FeetechBus

FULL_TURN_JOINTS = ("wrist_roll",)


class CalibrationFailed(RuntimeError):
    pass


def _check(errors: Sequence[BusError | None], what: str) -> None:
    errs = [e for e in errors if e is not None]
    if errs:
        raise CalibrationFailed(f"{what} failed: " + "; ".join(map(str, errs)))


def reset_servos(bus: FeetechBus, ids: Sequence[int]) -> None:
    """Torque off, unlock EEPROM, Homing_Offset 0, limits 0..4095."""
    for motor_id in ids:
        _check(
            [
                bus.write(motor_id, "Torque_Enable", 0),
                bus.write(motor_id, "Lock", 0),
                bus.write(motor_id, "Homing_Offset", 0),
                bus.write(motor_id, "Min_Position_Limit", 0),
                bus.write(motor_id, "Max_Position_Limit", ct.MAX_RAW),
            ],
            f"resetting servo id {motor_id}",
        )


def read_positions(bus: FeetechBus, ids: Sequence[int]) -> dict[int, int]:
    res = bus.sync_read(["Present_Position"], ids)
    _check(res.errors, "reading positions")
    return {i: v["Present_Position"] for i, v in res.values.items()}


def record_ranges(
    bus: FeetechBus,
    ids: Sequence[int],
    middle: Mapping[int, int],
    should_stop: Callable[[], bool],
    on_sample: Callable[[int], None] | None = None,
    period: float = 0.01,
    display: Callable[[dict[int, tuple[float, float]]], None] | None = None,
) -> dict[int, tuple[float, float]]:
    """Sample positions until ``should_stop()``; returns {id: (min, max)} of the unwrapped encoder positions.

    Positions are unwrapped sample to sample starting from ``middle`` (a joint never moves half a turn within
    one sample period), so a sweep across the 0/4095 seam gives e.g. (3300, 4696) instead of (0, 4095).
    """
    last = {i: float(middle[i]) for i in ids}
    lo = dict(last)
    hi = dict(last)
    n = 0
    while not should_stop():
        res = bus.sync_read(["Present_Position"], ids)
        for motor_id, values in res.values.items():  # only fresh values; failed ones are skipped
            unwrapped = calib.unwrap([last[motor_id], values["Present_Position"]])[-1]
            last[motor_id] = unwrapped
            lo[motor_id] = min(lo[motor_id], unwrapped)
            hi[motor_id] = max(hi[motor_id], unwrapped)
        n += 1
        if on_sample is not None:
            on_sample(n)
        if display is not None:
            display({i: (lo[i], hi[i]) for i in ids})
        if period > 0:
            time.sleep(period)
    return {i: (lo[i], hi[i]) for i in ids}


def compute_calibration(
    motors: Mapping[str, int],
    middle: Mapping[int, int],
    ranges: Mapping[int, tuple[float, float]],
    full_turn: Sequence[str] = FULL_TURN_JOINTS,
    min_width: int = 20,
) -> calib.Calibration:
    """lerobot calibration entries from the middle pose and the swept (unwrapped) ranges."""
    cal: calib.Calibration = {}
    still = []
    for name, motor_id in motors.items():
        lo, hi = ranges[motor_id]
        if name in full_turn:
            cal[name] = calib.fit_range(lo, hi, motor_id, full_turn=True, middle=middle[motor_id])
            continue
        if hi - lo < min_width:
            still.append(f"{name} (id {motor_id})")
            continue
        cal[name] = calib.fit_range(lo, hi, motor_id)
    if still:
        raise CalibrationFailed("these joints did not move during the sweep: " + ", ".join(still))
    return cal


def write_to_servos(bus: FeetechBus, cal: calib.Calibration) -> None:
    """Write Homing_Offset and Min/Max_Position_Limit (EEPROM: unlocked first)."""
    for name, m in cal.items():
        _check(
            [
                bus.write(m.id, "Lock", 0),
                bus.write(m.id, "Homing_Offset", m.homing_offset),
                bus.write(m.id, "Min_Position_Limit", m.range_min),
                bus.write(m.id, "Max_Position_Limit", m.range_max),
            ],
            f"writing the calibration of {name} (id {m.id})",
        )


def run_calibration(
    bus: FeetechBus,
    motors: Mapping[str, int],
    ask: Callable[[str], None],
    should_stop_sweep: Callable[[], bool],
    on_sample: Callable[[int], None] | None = None,
    say: Callable[[str], None] = print,
    period: float = 0.01,
    display: Callable[[dict[int, tuple[float, float]]], None] | None = None,
) -> calib.Calibration:
    """The whole procedure against an open bus; ``ask`` blocks until the user confirms a step."""
    ids = list(motors.values())
    found = bus.scan(ids)
    missing = [f"{n} (id {i})" for n, i in motors.items() if i not in found]
    if missing:
        raise CalibrationFailed(f"no answer from servo(s) {', '.join(missing)} on {bus.port_name}")
    wrong = [f"id {i} model {m}" for i, m in found.items() if m != ct.STS3215_MODEL_NUMBER]
    if wrong:
        raise CalibrationFailed(f"not STS3215 servos: {', '.join(wrong)}")
    reset_servos(bus, ids)
    say("Torque is off. ")
    ask("Move the arm to the MIDDLE of its range of motion (all joints), then press ENTER...")
    middle = read_positions(bus, ids)
    say("Middle pose: " + ", ".join(f"{n}={middle[i]}" for n, i in motors.items()))
    ask(
        "Move every joint except wrist_roll through its ENTIRE range of motion, one after the other; "
        "press ENTER to start recording and ENTER again to stop..."
    )
    ranges = record_ranges(
        bus, ids, middle, should_stop_sweep, on_sample=on_sample, period=period, display=display
    )
    if display is not None:
        say("")  # end the live line
    cal = compute_calibration(motors, middle, ranges)
    for name, m in cal.items():
        lo, hi = ranges[m.id]
        seam = " (crossed the 0/4095 seam)" if lo < 0 or hi > ct.MAX_RAW else ""
        say(f"{name:>14}: homing_offset {m.homing_offset:5d}, range {m.range_min:4d}..{m.range_max:4d}{seam}")
    write_to_servos(bus, cal)
    return cal


class _LiveRanges:
    """Shows the swept width per joint on one terminal line while recording (at most 5 times a second)."""

    def __init__(self, motors: Mapping[str, int]) -> None:
        self.motors = motors
        self.last = 0.0

    def __call__(self, ranges: dict[int, tuple[float, float]]) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        text = "  ".join(f"{n}:{round(ranges[i][1] - ranges[i][0]):4d}" for n, i in self.motors.items())
        print("\r  swept ticks  " + text, end="", flush=True)


class _SweepStop:
    """Ends the sweep after ``seconds`` (if > 0) or when the user presses ENTER (interactive)."""

    def __init__(self, seconds: float, wait_for_enter: bool) -> None:
        self.seconds, self.wait_for_enter = seconds, wait_for_enter
        self.deadline: float | None = None
        self.entered = threading.Event()

    def __call__(self) -> bool:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds if self.seconds > 0 else float("inf")
            if self.wait_for_enter:
                threading.Thread(target=self._wait_enter, daemon=True).start()
        return time.monotonic() > self.deadline or self.entered.is_set()

    def _wait_enter(self) -> None:
        with contextlib.suppress(EOFError):
            input()
        self.entered.set()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="so_arm_calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", required=True, help="serial device of the Feetech bus")
    p.add_argument("--robot", choices=("so100", "so101"), default="so101")
    p.add_argument(
        "--robot-id",
        default=None,
        help="lerobot robot (or teleoperator) id naming the calibration file (default: follower, or leader)",
    )
    p.add_argument(
        "--leader",
        action="store_true",
        help="calibrate a leader arm: the file goes to lerobot's teleoperators/so_leader/<id>.json "
        "(same procedure and format; the torque stays off)",
    )
    p.add_argument("--output", help="calibration file (default: lerobot's location for --robot-id)")
    p.add_argument("--baudrate", type=int, default=1_000_000)
    p.add_argument("--yes", action="store_true", help="no prompts: the sweep lasts --sweep-seconds")
    p.add_argument(
        "--sweep-seconds", type=float, default=0.0, help="stop the sweep after this long (0 = ENTER)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.yes and args.sweep_seconds <= 0:
        print("--yes needs --sweep-seconds", file=sys.stderr)
        return 2
    robot_id = args.robot_id or ("leader" if args.leader else "follower")
    default_path = (
        calib.default_leader_calibration_path(robot_id)
        if args.leader
        else calib.default_calibration_path(robot_id)
    )
    output = Path(args.output) if args.output else default_path
    motors = dict(MOTOR_IDS)
    if args.yes:

        def ask(prompt: str) -> None:
            print(prompt + " (--yes)")

    else:

        def ask(prompt: str) -> None:
            input(prompt)

    should_stop = _SweepStop(args.sweep_seconds, wait_for_enter=not args.yes)
    bus = FeetechBus(args.port, baudrate=args.baudrate)
    try:
        bus.open()
        cal = run_calibration(
            bus, motors, ask, should_stop, display=None if args.yes else _LiveRanges(motors)
        )
    except (BusOpenError, CalibrationFailed, calib.CalibrationError) as exc:
        print(f"so_arm_calibrate: {exc}", file=sys.stderr)
        return 1
    finally:
        bus.close()
    calib.save(cal, output)
    print(f"Calibration saved to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
