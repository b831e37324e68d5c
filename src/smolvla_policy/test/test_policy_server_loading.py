"""Integration test: goals sent while the backend loads are accepted and answered once it is ready; a backend
that fails to load aborts goals with the reason and the server recovers when the parameters are fixed.

The backend is the plug-in ``smolvla_policy.server.testing:gated_scripted_backend`` whose loading waits for a
file, so the test holds the server in its loading state without timing assumptions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros_harness import NodeProcess, wait_for
from smolvla_policy.server.testing import GoalRef, PolicyClient, make_observation, status_name

pytestmark = pytest.mark.slow

ACTION = "/gated/predict_chunk"


def _gated_server(options: dict, **parameters: Any) -> NodeProcess:
    """A policy server whose backend loads once the file ``options['wait_for_file']`` exists."""
    return NodeProcess(
        "smolvla_policy",
        "policy_server",
        parameters={
            "action_name": ACTION,
            "backend": "smolvla_policy.server.testing:gated_scripted_backend",
            "backend_options": json.dumps(options),  # ros_harness quotes it for -p
            **parameters,
        },
    )


def test_goals_wait_for_the_backend_and_load_failures_are_reported(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    options = {"wait_for_file": str(gate), "mode": "hold", "chunk_size": 4}
    proc = _gated_server(options, num_steps=2)
    client = None
    try:
        assert proc.wait_for_output("loading", 60.0), proc.output()
        client = PolicyClient(ACTION)
        assert client.action.wait_for_server(timeout_sec=30.0)
        q = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
        first = client.send(make_observation(positions=q, timestep=1))
        second = client.send(make_observation(positions=q, timestep=2))
        status, result = client.result(first, timeout=120.0)  # preempted while both wait for the backend
        assert status_name(status) == "aborted" and "preempted" in result.error
        result_future = second.handle.get_result_async()
        time.sleep(0.5)
        assert not result_future.done()  # still loading: the goal waits
        gate.touch()
        assert wait_for(result_future.done, 60.0)
        res = result_future.result()
        assert status_name(res.status) == "succeeded" and res.result.chunk.start_timestep == 2
        np.testing.assert_allclose([p.positions for p in res.result.chunk.trajectory.points], [q] * 4)

        # A backend that cannot load: goals are aborted with the reason; the server lives on.
        bad = dict(options, wait_for_file=str(tmp_path / "never"), timeout_s=0.05)
        client.set_parameters(backend_options=json.dumps(bad))
        assert wait_for(lambda: "loading backend" in proc.output() and "failed" in proc.output(), 60.0)
        status, result = client.result(client.send(make_observation(positions=q)))
        assert status_name(status) == "aborted" and "did not appear" in result.error, result.error
        client.set_parameters(backend_options=json.dumps(options))
        status, result = client.result(client.send(make_observation(positions=q)))
        assert status_name(status) == "succeeded"
    finally:
        if client is not None:
            client.close()
        code = proc.stop()
    assert code == 0, proc.output()


def test_shutdown_answers_the_goals_in_flight() -> None:
    """SIGINT while a goal runs and another waits: both get an aborted result before the server exits 0."""
    proc = NodeProcess(
        "smolvla_policy",
        "policy_server",
        parameters={"action_name": ACTION, "backend": "scripted", "latency_ms": 600_000.0},
    )
    client = None
    try:
        assert proc.wait_for_output("ready", 60.0), proc.output()
        client = PolicyClient(ACTION)
        assert client.action.wait_for_server(timeout_sec=30.0)
        running = client.send(make_observation(timestep=1))
        assert wait_for(lambda: len(running.feedback) >= 1, 30.0)
        waiting = client.send(make_observation(timestep=2))
        futures = [ref.handle.get_result_async() for ref in (running, waiting)]
        time.sleep(1.0)  # let the result requests reach the server (ms on shared memory)
        assert proc.stop() == 0, proc.output()
        assert wait_for(lambda: all(f.done() for f in futures), 10.0)
        for f in futures:
            res = f.result()
            assert (
                status_name(res.status) == "aborted" and res.result.error == "policy server is shutting down"
            )
    finally:
        if client is not None:
            client.close()
        proc.stop()


def _slow_to_accept(timestep: int) -> Any:
    """An observation whose acceptance takes the server ~0.1 s: two 2048x2048 noise JPEGs to decode."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    obs = make_observation({}, positions=[0.0] * 6, timestep=timestep)
    rng = np.random.default_rng(timestep)
    obs.camera_names = ["top", "wrist"]
    for _ in obs.camera_names:
        ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8))
        assert ok
        obs.compressed_images.append(CompressedImage(format="jpeg", data=buf.tobytes()))
    return obs


def test_goals_are_taken_in_arrival_order_and_a_cancel_finds_a_goal_being_accepted(tmp_path: Path) -> None:
    """Regression (session 4's CI run: both tests above timed out waiting for a result; reproduced by looping
    them with CPU burners): the action server's requests were handled concurrently (reentrant group). A goal
    whose acceptance took longer was submitted after the goal sent right behind it and preempted it (the
    first goal then waited for the backend instead of being preempted), and a cancel that arrived while its
    goal was being accepted found no job and was refused: the goal waited on and its result never came.
    Here the first goal's images take ~0.1 s to decode; the backend never finishes loading."""
    from smolvla_common.action_client import send_goal_async

    gate = tmp_path / "never"
    proc = _gated_server({"wait_for_file": str(gate), "mode": "hold", "chunk_size": 4, "timeout_s": 600})
    client = None
    try:
        assert proc.wait_for_output("loading", 60.0), proc.output()
        client = PolicyClient(ACTION)
        assert client.action.wait_for_server(timeout_sec=30.0)
        goal = client.PredictChunk.Goal
        slow = send_goal_async(client.action, goal(observation=_slow_to_accept(1)))
        quick = send_goal_async(client.action, goal(observation=make_observation(timestep=2)))
        first = GoalRef(client._wait(slow, 60.0))
        second = GoalRef(client._wait(quick, 60.0))
        client.sent += [first, second]
        status, result = client.result(first, timeout=60.0)
        assert status_name(status) == "aborted" and "preempted" in result.error, (status, result.error)
        assert not second.handle.get_result_async().done()  # the newer one waits for the backend

        third = client.send(_slow_to_accept(3))  # answered before its acceptance callback has run
        assert client.cancel(third).return_code == 0
        status, result = client.result(third, timeout=60.0)
        assert status_name(status) == "canceled", (status, result.error)
        status, result = client.result(second, timeout=60.0)  # preempted by the third on its arrival
        assert status_name(status) == "aborted" and "preempted" in result.error
    finally:
        if client is not None:
            client.cancel_outstanding()
            client.close()
        code = proc.stop()
    assert code == 0, proc.output()
