"""Issue 10, defect 3, with both real nodes: one /joint_commands stream in the action queue's message shape
(one point, time_from_start = one period, 30 Hz, stamped) drives the driver node on the emulated bus and
sim_node at once; their /joint_states follow the same trajectory within the servo/physics response.

Both nodes subscribe the same topic; their joint states are remapped apart. Each is compared with the other
and with the commanded stream after aligning by its response delay (found, not assumed), so the tolerance is
about the shape of the motion, not about timing.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from ros_harness import wait_for

pytestmark = pytest.mark.slow
rclpy = pytest.importorskip("rclpy")
pytest.importorskip("so_arm_driver")  # test-only dependency: the real driver is the reference
from builtin_interfaces.msg import Duration  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from so_arm_description.joints import JOINT_NAMES  # noqa: E402

FPS = 30.0
POSE = np.array([0.0, -1.0, 0.6, 1.2, 0.0, 0.3])  # reachable by both, away from the table
AMPLITUDE = np.array([0.35, 0.25, -0.25, 0.25, 0.5, 0.25])
FREQ = 0.25  # Hz (slow: the nodes run on a shared, loaded machine; errors grow with speed)


class Recorder:
    def __init__(self, context, executor) -> None:  # type: ignore[no-untyped-def]
        self.node = rclpy.create_node("one_stream_probe", context=context)
        self.lock = threading.Lock()
        self.states: dict[str, list[tuple[float, list[float]]]] = {
            "/driver/joint_states": [],
            "/sim/joint_states": [],
        }
        for topic in self.states:
            self.node.create_subscription(JointState, topic, lambda m, t=topic: self._on(t, m), 100)
        self.pub = self.node.create_publisher(JointTrajectory, "/joint_commands", 10)
        executor.add_node(self.node)

    def _on(self, topic: str, msg: JointState) -> None:
        order = [list(msg.name).index(n) for n in JOINT_NAMES]
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.states[topic].append((stamp, [msg.position[i] for i in order]))

    def series(self, topic: str) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            data = list(self.states[topic])
        return np.array([t for t, _ in data]), np.array([q for _, q in data])

    def send(self, q: np.ndarray) -> float:
        """One message of the action queue's shape; returns its stamp (s, ROS time)."""
        msg = JointTrajectory()
        now = self.node.get_clock().now()
        msg.header.stamp = now.to_msg()
        msg.joint_names = list(JOINT_NAMES)
        period = 1.0 / FPS
        msg.points = [
            JointTrajectoryPoint(
                positions=[float(x) for x in q], time_from_start=Duration(sec=0, nanosec=int(period * 1e9))
            )
        ]
        self.pub.publish(msg)
        return now.nanoseconds * 1e-9


def _aligned_rms(t_a, q_a, t_b, q_b, lags):  # type: ignore[no-untyped-def]
    """RMS of q_a(t) - q_b(t - lag) over the common window, for each lag; (best lag, rms)."""
    best = None
    for lag in lags:
        t = t_a[(t_a - lag >= t_b[0]) & (t_a - lag <= t_b[-1])]
        if len(t) < 20:
            continue
        qa = np.stack([np.interp(t, t_a, q_a[:, j]) for j in range(6)], axis=1)
        qb = np.stack([np.interp(t - lag, t_b, q_b[:, j]) for j in range(6)], axis=1)
        rms = float(np.sqrt(np.mean((qa - qb) ** 2)))
        if best is None or rms < best[1]:
            best = (lag, rms, float(np.max(np.abs(qa - qb))))
    assert best is not None
    return best


def test_one_queue_stream_drives_driver_and_sim_nodes_alike(run_node, ros_context, ros_executor):
    driver = run_node(
        "so_arm_driver",
        "so_arm_driver",
        parameters={"port": "emulated"},
        remappings={"joint_states": "/driver/joint_states"},
    )
    sim = run_node(
        "smolvla_sim",
        "sim_node",
        parameters={"cameras": ["top"], "camera_rate": 0.0, "image_width": 32, "image_height": 32, "seed": 1},
        remappings={"joint_states": "/sim/joint_states"},
    )
    rec = Recorder(ros_context, ros_executor)
    assert wait_for(lambda: all(len(v) > 10 for v in rec.states.values()), 90.0), (
        driver.output(),
        sim.output(),
    )
    # both to the same pose, then one sinusoidal stream at the queue's rate
    period = 1.0 / FPS
    sent: list[tuple[float, np.ndarray]] = []
    for _ in range(int(2.0 * FPS)):
        sent.append((rec.send(POSE), POSE))
        time.sleep(period)
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < 4.0:
        q = POSE + AMPLITUDE * math.sin(2 * math.pi * FREQ * elapsed)
        sent.append((rec.send(q), q))
        time.sleep(period)
    stream_start = sent[int(2.0 * FPS)][0]
    assert wait_for(lambda: all(rec.series(t)[0][-1] > sent[-1][0] for t in rec.states), 30.0)
    assert driver.alive() and sim.alive()

    t_cmd = np.array([t for t, _ in sent])
    q_cmd = np.array([q for _, q in sent])
    series = {}
    for topic in rec.states:
        t, q = rec.series(topic)
        keep = (t >= stream_start + 0.5) & (t <= t_cmd[-1])  # the sinusoid, after its first half second
        series[topic] = (t[keep], q[keep])
    # Each arm follows the commanded stream with a response delay, and the two arms move alike. The bounds
    # are about the shape of the motion: on a loaded 2-core CI machine a node's cycle is late by a few
    # periods (seen: the driver 0.3 s behind, rms 0.13 rad); the exact one-point semantics are pinned without
    # timing by test_command_semantics_match_driver.
    lags = np.arange(0.0, 0.61, 0.01)
    for topic, (t, q) in series.items():
        lag, rms, worst = _aligned_rms(t, q, t_cmd, q_cmd, lags)
        assert lag <= 0.5 and rms < 0.15 and worst < 0.6, (topic, lag, rms, worst)
    (t_d, q_d), (t_s, q_s) = series["/driver/joint_states"], series["/sim/joint_states"]
    lag, rms, worst = _aligned_rms(t_s, q_s, t_d, q_d, np.arange(-0.5, 0.51, 0.01))
    assert abs(lag) <= 0.5 and rms < 0.15 and worst < 0.6, (lag, rms, worst)
