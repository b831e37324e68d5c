"""Integration tests of the action_queue node over real ROS (slow).

The node runs as its own process; a PredictChunk server with an artificial latency and an ideal arm run in
another process (action_queue_fake_server.py); this test process talks to the node through topics,
SetParameters and the start/stop services.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import ros_harness

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers (importlib mode)
from action_queue_testing import CONFIG, JOINTS, Probe, start_fake_server, stop_process  # noqa: E402


@pytest.fixture
def fake_server() -> object:
    proc = start_fake_server(100.0, 30, "--arm")
    yield proc
    stop_process(proc)


@pytest.fixture
def fake_arm() -> object:
    """An ideal arm alone (no server) in its own process, stopped at teardown."""
    proc = start_fake_server(0.0, 30, "--arm", "--no-server")
    yield proc
    stop_process(proc)


QUEUE_PARAMS = {"cameras": [""], "chunk_threshold": 0.2, "similarity_epsilon": -1.0, "request_timeout": 2.0}


@pytest.mark.slow
def test_threshold_changed_at_run_time_is_visible_in_queue_status(
    ros_executor, run_node, fake_server
) -> None:
    node = run_node("smolvla_policy", "action_queue", params_file=CONFIG, parameters=QUEUE_PARAMS)
    probe = Probe(ros_executor)
    first = probe.wait_status(lambda m: m.chunks_received >= 2)
    assert first.threshold == pytest.approx(0.2) and first.chunk_size == 30 and first.running

    # valid change through SetParameters from this process
    results = probe.set_params(chunk_threshold=0.9)
    assert results[0].successful, results[0].reason
    tick_at_reply = probe.last().tick
    seen = probe.wait_status(lambda m: abs(m.threshold - 0.9) < 1e-6)
    assert seen.tick - tick_at_reply <= 3  # visible within a few control ticks
    # g = 0.9, chunk 30: a request as soon as the queue is <= 27, i.e. one request per chunk arrival
    sent = seen.observations_sent
    probe.wait_status(lambda m: m.observations_sent >= sent + 3)

    # invalid values are refused with their reason, and nothing changes
    bad_g = probe.set_params(chunk_threshold=1.5)[0]
    assert not bad_g.successful and "chunk_threshold" in bad_g.reason
    bad_int = probe.set_params(chunk_threshold=2)[0]  # an integer is accepted as a number, but 2 > 1
    assert not bad_int.successful and "chunk_threshold" in bad_int.reason
    bad_str = probe.set_params(chunk_threshold="high")[0]
    assert not bad_str.successful and "must be a number" in bad_str.reason
    bad_fn = probe.set_params(aggregate_fn="median")[0]
    assert not bad_fn.successful and "'aggregate_fn' must be one of latest_only," in bad_fn.reason
    ok = probe.set_params(
        aggregate_fn="blend", blend_ramp=5.0, similarity_epsilon=0.001, task="pick the cube"
    )
    assert all(r.successful for r in ok)
    assert probe.set_params(fps=20.0)[0].successful  # the timer is re-created at the new rate
    now = probe.last()
    probe.wait_status(lambda m: m.tick >= now.tick + 5)
    assert abs(probe.last().threshold - 0.9) < 1e-6

    # one command per tick, contract joint names, one point
    with probe.lock:
        commands = list(probe.commands)
    assert commands and all(list(c.joint_names) == JOINTS and len(c.points) == 1 for c in commands)

    # stop holds and cancels; start resumes
    reply = probe.trigger(probe.stop_cli)
    assert reply.success
    stopped = probe.wait_status(lambda m: not m.running)
    assert not stopped.request_in_flight and stopped.queue_size == 0
    with probe.lock:
        n_before = len(probe.commands)
    assert ros_harness.wait_for(lambda: len(probe.commands) >= n_before + 10, 10.0)
    with probe.lock:
        held = [tuple(c.points[0].positions) for c in probe.commands[n_before + 2 :]]
    assert len(set(held)) == 1  # the arm holds one position
    assert probe.trigger(probe.start_cli).success
    chunks = stopped.chunks_received
    probe.wait_status(lambda m: m.running and m.chunks_received >= chunks + 2)
    assert node.alive()


@pytest.mark.slow
def test_auto_threshold_reports_its_choice(ros_executor, run_node, fake_server) -> None:
    params = dict(QUEUE_PARAMS, chunk_threshold=0.0, auto_threshold=True, auto_threshold_margin=0.05)
    node = run_node("smolvla_policy", "action_queue", params_file=CONFIG, parameters=params)
    probe = Probe(ros_executor)
    status = probe.wait_status(lambda m: m.chunks_received >= 3 and m.auto_threshold)
    # g = mean latency / period / chunk_size + margin, latency >= 100 ms: g >= 0.1 / (1/30) / 30 + 0.05 = 0.15
    assert 0.15 - 1e-3 <= status.threshold <= 1.0
    assert status.threshold == pytest.approx(status.last_latency_ms / 1000 * 30 / 30 + 0.05, abs=0.05)
    assert node.wait_for_output("auto threshold: g =", 10.0)


@pytest.mark.slow
def test_server_that_disappears_leaves_the_arm_holding(ros_executor, run_node, fake_arm) -> None:
    server = start_fake_server(100.0)
    try:
        params = dict(QUEUE_PARAMS, chunk_threshold=0.0, request_timeout=0.5, retry_backoff=0.1)
        run_node("smolvla_policy", "action_queue", params_file=CONFIG, parameters=params)
        probe = Probe(ros_executor)
        probe.wait_status(lambda m: m.chunks_received >= 2)
    finally:
        stop_process(server)
    before = probe.last()
    after = probe.wait_status(lambda m: m.requests_failed >= before.requests_failed + 2 and m.queue_size == 0)
    assert after.running
    with probe.lock:
        n = len(probe.commands)
    assert ros_harness.wait_for(lambda: len(probe.commands) >= n + 10, 10.0)
    with probe.lock:
        held = {tuple(c.points[0].positions) for c in probe.commands[n:]}
    assert len(held) == 1  # holding the last command, not jumping, not silent
    assert probe.last().idle_ticks > after.idle_ticks

    def diagnosed() -> bool:
        with probe.lock:
            arrays = list(probe.diagnostics)
        for array in arrays:
            for st in array.status:
                values = {kv.key: kv.value for kv in st.values}
                failed = int(values.get("requests_failed", 0))
                if "action queue" in st.name and failed >= after.requests_failed and st.level == st.WARN:
                    return bool(values.get("last_error")) and values.get("queue_size") == "0"
        return False

    assert ros_harness.wait_for(diagnosed, 10.0)


@pytest.mark.slow
def test_sim_time_drives_the_control_loop(ros_executor, run_node) -> None:
    """With use_sim_time the loop ticks with /clock: no tick while the clock stands, ~one per period of it."""
    import time

    from rclpy.node import Node
    from rosgraph_msgs.msg import Clock

    params = dict(QUEUE_PARAMS, use_sim_time=True, chunk_threshold=0, fps=30)  # integers accepted
    run_node("smolvla_policy", "action_queue", params_file=CONFIG, parameters=params)
    probe = Probe(ros_executor)
    clock_node = Node("fake_clock", context=ros_executor.context)
    pub = clock_node.create_publisher(Clock, "/clock", 10)

    def publish(t: float) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = int(t), int(round((t % 1.0) * 1e9))
        pub.publish(msg)

    t = 100.0
    # deliver /clock until the node ticks on sim time (its status stamps are then sim time)
    for _ in range(400):
        t += 1.0 / 30.0
        publish(t)
        time.sleep(0.05)
        if (m := probe.last()) is not None and m.header.stamp.sec >= 100:
            break
    assert probe.last() is not None and probe.last().header.stamp.sec >= 100
    time.sleep(0.3)
    with probe.lock:
        frozen_count = len(probe.status)
    time.sleep(1.0)  # the clock stands still: no tick
    with probe.lock:
        assert len(probe.status) - frozen_count <= 1
        before = probe.status[-1].tick
    for _ in range(30):
        t += 1.0 / 30.0
        publish(t)
        time.sleep(0.02)
    assert ros_harness.wait_for(lambda: probe.last().tick >= before + 20, 10.0)
    time.sleep(0.3)
    assert probe.last().tick <= before + 31
    clock_node.destroy_node()
