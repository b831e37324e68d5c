"""A minimal PredictChunk action server used by the interface tests (run as its own process).

It answers each goal with a chunk built from the observation (the state repeated ``chunk`` times, joint names
and timestep echoed) and puts a SHA-256 of all received image bytes into ``chunk.header.frame_id`` so the
client can check that the images arrived intact. Prints "READY" once the server is up.
"""

from __future__ import annotations

import hashlib
import sys
import time

import rclpy
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException
from trajectory_msgs.msg import JointTrajectoryPoint

from smolvla_msgs.action import PredictChunk


def execute(goal_handle: object) -> PredictChunk.Result:
    obs = goal_handle.request.observation  # type: ignore[attr-defined]
    digest = hashlib.sha256()
    for img in obs.images:
        digest.update(bytes(img.data))
    result = PredictChunk.Result()
    chunk = result.chunk
    chunk.header.stamp = obs.header.stamp
    chunk.header.frame_id = digest.hexdigest()
    chunk.start_timestep = obs.timestep
    chunk.period = 1 / 30
    chunk.trajectory.joint_names = list(obs.state.name)
    for i in range(10):
        chunk.trajectory.points.append(JointTrajectoryPoint(positions=list(obs.state.position)))
        feedback = PredictChunk.Feedback(step=i + 1, num_steps=10)
        goal_handle.publish_feedback(feedback)  # type: ignore[attr-defined]
        time.sleep(0.01)  # a denoising step takes time; feedback is a topic with a bounded history
    goal_handle.succeed()  # type: ignore[attr-defined]
    return result


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("echo_predict_server")
    ActionServer(node, PredictChunk, "/smolvla/predict_chunk", execute)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
