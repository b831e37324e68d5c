"""The test-side PredictChunk client (``smolvla_policy.server.testing.PolicyClient``) against a real rclpy
action server over DDS, in this process: a result response lost in the middleware is asked for again.

CI run of session 4 (test_preemption_and_cancel and test_goals_wait_for_the_backend_and_load_failures_are_
reported): a goal's result never reached the client in 30 s. rmw_fastrtps drops a service response without
a trace on the client ("client will not receive response") when the server has not matched the client's
response reader within the writer's 100 ms, or after it unmatched it; the server answers every later
request for a goal it keeps, so the client asks again. The fault is injected at the one place rclpy sends a
result response: its first call is dropped, as the middleware would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from smolvla_policy.server.testing import PolicyClient, make_observation, status_name

pytestmark = pytest.mark.slow

ACTION = "/lossy/predict_chunk"


@pytest.fixture
def lossy_server(ros_context: Any) -> Iterator[dict]:
    """A PredictChunk server that succeeds every goal at once and drops its first result response."""
    from rclpy.action import ActionServer
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node

    from smolvla_msgs.action import PredictChunk

    node = Node("lossy_predict_server", context=ros_context)
    state = {"sent": 0, "dropped": 0}

    def execute(goal_handle: Any) -> Any:
        goal_handle.succeed()
        result = PredictChunk.Result()
        result.chunk.start_timestep = goal_handle.request.observation.timestep
        return result

    server = ActionServer(node, PredictChunk, ACTION, execute_callback=execute)
    send = server._send_result_response

    def lossy_send(request_header: Any, future: Any) -> None:
        if state["dropped"] == 0:
            state["dropped"] += 1  # lost on the way, like a response rmw_fastrtps cannot deliver
            return
        state["sent"] += 1
        send(request_header, future)

    server._send_result_response = lossy_send  # rclpy looks it up per request (functools.partial)
    executor = MultiThreadedExecutor(num_threads=2, context=ros_context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        from smolvla_common.executor_shutdown import shutdown_executor

        shutdown_executor(executor, thread)
        server.destroy()
        node.destroy_node()


def test_a_lost_result_response_is_asked_for_again(lossy_server: dict) -> None:
    client = PolicyClient(ACTION, node_name="lossy_test_client")
    try:
        assert client.action.wait_for_server(timeout_sec=30.0)
        ref = client.send(make_observation(timestep=7))
        status, result = client.result(ref, timeout=60.0, ask_again_s=0.5)
        assert status_name(status) == "succeeded" and result.chunk.start_timestep == 7
        assert lossy_server["dropped"] == 1 and lossy_server["sent"] >= 1

        # asked only once, the lost answer is a timeout that says how often it asked and what it saw
        lossy_server["dropped"] = 0
        ref = client.send(make_observation(timestep=8))
        with pytest.raises(TimeoutError, match=r"\(1 requests\).*succeeded.*paused"):
            client.result(ref, timeout=1.5, ask_again_s=10.0)
    finally:
        client.close()
