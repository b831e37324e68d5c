"""Per-joint unit mapping between the ROS side (radians, REP 103) and lerobot's / a checkpoint's units.

lerobot's SO-10x follower (``use_degrees=True``, the convention of SmolVLA checkpoints and LeRobot datasets)
reads each servo's raw position ``raw`` (0..4095) with the calibration's ``range_min``/``range_max``:

- arm joints (``MotorNormMode.DEGREES``): ``(raw - mid) * 360 / 4095`` with ``mid = (range_min + range_max)
  / 2`` (4095 = the STS3215 resolution 4096 minus one; no clamp). This project's radians are ``(raw - mid) *
  2 pi / 4095`` (so_arm_driver.calibration), so degrees = ``degrees(rad)`` exactly;
- gripper (``MotorNormMode.RANGE_0_100``): ``(clamp(raw, min, max) - min) / (max - min) * 100`` and back
  ``int(clamp(x, 0, 100) / 100 * (max - min) + min)`` (min/max = range_min/range_max). In radians min/max
  are the calibrated joint limits ``(lower, upper) = (-(max - min) / 2, +(max - min) / 2) * 2 pi / 4095``,
  so ``x = (clamp(rad, lower, upper) - lower) / (upper - lower) * 100``: a linear map of the calibrated
  limits onto 0..100, clamped both ways as lerobot does.

The limits must therefore be the arm's calibrated ones, as published on ``/robot_description``
(:func:`so_arm_description.robot_model.limits_from_urdf`); the simulator publishes its own the same way. The
only difference to lerobot is the raw tick itself: lerobot truncates (``int``) when it writes a position, the
driver rounds to the nearest tick. ``drive_mode`` is 0 on the SO-10x followers (lerobot's calibration writes
0 for every motor); an inverted gripper (drive_mode 1) is not represented here.

No ROS import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from so_arm_description.joints import GRIPPER, JOINT_NAMES

DEGREES, RADIANS, RANGE_0_100 = "degrees", "radians", "range_0_100"
UNIT_KINDS = (DEGREES, RADIANS, RANGE_0_100)


@dataclass(frozen=True)
class JointUnit:
    """One joint's unit. ``range_0_100`` maps the joint limits ``lower..upper`` (radians) onto 0..100."""

    kind: str = DEGREES
    lower: float = math.nan
    upper: float = math.nan

    def __post_init__(self) -> None:
        if self.kind not in UNIT_KINDS:
            raise ValueError(f"unit must be one of {UNIT_KINDS}, got {self.kind!r}")
        if self.kind == RANGE_0_100 and not (
            math.isfinite(self.lower) and math.isfinite(self.upper) and self.upper > self.lower
        ):
            raise ValueError(
                f"range_0_100 needs finite joint limits with upper > lower, got {self.lower}..{self.upper}"
            )


class JointUnits:
    """Vectorised conversion of joint vectors (last axis = joints) between radians and model units.

    ``range_0_100`` joints are clamped to 0..100 both ways (lerobot clamps the raw position into the
    calibrated range before normalising, and the normalised value into 0..100 before writing).
    """

    def __init__(self, units: Sequence[JointUnit], names: Sequence[str] | None = None):
        self.units = list(units)
        self.names = list(names) if names is not None else None
        if self.names is not None and len(self.names) != len(self.units):
            raise ValueError("names and units must have the same length")
        n = len(self.units)
        self._scale = np.ones(n)  # model = rad * scale + offset
        self._offset = np.zeros(n)
        self._clamped = np.zeros(n, dtype=bool)
        for i, u in enumerate(self.units):
            if u.kind == DEGREES:
                self._scale[i] = 180.0 / math.pi
            elif u.kind == RANGE_0_100:
                self._scale[i] = 100.0 / (u.upper - u.lower)
                self._offset[i] = -u.lower * self._scale[i]
                self._clamped[i] = True

    @classmethod
    def lerobot(
        cls,
        limits: Mapping[str, tuple[float, float]],
        names: Sequence[str] = JOINT_NAMES,
        overrides: Mapping[str, str] | None = None,
    ) -> JointUnits:
        """lerobot's SO-10x convention for ``names``: degrees, the gripper 0..100 % of ``limits["gripper"]``.

        ``limits``: joint -> (lower, upper) radians, the calibrated limits (from ``/robot_description``);
        only the ``range_0_100`` joints need an entry. ``overrides``: joint -> unit kind, for checkpoints
        trained with other units.
        """
        overrides = dict(overrides or {})
        unknown = [j for j in overrides if j not in names]
        if unknown:
            raise ValueError(f"unit override names joint '{unknown[0]}', not one of {', '.join(names)}")
        kinds = [overrides.get(n, RANGE_0_100 if n == GRIPPER else DEGREES) for n in names]
        return cls.from_spec(kinds, names, limits)

    @classmethod
    def uniform(cls, kind: str, n: int) -> JointUnits:
        return cls([JointUnit(kind)] * n)

    @classmethod
    def from_spec(
        cls,
        kinds: Sequence[str],
        names: Sequence[str] | None = None,
        limits: Mapping[str, tuple[float, float]] | None = None,
    ) -> JointUnits:
        """Build from unit names per joint; ``limits[name]`` gives (lower, upper) radians for range_0_100."""
        units = []
        for i, kind in enumerate(kinds):
            name = names[i] if names is not None else f"joint {i}"
            if kind == RANGE_0_100:
                if name not in (limits or {}):
                    raise ValueError(f"range_0_100 for '{name}' needs its joint limits (none given)")
                lo, hi = (limits or {})[name]
                units.append(JointUnit(kind, float(lo), float(hi)))
            else:
                units.append(JointUnit(kind))
        return cls(units, names)

    def __len__(self) -> int:
        return len(self.units)

    def describe(self) -> str:
        """One line for logs, e.g. ``shoulder_pan degrees, ..., gripper 0..100 = -0.8..0.8 rad``."""
        parts = []
        for i, u in enumerate(self.units):
            name = self.names[i] if self.names is not None else f"joint {i}"
            if u.kind == RANGE_0_100:
                parts.append(f"{name} 0..100 = {u.lower:.5f}..{u.upper:.5f} rad")
            else:
                parts.append(f"{name} {u.kind}")
        return ", ".join(parts)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != len(self.units):
            raise ValueError(f"expected {len(self.units)} joints on the last axis, got shape {x.shape}")
        return x

    def to_model(self, rad: np.ndarray) -> np.ndarray:
        """Radians -> model units (float64); range_0_100 joints clamped to 0..100."""
        model = self._check(rad) * self._scale + self._offset
        if self._clamped.any():
            model = np.where(self._clamped, np.clip(model, 0.0, 100.0), model)
        return model

    def to_ros(self, model: np.ndarray) -> np.ndarray:
        """Model units -> radians (float64); range_0_100 joints clamped to 0..100 first."""
        model = self._check(model)
        if self._clamped.any():
            model = np.where(self._clamped, np.clip(model, 0.0, 100.0), model)
        return (model - self._offset) / self._scale
