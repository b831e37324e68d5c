"""Workspace-wide pytest harness.

- Applies the project's network isolation to the test process and everything it starts (shared-memory-only
  Fast DDS profile via both profile variables, a ROS_DOMAIN_ID per run and per xdist worker, ROS_LOG_DIR).
- ``ros_context``: an initialised rclpy context of its own; ``ros_executor``: a MultiThreadedExecutor
  spinning in a thread on that context, shut down and joined before the context is shut down.
- ``run_node``: start an installed executable with ``--ros-args``; stopped with SIGINT at teardown.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

import ros_harness


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # node logs inside pytest's own temporary tree (pruned to the last runs), not left in /tmp
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None and "SMOLVLA_NODE_LOG_DIR" not in os.environ:
        os.environ["SMOLVLA_NODE_LOG_DIR"] = str(factory.getbasetemp() / "node_logs")
    base = os.environ.get("SMOLVLA_TEST_DOMAIN_BASE")
    domain = int(base) + _worker_index() if base else ros_harness.default_domain_id(_worker_index())
    ros_harness.apply_ros_environment(domain)


@pytest.fixture
def ros_domain_id() -> int:
    return int(os.environ["ROS_DOMAIN_ID"])


@pytest.fixture
def ros_context(ros_domain_id: int) -> Iterator[object]:
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture
def ros_executor(ros_context: object) -> Iterator[object]:
    from rclpy.executors import MultiThreadedExecutor

    executor = MultiThreadedExecutor(num_threads=4, context=ros_context)
    thread = threading.Thread(target=executor.spin, daemon=True, name="ros-executor")
    thread.start()
    try:
        yield executor
    finally:
        from smolvla_common.executor_shutdown import shutdown_executor

        shutdown_executor(executor, thread)  # no "exception was never retrieved" after the run (issue 19)
        thread.join(timeout=10.0)
        for node in list(executor.get_nodes()):
            node.destroy_node()


@pytest.fixture
def run_node() -> Iterator[object]:
    started: list[ros_harness.NodeProcess] = []

    def start(package: str, executable: str, **kwargs: object) -> ros_harness.NodeProcess:
        proc = ros_harness.NodeProcess(package, executable, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test's report ends with the last lines of the node processes it ran (their logs are files
    that a CI run does not keep): what the server said is often the answer."""
    outcome = yield
    report = outcome.get_result()
    if report.when in ("setup", "call") and report.failed:
        dumped = ros_harness.dump_stacks()  # the nodes still running print their threads' stacks first
        tails = ros_harness.log_tails(since=call.start, lines=250 if dumped else 30)
        if tails:
            report.sections.append(("node logs (last lines)", tails))
