"""Per-joint unit mapping between ROS radians and lerobot units, compared with lerobot 0.6.1's own arithmetic.

The reference below is written from lerobot's ``MotorsBus._normalize``/``_unnormalize`` (lerobot 0.6.1,
``lerobot/motors/motors_bus.py``) on raw ticks: DEGREES ``(raw - mid) * 360 / (4096 - 1)``; RANGE_0_100
``(clamp(raw, min, max) - min) / (max - min) * 100`` and back ``int(clamp(x, 0, 100) / 100 * (max - min) +
min)``. Our side goes raw -> radians (``(raw - mid) * 2 pi / 4095``, so_arm_driver's convention) -> units.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from so_arm_description.joints import JOINT_NAMES
from so_arm_description.robot_model import limits_from_calibration
from so_arm_description.units import RANGE_0_100, JointUnit, JointUnits

# A calibrated SO-101 (gripper range 2030..3470: the example).
CALIBRATION = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": 10, "range_min": 758, "range_max": 3322},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": -5, "range_min": 812, "range_max": 3211},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": 7, "range_min": 900, "range_max": 3100},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 0, "range_min": 850, "range_max": 3255},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": 3, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1, "range_min": 2030, "range_max": 3470},
}


def lerobot_normalize(name: str, raw: float) -> float:
    c = CALIBRATION[name]
    lo, hi = c["range_min"], c["range_max"]
    if name == "gripper":
        return (min(hi, max(lo, raw)) - lo) / (hi - lo) * 100
    return (raw - (lo + hi) / 2) * 360 / (4096 - 1)


def lerobot_unnormalize(name: str, value: float) -> int:
    c = CALIBRATION[name]
    lo, hi = c["range_min"], c["range_max"]
    if name == "gripper":
        return int(min(100.0, max(0.0, value)) / 100 * (hi - lo) + lo)
    return int(value * (4096 - 1) / 360 + (lo + hi) / 2)


def raw_to_rad(name: str, raw: float) -> float:
    c = CALIBRATION[name]
    return (raw - (c["range_min"] + c["range_max"]) / 2) * 2 * math.pi / 4095


def rad_to_raw(name: str, rad: float) -> int:
    c = CALIBRATION[name]
    return int(round(rad * 4095 / (2 * math.pi) + (c["range_min"] + c["range_max"]) / 2))


def test_gripper_units_follow_calibration() -> None:
    """Defect 1: lerobot 0/50/100 % of the gripper are the calibrated range_min/middle/range_max (2030/2750/
    3470 here), not a fixed -0.17..1.75 rad span (which gave about -48/9/67 %)."""
    units = JointUnits.lerobot(limits_from_calibration(CALIBRATION))
    g = JOINT_NAMES.index("gripper")
    for percent, raw in ((0.0, 2030), (50.0, 2750), (100.0, 3470)):
        model = np.zeros(6)
        model[g] = percent
        rad = units.to_ros(model)[g]
        assert rad_to_raw("gripper", rad) == raw == lerobot_unnormalize("gripper", percent)
        q = np.zeros(6)
        q[g] = raw_to_rad("gripper", raw)
        assert units.to_model(q)[g] == pytest.approx(lerobot_normalize("gripper", raw), abs=1e-9)
        assert units.to_model(q)[g] == pytest.approx(percent, abs=1e-9)


def test_every_raw_tick_maps_like_lerobot() -> None:
    units = JointUnits.lerobot(limits_from_calibration(CALIBRATION))
    raws = np.arange(0, 4096, 7)
    for j, name in enumerate(JOINT_NAMES):
        q = np.zeros((raws.size, 6))
        q[:, j] = [raw_to_rad(name, r) for r in raws]
        ours = units.to_model(q)[:, j]
        ref = np.array([lerobot_normalize(name, r) for r in raws])
        np.testing.assert_allclose(ours, ref, atol=1e-9, err_msg=name)
        # back to ticks: ours rounds, lerobot truncates -> never more than one tick apart
        values = ref
        back = np.array([rad_to_raw(name, r) for r in units.to_ros(np.tile(values[:, None], (1, 6)))[:, j]])
        expected = np.array([lerobot_unnormalize(name, v) for v in values])
        assert np.all(np.abs(back - expected) <= 1), name


def test_lerobot_reference_formula_is_lerobots_own() -> None:
    """When the lerobot 0.6.1 reference venv's source is around, check the formulas above against it."""
    import pathlib

    src = next(pathlib.Path("/tmp/lerobot_ref_venv/lib").glob("python*/site-packages/lerobot/motors"), None)
    if src is None:
        pytest.skip("lerobot reference venv not present (tools/lerobot_reference/setup_venv.sh)")
    text = (src / "motors_bus.py").read_text()
    assert "bounded_val = min(max_, max(min_, val))" in text
    assert "norm = ((bounded_val - min_) / (max_ - min_)) * 100" in text
    assert "max_res = self.model_resolution_table[self._id_to_model(id_)] - 1" in text
    assert "(val - mid) * 360 / max_res" in text
    assert "int((bounded_val / 100) * (max_ - min_) + min_)" in text


def test_description_default_convention() -> None:
    units = JointUnits.lerobot({"gripper": (-0.17453, 1.74533)})
    rad = np.array([math.pi / 2, -math.pi / 4, 0.0, 0.1, -1.0, -0.17453])
    model = units.to_model(rad)
    np.testing.assert_allclose(model[:5], np.degrees(rad[:5]))
    assert model[5] == pytest.approx(0.0, abs=1e-9)
    assert units.to_model(np.array([0, 0, 0, 0, 0, 1.74533]))[5] == pytest.approx(100.0)


def test_gripper_is_clamped_like_lerobot() -> None:
    units = JointUnits.lerobot({"gripper": (-1.0, 1.0)})
    assert units.to_model(np.array([0, 0, 0, 0, 0, 1.3]))[5] == pytest.approx(100.0)
    assert units.to_model(np.array([0, 0, 0, 0, 0, -1.3]))[5] == pytest.approx(0.0)
    assert units.to_ros(np.array([0, 0, 0, 0, 0, 120.0]))[5] == pytest.approx(1.0)
    assert units.to_ros(np.array([0, 0, 0, 0, 0, -5.0]))[5] == pytest.approx(-1.0)
    # arm joints are not clamped (lerobot's degrees are not either)
    assert units.to_model(np.array([4.0, 0, 0, 0, 0, 0]))[0] == pytest.approx(math.degrees(4.0))


def test_round_trip_all_kinds() -> None:
    units = JointUnits.from_spec(
        ["degrees", "radians", "range_0_100"], names=["a", "b", "g"], limits={"g": (-0.5, 1.5)}
    )
    rad = np.random.default_rng(0).uniform(-0.5, 1.5, (50, 3))
    np.testing.assert_allclose(units.to_ros(units.to_model(rad)), rad, atol=1e-12)
    assert units.to_model(np.array([0.0, 0.3, 0.5]))[2] == pytest.approx(50.0)
    assert units.to_model(np.array([0.0, 0.3, 0.5]))[1] == pytest.approx(0.3)


def test_overrides_and_names() -> None:
    units = JointUnits.lerobot({"gripper": (-1.0, 1.0)}, overrides={"wrist_roll": "radians"})
    assert [u.kind for u in units.units] == ["degrees"] * 4 + ["radians", RANGE_0_100]
    assert "gripper 0..100 = -1.00000..1.00000 rad" in units.describe()
    with pytest.raises(ValueError, match="elbow"):
        JointUnits.lerobot({"gripper": (-1.0, 1.0)}, overrides={"elbow": "radians"})


def test_validation() -> None:
    with pytest.raises(ValueError):
        JointUnit("furlongs")
    with pytest.raises(ValueError):
        JointUnit(RANGE_0_100, 1.0, 0.0)
    with pytest.raises(ValueError, match="needs its joint limits"):
        JointUnits.lerobot({})
    with pytest.raises(ValueError, match="expected 6 joints"):
        JointUnits.lerobot({"gripper": (-1.0, 1.0)}).to_model(np.zeros(5))
