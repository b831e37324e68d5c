"""robot:=so100 reaches the action queue, and /robot_description replaces its limits (issue 10, defect 2).

A real policy_server (scripted backend driving towards a target inside the SO-100's limits but outside the
SO-101's: shoulder_pan 1.98 rad, wrist_roll 3.0 rad) and the real action_queue with ``robot: so100``; an
ideal arm (action_queue_fake_server.py) publishes /joint_states. The commands reach the target (an SO-101
clamp would stop at 1.91986 / 2.84121). Then this test publishes a calibrated SO-100 description with
shoulder_pan +-1.5 rad: the commands follow the new limit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ros_harness import wait_for

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers (importlib mode)
from action_queue_testing import Probe, start_fake_server, stop_process  # noqa: E402

TARGET = [1.98, 0.0, 0.0, 0.0, 3.0, 0.0]


def test_so100_is_one_robot_in_the_queue(ros_executor, run_node) -> None:
    import json

    from std_msgs.msg import String

    from smolvla_common import robot_description
    from so_arm_description.robot_model import build_urdf

    arm = start_fake_server(0.0, 30, "--arm", "--no-server")
    try:
        server = run_node(
            "smolvla_policy",
            "policy_server",
            parameters={
                "backend": "scripted",
                "backend_options": json.dumps({"mode": "target", "target": TARGET, "max_velocity": 3.0}),
                "robot": "so100",
                "publish_markers": False,
            },
        )
        queue = run_node(
            "smolvla_policy",
            "action_queue",
            parameters={
                "robot": "so100",
                "cameras": [""],
                "task": "reach",
                "similarity_epsilon": -1.0,
                "max_step": 0.5,
            },
        )
        probe = Probe(ros_executor)

        def last_command() -> list[float]:
            with probe.lock:
                return list(probe.commands[-1].points[0].positions) if probe.commands else []

        def near(values: list[float]) -> bool:
            cmd = last_command()
            return bool(cmd) and abs(cmd[0] - values[0]) < 1e-6 and abs(cmd[4] - values[1]) < 1e-6

        logs = lambda: server.output()[-2000:] + queue.output()[-2000:]  # noqa: E731
        assert wait_for(lambda: near([1.98, 3.0]), 60), (last_command(), logs())
        assert "no /robot_description yet" in server.output()  # the server says it runs on defaults

        node = probe.node
        pub = node.create_publisher(String, robot_description.TOPIC, robot_description.qos())
        pub.publish(String(data=build_urdf("so100", {"shoulder_pan": (-1.5, 1.5)})))
        assert wait_for(lambda: near([1.5, 3.0]), 30), (last_command(), logs())
        assert "joint limits of the so100 from /robot_description" in queue.output()
    finally:
        stop_process(arm)
