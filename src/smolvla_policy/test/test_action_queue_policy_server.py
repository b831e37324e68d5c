"""action_queue against the project's real policy_server (scripted backend, artificial latency) over real ROS,
with a camera published by this test process: images travel with the observations, and a camera that stops
publishing makes the node stop requesting (max_observation_age) while the arm keeps holding.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

import ros_harness

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers (importlib mode)
from action_queue_testing import CONFIG, Probe, start_fake_server, stop_process  # noqa: E402


class CameraPublisher:
    def __init__(self, executor: object, name: str = "top") -> None:
        import numpy as np
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from smolvla_common.image_conversion import numpy_to_image

        self.node = Node("fake_camera", context=executor.context)  # type: ignore[attr-defined]
        self.pub = self.node.create_publisher(Image, f"/cameras/{name}/image_raw", qos_profile_sensor_data)
        self.frame = np.zeros((48, 64, 3), dtype=np.uint8)
        self.enabled = threading.Event()
        self.enabled.set()
        self._to_image = numpy_to_image

        def publish() -> None:
            if self.enabled.is_set():
                msg = self._to_image(self.frame, "rgb8")
                msg.header.stamp = self.node.get_clock().now().to_msg()
                self.pub.publish(msg)

        self.node.create_timer(1.0 / 15.0, publish)
        executor.add_node(self.node)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_queue_with_real_policy_server_and_a_camera(ros_executor, run_node) -> None:
    ros_harness.find_executable("smolvla_policy", "policy_server")
    arm = start_fake_server(0.0, 30, "--arm", "--no-server")
    try:
        server = run_node(
            "smolvla_policy",
            "policy_server",
            parameters={
                "backend": "scripted",
                "backend_options": '{"mode": "sinusoid"}',  # ros_harness quotes it for -p
                "latency_ms": 150.0,
                "publish_markers": False,
            },
        )
        camera = CameraPublisher(ros_executor)
        params = {
            "cameras": ["top"],
            "task": "pick the cube",
            "chunk_threshold": 0.5,
            "similarity_epsilon": -1.0,
            "max_observation_age": 0.5,
        }
        node = run_node("smolvla_policy", "action_queue", params_file=CONFIG, parameters=params)
        probe = Probe(ros_executor)
        first = probe.wait_status(
            lambda m: m.chunks_received >= 1, timeout=60.0
        )  # (discovery may fail first)
        status = probe.wait_status(lambda m: m.chunks_received >= first.chunks_received + 3)
        assert status.requests_failed == first.requests_failed, node.output()[-2000:]
        assert status.chunk_size > 0
        with probe.lock:
            positions = {tuple(c.points[0].positions) for c in probe.commands[-20:]}
        assert len(positions) > 1  # the scripted sinusoid moves the arm

        # the camera stops: observations become stale, requests stop, the arm holds
        camera.enabled.clear()
        probe.wait_status(lambda m: m.queue_size == 0 and not m.request_in_flight, timeout=30.0)
        stale = probe.last()
        probe.wait_status(lambda m: m.tick >= stale.tick + 30)
        after = probe.last()
        assert after.observations_sent == stale.observations_sent
        assert after.idle_ticks - stale.idle_ticks >= 30
        assert node.wait_for_output("image of camera 'top' is", 10.0)

        # the camera comes back: requests resume
        camera.enabled.set()
        probe.wait_status(lambda m: m.chunks_received >= after.chunks_received + 2, timeout=30.0)
        assert server.alive() and node.alive()
    finally:
        stop_process(arm)
