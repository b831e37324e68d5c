"""smolvla_common.action_client: rclpy 9.1.2's send_goal_async leaked one never-completing Future per goal
(upstream ros2/rclpy#1532), found as the action queue's heap growth in the 20-minute soak (issue 19), and lost
the answer to a goal taken by the executor before it returned (session 5). Real rclpy action client and
server (test_msgs Fibonacci) in this process, spun by a MultiThreadedExecutor."""

from __future__ import annotations

import threading
import time

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


class _SlowDict(dict):
    """A dict whose item assignment takes ``delay`` seconds: widens the window between two statements of
    rclpy's send_goal_async in which the executor may take the server's answer."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def __setitem__(self, key, value) -> None:  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        super().__setitem__(key, value)


def test_a_goal_answered_before_send_goal_async_returned_was_lost(graph):
    """Regression (looping test_policy_server.py on a loaded machine: "the policy server did not answer the
    goal request" after 120 s): rclpy 9.1.2 registers the goal's future with the request under the client's
    lock, then replaces it by a second one after the lock (the feedback callback is registered in between).
    An answer taken by the executor in between completes the first; the caller's never completes. Here the
    window is widened to 1 s; the plain rclpy call is the positive control (skipped without the bug)."""
    fixed = ActionClient(graph, Fibonacci, "fib")
    assert fixed.wait_for_server(timeout_sec=30.0)
    fixed._feedback_callbacks = _SlowDict(1.0)  # noqa: SLF001
    goal = Fibonacci.Goal()
    goal.order = 3
    sent = send_goal_async(fixed, goal, feedback_callback=lambda _m: None)
    assert wait_for(sent.done, timeout=30.0)
    assert sent.result().accepted
    result = sent.result().get_result_async()
    assert wait_for(result.done, timeout=30.0) and list(result.result().result.sequence) == [3]

    plain = ActionClient(graph, Fibonacci, "fib")
    assert plain.wait_for_server(timeout_sec=30.0)
    plain._feedback_callbacks = _SlowDict(1.0)  # noqa: SLF001
    lost = plain.send_goal_async(goal, feedback_callback=lambda _m: None)
    if wait_for(lost.done, timeout=5.0):
        pytest.skip("this rclpy's send_goal_async does not lose an early answer (ros2/rclpy#1532 is in)")
    fixed.destroy()
    plain.destroy()
