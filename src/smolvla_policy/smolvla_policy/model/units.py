"""Per-joint unit mapping between the ROS side (radians, REP 103) and a checkpoint's units.

lerobot's SO-101 convention (the default): the five arm joints in degrees with 0 = middle of the calibrated
range (which is also this project's radian zero), the gripper as 0..100 % of its calibrated range.
``range_0_100``
needs that range in radians (default: the SO-101 gripper's -0.17453..1.74533 rad).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEGREES, RADIANS, RANGE_0_100 = "degrees", "radians", "range_0_100"
UNIT_KINDS = (DEGREES, RADIANS, RANGE_0_100)
SO101_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
SO101_GRIPPER_LIMITS = (-0.17453, 1.74533)


@dataclass(frozen=True)
class JointUnit:
    kind: str = DEGREES
    lower: float = SO101_GRIPPER_LIMITS[0]  # radians, used by range_0_100
    upper: float = SO101_GRIPPER_LIMITS[1]

    def __post_init__(self) -> None:
        if self.kind not in UNIT_KINDS:
            raise ValueError(f"unit must be one of {UNIT_KINDS}, got {self.kind!r}")
        if self.kind == RANGE_0_100 and not self.upper > self.lower:
            raise ValueError(f"range_0_100 needs upper > lower, got {self.lower}..{self.upper}")


class JointUnits:
    """Vectorised conversion of joint vectors (last axis = joints) between radians and model units."""

    def __init__(self, units: Sequence[JointUnit], names: Sequence[str] | None = None):
        self.units = list(units)
        self.names = list(names) if names is not None else None
        if self.names is not None and len(self.names) != len(self.units):
            raise ValueError("names and units must have the same length")
        n = len(self.units)
        self._scale = np.ones(n)  # model = rad * scale + offset
        self._offset = np.zeros(n)
        for i, u in enumerate(self.units):
            if u.kind == DEGREES:
                self._scale[i] = 180.0 / math.pi
            elif u.kind == RANGE_0_100:
                self._scale[i] = 100.0 / (u.upper - u.lower)
                self._offset[i] = -u.lower * self._scale[i]

    @classmethod
    def so101(cls, gripper_limits: tuple[float, float] = SO101_GRIPPER_LIMITS) -> JointUnits:
        """lerobot's SO-101 convention: 5 joints in degrees, gripper 0..100."""
        units = [JointUnit(DEGREES)] * 5 + [JointUnit(RANGE_0_100, *gripper_limits)]
        return cls(units, SO101_JOINTS)

    @classmethod
    def uniform(cls, kind: str, n: int) -> JointUnits:
        return cls([JointUnit(kind)] * n)

    @classmethod
    def from_spec(
        cls,
        kinds: Sequence[str],
        names: Sequence[str] | None = None,
        limits: dict[str, tuple[float, float]] | None = None,
    ) -> JointUnits:
        """Build from unit names per joint; ``limits[name]`` gives (lower, upper) radians for range_0_100."""
        units = []
        for i, kind in enumerate(kinds):
            name = names[i] if names is not None else None
            lo, hi = (limits or {}).get(name or "", SO101_GRIPPER_LIMITS)
            units.append(JointUnit(kind, lo, hi))
        return cls(units, names)

    def __len__(self) -> int:
        return len(self.units)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != len(self.units):
            raise ValueError(f"expected {len(self.units)} joints on the last axis, got shape {x.shape}")
        return x

    def to_model(self, rad: np.ndarray) -> np.ndarray:
        """Radians -> checkpoint units (float64)."""
        return self._check(rad) * self._scale + self._offset

    def to_ros(self, model: np.ndarray) -> np.ndarray:
        """Checkpoint units -> radians (float64)."""
        return (self._check(model) - self._offset) / self._scale
