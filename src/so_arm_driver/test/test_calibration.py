"""Calibration files and conversions: raw <-> radians <-> lerobot degrees / 0..100, incl. the 0/4095 seam."""

from __future__ import annotations

import json
import math

import pytest

from so_arm_description.robot_spec import JOINT_NAMES, MOTOR_IDS, SO101_LIMITS
from so_arm_driver import calibration as calib
from so_arm_driver.calibration import MotorCalibration

# A calibration as lerobot writes it (values of a real SO-101 follower, plus one joint whose recorded range
# crosses the 0/4095 seam, as a hand-edited or foreign file could have it).
LEROBOT_FILE = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1012, "range_min": 758, "range_max": 3322},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 1300, "range_min": 812, "range_max": 3199},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": -1400, "range_min": 3700, "range_max": 1900},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 900, "range_min": 1002, "range_max": 3220},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -260, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1400, "range_min": 2030, "range_max": 3470},
}


def lerobot_degrees(raw: float, m: dict) -> float:
    """lerobot's DEGREES normalization, written from its documented formula."""
    mid = (m["range_min"] + m["range_max"]) / 2
    return (raw - mid) * 360 / 4095


def lerobot_range_0_100(raw: float, m: dict) -> float:
    lo, hi = m["range_min"], m["range_max"]
    x = (min(max(raw, lo), hi) - lo) / (hi - lo) * 100
    return 100 - x if m["drive_mode"] else x


@pytest.fixture
def cal(tmp_path):
    path = tmp_path / "follower.json"
    path.write_text(json.dumps(LEROBOT_FILE, indent=4))
    return calib.load(path)


def _in_range(m: MotorCalibration):
    """Raw values inside the recorded range (stepping across the seam where the range wraps)."""
    return [(m.range_min + k) % 4096 for k in range(0, m.width + 1, 7)] + [m.range_max]


@pytest.mark.parametrize("joint", JOINT_NAMES)
def test_raw_radians_degrees_round_trip_every_joint(cal, joint):
    m = cal[joint]
    for raw in _in_range(m):
        rad = m.to_radians(raw)
        assert m.from_radians(rad) == raw
        deg = m.to_degrees(raw)
        assert deg == pytest.approx(math.degrees(rad), abs=1e-9)
        assert m.from_degrees(deg) == raw
        assert m.from_radians(math.radians(m.to_degrees(raw))) == raw
        if not m.wraps:
            assert deg == pytest.approx(lerobot_degrees(raw, LEROBOT_FILE[joint]), abs=1e-9)


def test_seam_crossing_range(cal):
    m = cal["elbow_flex"]  # 3700 .. 4095, 0 .. 1900
    assert m.wraps and m.width == 2296
    assert m.mid == pytest.approx(752.0)
    assert m.to_radians(752) == 0.0
    assert m.to_radians(4095) < m.to_radians(0) < 0 < m.to_radians(1000)
    assert m.to_radians(0) - m.to_radians(4095) == pytest.approx(calib.RAD_PER_TICK)  # continuous at the seam
    lo, hi = m.limits_radians()
    assert m.to_radians(3700) == pytest.approx(lo) and m.to_radians(1900) == pytest.approx(hi)
    assert m.from_radians(lo) == 3700 and m.from_radians(hi) == 1900


def test_zero_is_middle_of_range_like_lerobot(cal):
    m = cal["shoulder_pan"]
    assert m.to_degrees(2040) == pytest.approx(0.0)
    assert m.from_degrees(90.0) == 3064  # lerobot's int() would truncate to 3063; we round
    assert m.to_radians(758) == pytest.approx(-(3322 - 758) / 2 * 2 * math.pi / 4095)


def test_gripper_range_0_100(cal):
    m = cal["gripper"]
    for raw in (2030, 2100, 2750, 3470, 1000, 4000):
        assert m.to_range_0_100(raw) == pytest.approx(lerobot_range_0_100(raw, LEROBOT_FILE["gripper"]))
    for value in (0.0, 12.5, 50.0, 100.0):
        assert m.to_range_0_100(m.from_range_0_100(value)) == pytest.approx(value, abs=100 / 1440)
    inverted = MotorCalibration(6, drive_mode=1, range_min=2030, range_max=3470)
    assert inverted.to_range_0_100(2030) == pytest.approx(100.0)
    assert inverted.from_range_0_100(100.0) == 2030


def test_file_round_trip_keeps_lerobot_layout(cal, tmp_path):
    out = calib.save(cal, tmp_path / "robots" / "so_follower" / "x.json")
    data = json.loads(out.read_text())
    assert data == LEROBOT_FILE
    assert list(data["gripper"]) == ["id", "drive_mode", "homing_offset", "range_min", "range_max"]


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(tmp_path / "cal"))
    assert calib.default_calibration_path("arm1") == tmp_path / "cal" / "robots" / "so_follower" / "arm1.json"
    monkeypatch.delenv("HF_LEROBOT_CALIBRATION")
    monkeypatch.delenv("HF_LEROBOT_HOME", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert (
        calib.default_calibration_path("a")
        == tmp_path / "hf" / "lerobot" / "calibration" / "robots" / "so_follower" / "a.json"
    )


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(calib.CalibrationError, match="not found"):
        calib.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"gripper": {"id": 6}}')
    with pytest.raises(calib.CalibrationError, match="gripper"):
        calib.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(calib.CalibrationError, match="JSON object"):
        calib.load(bad)
    problems = calib.validate(
        {"gripper": MotorCalibration(7, range_min=5, range_max=5)}, ["gripper", "elbow_flex"], MOTOR_IDS
    )
    assert any("elbow_flex" in p for p in problems) and any("id 7" in p for p in problems)
    assert any("zero-width" in p for p in problems)


def test_unwrap_and_fit_range_across_the_seam():
    samples = [4000, 4090, 10, 600, 100, 4080, 3300, 3900]
    unwrapped = calib.unwrap(samples)
    assert unwrapped == [4000, 4090, 4106, 4696, 4196, 4080, 3300, 3900]
    m = calib.fit_range(min(unwrapped), max(unwrapped), motor_id=3)
    # middle of the swept range (3998) sits at raw 2047: the recorded range does not wrap
    assert m.homing_offset == 3998 - 2047
    assert (m.range_min, m.range_max) == (3300 - 1951, 4696 - 1951)
    assert not m.wraps
    for encoder in (3300, 3998, 4095, 0, 600):
        present = (encoder - m.homing_offset) % 4096
        assert m.range_min <= present <= m.range_max
    assert m.to_radians((3998 - m.homing_offset) % 4096) == pytest.approx(0.0, abs=calib.RAD_PER_TICK)


def test_fit_range_offset_fits_the_register():
    m = calib.fit_range(
        4000.0, 4190.0, motor_id=1
    )  # centre 4095 -> offset 2048 is not encodable -> -2048 -> -2047
    assert abs(m.homing_offset) <= 2047
    assert 0 <= m.range_min <= m.range_max <= 4095
    full = calib.fit_range(0, 100, motor_id=5, full_turn=True, middle=100)
    assert (full.range_min, full.range_max, full.homing_offset) == (0, 4095, 100 - 2047)


def test_default_calibration_covers_limits():
    cal = calib.default_calibration(SO101_LIMITS, MOTOR_IDS)
    assert not calib.validate(cal, JOINT_NAMES, MOTOR_IDS)
    for name, (lo, hi) in SO101_LIMITS.items():
        clo, chi = cal[name].limits_radians()
        assert clo <= lo and chi >= hi


def test_driver_limits_are_the_published_description_limits():
    """The limits the driver clamps to (MotorCalibration.limits_radians) are the ones it publishes on
    /robot_description (so_arm_description.robot_model.limits_from_calibration), seam-crossing ranges too."""
    import random

    from so_arm_description.robot_model import limits_from_calibration

    rng = random.Random(3)
    for _ in range(200):
        lo, hi = rng.randrange(4096), rng.randrange(4096)
        if lo == hi:
            continue
        m = MotorCalibration(id=1, range_min=lo, range_max=hi)  # lo > hi: the range crosses the seam
        ref = limits_from_calibration({"j": calib.to_dict({"j": m})["j"]})["j"]
        assert m.limits_radians() == pytest.approx(ref, abs=1e-12)
        assert ref[1] - ref[0] == pytest.approx(m.width * 2 * math.pi / 4095)
