"""Leader-arm teleoperation core (plain Python, no rclpy): leader joint states in, follower targets out.

The ``teleop`` node feeds it the leader's joint states (``/leader/joint_states``, radians in the same
convention as the follower: both arms read through their own lerobot calibration), the follower's joint
states and the follower's calibrated limits (from ``/robot_description``), and calls :meth:`TeleopCore.tick`
at a fixed rate; every tick's result is published on ``/joint_commands`` as a one-point target -- the same
topic and form the policy drives, so teleoperated and policy episodes are recorded alike.

Safety, on top of the follower driver's own clamp, step cap and watchdog:

- a leader message with a NaN/inf, a missing joint or a value outside the follower's limits by more than
  ``range_margin`` is refused as a whole (values within the margin are clamped to the limits);
- each tick moves the command by at most ``max_step`` rad per joint, starting from the follower's measured
  position (no jump when teleoperation starts);
- when the leader has been silent for ``leader_timeout`` seconds the command is held (the last command is
  repeated, flagged ``holding``) until fresh leader states arrive;
- nothing is commanded before :meth:`start` (which needs the limits and a follower state) or after
  :meth:`stop`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from so_arm_description.robot_spec import JOINT_NAMES


@dataclass
class TeleopConfig:
    joint_names: tuple[str, ...] = JOINT_NAMES
    max_step: float = 0.1  # rad per tick and joint
    leader_timeout: float = 0.25  # s without a leader state -> hold
    range_margin: float = 0.2  # rad beyond the follower's limits that is clamped; more is refused


@dataclass
class TeleopStep:
    command: list[float] | None  # None: publish nothing (not running)
    holding: bool = False  # the leader is silent: the last command is repeated
    limited: bool = False  # the step cap shortened the move of at least one joint


class TeleopCore:
    """Not thread-safe by itself (the node calls it from one callback group)."""

    def __init__(self, config: TeleopConfig | None = None) -> None:
        self.cfg = config or TeleopConfig()
        self.limits: list[tuple[float, float]] | None = None
        self.follower: list[float] | None = None
        self.leader: list[float] | None = None
        self.leader_time = -math.inf
        self.last: list[float] | None = None
        self.running = False
        self.rejected = 0
        self.last_error = ""

    # -- inputs --------------------------------------------------------------------------------------------
    def _pick(self, names: Sequence[str], positions: Sequence[float]) -> list[float] | str:
        if len(names) != len(positions):
            return f"{len(names)} names but {len(positions)} positions"
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.cfg.joint_names if n not in index]
        if missing:
            return f"missing joint(s) {missing}"
        values = [float(positions[index[n]]) for n in self.cfg.joint_names]
        if not all(math.isfinite(v) for v in values):
            return f"non-finite position(s) {values}"
        return values

    def _reject(self, reason: str) -> str:
        self.rejected += 1
        self.last_error = reason
        return reason

    def set_limits(self, limits: Sequence[tuple[float, float]]) -> str | None:
        if len(limits) != len(self.cfg.joint_names) or any(not lo < hi for lo, hi in limits):
            return self._reject(f"invalid limits {list(limits)}")
        self.limits = [(float(lo), float(hi)) for lo, hi in limits]
        return None

    def on_follower(self, names: Sequence[str], positions: Sequence[float]) -> None:
        values = self._pick(names, positions)
        if isinstance(values, list):
            self.follower = values

    def on_leader(self, names: Sequence[str], positions: Sequence[float], now: float) -> str | None:
        """A leader joint state received at ``now`` (s, monotonic). Returns the reason if refused."""
        values = self._pick(names, positions)
        if isinstance(values, str):
            return self._reject(f"leader state refused: {values}")
        if self.limits is not None:
            m = self.cfg.range_margin
            bad = [
                f"{n} {v:.3f} not in [{lo - m:.3f}, {hi + m:.3f}]"
                for n, v, (lo, hi) in zip(self.cfg.joint_names, values, self.limits)
                if not lo - m <= v <= hi + m
            ]
            if bad:
                return self._reject("leader state out of range: " + "; ".join(bad))
        self.leader = values
        self.leader_time = now
        return None

    # -- control -------------------------------------------------------------------------------------------
    def start(self) -> tuple[bool, str]:
        if self.running:
            return True, "teleoperation already running"
        if self.limits is None:
            return False, "no follower limits yet (is /robot_description published?)"
        if self.follower is None:
            return False, "no follower joint state yet"
        self.last = list(self.follower)  # start from where the follower is: the step cap does the rest
        self.running = True
        return True, "teleoperation started"

    def stop(self) -> tuple[bool, str]:
        was = self.running
        self.running = False
        return True, "teleoperation stopped" if was else "teleoperation was not running"

    def tick(self, now: float) -> TeleopStep:
        if not self.running or self.last is None or self.limits is None:
            return TeleopStep(None)
        if self.leader is None or now - self.leader_time > self.cfg.leader_timeout:
            return TeleopStep(list(self.last), holding=True)
        out, limited = [], False
        for prev, target, (lo, hi) in zip(self.last, self.leader, self.limits):
            goal = min(max(target, lo), hi)
            delta = goal - prev
            if abs(delta) > self.cfg.max_step:
                delta = math.copysign(self.cfg.max_step, delta)
                limited = True
            out.append(prev + delta)
        self.last = out
        return TeleopStep(list(out), limited=limited)
