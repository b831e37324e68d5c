"""The sim's /joint_commands semantics (plain Python): streamed targets, trajectories, rejections."""

from __future__ import annotations

import numpy as np
import pytest

from smolvla_sim.commands import CommandFollower

NAMES = ["a", "b"]


@pytest.fixture
def follower() -> CommandFollower:
    f = CommandFollower(NAMES, np.array([-1.0, -1.0]), np.array([1.0, 1.0]), max_step=0.1)
    f.hold(np.zeros(2))
    return f


def test_streamed_target_is_rate_limited_and_clamped(follower):
    assert follower.set_target(["b"], [5.0]) is None  # partial joint set, beyond the limit
    goals = [follower.goal(0.0) for _ in range(12)]
    np.testing.assert_allclose(goals[0], [0.0, 0.1])
    np.testing.assert_allclose(goals[-1], [0.0, 1.0])  # clamped to the upper limit


def test_trajectory_follows_time_from_start(follower):
    follower.max_step = 0.0
    assert follower.set_trajectory(NAMES, [(0.5, [0.2, 0.1]), (1.0, [-0.5, 0.2])], start=3.0) is None
    np.testing.assert_allclose(follower.goal(3.0), [0.0, 0.0])
    np.testing.assert_allclose(follower.goal(3.25), [0.1, 0.05])
    np.testing.assert_allclose(follower.goal(3.75), [-0.15, 0.15])
    np.testing.assert_allclose(follower.goal(9.0), [-0.5, 0.2])
    assert follower.set_target(["a"], [0.3]) is None  # a streamed target replaces the trajectory
    np.testing.assert_allclose(follower.goal(9.1), [0.3, 0.2])


@pytest.mark.parametrize(
    ("names", "points", "reason"),
    [
        (["x"], [(0.0, [0.0])], "unknown joint"),
        (["a", "a"], [(0.0, [0.0, 0.0])], "duplicate"),
        (NAMES, [], "without points"),
        (NAMES, [(0.5, [0.0])], "1 positions for 2 joints"),
        (NAMES, [(0.5, [0.0, float("nan")])], "non-finite"),
        (NAMES, [(1.0, [0.0, 0.0]), (0.5, [0.0, 0.0])], "backwards"),
    ],
)
def test_invalid_commands_are_rejected_with_a_reason(follower, names, points, reason):
    before = follower.goal(0.0)
    assert reason in (follower.set_trajectory(names, points, start=0.0) or "")
    assert follower.rejected == 1 and reason in follower.last_error
    np.testing.assert_allclose(follower.goal(0.0), before)


def test_hold_forgets_commands(follower):
    follower.set_trajectory(NAMES, [(1.0, [0.5, 0.5]), (2.0, [0.9, 0.9])], start=0.0)
    follower.hold(np.array([0.3, -0.3]))
    np.testing.assert_allclose(follower.goal(1.5), [0.3, -0.3])
