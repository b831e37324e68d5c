"""Issue 10, defect 3, on the real sim_node (installed executable, real rclpy/DDS, real MuJoCo): the simulator
obeys the driver's command semantics (so_arm_description.command_following).

Times are read from the simulator's own stamps (``publish_clock``), so nothing depends on the wall clock.
"""

from __future__ import annotations

import threading

import pytest

from ros_harness import wait_for

pytestmark = pytest.mark.slow

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Duration  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from so_arm_description.joints import JOINT_NAMES  # noqa: E402


def _sec(stamp) -> float:  # type: ignore[no-untyped-def]
    return stamp.sec + stamp.nanosec * 1e-9


def _duration(t: float) -> Duration:
    return Duration(sec=int(t), nanosec=int(round((t % 1.0) * 1e9)))


class Probe:
    """/joint_states recorder and a /joint_commands publisher on the wall clock (like a queue without
    use_sim_time)."""

    def __init__(self, context, executor) -> None:  # type: ignore[no-untyped-def]
        self.node = rclpy.create_node("sim_command_probe", context=context)
        self.states: list[JointState] = []
        self._lock = threading.Lock()
        self.node.create_subscription(JointState, "/joint_states", self._on_state, 100)
        self.pub = self.node.create_publisher(JointTrajectory, "/joint_commands", 10)
        executor.add_node(self.node)

    def _on_state(self, msg: JointState) -> None:
        with self._lock:
            self.states.append(msg)

    def samples(self, joint: str) -> list[tuple[float, float]]:
        """(sim time, position) of ``joint``."""
        with self._lock:
            states = list(self.states)
        return [(_sec(m.header.stamp), m.position[list(m.name).index(joint)]) for m in states]

    def send(self, rows: list[list[float]], times: list[float], stamped: bool = True) -> None:
        msg = JointTrajectory()
        if stamped:  # wall time: this probe is on the wall clock
            msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.joint_names = list(JOINT_NAMES)
        for row, t in zip(rows, times):
            msg.points.append(
                JointTrajectoryPoint(positions=[float(v) for v in row], time_from_start=_duration(t))
            )
        self.pub.publish(msg)


@pytest.fixture
def sim(run_node):  # type: ignore[no-untyped-def]
    node = run_node(
        "smolvla_sim",
        "sim_node",
        parameters={
            "publish_clock": True,  # the simulator's stamps and /clock are sim time; the probe stays on wall
            "camera_rate": 0.0,
            "cameras": ["top"],
            "image_width": 32,
            "image_height": 32,
            "seed": 3,
            "max_step": 0.0,  # unlimited: the goal is the target at once, only the physics responds
        },
    )
    assert node.wait_for_output("simulating", timeout=60.0), node.output()
    return node


def _start(probe: Probe) -> list[float]:
    assert wait_for(lambda: len(probe.states) >= 5, timeout=60.0)
    with probe._lock:
        last = probe.states[-1]
    return [last.position[list(last.name).index(n)] for n in JOINT_NAMES]


def test_sim_follows_streamed_target_without_lag(sim, ros_context, ros_executor):  # type: ignore[no-untyped-def]
    """A one-point message is a streamed target applied now. Before, sim_node followed it as a one-point
    trajectory reached at time_from_start (one period later): with a 1 s period (a queue at 1 Hz) the arm
    was still about 20 % of the way 0.2 s after it started moving."""
    probe = Probe(ros_context, ros_executor)
    start = _start(probe)
    target = list(start)
    j = JOINT_NAMES.index("shoulder_pan")
    target[j] += 0.4
    probe.send([target], [1.0], stamped=False)  # the queue's shape: one point, time_from_start = one period
    assert wait_for(lambda: abs(probe.samples("shoulder_pan")[-1][1] - start[j]) > 0.01, 30.0), sim.output()
    samples = probe.samples("shoulder_pan")
    t_move = next(t for t, q in samples if abs(q - start[j]) > 0.01)
    assert wait_for(lambda: probe.samples("shoulder_pan")[-1][0] > t_move + 0.25, 30.0)
    q = next(q for t, q in probe.samples("shoulder_pan") if t >= t_move + 0.2)
    assert (q - start[j]) / 0.4 > 0.8, (q, start[j])  # a lagging interpolation would be at ~0.2-0.25
    assert sim.alive()


def test_sim_does_not_freeze_with_clock_and_wall_time_queue(sim, ros_context, ros_executor):  # type: ignore[no-untyped-def]
    """With /clock published and the commands stamped on the wall clock, the trajectory started ~1.7e9 s in
    the future: the simulated arm froze. The stamp is on another clock, so the receive time is used."""
    probe = Probe(ros_context, ros_executor)
    start = _start(probe)
    j = JOINT_NAMES.index("elbow_flex")
    # a queue at 30 Hz on wall time: one point, time_from_start = 1/30 s, wall-clock stamps
    target = list(start)
    target[j] -= 0.3
    for _ in range(15):
        probe.send([target], [1.0 / 30.0])
    assert wait_for(lambda: abs(probe.samples("elbow_flex")[-1][1] - target[j]) < 0.02, 30.0), (
        probe.samples("elbow_flex")[-1],
        target[j],
    )
    # a multi-point trajectory stamped on the wall clock: followed from its receive time to the end
    mid, end = list(target), list(target)
    mid[j] += 0.15
    end[j] += 0.3
    probe.send([mid, end], [0.3, 0.6])
    assert wait_for(lambda: abs(probe.samples("elbow_flex")[-1][1] - end[j]) < 0.02, 30.0), (
        probe.samples("elbow_flex")[-1],
        end[j],
    )
    assert sim.alive()
