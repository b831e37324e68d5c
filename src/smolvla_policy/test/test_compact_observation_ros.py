"""The action_queue node sends compact observations (issue 17): full frames until a PredictChunk result
reports the server's input size, then each camera resized with the model's resize-with-pad (no padding); JPEG
from the first goal. The queue runs as its own process; this test process is the camera, the arm and the
PredictChunk server."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers (importlib mode)
from action_queue_testing import CONFIG, JOINTS  # noqa: E402

SERVER_SIZE = (64, 64)


@pytest.mark.slow
def test_queue_sends_resized_jpeg_cameras_after_the_server_reports_its_size(ros_executor, run_node) -> None:
    from rclpy.action import ActionServer
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectoryPoint

    from smolvla_common.image_conversion import numpy_to_image
    from smolvla_msgs.action import PredictChunk
    from smolvla_policy.compact_observation import decode_compressed, resize_for_model

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    frame = np.clip(np.stack([x * 2.0, y * 2.5, (x + y) * 1.1], 2) + rng.normal(0, 4, (96, 128, 3)), 0, 255)
    frame = frame.astype(np.uint8)
    node = Node("compact_test_peer", context=ros_executor.context)
    goals: list[object] = []
    lock = threading.Lock()

    def execute(handle: object) -> object:
        obs = handle.request.observation  # type: ignore[attr-defined]
        with lock:
            goals.append(obs)
        handle.succeed()  # type: ignore[attr-defined]
        result = PredictChunk.Result()
        result.image_width, result.image_height = SERVER_SIZE
        chunk = result.chunk
        chunk.start_timestep = obs.timestep
        chunk.period = 1.0 / 30.0
        chunk.trajectory.joint_names = list(JOINTS)
        chunk.trajectory.points = [JointTrajectoryPoint(positions=[0.0] * len(JOINTS)) for _ in range(20)]
        return result

    ActionServer(
        node, PredictChunk, "/smolvla/predict_chunk", execute, callback_group=ReentrantCallbackGroup()
    )
    js_pub = node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
    cam_pub = node.create_publisher(Image, "/cameras/top/image_raw", qos_profile_sensor_data)

    def publish() -> None:
        stamp = node.get_clock().now().to_msg()
        js = JointState(name=list(JOINTS), position=[0.0] * len(JOINTS))
        js.header.stamp = stamp
        js_pub.publish(js)
        img = numpy_to_image(frame)
        img.header.stamp = stamp
        cam_pub.publish(img)

    node.create_timer(1.0 / 30.0, publish)
    ros_executor.add_node(node)
    run_node("smolvla_policy", "action_queue", params_file=CONFIG, parameters={
        "cameras": ["top"], "observation_image_size": "auto", "observation_jpeg_quality": 85,
        "chunk_threshold": 0.5, "similarity_epsilon": -1.0, "request_timeout": 5.0})  # fmt: skip
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        with lock:
            if len(goals) >= 3:
                break
        time.sleep(0.05)
    with lock:
        got = list(goals)
    assert len(got) >= 3, f"{len(got)} goals in 60 s"
    # the first goal goes out before any result: the full frame (JPEG, not resized yet)
    assert len(got[0].images) == 0 and len(got[0].compressed_images) == 1
    first = decode_compressed(got[0].compressed_images[0].format, bytes(got[0].compressed_images[0].data))
    assert first.shape == frame.shape
    # after the first result: JPEG of the model's resize (128x96 -> 64x48 inside 64x64), no raw images
    last = got[-1]
    assert len(last.images) == 0 and len(last.compressed_images) == 1 and list(last.camera_names) == ["top"]
    decoded = decode_compressed(last.compressed_images[0].format, bytes(last.compressed_images[0].data))
    expected = resize_for_model(frame, *SERVER_SIZE)
    assert decoded.shape == expected.shape == (48, 64, 3)
    mse = float(np.mean((decoded.astype(np.float64) - expected) ** 2))
    assert 10 * np.log10(255**2 / mse) > 30.0
