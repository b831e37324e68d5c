"""Per-joint unit mapping between ROS radians and checkpoint units."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smolvla_policy.model.units import RANGE_0_100, JointUnit, JointUnits


def test_so101_default_convention() -> None:
    units = JointUnits.so101()
    rad = np.array([math.pi / 2, -math.pi / 4, 0.0, 0.1, -1.0, -0.17453])
    model = units.to_model(rad)
    np.testing.assert_allclose(model[:5], np.degrees(rad[:5]))
    assert model[5] == pytest.approx(0.0, abs=1e-9)
    assert units.to_model(np.array([0, 0, 0, 0, 0, 1.74533]))[5] == pytest.approx(100.0)


def test_round_trip_all_kinds() -> None:
    units = JointUnits.from_spec(
        ["degrees", "radians", "range_0_100"], names=["a", "b", "g"], limits={"g": (-0.5, 1.5)}
    )
    rad = np.random.default_rng(0).uniform(-1, 1, (50, 3))
    np.testing.assert_allclose(units.to_ros(units.to_model(rad)), rad, atol=1e-12)
    assert units.to_model(np.array([0.0, 0.3, 0.5]))[2] == pytest.approx(50.0)
    assert units.to_model(np.array([0.0, 0.3, 0.5]))[1] == pytest.approx(0.3)


def test_validation() -> None:
    with pytest.raises(ValueError):
        JointUnit("furlongs")
    with pytest.raises(ValueError):
        JointUnit(RANGE_0_100, 1.0, 0.0)
    with pytest.raises(ValueError, match="expected 6 joints"):
        JointUnits.so101().to_model(np.zeros(5))
