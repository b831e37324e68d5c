"""A PredictChunk server with an artificial latency, plus an ideal arm, for the action-queue tests/benchmark.

Run as its own process (with the project's ROS environment):

    python action_queue_fake_server.py --latency-ms 300 --chunk-size 50 [--arm] [--no-server] [--fps 30]

* Server: answers each goal after ``latency`` seconds (a sleep: stands in for inference) with a chunk of
  ``chunk_size`` actions for ticks ``timestep + i``; action ``i`` = ``trajectory(timestep + i)``, a smooth
  function of the absolute tick (0.3 sin(2 pi t / (4 fps) + joint)), so correctly time-aligned chunks agree on
  every tick. Feedback after each of 10 "steps". The latency can be changed at run time (parameter
  ``latency_ms``). Goals are accepted one at a time; cancel requests are honoured.
* ``--arm``: an ideal arm that publishes ``/joint_states`` at ``fps`` (position = last received
  ``/joint_commands`` point, zeros at first), standing in for the driver or the simulator.

Prints ``READY`` once the server is up. Stops on SIGINT.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from smolvla_msgs.action import PredictChunk

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def trajectory(tick: int, fps: float) -> list[float]:
    return [0.3 * math.sin(2 * math.pi * tick / (4 * fps) + j) for j in range(len(JOINTS))]


class FakeServer(Node):
    def __init__(
        self, latency_ms: float, chunk_size: int, fps: float, arm: bool, server: bool = True
    ) -> None:
        super().__init__("fake_predict_server" if server else "fake_arm")
        self.declare_parameter("latency_ms", float(latency_ms))
        self.chunk_size, self.fps = chunk_size, fps
        self.goals = 0
        if server:
            self._make_server()
        if arm:
            self._position = [0.0] * len(JOINTS)
            group = MutuallyExclusiveCallbackGroup()
            self._js_pub = self.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
            self.create_subscription(
                JointTrajectory, "/joint_commands", self._on_command, 10, callback_group=group
            )
            self.create_timer(1.0 / fps, self._publish_state, callback_group=group)

    def _make_server(self) -> None:
        ActionServer(
            self,
            PredictChunk,
            "/smolvla/predict_chunk",
            self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )

    def _on_goal(self, _goal: object) -> GoalResponse:
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle: object) -> PredictChunk.Result:
        obs = goal_handle.request.observation  # type: ignore[attr-defined]
        t0 = time.monotonic()
        latency = float(self.get_parameter("latency_ms").value) / 1000.0
        result = PredictChunk.Result()
        steps = 10
        for step in range(1, steps + 1):
            remaining = t0 + latency * step / steps - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            if goal_handle.is_cancel_requested:  # type: ignore[attr-defined]
                goal_handle.canceled()  # type: ignore[attr-defined]
                result.error = "cancelled"
                return result
            goal_handle.publish_feedback(PredictChunk.Feedback(step=step, num_steps=steps))  # type: ignore[attr-defined]
        self.goals += 1
        chunk = result.chunk
        chunk.header.stamp = obs.header.stamp
        chunk.start_timestep = obs.timestep
        chunk.period = 1.0 / self.fps
        chunk.inference_ms = float((time.monotonic() - t0) * 1000.0)
        chunk.trajectory.joint_names = list(JOINTS)
        for i in range(self.chunk_size):
            chunk.trajectory.points.append(
                JointTrajectoryPoint(positions=trajectory(obs.timestep + i, self.fps))
            )
        goal_handle.succeed()  # type: ignore[attr-defined]
        return result

    def _on_command(self, msg: JointTrajectory) -> None:
        if msg.points:
            index = {n: i for i, n in enumerate(msg.joint_names)}
            pos = msg.points[0].positions
            self._position = [float(pos[index[j]]) if j in index else 0.0 for j in JOINTS]

    def _publish_state(self) -> None:
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(JOINTS)
        msg.position = list(self._position)
        self._js_pub.publish(msg)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--arm", action="store_true", help="also publish /joint_states (an ideal arm)")
    parser.add_argument("--no-server", action="store_true", help="no PredictChunk server (arm only)")
    args, ros_args = parser.parse_known_args()
    rclpy.init(args=[sys.argv[0], *ros_args])
    executor = MultiThreadedExecutor(num_threads=4)
    node = FakeServer(args.latency_ms, args.chunk_size, args.fps, args.arm, server=not args.no_server)
    executor.add_node(node)
    print("READY", flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
