"""Unit tests of the action queue's core (Algorithm 1) with a fake clock and a fake server in discrete time.

No threads, no sleeping: the fake server delivers the chunk answering a request sent at time ``t0`` before the
first tick at or after ``t0 + latency``. Chunk actions encode their own timestep (value = timestep in every
joint), so executed commands show exactly which timestep they came from.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from smolvla_policy.queue import (
    ActionQueueCore,
    QueueConfig,
    auto_threshold,
    blend_weights,
    make_aggregate,
    predict,
    request_due,
)
from smolvla_policy.queue.analysis import idle_fraction_closed_form

J = 3  # joints
DT = 1.0 / 30.0


def ramp_chunk(start: int, n: int, offset: float = 0.0) -> np.ndarray:
    return np.repeat((np.arange(start, start + n, dtype=float) + offset)[:, None], J, axis=1)


class FakeServer:
    """Answers each request after ``latency(request)`` seconds with ``chunk_fn(start, n)``."""

    def __init__(self, core: ActionQueueCore, n: int, latency, chunk_fn=ramp_chunk) -> None:
        self.core, self.n, self.latency, self.chunk_fn = core, n, latency, chunk_fn
        self.pending: list[tuple[float, int, int]] = []  # (due time, request id, start timestep)
        self.outcomes = []

    def deliver(self, now: float) -> None:
        for item in sorted(p for p in self.pending if p[0] <= now + 1e-9):
            self.pending.remove(item)
            _, rid, start = item
            self.outcomes.append(self.core.on_chunk(rid, start, self.chunk_fn(start, self.n), now))

    def send(self, req, now: float) -> None:
        lat = self.latency(req) if callable(self.latency) else self.latency
        self.pending.append((now + lat, req.request_id, req.timestep))


def simulate(core: ActionQueueCore, server: FakeServer, ticks: int, state_fn=None, dt: float = DT):
    results = []
    for t in range(ticks):
        now = t * dt
        server.deliver(now)
        state = (
            state_fn(core)
            if state_fn
            else (core.last_command if core.last_command is not None else np.zeros(J))
        )
        res = core.tick(now, state)
        if res.request is not None:
            server.send(res.request, now)
        results.append(res)
    return results


def make_core(**kw: object) -> ActionQueueCore:
    kw.setdefault("max_step", 0.0)
    kw.setdefault("similarity_epsilon", -1.0)
    return ActionQueueCore(J, QueueConfig(**kw))  # type: ignore[arg-type]


def idle_runs(results) -> list[int]:
    runs, cur = [], 0
    for r in results:
        if r.idle:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    return runs


# -- aggregation functions -------------------------------------------------------------------------
OLD = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, -10.0]])
NEW = np.array([[5.0, 6.0], [7.0, 8.0], [0.0, 0.0]])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("latest_only", [[5.0, 6.0], [7.0, 8.0], [0.0, 0.0]]),
        ("weighted_average", [[3.8, 4.8], [5.8, 6.8], [3.0, -3.0]]),
        ("average", [[3.0, 4.0], [5.0, 6.0], [5.0, -5.0]]),
        ("conservative", [[2.2, 3.2], [4.2, 5.2], [7.0, -7.0]]),
    ],
)
def test_fixed_aggregates_exact_values(name: str, expected: list) -> None:
    np.testing.assert_allclose(make_aggregate(name)(OLD, NEW), expected, rtol=0, atol=1e-12)


def test_blend_weights_and_values_exact() -> None:
    np.testing.assert_allclose(blend_weights(5, 3.0), [0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(blend_weights(3, 0.0), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(blend_weights(4, 1.5), [0.4, 0.8, 1.0, 1.0], atol=1e-15)
    # R = 3: w = 0.25, 0.5, 0.75 -> (1-w)*old + w*new
    expected = [[2.0, 3.0], [5.0, 6.0], [2.5, -2.5]]
    np.testing.assert_allclose(make_aggregate("blend", 3.0)(OLD, NEW), expected, atol=1e-12)
    np.testing.assert_allclose(make_aggregate("blend", 0.0)(OLD, NEW), NEW)


def test_unknown_aggregate_and_negative_ramp_rejected() -> None:
    with pytest.raises(ValueError, match="unknown aggregate_fn 'median'"):
        make_aggregate("median")
    with pytest.raises(ValueError, match="blend_ramp"):
        make_aggregate("blend", -1.0)


@pytest.mark.parametrize(
    ("name", "w_new"),
    [("latest_only", 1.0), ("weighted_average", 0.7), ("average", 0.5), ("conservative", 0.3)],
)
def test_fusion_in_the_core_uses_time_alignment(name: str, w_new: float) -> None:
    """Queue holds timesteps 0..9 (value 0); a chunk for 2..11 (value 1) arrives at timestep 4."""
    core = make_core(aggregate_fn=name, chunk_threshold=0.0)
    req = core.tick(0.0, np.zeros(J)).request
    assert req is not None and req.timestep == 0
    core.on_chunk(req.request_id, 0, np.zeros((10, J)), 0.01)
    for i in range(4):  # executes timesteps 0..3
        core.tick(0.02 + i, np.zeros(J))
    core._in_flight = type(core._in_flight)(99, 2, 3.0) if core._in_flight else None  # noqa: SLF001
    core.update_config(chunk_threshold=1.0)
    req = core.tick(4.0, np.zeros(J)).request  # executes timestep 4, requests with timestep 4
    assert req is not None and req.timestep == 4
    out = core.on_chunk(req.request_id, 2, np.ones((10, J)), 4.5)  # covers 2..11; timestep now 5
    assert (out.late, out.fused, out.appended) == (3, 5, 2)
    q = core.queued_actions[:, 0]
    np.testing.assert_allclose(q, [w_new] * 5 + [1.0, 1.0], atol=1e-12)


def test_blend_in_the_core_ramps_from_the_next_tick() -> None:
    core = make_core(aggregate_fn="blend", blend_ramp=3.0, chunk_threshold=1.0)
    req = core.tick(0.0, np.zeros(J)).request
    core.on_chunk(req.request_id, 0, np.zeros((8, J)), 0.0)
    req = core.tick(0.1, np.zeros(J)).request  # executes 0, requests at timestep 1
    core.tick(0.2, np.zeros(J))  # executes 1
    out = core.on_chunk(req.request_id, 1, np.ones((8, J)), 0.3)  # 1 late; overlap 2..7; append 8
    assert (out.late, out.fused, out.appended) == (1, 6, 1)
    np.testing.assert_allclose(core.queued_actions[:, 0], [0.25, 0.5, 0.75, 1, 1, 1, 1], atol=1e-12)


def test_regression_lerobot_discards_old_actions_absent_from_the_new_chunk() -> None:
    """lerobot rebuilds the queue from the new chunk only; here queued ticks beyond its end are kept."""
    core = make_core(aggregate_fn="latest_only", chunk_threshold=1.0)
    req = core.tick(0.0, np.zeros(J)).request
    core.on_chunk(req.request_id, 0, ramp_chunk(0, 10), 0.0)
    req = core.tick(0.1, np.zeros(J)).request  # executes 0; request at timestep 1
    out = core.on_chunk(req.request_id, 1, ramp_chunk(1, 3, offset=100.0), 0.2)  # covers 1..3 only
    assert (out.late, out.fused, out.appended) == (0, 3, 0)
    np.testing.assert_allclose(core.queued_actions[:, 0], [101, 102, 103, 4, 5, 6, 7, 8, 9])
    assert core.chunk_size == 3


# -- timing: g = 0, no-idle bound, late drops ------------------------------------------------------
@pytest.mark.parametrize(("latency_ticks", "n"), [(1, 10), (3, 20), (10, 50), (30, 50), (7, 5)])
def test_sync_mode_idle_ticks_per_chunk_equal_latency_ticks(latency_ticks: int, n: int) -> None:
    core = make_core(chunk_threshold=0.0)
    server = FakeServer(core, n, latency_ticks * DT)
    results = simulate(core, server, 12 * (n + latency_ticks))
    runs = idle_runs(results)
    assert len(runs) >= 10 and all(r == latency_ticks for r in runs)
    # the whole chunk is executed (the held ticks do not consume the timeline), nothing is late
    assert core.counters.actions_dropped_late == 0
    executed = [r.command[0] for r in results if r.executed]
    assert executed == list(range(len(executed)))
    assert core.counters.observations_sent == core.counters.chunks_received + len(server.pending)


@pytest.mark.parametrize(("latency_ticks", "n"), [(1, 10), (3, 20), (9, 50), (15, 50), (25, 50), (5, 10)])
def test_no_idle_after_startup_when_g_at_least_latency_over_chunk(latency_ticks: int, n: int) -> None:
    g = latency_ticks / n  # exactly the paper's bound
    core = make_core(chunk_threshold=g)
    server = FakeServer(core, n, latency_ticks * DT)
    results = simulate(core, server, 40 * n)
    assert idle_runs(results) == [latency_ticks]  # only the start-up wait for the first chunk
    assert all(r.idle for r in results[:latency_ticks])
    assert core.counters.chunks_received >= 10
    # time alignment: every executed action is the one predicted for its timestep
    executed = [r.command[0] for r in results if r.executed]
    assert executed == list(range(len(executed)))


def test_one_request_in_flight_limits_throughput_to_latency_at_most_half_a_chunk() -> None:
    """With one request in flight a chunk yields n - k new actions every k ticks: g = 1 still idles if k
    > n/2."""
    n, lat = 10, 6
    core = make_core(chunk_threshold=1.0)
    results = simulate(core, FakeServer(core, n, lat * DT), 600)
    half = results[300:]
    measured = sum(r.idle for r in half) / len(half)
    assert measured == pytest.approx(predict(lat * DT, DT, n, 1.0).idle_fraction, abs=0.02)
    assert predict(lat * DT, DT, n, 1.0).idle_fraction == pytest.approx((2 * lat - n) / (2 * lat))


def test_just_below_the_bound_the_queue_runs_dry() -> None:
    n, lat = 50, 10
    core = make_core(chunk_threshold=(lat - 1) / n)
    results = simulate(core, FakeServer(core, n, lat * DT), 20 * n)
    assert len(idle_runs(results)) > 5


def test_random_latency_bounded_by_g_never_idles() -> None:
    rng = random.Random(7)
    n, max_lat = 30, 8
    core = make_core(chunk_threshold=max_lat / n)
    server = FakeServer(core, n, lambda _req: rng.uniform(0.2, max_lat) * DT)
    results = simulate(core, server, 3000)
    assert sum(r.idle for r in results[max_lat:]) == 0
    assert core.counters.chunks_received > 50


def test_late_actions_are_dropped_and_counted() -> None:
    n, lat = 20, 4
    core = make_core(chunk_threshold=0.5)
    server = FakeServer(core, n, lat * DT)
    results = simulate(core, server, 400)
    # every chunk after the first arrives while the old queue still runs: exactly `lat` actions are late
    assert [o.late for o in server.outcomes[1:]] == [lat] * (len(server.outcomes) - 1)
    assert server.outcomes[0].late == 0
    assert core.counters.actions_dropped_late == lat * (len(server.outcomes) - 1)
    executed = [r.command[0] for r in results if r.executed]
    assert executed == list(range(len(executed)))


def test_random_latency_matches_nothing_executed_twice() -> None:
    rng = random.Random(3)
    core = make_core(chunk_threshold=0.3)
    server = FakeServer(core, 25, lambda _req: rng.uniform(0.5, 20) * DT)
    results = simulate(core, server, 3000)
    executed = [r.command[0] for r in results if r.executed]
    assert executed == list(range(len(executed)))  # each timestep executed once, in order, never skipped
    assert core.timestep == core.counters.ticks - core.counters.idle_ticks


@pytest.mark.parametrize("g", [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize(("latency_ticks", "n"), [(3, 50), (9, 50), (30, 50), (4, 10)])
def test_analytic_prediction_matches_the_simulation(g: float, latency_ticks: int, n: int) -> None:
    core = make_core(chunk_threshold=g)
    cycles_ticks = 60 * (n + latency_ticks)
    results = simulate(core, FakeServer(core, n, latency_ticks * DT), cycles_ticks)
    half = results[len(results) // 2 :]
    measured = sum(r.idle for r in half) / len(half)
    pred = predict(latency_ticks * DT, DT, n, g)
    assert measured == pytest.approx(
        pred.idle_fraction, abs=2.0 / len(half) + pred.ticks_per_chunk / len(half)
    )
    if int(g * n + 1e-9) <= n / 2:
        assert pred.idle_fraction == pytest.approx(idle_fraction_closed_form(latency_ticks * DT, DT, n, g))


def test_request_due_rule() -> None:
    assert request_due(0, 0, 0.0) and request_due(0, 50, 0.0)
    assert not request_due(1, 50, 0.0)
    assert request_due(35, 50, 0.7) and not request_due(36, 50, 0.7)
    assert request_due(50, 50, 1.0)


# -- similarity filter -----------------------------------------------------------------------------
def test_regression_lerobot_static_robot_stalls_on_the_similarity_filter() -> None:
    """Near-duplicates are skipped, but an empty queue always sends (must-go): the arm never stalls."""
    n, lat = 10, 2
    core = make_core(chunk_threshold=0.8, similarity_epsilon=0.05)
    const = np.full(J, 0.3)
    server = FakeServer(core, n, lat * DT, chunk_fn=lambda s, m: np.tile(const, (m, 1)))
    results = simulate(core, server, 200, state_fn=lambda _c: const + 0.001)  # robot never moves
    sent = [i for i, r in enumerate(results) if r.request is not None]
    assert len(sent) > 5
    # every request after the first is a must-go on an empty queue; near-duplicates in between were filtered
    assert all(results[i].request.must_go for i in sent)
    assert core.counters.observations_filtered > 0
    assert all(results[i].idle for i in sent)
    assert sum(r.filtered for r in results) == core.counters.observations_filtered


def test_similarity_filter_passes_moving_state_and_can_be_disabled() -> None:
    n, lat = 10, 2
    for eps, expect_filtered in ((0.05, False), (-1.0, False), (10.0, True)):
        core = make_core(chunk_threshold=0.8, similarity_epsilon=eps)
        server = FakeServer(core, n, lat * DT)
        simulate(core, server, 200, state_fn=lambda c: np.full(J, float(c.timestep)))  # moves 1 rad per tick
        assert (core.counters.observations_filtered > 0) is expect_filtered
        assert core.counters.chunks_received > 5


def test_static_robot_with_filter_disabled_requests_at_threshold() -> None:
    core = make_core(chunk_threshold=0.8, similarity_epsilon=-1.0)
    server = FakeServer(core, 10, 2 * DT, chunk_fn=lambda s, m: np.zeros((m, J)))
    results = simulate(core, server, 200, state_fn=lambda _c: np.zeros(J))
    assert core.counters.observations_filtered == 0
    assert sum(r.idle for r in results[2:]) == 0


# -- automatic threshold ---------------------------------------------------------------------------
def test_auto_threshold_formula() -> None:
    assert auto_threshold(0.3, 1 / 30, 50, 0.1) == pytest.approx(9 / 50 + 0.1)
    assert auto_threshold(3.0, 1 / 30, 50, 0.1) == 1.0
    assert auto_threshold(0.0, 1 / 30, 50, 0.0) == 0.0


def test_auto_threshold_chosen_from_measured_latency_and_removes_idle() -> None:
    n, lat = 50, 15
    core = make_core(chunk_threshold=0.0, auto_threshold=True, auto_threshold_margin=0.04)
    assert core.threshold == 0.0  # nothing measured yet: the configured value
    server = FakeServer(core, n, lat * DT)
    results = simulate(core, server, 1500)
    assert core.threshold == pytest.approx(lat / n + 0.04)
    assert core.latency.mean == pytest.approx(lat * DT)
    # only the first (sync) cycle idles: after the first latency measurement the queue never runs dry
    assert idle_runs(results) == [lat]


def test_auto_threshold_follows_a_latency_change() -> None:
    n = 50
    core = make_core(auto_threshold=True, auto_threshold_margin=0.0, latency_window=5)
    latency = {"ticks": 5}
    server = FakeServer(core, n, lambda _r: latency["ticks"] * DT)
    simulate(core, server, 500)
    assert core.threshold == pytest.approx(5 / 50)
    latency["ticks"] = 20
    simulate(core, server, 1000)
    assert core.threshold == pytest.approx(20 / 50)


# -- safety ----------------------------------------------------------------------------------------
def test_commands_clamped_to_joint_limits_and_max_step() -> None:
    core = ActionQueueCore(
        2, QueueConfig(max_step=0.1, lower_limits=(-1.0, -0.5), upper_limits=(1.0, 0.5), chunk_threshold=0.0)
    )
    res = core.tick(0.0, np.array([0.0, 0.0]))
    np.testing.assert_allclose(res.command, [0.0, 0.0])  # before the first chunk: measured position held
    chunk = np.array([[2.0, -2.0], [2.0, -2.0], [0.95, 0.45], [0.95, 0.45]] + [[0.95, 0.45]] * 20)
    core.on_chunk(res.request.request_id, 0, chunk, 0.01)
    commands = [core.tick(0.1 * (i + 1), None).command for i in range(22)]
    np.testing.assert_allclose(commands[0], [0.1, -0.1])  # step-limited towards the clamped target (1, -0.5)
    np.testing.assert_allclose(commands[1], [0.2, -0.2])
    np.testing.assert_allclose(commands[2], [0.3, -0.1])
    np.testing.assert_allclose(commands[-1], [0.95, 0.45])
    for c in commands:
        assert np.all(c >= [-1.0, -0.5]) and np.all(c <= [1.0, 0.5])
    assert max(np.max(np.abs(np.diff(commands, axis=0))), np.max(np.abs(commands[0]))) <= 0.1 + 1e-12
    assert core.counters.commands_clamped > 0


def test_hold_latches_the_measured_position_and_then_the_last_command() -> None:
    core = make_core(chunk_threshold=0.0)
    res = core.tick(0.0, np.array([0.1, 0.2, 0.3]))
    assert res.idle and res.request is not None
    np.testing.assert_allclose(res.command, [0.1, 0.2, 0.3])
    res = core.tick(0.1, np.array([0.0, 0.0, 0.0]))  # state sags: the held command does not follow
    np.testing.assert_allclose(res.command, [0.1, 0.2, 0.3])
    core.on_chunk(res_id := 1, 0, np.full((2, J), 0.5), 0.15)
    assert res_id == 1
    core.tick(0.2, np.zeros(J))
    core.tick(0.3, np.zeros(J))
    res = core.tick(0.4, np.zeros(J))
    assert res.idle
    np.testing.assert_allclose(res.command, [0.5, 0.5, 0.5])


def test_no_state_no_command_is_reported_as_none() -> None:
    core = make_core()
    res = core.tick(0.0, None)
    assert res.command is None and res.idle and res.stale and res.request is None


# -- requests: failures, timeouts, stop ------------------------------------------------------------
def test_failed_requests_are_retried_with_exponential_backoff() -> None:
    core = make_core(retry_backoff=0.125, retry_backoff_max=0.5)
    times = []
    for i in range(600):
        t = i / 64  # exact binary fractions
        res = core.tick(t, np.zeros(J))
        if res.request is not None:
            times.append(t)
            assert core.on_request_failed(res.request.request_id, t, "server gone")
        assert res.idle
    assert list(np.diff(times)[:5]) == [0.125, 0.25, 0.5, 0.5, 0.5]
    assert core.counters.requests_failed == len(times)
    assert core.last_error == "server gone"
    assert core.counters.ticks == core.counters.idle_ticks  # the arm held the whole time


def test_timed_out_request_is_cancelled_counted_and_its_late_answer_ignored() -> None:
    core = make_core(request_timeout=0.5, retry_backoff=0.0)
    first = core.tick(0.0, np.zeros(J)).request
    assert core.tick(0.5, np.zeros(J)).cancel_request is None
    res = core.tick(0.6, np.zeros(J))
    assert res.cancel_request == first.request_id
    assert res.request is not None and res.request.request_id != first.request_id  # retried at once
    assert core.counters.requests_failed == 1
    assert not core.on_chunk(first.request_id, 0, np.zeros((5, J)), 0.7).accepted
    assert core.on_chunk(res.request.request_id, 0, np.zeros((5, J)), 0.7).accepted


def test_stop_holds_clears_the_queue_and_forgets_the_request() -> None:
    core = make_core(chunk_threshold=0.5)
    req = core.tick(0.0, np.zeros(J)).request
    core.on_chunk(req.request_id, 0, ramp_chunk(0, 10), 0.0)
    for i in range(6):
        res = core.tick(0.1 * (i + 1), np.zeros(J))
    assert core.request_in_flight
    in_flight = core.in_flight_id
    assert core.stop() == in_flight
    held = res.command
    for i in range(5):
        res = core.tick(1.0 + i, np.zeros(J))
        np.testing.assert_allclose(res.command, held)
        assert not res.executed and res.request is None
    assert core.queue_size == 0
    assert not core.on_chunk(in_flight, 5, ramp_chunk(5, 10), 2.0).accepted
    core.start()
    res = core.tick(3.0, np.zeros(J))
    assert res.request is not None and res.request.must_go and res.idle


def test_regression_start_after_a_reset_while_stopped_does_not_drive_back_to_the_old_hold() -> None:
    """Stopping holds the last command; if the arm is moved (or the simulator reset) while stopped, starting
    again must hold the *measured* position, not drive the arm back to the position held before."""
    core = make_core(chunk_threshold=0.5, max_step=0.0)
    req = core.tick(0.0, np.zeros(J)).request
    core.on_chunk(req.request_id, 0, ramp_chunk(0, 10, offset=0.5), 0.0)
    old = core.tick(0.1, np.zeros(J)).command
    core.stop()
    moved = np.full(J, -0.3)
    core.start()
    res = core.tick(1.0, moved)
    assert res.idle
    np.testing.assert_allclose(res.command, moved)
    assert not np.allclose(res.command, old)


def test_malformed_chunks_are_rejected_and_counted() -> None:
    core = make_core(retry_backoff=0.0)
    cases = ((0, np.zeros((5, J + 1))), (0, np.full((5, J), np.nan)), (7, np.zeros((5, J))))
    for i, (bad_start, bad) in enumerate(cases):
        req = core.tick(float(i), np.zeros(J)).request
        out = core.on_chunk(req.request_id, bad_start, bad, i + 0.1)
        assert not out.accepted and out.reason
    assert core.counters.requests_failed == 3 and core.counters.chunks_received == 0


def test_stale_observation_sends_nothing() -> None:
    core = make_core()
    res = core.tick(0.0, np.zeros(J), fresh=False)
    assert res.stale and res.request is None and core.counters.observations_stale == 1
    assert core.tick(0.1, np.zeros(J)).request is not None


# -- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"chunk_threshold": 1.5}, "chunk_threshold"),
        ({"chunk_threshold": -0.1}, "chunk_threshold"),
        ({"aggregate_fn": "median"}, "unknown aggregate_fn"),
        ({"fps": 0.0}, "fps"),
        ({"blend_ramp": -2.0}, "blend_ramp"),
        ({"max_step": -1.0}, "max_step"),
        ({"lower_limits": (0.0,) * J, "upper_limits": (0.0,) * J}, "lower limit"),
        ({"lower_limits": (0.0,), "upper_limits": (1.0,)}, "joints"),
        ({"nonsense": 1}, "unknown setting"),
    ],
)
def test_invalid_settings_rejected_with_reason(changes: dict, reason: str) -> None:
    core = make_core()
    before = core.config
    with pytest.raises(ValueError, match=reason):
        core.update_config(**changes)
    assert core.config == before


def test_runtime_threshold_change_takes_effect_on_the_next_tick() -> None:
    core = make_core(chunk_threshold=0.0)
    req = core.tick(0.0, np.zeros(J)).request
    core.on_chunk(req.request_id, 0, ramp_chunk(0, 10), 0.0)
    assert core.tick(0.1, np.zeros(J)).request is None  # queue 10 > 0
    core.update_config(chunk_threshold=1.0)
    assert core.threshold == 1.0
    assert core.tick(0.2, np.zeros(J)).request is not None


def test_prediction_sync_and_bound() -> None:
    p = predict(0.3, DT, 50, 0.0)
    assert p.latency_ticks == 9 and p.idle_fraction == pytest.approx(9 / 59)
    assert predict(0.3, DT, 50, 0.18).idle_fraction == 0.0
    assert predict(0.3, DT, 50, 0.16).idle_fraction == pytest.approx(1 / (9 + 50 - 16))
    assert math.isclose(predict(1.0, DT, 50, 0.7).idle_fraction, (60 - 50) / 60)  # k = 30 > n / 2


def test_regression_lerobot_off_by_one_a0_is_the_action_for_the_observed_tick() -> None:
    """lerobot labels a0 with the last executed tick and so drops it; here a0 is for the observed tick."""
    core = make_core(chunk_threshold=0.0)
    req = core.tick(0.0, np.zeros(J)).request  # queue empty: observation at timestep 0, this tick idles
    assert req.timestep == 0
    chunk = ramp_chunk(0, 5, offset=10.0)  # a0 = 10, a1 = 11, ...
    out = core.on_chunk(req.request_id, req.timestep, chunk, 0.5)
    assert out.late == 0
    assert core.tick(0.6, np.zeros(J)).command[0] == 10.0  # a0 executed first, at timestep 0
    assert core.timestep == 1
