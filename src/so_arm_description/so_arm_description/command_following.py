"""How an arm follows ``/joint_commands``: the one implementation of the real driver and the simulator.

Plain Python (no rclpy, no hardware, no numpy): ``so_arm_driver.driver`` (servo bus) and ``smolvla_sim``
(MuJoCo) both hold a :class:`CommandFollower` and call it with the same messages, so the two arms obey the
same command semantics.

Semantics of a ``trajectory_msgs/JointTrajectory`` (:meth:`CommandFollower.command`):

- **one point** = a *streamed target*: it replaces the target of the named joints at once. Its
  ``time_from_start`` is ignored (the action queue sends one point per tick with ``time_from_start`` = one
  period; applying it "at the end of the period" would make the arm lag one period behind the queue).
- **several points** = a trajectory followed by ``time_from_start``: point ``k`` is reached at
  ``start + time_from_start[k]``, linearly interpolated, starting from the goal commanded when the message
  arrived (``origin``). ``start`` is the header stamp when it is set and on the receiver's clock, else the
  receive time (:func:`trajectory_start`): a stamp further than :data:`STAMP_TOLERANCE` from the receiver's
  clock comes from another clock (a queue on wall time while the simulator publishes ``/clock``, or the
  reverse) and is not trusted -- before, such a trajectory started ~1.7e9 s in the future and the arm froze.
- joints not named keep their target; invalid messages are rejected with a reason and change nothing.
- every control cycle (:meth:`CommandFollower.next_goal`): target (or trajectory sample) -> clamp to the joint
  limits -> change of the goal limited to ``max_step`` rad per cycle (``<= 0``: unlimited).
- watchdog: no command for ``command_timeout`` s (after a trajectory's end) -> hold the goal commanded now
  (``<= 0``: no watchdog).

Times are seconds on any clock the caller keeps consistent (``time.monotonic()`` in the driver, simulated
seconds in the simulator).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: A header stamp further than this from the receiver's clock (s) is on another clock: use the receive time.
STAMP_TOLERANCE = 1.0


@dataclass(frozen=True)
class Command:
    """A ``JointTrajectory`` in plain Python: joint names, [(time_from_start s, positions)], stamp (s)."""

    names: list[str]
    points: list[tuple[float, list[float]]]
    stamp: float = 0.0  # header stamp in seconds; 0 = not set


def command_from_message(msg: Any) -> Command:
    """Read a ``trajectory_msgs/JointTrajectory`` (by attribute, no ROS import) into a :class:`Command`."""
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    points = [
        (p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, [float(x) for x in p.positions])
        for p in msg.points
    ]
    return Command(list(msg.joint_names), points, float(stamp))


def trajectory_start(
    now: float, stamp: float, clock_now: float | None, tolerance: float = STAMP_TOLERANCE
) -> float:
    """Start time (on the caller's clock of ``now``) of a trajectory stamped ``stamp`` (s, on the ROS clock
    whose present value is ``clock_now``): the stamp when set and within ``tolerance`` of ``clock_now``, else
    ``now`` (the receive time)."""
    if clock_now is None or stamp <= 0.0 or not math.isfinite(stamp):
        return now
    age = clock_now - stamp
    if abs(age) > tolerance:
        return now
    return now - age


@dataclass
class _Trajectory:
    joints: list[int]
    times: list[float]
    points: list[list[float]]
    start: float
    origin: list[float]  # goal of those joints when it arrived

    @property
    def end(self) -> float:
        return self.start + self.times[-1]

    def sample(self, now: float) -> list[float]:
        t = now - self.start
        times, pts = self.times, self.points
        if t >= times[-1]:
            return list(pts[-1])
        k = bisect.bisect_right(times, t)
        if k == 0:
            t0, p0, t1, p1 = 0.0, self.origin, times[0], pts[0]
        else:
            t0, p0, t1, p1 = times[k - 1], pts[k - 1], times[k], pts[k]
        if t1 <= t0:
            return list(p1)
        a = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
        return [x0 + a * (x1 - x0) for x0, x1 in zip(p0, p1)]


@dataclass
class GoalStep:
    """The goal of one control cycle (radians, joint order of the follower)."""

    goal: list[float]
    limited: bool = False  # max_step limited at least one joint
    clamped: bool = False  # a target was outside the joint limits
    holding: bool = False  # the watchdog holds (no fresh command)


@dataclass
class FollowerStats:
    accepted: int = 0
    rejected: int = 0
    last_error: str = ""
    stamps_ignored: int = 0  # trajectories whose stamp was on another clock


class CommandFollower:
    """Target bookkeeping for ``/joint_commands``; thread-safe (commands and cycles from other threads)."""

    def __init__(
        self,
        joint_names: Sequence[str],
        limits: Sequence[tuple[float, float]],
        max_step: float = 0.0,
        command_timeout: float = 0.0,
        on_hold: Callable[[str], None] | None = None,
    ) -> None:
        if len(limits) != len(joint_names):
            raise ValueError(f"{len(limits)} limits for {len(joint_names)} joints")
        self.joint_names = tuple(joint_names)
        self.index = {n: i for i, n in enumerate(self.joint_names)}
        self.limits = [(float(lo), float(hi)) for lo, hi in limits]
        self.max_step = float(max_step)
        self.command_timeout = float(command_timeout)
        self.on_hold = on_hold
        self.stats = FollowerStats()
        self._lock = threading.RLock()
        n = len(self.joint_names)
        self._goal = [0.0] * n  # last committed goal
        self._target = [0.0] * n
        self._trajectory: _Trajectory | None = None
        self._last_command: float | None = None
        self._holding = True

    # -- state -------------------------------------------------------------------------------------
    @property
    def goal(self) -> list[float]:
        with self._lock:
            return list(self._goal)

    @property
    def target(self) -> list[float]:
        with self._lock:
            return list(self._target)

    @property
    def last_command(self) -> float | None:
        return self._last_command

    @property
    def holding(self) -> bool:
        """True while the watchdog holds (no command yet, or none for ``command_timeout``)."""
        return self._holding

    def clamp(self, positions: Sequence[float]) -> list[float]:
        return [min(max(float(p), lo), hi) for p, (lo, hi) in zip(positions, self.limits)]

    def hold(self, positions: Sequence[float]) -> None:
        """Forget every command and hold ``positions`` (clamped): start-up, reset, torque on, recovery."""
        with self._lock:
            self._goal = self.clamp(positions)
            self._target = list(self._goal)
            self._trajectory = None
            self._last_command = None
            self._holding = True

    # -- commands ----------------------------------------------------------------------------------
    def reject(self, reason: str) -> str:
        """Count and remember a rejected command; returns ``reason``."""
        with self._lock:
            self.stats.rejected += 1
            self.stats.last_error = reason
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

    def command(self, cmd: Command, now: float, clock_now: float | None = None) -> str | None:
        """Apply a ``/joint_commands`` message received at ``now``; ``clock_now`` = the receiver's ROS clock
        (the clock of header stamps) at that moment, seconds. Returns a rejection reason or None."""
        if not cmd.points:
            return self.reject("trajectory without points")
        if len(cmd.points) == 1:
            return self.set_target(cmd.names, cmd.points[0][1], now)
        start = trajectory_start(now, cmd.stamp, clock_now)
        if cmd.stamp > 0.0 and clock_now is not None and abs(clock_now - cmd.stamp) > STAMP_TOLERANCE:
            with self._lock:
                self.stats.stamps_ignored += 1
        return self.set_trajectory(cmd.names, cmd.points, start=start, now=now)

    def set_target(self, names: Sequence[str], positions: Sequence[float], now: float) -> str | None:
        """A streamed target for some joints (rad), applied at once. Returns a rejection reason or None."""
        idx = self._indices(names)
        if isinstance(idx, str):
            return self.reject(idx)
        if len(positions) != len(idx):
            return self.reject(f"{len(positions)} positions for {len(idx)} joints")
        if not all(math.isfinite(p) for p in positions):
            return self.reject(f"non-finite position in {list(positions)}")
        with self._lock:
            self._trajectory = None
            for i, p in zip(idx, positions):
                self._target[i] = float(p)
            self._last_command = now
            self._holding = False
            self.stats.accepted += 1
        return None

    def set_trajectory(
        self,
        names: Sequence[str],
        points: Sequence[tuple[float, Sequence[float]]],
        start: float,
        now: float,
    ) -> str | None:
        """Follow ``points`` = [(time_from_start s, positions rad)] from ``start`` (caller's clock)."""
        idx = self._indices(names)
        if isinstance(idx, str):
            return self.reject(idx)
        if not points:
            return self.reject("trajectory without points")
        times: list[float] = []
        for k, (t, pos) in enumerate(points):
            if len(pos) != len(idx):
                return self.reject(f"point {k}: {len(pos)} positions for {len(idx)} joints")
            if not all(math.isfinite(p) for p in pos) or not math.isfinite(t):
                return self.reject(f"point {k}: non-finite value")
            if t < 0.0:
                return self.reject(f"point {k}: negative time_from_start {t}")
            if times and t < times[-1]:
                return self.reject(f"point {k}: time_from_start {t} goes backwards")
            times.append(float(t))
        with self._lock:
            origin = [self._goal[i] for i in idx]
            pts = [[float(p) for p in pos] for _, pos in points]
            self._trajectory = _Trajectory(idx, times, pts, float(start), origin)
            self._last_command = now
            self._holding = False
            self.stats.accepted += 1
        return None

    # -- cycle -------------------------------------------------------------------------------------
    def _current_target(self, now: float) -> list[float]:
        traj = self._trajectory
        if self.command_timeout > 0.0 and not self._holding:
            last = -math.inf if self._last_command is None else self._last_command
            alive_until = last + self.command_timeout
            if traj is not None:
                alive_until = max(alive_until, traj.end + self.command_timeout)
            if now > alive_until:
                self._holding = True
                self._trajectory = None
                self._target = list(self._goal)  # hold where the arm is commanded now
                if self.on_hold is not None:
                    self.on_hold(f"no command for {self.command_timeout:.3f} s: holding position")
                return list(self._target)
        if self._holding:
            return list(self._target)
        if traj is not None:
            for i, v in zip(traj.joints, traj.sample(now)):
                self._target[i] = v
        return list(self._target)

    def next_goal(self, now: float) -> GoalStep:
        """The goal for the cycle at ``now`` (not committed: call :meth:`commit` once it was applied)."""
        with self._lock:
            target = self._current_target(now)
            step = self.max_step
            goal, limited, clamped = [], False, False
            for g, t, (lo, hi) in zip(self._goal, target, self.limits):
                c = min(max(t, lo), hi)
                clamped |= c != t
                n = min(max(c, g - step), g + step) if step > 0.0 else c
                limited |= n != c
                goal.append(n)
            return GoalStep(goal, limited, clamped, self._holding)

    def commit(self, goal: Sequence[float]) -> None:
        """Record ``goal`` as applied (written to the servos / handed to the physics)."""
        with self._lock:
            self._goal = [float(x) for x in goal]

    def step(self, now: float) -> GoalStep:
        """:meth:`next_goal` and :meth:`commit` in one (the goal is always applied)."""
        with self._lock:
            res = self.next_goal(now)
            self._goal = list(res.goal)
            return res
