"""sim_node as an installed executable (real rclpy between processes, SHM-only DDS, real MuJoCo + EGL)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import ros_harness
from ros_harness import wait_for

pytestmark = pytest.mark.slow
TOOLS = Path(__file__).resolve().parents[3] / "tools"

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Duration  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import Bool, UInt32  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from smolvla_common.image_conversion import image_to_numpy  # noqa: E402
from so_arm_description.robot_spec import JOINT_NAMES  # noqa: E402


def _sec(stamp) -> float:  # type: ignore[no-untyped-def]
    return stamp.sec + stamp.nanosec * 1e-9


class Probe:
    """Subscribers, a command publisher and service clients in the test process."""

    def __init__(self, context, executor) -> None:  # type: ignore[no-untyped-def]
        self.node = rclpy.create_node("sim_probe", context=context)
        self.msgs: dict[str, list] = {}
        self._lock = threading.Lock()
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        for topic, typ, qos in (
            ("/cameras/top/image_raw", Image, 10),
            ("/cameras/wrist/image_raw", Image, 10),
            ("/cameras/top/camera_info", CameraInfo, 10),
            ("/joint_states", JointState, 50),
            ("/clock", Clock, 50),
            ("/sim_node/task_success", Bool, 10),
            ("/sim_node/episode", UInt32, latched),
        ):
            self.msgs[topic] = []
            self.node.create_subscription(typ, topic, self._add(topic), qos)
        self.cmd = self.node.create_publisher(JointTrajectory, "/joint_commands", 10)
        executor.add_node(self.node)

    def _add(self, topic: str) -> Callable:
        def callback(msg) -> None:  # type: ignore[no-untyped-def]
            with self._lock:
                self.msgs[topic].append(msg)

        return callback

    def get(self, topic: str) -> list:
        with self._lock:
            return list(self.msgs[topic])

    def clear(self, topic: str) -> None:
        with self._lock:
            self.msgs[topic].clear()

    def call(self, srv_type, name: str, request):  # type: ignore[no-untyped-def]
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=30.0)
            future = client.call_async(request)
            assert wait_for(future.done, timeout=30.0)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameter(self, name: str, value: ParameterValue) -> tuple[bool, str]:
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)])
        result = self.call(SetParameters, "/sim_node/set_parameters", request).results[0]
        return result.successful, result.reason

    def position(self, joint: str) -> float:
        js = self.get("/joint_states")[-1]
        return js.position[list(js.name).index(joint)]


def _command(names, rows, times=None) -> JointTrajectory:  # type: ignore[no-untyped-def]
    msg = JointTrajectory()
    msg.joint_names = list(names)
    for k, row in enumerate(rows):
        p = JointTrajectoryPoint()
        p.positions = [float(v) for v in row]
        if times is not None:
            p.time_from_start = Duration(sec=int(times[k]), nanosec=int((times[k] % 1) * 1e9))
        msg.points.append(p)
    return msg


@pytest.fixture
def sim_node(run_node):  # type: ignore[no-untyped-def]
    params = {
        "image_width": 96,
        "image_height": 64,
        "camera_rate": 10.0,
        "joint_state_rate": 50.0,
        "publish_clock": True,
        "seed": 5,
    }
    node = run_node(
        "smolvla_sim",
        "sim_node",
        params_file=str(ros_harness.REPO_ROOT / "config" / "sim_node.yaml"),
        parameters=params,
    )
    assert node.wait_for_output("simulating", timeout=60.0), node.output()
    return node


def test_images_at_configured_size_and_rate(sim_node, ros_context, ros_executor):  # type: ignore[no-untyped-def]
    probe = Probe(ros_context, ros_executor)
    assert wait_for(lambda: len(probe.get("/cameras/wrist/image_raw")) >= 8, timeout=60.0), sim_node.output()
    for topic in ("/cameras/top/image_raw", "/cameras/wrist/image_raw"):
        images = probe.get(topic)
        for img in images:
            assert (img.width, img.height, img.encoding) == (96, 64, "rgb8")
            assert image_to_numpy(img).shape == (64, 96, 3)
        stamps = np.array([_sec(m.header.stamp) for m in images])
        # 10 Hz of simulated time: every stamp on the 0.1 s grid (a frame the probe lost on a loaded machine
        # is a skipped grid point, not a wrong period)
        steps = np.diff(stamps) / 0.1
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-5)
        assert np.all(np.round(steps) >= 1) and np.median(np.round(steps)) == 1
    info = probe.get("/cameras/top/camera_info")[-1]
    assert (info.width, info.height) == (96, 64)
    assert info.k[2] == pytest.approx(48.0) and info.k[5] == pytest.approx(32.0) and info.k[0] > 0
    top = image_to_numpy(probe.get("/cameras/top/image_raw")[-1])
    assert np.any((top[..., 0] > 150) & (top[..., 1] < 60))  # the red cube
    js = probe.get("/joint_states")[-1]
    assert list(js.name) == list(JOINT_NAMES)
    assert len(js.position) == len(js.velocity) == len(js.effort) == 6
    clock = probe.get("/clock")
    assert clock and _sec(clock[-1].clock) > 0.0
    js_stamps = np.array([_sec(m.header.stamp) for m in probe.get("/joint_states")[-20:]])
    js_steps = np.diff(js_stamps) / 0.02  # 50 Hz of simulated time (grid points, as for the images)
    np.testing.assert_allclose(js_steps, np.round(js_steps), atol=1e-5)
    assert np.all(np.round(js_steps) >= 1) and np.median(np.round(js_steps)) == 1


def test_reset_episode_commands_and_malformed_messages(sim_node, ros_context, ros_executor):  # type: ignore[no-untyped-def]
    probe = Probe(ros_context, ros_executor)
    assert wait_for(lambda: probe.get("/sim_node/episode") and probe.get("/joint_states"), timeout=30.0)
    assert probe.get("/sim_node/episode")[-1].data == 1
    response = probe.call(Trigger, "/sim_node/reset", Trigger.Request())
    assert response.success and response.message == "episode 2 seed 6"
    assert wait_for(lambda: probe.get("/sim_node/episode")[-1].data == 2, timeout=10.0)
    assert wait_for(lambda: probe.get("/sim_node/task_success"), timeout=10.0)
    assert probe.get("/sim_node/task_success")[-1].data is False

    # malformed commands are reported and ignored; the node keeps publishing
    bad = [
        _command(["nope"], [[0.0]]),
        _command(JOINT_NAMES, []),
        _command(JOINT_NAMES, [[0.0] * 5]),
        _command(JOINT_NAMES, [[float("nan")] * 6]),
        _command(JOINT_NAMES, [[0.0] * 6, [0.1] * 6], times=[1.0, 0.5]),
        _command(["gripper", "gripper"], [[0.1, 0.2]]),
    ]
    for msg in bad:
        probe.cmd.publish(msg)
    assert sim_node.wait_for_output("ignored /joint_commands message", timeout=10.0)
    n = len(probe.get("/joint_states"))
    assert wait_for(lambda: len(probe.get("/joint_states")) > n + 10, timeout=10.0)
    assert sim_node.alive()

    # a streamed target (partial joint set) is reached; the arm moves up and sideways, away from the objects
    probe.cmd.publish(_command(["shoulder_lift", "elbow_flex"], [[-1.4, 0.2]]))
    assert wait_for(lambda: abs(probe.position("elbow_flex") - 0.2) < 0.03, timeout=20.0)
    # a multi-point trajectory is followed by time_from_start
    js = probe.get("/joint_states")[-1]
    q = np.array(js.position)
    rows = [q + [-0.05, 0, 0, 0, 0, 0.3], q + [-0.1, 0, 0, 0, 0, 0.6]]
    probe.cmd.publish(_command(js.name, rows, times=[0.5, 1.0]))
    assert wait_for(lambda: abs(probe.position("gripper") - rows[-1][5]) < 0.03, timeout=20.0)
    assert abs(probe.position("shoulder_pan") - rows[-1][0]) < 0.03

    # parameters: start-up ones are rejected with a reason, run-time ones accepted, ranges enforced
    ok, reason = probe.set_parameter(
        "robot", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="so100")
    )
    assert not ok and "start-up" in reason
    ok, _ = probe.set_parameter(
        "real_time_factor", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=2.0)
    )
    assert ok
    ok, _ = probe.set_parameter(
        "max_step", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=-1.0)
    )
    assert not ok
    assert sim_node.alive()


@pytest.mark.parametrize(
    ("mode", "episodes", "rtf"), [([], 3, 1.5), (["--multi-point"], 2, 3.0)], ids=["streamed", "multi_point"]
)
def test_expert_through_ros_from_a_separate_process(mode, episodes, rtf):  # type: ignore[no-untyped-def]
    """The expert's targets go to sim_node on /joint_commands from another process (which starts sim_node)."""
    env = ros_harness.ros_environment()
    cmd = [
        *(sys.executable, str(TOOLS / "run_expert_ros.py"), "--episodes", str(episodes), "--seed", "300"),
        *("--real-time-factor", str(rtf), *mode),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{episodes}/{episodes} episodes succeeded" in proc.stdout
