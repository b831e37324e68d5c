"""lerobot-compatible calibration files and unit conversions (plain Python, no rclpy).

File format (lerobot's, used as is): a JSON object keyed by motor name, ``{"shoulder_pan": {"id": 1,
"drive_mode": 0, "homing_offset": -1012, "range_min": 758, "range_max": 3322}, ...}``, at
``$HF_LEROBOT_CALIBRATION/robots/so_follower/<robot_id>.json`` by default.

Conventions (same meaning as lerobot's degrees mode, so one joint angle means the same in both projects):

- ``mid = (range_min + range_max) / 2``; ``degrees = (raw - mid) * 360 / 4095``; ``radians = (raw - mid) *
  2*pi / 4095`` (zero at the middle of the recorded range, not clamped, drive_mode ignored, as in lerobot);
- gripper (lerobot RANGE_0_100): ``(clamp(raw) - min) / (max - min) * 100``, ``100 - x`` if drive_mode;
- a range that crosses the 0/4095 seam (``range_min > range_max``, e.g. written by hand or by a tool that
  did not move the seam away with the homing offset) is handled: its middle is taken across the seam and raw
  values are unwrapped around it. Our own calibration (``so_arm_calibrate``) picks a homing offset so that
  recorded ranges never cross the seam, which keeps the files valid for lerobot too.

Conversions back to raw round to the nearest tick (lerobot truncates), so raw -> radians -> raw is exact.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from so_arm_driver import control_table as ct

TICKS_PER_TURN = ct.MAX_RAW  # lerobot scales by 4095 (not 4096) in degrees mode; we keep its convention
RAD_PER_TICK = 2.0 * math.pi / TICKS_PER_TURN
DEG_PER_TICK = 360.0 / TICKS_PER_TURN
ROBOT_DIR = "so_follower"
LEADER_DIR = "so_leader"  # lerobot 0.6: teleoperators/so_leader/<id>.json
#: Largest homing offset magnitude (11 bits + sign bit 11).
MAX_HOMING_OFFSET = 2047


@dataclass
class MotorCalibration:
    id: int
    drive_mode: int = 0
    homing_offset: int = 0
    range_min: int = 0
    range_max: int = ct.MAX_RAW

    @property
    def wraps(self) -> bool:
        """True if the recorded range crosses the 0/4095 seam."""
        return self.range_min > self.range_max

    @property
    def width(self) -> int:
        return (
            (self.range_max - self.range_min) % ct.RESOLUTION
            if self.wraps
            else self.range_max - self.range_min
        )

    @property
    def mid(self) -> float:
        if self.wraps:
            return ((self.range_min + self.range_max + ct.RESOLUTION) / 2.0) % ct.RESOLUTION
        return (self.range_min + self.range_max) / 2.0

    # -- raw <-> offset from the middle (ticks) ----------------------------------------------------
    def offset_ticks(self, raw: float) -> float:
        if self.wraps:
            return (raw - self.mid + ct.RESOLUTION / 2.0) % ct.RESOLUTION - ct.RESOLUTION / 2.0
        return raw - self.mid

    def raw_from_offset(self, ticks: float) -> int:
        raw = int(round(self.mid + ticks))
        return raw % ct.RESOLUTION if self.wraps else raw

    # -- radians -----------------------------------------------------------------------------------
    def to_radians(self, raw: float) -> float:
        return self.offset_ticks(raw) * RAD_PER_TICK

    def from_radians(self, rad: float) -> int:
        return self.raw_from_offset(rad / RAD_PER_TICK)

    def limits_radians(self) -> tuple[float, float]:
        """(lower, upper) joint limits in radians from the recorded range."""
        half = self.width / 2.0
        return -half * RAD_PER_TICK, half * RAD_PER_TICK

    # -- lerobot degrees ---------------------------------------------------------------------------
    def to_degrees(self, raw: float) -> float:
        return self.offset_ticks(raw) * DEG_PER_TICK

    def from_degrees(self, deg: float) -> int:
        return self.raw_from_offset(deg / DEG_PER_TICK)

    # -- lerobot RANGE_0_100 (gripper) -------------------------------------------------------------
    def to_range_0_100(self, raw: float) -> float:
        if self.width == 0:
            raise ValueError(f"motor id {self.id}: zero-width range, cannot normalize")
        half = self.width / 2.0
        x = (min(max(self.offset_ticks(raw), -half), half) + half) / self.width * 100.0
        return 100.0 - x if self.drive_mode else x

    def from_range_0_100(self, value: float) -> int:
        value = min(max(float(value), 0.0), 100.0)
        if self.drive_mode:
            value = 100.0 - value
        return self.raw_from_offset(value / 100.0 * self.width - self.width / 2.0)

    # -- ticks per second <-> rad/s ----------------------------------------------------------------
    @staticmethod
    def velocity_to_radians(ticks_per_s: float) -> float:
        return ticks_per_s * RAD_PER_TICK


Calibration = dict[str, MotorCalibration]


def default_calibration_dir() -> Path:
    """lerobot's calibration root: $HF_LEROBOT_CALIBRATION, else $HF_LEROBOT_HOME/calibration, else
    $HF_HOME/lerobot/calibration, else ~/.cache/huggingface/lerobot/calibration."""
    if os.environ.get("HF_LEROBOT_CALIBRATION"):
        return Path(os.environ["HF_LEROBOT_CALIBRATION"]).expanduser()
    if os.environ.get("HF_LEROBOT_HOME"):
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser() / "calibration"
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()
    return hf_home / "lerobot" / "calibration"


def default_calibration_path(robot_id: str, robot_dir: str = ROBOT_DIR) -> Path:
    return default_calibration_dir() / "robots" / robot_dir / f"{robot_id}.json"


def default_leader_calibration_path(leader_id: str, leader_dir: str = LEADER_DIR) -> Path:
    """Where lerobot keeps a leader arm's calibration: ``<root>/teleoperators/so_leader/<leader_id>.json``
    (same file format as the follower's)."""
    return default_calibration_dir() / "teleoperators" / leader_dir / f"{leader_id}.json"


class CalibrationError(ValueError):
    pass


def from_dict(data: Mapping[str, Mapping[str, int]]) -> Calibration:
    cal: Calibration = {}
    for name, entry in data.items():
        try:
            cal[name] = MotorCalibration(
                id=int(entry["id"]),
                drive_mode=int(entry.get("drive_mode", 0)),
                homing_offset=int(entry["homing_offset"]),
                range_min=int(entry["range_min"]),
                range_max=int(entry["range_max"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration entry '{name}' is invalid: {exc!r}") from exc
    return cal


def load(path: str | os.PathLike) -> Calibration:
    """Read a lerobot calibration file (CalibrationError with the path on any problem)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"calibration file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"cannot read calibration file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CalibrationError(f"calibration file {path}: expected a JSON object keyed by motor name")
    return from_dict(data)


def to_dict(cal: Calibration) -> dict[str, dict[str, int]]:
    return {name: asdict(m) for name, m in cal.items()}


def save(cal: Calibration, path: str | os.PathLike) -> Path:
    """Write in lerobot's layout (indent 4, key order id, drive_mode, homing_offset, range_min, range_max)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_dict(cal), indent=4) + "\n")
    return path


def validate(
    cal: Calibration, joint_names: Sequence[str], motor_ids: Mapping[str, int] | None = None
) -> list[str]:
    """Problems that make a calibration unusable for these joints (empty list = fine)."""
    problems = []
    for name in joint_names:
        m = cal.get(name)
        if m is None:
            problems.append(f"no calibration for joint '{name}'")
            continue
        if motor_ids is not None and name in motor_ids and m.id != motor_ids[name]:
            problems.append(f"joint '{name}': calibration id {m.id} != expected id {motor_ids[name]}")
        for key in ("range_min", "range_max"):
            if not 0 <= getattr(m, key) <= ct.MAX_RAW:
                problems.append(f"joint '{name}': {key} {getattr(m, key)} outside 0..4095")
        if abs(m.homing_offset) > MAX_HOMING_OFFSET:
            problems.append(f"joint '{name}': homing_offset {m.homing_offset} outside +-2047")
        if m.width == 0:
            problems.append(f"joint '{name}': zero-width range")
    return problems


def default_calibration(
    joint_limits: Mapping[str, tuple[float, float]], motor_ids: Mapping[str, int]
) -> Calibration:
    """A calibration centred on 2047, ranges wide enough for ``joint_limits`` (rad); for the emulator."""
    cal: Calibration = {}
    for name, (lo, hi) in joint_limits.items():
        half = int(math.ceil(max(abs(lo), abs(hi)) / RAD_PER_TICK))
        half = min(half, 2047)
        cal[name] = MotorCalibration(id=motor_ids[name], range_min=2047 - half, range_max=2047 + half)
    return cal


# -- range recording (used by so_arm_calibrate) ----------------------------------------------------
def unwrap(samples: Iterable[int], resolution: int = ct.RESOLUTION) -> list[float]:
    """Continuous positions from raw samples that may jump across the 0/4095 seam (< half a turn apart)."""
    out: list[float] = []
    for raw in samples:
        if not out:
            out.append(float(raw))
            continue
        prev = out[-1]
        delta = (raw - prev + resolution / 2.0) % resolution - resolution / 2.0
        out.append(prev + delta)
    return out


def fit_range(
    unwrapped_min: float,
    unwrapped_max: float,
    motor_id: int,
    full_turn: bool = False,
    middle: float | None = None,
) -> MotorCalibration:
    """Homing offset and range for a joint whose encoder (offset 0) swept ``[unwrapped_min, unwrapped_max]``.

    The offset puts the middle of the swept range at raw 2047 (Present = Actual - Homing_Offset, modulo 4096),
    so a range that crossed the 0/4095 seam in encoder ticks does not wrap in the recorded range.
    ``full_turn`` (wrist_roll): range 0..4095 with the offset taken from ``middle`` (the pose at "middle").
    """
    if full_turn:
        centre = middle if middle is not None else (unwrapped_min + unwrapped_max) / 2.0
        offset = _wrap_offset(round(centre) - 2047)
        return MotorCalibration(id=motor_id, homing_offset=offset, range_min=0, range_max=ct.MAX_RAW)
    width = unwrapped_max - unwrapped_min
    if width >= ct.MAX_RAW:
        raise CalibrationError(f"motor id {motor_id}: swept range is a full turn; is it wrist_roll?")
    centre = (unwrapped_min + unwrapped_max) / 2.0
    offset = _wrap_offset(round(centre) - 2047)
    lo = (round(unwrapped_min) - offset) % ct.RESOLUTION
    hi = lo + round(unwrapped_max) - round(unwrapped_min)
    if hi > ct.MAX_RAW:  # cannot happen for width < 4095 unless rounding; shift by one tick
        lo, hi = lo - (hi - ct.MAX_RAW), ct.MAX_RAW
    return MotorCalibration(id=motor_id, homing_offset=offset, range_min=int(lo), range_max=int(hi))


def _wrap_offset(offset: int) -> int:
    """Equivalent homing offset (mod 4096) that fits the register's +-2047."""
    offset = (offset + ct.RESOLUTION // 2) % ct.RESOLUTION - ct.RESOLUTION // 2
    return max(-MAX_HOMING_OFFSET, offset)
