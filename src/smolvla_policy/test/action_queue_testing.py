"""Helpers shared by the action_queue integration tests: a probe node (status, commands, parameters,
start/stop) and the fake PredictChunk server / ideal arm process (action_queue_fake_server.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import ros_harness

HERE = Path(__file__).resolve().parent
CONFIG = ros_harness.REPO_ROOT / "config" / "action_queue.yaml"
FAKE_SERVER = HERE / "action_queue_fake_server.py"
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


class Probe:
    """Subscribes to the node's outputs and calls its parameter and start/stop services."""

    def __init__(self, executor: object, node_name: str = "action_queue") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.parameter_client import AsyncParameterClient
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory

        from smolvla_msgs.msg import QueueStatus

        self.node = Node("probe", context=executor.context)  # type: ignore[attr-defined]
        self.lock = threading.Lock()
        self.status: list[object] = []
        self.commands: list[object] = []
        self.diagnostics: list[object] = []
        self.node.create_subscription(QueueStatus, "/smolvla/queue_status", self._on_status, 50)
        self.node.create_subscription(JointTrajectory, "/joint_commands", self._on_command, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.params = AsyncParameterClient(self.node, node_name)
        self.start_cli = self.node.create_client(Trigger, f"/{node_name}/start")
        self.stop_cli = self.node.create_client(Trigger, f"/{node_name}/stop")
        executor.add_node(self.node)  # type: ignore[attr-defined]

    def _on_status(self, msg: object) -> None:
        with self.lock:
            self.status.append(msg)

    def _on_diagnostics(self, msg: object) -> None:
        with self.lock:
            self.diagnostics.append(msg)

    def _on_command(self, msg: object) -> None:
        with self.lock:
            self.commands.append(msg)

    def last(self) -> object | None:
        with self.lock:
            return self.status[-1] if self.status else None

    def wait_status(self, predicate, timeout: float = 20.0) -> object:  # noqa: ANN001
        assert ros_harness.wait_for(lambda: (m := self.last()) is not None and predicate(m), timeout), (
            f"status condition not reached; last status: {self.last()}"
        )
        return self.last()

    def set_params(self, **values: object) -> list[object]:
        from rclpy.parameter import Parameter

        assert self.params.wait_for_services(timeout_sec=10.0)
        future = self.params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        assert ros_harness.wait_for(future.done, 10.0)
        return list(future.result().results)

    def trigger(self, client: object) -> object:
        from std_srvs.srv import Trigger

        assert client.wait_for_service(timeout_sec=10.0)  # type: ignore[attr-defined]
        future = client.call_async(Trigger.Request())  # type: ignore[attr-defined]
        assert ros_harness.wait_for(future.done, 10.0)
        return future.result()


def start_fake_server(latency_ms: float, chunk_size: int = 30, *flags: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FAKE_SERVER),
            "--latency-ms",
            str(latency_ms),
            "--chunk-size",
            str(chunk_size),
            *flags,
        ],
        env=ros_harness.ros_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline().strip() if proc.stdout is not None else ""
    if line != "READY":
        stop_process(proc)
        raise AssertionError(f"fake server did not start (first line: {line!r})")
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
