"""smolvla_common.action_client: rclpy 9.1.2's send_goal_async leaked one never-completing Future per goal
(upstream ros2/rclpy#1532), found as the action queue's heap growth in the 20-minute soak (issue 19). Real
rclpy action client and server (test_msgs Fibonacci) in this process, spun by a MultiThreadedExecutor."""

from __future__ import annotations

import threading

import pytest

from ros_harness import wait_for

rclpy = pytest.importorskip("rclpy")
from rclpy.action import ActionClient, ActionServer  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from test_msgs.action import Fibonacci  # noqa: E402

from smolvla_common.action_client import orphaned_futures, send_goal_async  # noqa: E402
from smolvla_common.executor_shutdown import shutdown_executor  # noqa: E402

N_GOALS = 20


@pytest.fixture
def graph(ros_context):  # type: ignore[no-untyped-def]
    node = rclpy.create_node("action_client_leak", context=ros_context)

    def execute(handle):  # type: ignore[no-untyped-def]
        handle.succeed()
        result = Fibonacci.Result()
        result.sequence = [handle.request.order]
        return result

    server = ActionServer(node, Fibonacci, "fib", execute)
    executor = MultiThreadedExecutor(num_threads=3, context=ros_context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    shutdown_executor(executor, thread)
    thread.join(timeout=10.0)
    server.destroy()
    node.destroy_node()


def _run_goals(client, send) -> None:  # type: ignore[no-untyped-def]
    assert client.wait_for_server(timeout_sec=30.0)
    for k in range(N_GOALS):
        goal = Fibonacci.Goal()
        goal.order = k
        sent = send(client, goal)
        assert wait_for(sent.done, timeout=30.0)
        handle = sent.result()
        assert handle.accepted
        result = handle.get_result_async()
        assert wait_for(result.done, timeout=30.0)
        assert list(result.result().result.sequence) == [k]


def test_send_goal_async_leaked_a_future_per_goal(graph):
    """Regression: every goal of the action queue left a Future in its action client, never completed, never
    removed (46 kB/min of heap in the soak). Through send_goal_async of smolvla_common none is left; the plain
    rclpy call is the positive control (skipped once an rclpy without the bug is installed)."""
    fixed = ActionClient(graph, Fibonacci, "fib")
    _run_goals(fixed, send_goal_async)
    assert orphaned_futures(fixed) == []
    assert wait_for(lambda: len(fixed._futures) == 0, timeout=30.0), fixed._futures  # noqa: SLF001

    plain = ActionClient(graph, Fibonacci, "fib")
    _run_goals(plain, lambda c, g: c.send_goal_async(g))
    leaked = len(orphaned_futures(plain))
    if leaked == 0:
        pytest.skip("this rclpy's send_goal_async does not leak (ros2/rclpy#1532 is in)")
    assert leaked == N_GOALS  # one per goal: what the action queue accumulated
    fixed.destroy()
    plain.destroy()
