"""Send one PredictChunk goal with 3 cameras of 512x512 and a 6-joint state; print the outcome as JSON.

Used by the interface tests as a second process (also inside a network namespace). Exit code 0 on success.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.action import ActionClient
from sensor_msgs.msg import JointState

from smolvla_common.image_conversion import numpy_to_image
from smolvla_msgs.action import PredictChunk
from so_arm_description.robot_spec import JOINT_NAMES


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("predict_client")
    client = ActionClient(node, PredictChunk, "/smolvla/predict_chunk")
    out: dict[str, object] = {"ok": False}
    try:
        if not client.wait_for_server(timeout_sec=30.0):
            out["error"] = "server not found"
            return 1
        rng = np.random.default_rng(7)
        goal = PredictChunk.Goal()
        obs = goal.observation
        obs.timestep = 42
        obs.task = "pick the cube"
        obs.camera_names = ["top", "wrist", "side"]
        digest = hashlib.sha256()
        for _ in range(3):
            img = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
            digest.update(img.tobytes())
            obs.images.append(numpy_to_image(img))
        obs.state = JointState(name=list(JOINT_NAMES), position=[0.1, -0.2, 0.3, -0.4, 0.5, 0.6])
        feedback: list[int] = []
        t0 = time.monotonic()
        send = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback.step))
        rclpy.spin_until_future_complete(node, send, timeout_sec=30.0)
        handle = send.result()
        if handle is None or not handle.accepted:
            out["error"] = "goal rejected or not answered"
            return 1
        res_future = handle.get_result_async()
        rclpy.spin_until_future_complete(node, res_future, timeout_sec=30.0)
        result = res_future.result().result
        # feedback travels on a topic, the result on a service: the last feedback may arrive just after it
        deadline = time.monotonic() + 2.0
        while len(feedback) < 10 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        chunk = result.chunk
        out.update(
            ok=chunk.header.frame_id == digest.hexdigest(),
            images_intact=chunk.header.frame_id == digest.hexdigest(),
            start_timestep=chunk.start_timestep,
            joint_names=list(chunk.trajectory.joint_names),
            n_points=len(chunk.trajectory.points),
            first_point=list(chunk.trajectory.points[0].positions),
            feedback_steps=feedback,
            round_trip_ms=(time.monotonic() - t0) * 1e3,
        )
        return 0 if out["ok"] else 1
    finally:
        print(json.dumps(out), flush=True)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
