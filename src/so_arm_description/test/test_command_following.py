"""The shared /joint_commands semantics (plain Python): streamed targets, trajectories, stamps, watchdog."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from so_arm_description.command_following import (
    STAMP_TOLERANCE,
    Command,
    CommandFollower,
    command_from_message,
    trajectory_start,
)

NAMES = ["a", "b"]


@pytest.fixture
def follower() -> CommandFollower:
    f = CommandFollower(NAMES, [(-1.0, 1.0), (-1.0, 1.0)], max_step=0.1)
    f.hold([0.0, 0.0])
    return f


def approx(values):  # type: ignore[no-untyped-def]
    return pytest.approx(values, abs=1e-12)


def test_streamed_target_is_rate_limited_and_clamped(follower):
    assert follower.set_target(["b"], [5.0], now=0.0) is None  # partial joint set, beyond the limit
    steps = [follower.step(0.0) for _ in range(12)]
    assert steps[0].goal == approx([0.0, 0.1]) and steps[0].limited and steps[0].clamped
    assert steps[-1].goal == approx([0.0, 1.0])  # clamped to the upper limit
    assert not steps[-1].limited


def test_one_point_is_a_streamed_target_applied_now_whatever_its_time_from_start(follower):
    """Regression (issue 10, defect 3): the queue's one-point message with time_from_start = one period was a
    one-point trajectory in the simulator, reached one period late."""
    follower.max_step = 0.0
    period = 1.0 / 30.0
    assert (
        follower.command(Command(NAMES, [(period, [0.6, -0.3])], stamp=5.0), now=5.0, clock_now=5.0) is None
    )
    assert follower.step(5.0).goal == approx([0.6, -0.3])  # at once, not at 5.0 + period


def test_trajectory_follows_time_from_start_from_the_commanded_goal(follower):
    follower.max_step = 0.0
    assert follower.set_trajectory(NAMES, [(0.5, [0.2, 0.1]), (1.0, [-0.5, 0.2])], start=3.0, now=3.0) is None
    assert follower.step(3.0).goal == approx([0.0, 0.0])
    assert follower.step(3.25).goal == approx([0.1, 0.05])
    assert follower.step(3.75).goal == approx([-0.15, 0.15])
    assert follower.step(9.0).goal == approx([-0.5, 0.2])
    assert follower.set_target(["a"], [0.3], now=9.1) is None  # a streamed target replaces the trajectory
    assert follower.step(9.1).goal == approx([0.3, 0.2])


def test_trajectory_starts_at_its_stamp_when_on_the_receivers_clock(follower):
    follower.max_step = 0.0
    cmd = Command(NAMES, [(1.0, [1.0, 0.0]), (2.0, [1.0, 1.0])], stamp=99.5)
    # received at local time 10.0 when the receiver's ROS clock reads 100.0: the stamp is 0.5 s old
    assert follower.command(cmd, now=10.0, clock_now=100.0) is None
    assert follower.step(10.0).goal == approx([0.5, 0.0])  # 0.5 s into the first segment


@pytest.mark.parametrize("stamp", [1.7e9, 3.0])  # wall-time stamp vs /clock 100 s; sim-time stamp vs wall
def test_stamp_on_another_clock_starts_at_receive_time(follower, stamp):
    """Regression (issue 10, defect 3): with /clock published and the queue on wall time, the trajectory
    started ~1.7e9 s in the future and the simulated arm froze."""
    follower.max_step = 0.0
    cmd = Command(NAMES, [(1.0, [1.0, 0.0]), (2.0, [1.0, 1.0])], stamp=stamp)
    assert follower.command(cmd, now=10.0, clock_now=100.0) is None
    assert follower.stats.stamps_ignored == 1
    assert follower.step(10.5).goal == approx([0.5, 0.0])
    assert follower.step(11.5).goal == approx([1.0, 0.5])


def test_trajectory_start_rule():
    assert trajectory_start(10.0, 0.0, 100.0) == 10.0  # no stamp
    assert trajectory_start(10.0, 100.2, 100.0) == pytest.approx(10.2)  # starts in the future
    assert trajectory_start(10.0, 99.0, 100.0) == pytest.approx(9.0)
    assert trajectory_start(10.0, 100.0 - 2 * STAMP_TOLERANCE, 100.0) == 10.0
    assert trajectory_start(10.0, 99.0, None) == 10.0


def test_command_from_message_reads_the_message_shape():
    dur = SimpleNamespace
    msg = SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=12, nanosec=500_000_000)),
        joint_names=["a", "b"],
        points=[SimpleNamespace(positions=[0.1, 0.2], time_from_start=dur(sec=0, nanosec=33_333_333))],
    )
    cmd = command_from_message(msg)
    assert cmd.names == ["a", "b"] and cmd.stamp == pytest.approx(12.5)
    assert cmd.points[0][0] == pytest.approx(0.033333333) and cmd.points[0][1] == [0.1, 0.2]


@pytest.mark.parametrize(
    ("names", "points", "reason"),
    [
        (["x"], [(0.0, [0.0])], "unknown joint"),
        (["a", "a"], [(0.0, [0.0, 0.0])], "duplicate"),
        (NAMES, [], "without points"),
        (NAMES, [(0.5, [0.0])], "1 positions for 2 joints"),
        (NAMES, [(0.5, [0.0, float("nan")])], "non-finite"),
        (NAMES, [(1.0, [0.0, 0.0]), (0.5, [0.0, 0.0])], "backwards"),
        (NAMES, [(-1.0, [0.0, 0.0]), (0.5, [0.0, 0.0])], "negative"),
        (NAMES, [(0.5, [0.0, 0.0]), (1.0, [0.0])], "point 1: 1 positions"),
    ],
)
def test_invalid_commands_are_rejected_with_a_reason(follower, names, points, reason):
    follower.set_target(NAMES, [0.05, -0.05], now=0.0)
    before = follower.target
    assert reason in (follower.command(Command(names, points), now=0.0) or "")
    assert follower.stats.rejected == 1 and reason in follower.stats.last_error
    assert follower.target == before


def test_watchdog_holds_the_commanded_goal_and_a_new_command_resumes(follower):
    follower.command_timeout = 0.5
    assert follower.holding  # nothing commanded yet
    follower.set_target(["a"], [1.0], now=0.0)
    for k in range(3):
        follower.step(0.01 * k)
    assert not follower.holding
    held = follower.step(0.6)  # command_timeout passed: hold where the arm is commanded
    assert held.holding and held.goal == approx([0.3, 0.0])
    assert follower.step(5.0).goal == approx([0.3, 0.0])
    follower.set_target(["a"], [1.0], now=10.0)
    assert follower.step(10.0).goal[0] == pytest.approx(0.4)


def test_watchdog_waits_for_the_end_of_a_trajectory(follower):
    follower.command_timeout = 0.5
    follower.max_step = 0.0
    follower.set_trajectory(["a"], [(1.0, [0.5]), (2.0, [1.0])], start=0.0, now=0.0)
    assert not follower.step(2.4).holding
    assert follower.step(2.6).holding


def test_next_goal_is_committed_only_when_applied(follower):
    follower.set_target(["a"], [1.0], now=0.0)
    assert follower.next_goal(0.0).goal == approx([0.1, 0.0])
    assert follower.next_goal(0.0).goal == approx([0.1, 0.0])  # a failed write does not advance the goal
    follower.commit([0.1, 0.0])
    assert follower.next_goal(0.0).goal == approx([0.2, 0.0])


def test_hold_forgets_commands(follower):
    follower.set_trajectory(NAMES, [(1.0, [0.5, 0.5]), (2.0, [0.9, 0.9])], start=0.0, now=0.0)
    follower.hold([0.3, -3.0])
    assert follower.step(1.5).goal == approx([0.3, -1.0])  # clamped hold
    assert follower.holding
