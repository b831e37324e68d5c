"""Joint command handling of the simulated arm, with the real driver's semantics (plain Python, no rclpy).

A streamed target (one-point ``JointTrajectory``) replaces the target of the named joints; a multi-point
trajectory is followed by ``time_from_start`` (linear interpolation, starting from the target held when it
arrived). The applied goal moves towards the target by at most ``max_step`` radians per control cycle and
stays within the joint limits. Times are in simulated seconds. Invalid commands are rejected with a reason.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class _Trajectory:
    joints: list[int]
    times: list[float]
    points: np.ndarray  # (n, len(joints))
    start: float
    origin: np.ndarray

    def sample(self, now: float) -> np.ndarray:
        t = now - self.start
        if t >= self.times[-1]:
            return self.points[-1]
        k = bisect.bisect_right(self.times, t)
        if k == 0:
            t0, p0, t1, p1 = 0.0, self.origin, self.times[0], self.points[0]
        else:
            t0, p0, t1, p1 = self.times[k - 1], self.points[k - 1], self.times[k], self.points[k]
        if t1 <= t0:
            return p1
        a = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
        return p0 + a * (p1 - p0)


class CommandFollower:
    """Thread-safe target bookkeeping for ``/joint_commands``."""

    def __init__(
        self, joint_names: Sequence[str], lower: np.ndarray, upper: np.ndarray, max_step: float
    ) -> None:
        self.index = {n: i for i, n in enumerate(joint_names)}
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        self.max_step = float(max_step)
        self._lock = threading.Lock()
        self._target = np.zeros(len(joint_names))
        self._goal = np.zeros(len(joint_names))
        self._trajectory: _Trajectory | None = None
        self.accepted = 0
        self.rejected = 0
        self.last_error = ""

    def hold(self, positions: np.ndarray) -> None:
        """Forget commands and hold ``positions`` (after a reset)."""
        with self._lock:
            self._trajectory = None
            self._target = np.clip(np.asarray(positions, float), self.lower, self.upper)
            self._goal = self._target.copy()

    def _reject(self, reason: str) -> str:
        self.rejected += 1
        self.last_error = reason
        return reason

    def _indices(self, names: Sequence[str]) -> list[int] | str:
        if not names:
            return "no joint names"
        unknown = [n for n in names if n not in self.index]
        if unknown:
            return f"unknown joint name(s) {list(unknown)}; known: {list(self.index)}"
        if len(set(names)) != len(names):
            return f"duplicate joint names {list(names)}"
        return [self.index[n] for n in names]

    def set_target(self, names: Sequence[str], positions: Sequence[float]) -> str | None:
        idx = self._indices(names)
        if isinstance(idx, str):
            return self._reject(idx)
        if len(positions) != len(idx):
            return self._reject(f"{len(positions)} positions for {len(idx)} joints")
        if not all(math.isfinite(p) for p in positions):
            return self._reject(f"non-finite position in {list(positions)}")
        with self._lock:
            self._trajectory = None
            self._target[idx] = positions
            self.accepted += 1
        return None

    def set_trajectory(
        self, names: Sequence[str], points: Sequence[tuple[float, Sequence[float]]], start: float
    ) -> str | None:
        """Follow ``points`` = [(time_from_start s, positions rad)] starting at sim time ``start``."""
        idx = self._indices(names)
        if isinstance(idx, str):
            return self._reject(idx)
        if not points:
            return self._reject("trajectory without points")
        times: list[float] = []
        for k, (t, pos) in enumerate(points):
            if len(pos) != len(idx):
                return self._reject(f"point {k}: {len(pos)} positions for {len(idx)} joints")
            if not all(math.isfinite(p) for p in pos) or not math.isfinite(t):
                return self._reject(f"point {k}: non-finite value")
            if times and t < times[-1]:
                return self._reject(f"point {k}: time_from_start {t} goes backwards")
            times.append(float(t))
        if len(points) == 1 and times[0] <= 0.0:
            return self.set_target(names, points[0][1])
        with self._lock:
            origin = self._target[idx].copy()
            pts = np.array([list(p) for _, p in points], dtype=float)
            self._trajectory = _Trajectory(idx, times, pts, float(start), origin)
            self.accepted += 1
        return None

    def goal(self, now: float) -> np.ndarray:
        """The goal for this control cycle: target (or trajectory sample) rate-limited and clamped."""
        with self._lock:
            traj = self._trajectory
            if traj is not None:
                self._target[traj.joints] = traj.sample(now)
            target = np.clip(self._target, self.lower, self.upper)
            if self.max_step > 0:
                step = np.clip(target - self._goal, -self.max_step, self.max_step)
                self._goal = self._goal + step
            else:
                self._goal = target
            return self._goal.copy()
