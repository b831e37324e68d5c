"""Fault-injected soak of the arm driver graph (issue 19): the real ``so_arm_driver`` node process on the
emulated servo bus (real scservo_sdk on a pty), a 30 Hz ``/joint_commands`` stream and a monitor, with faults
injected on a schedule:

=================  ===========================================================================================
``unplug``         USB adapter unplugged (the pty vanishes), replugged after the fault's duration
``brownout``       servo supply drops for the duration; servos come back with torque off (every second one
                   also with its EEPROM configuration at factory values)
``drop``           every status packet lost for the duration (a silent bus)
``garble``         30 % of the status packets corrupted for the duration
``late``           every reply late for the duration: sent only with the answer to the next request (after
                   the driver's timeout and input flush; the cause of the soak's 37.8 s jump)
``flood``          malformed ``/joint_commands`` at ~200 Hz between the good ones (wrong sizes, NaN, inf,
                   empty, unknown/duplicate names, negative/backwards times, 5000-point trajectories)
``param_fuzz``     invalid values of every parameter (wrong types, out of range, NaN, read-only, unknown
                   names) through SetParameters, then every parameter set back to its value
``kill``           the driver process SIGKILLed, started again after the duration
=================  ===========================================================================================

With ``graph=True`` the commands come from policy_server (scripted) through action_queue (faults
``kill_server``, ``stall_model``, ``kill_queue``, ``flood_states``); with ``camera=True`` as well a
``camera_node`` ("top", fed by the fake device of ``fake_camera.py``: no USB camera here) whose images the
action queue needs (faults ``kill_camera``, ``camera_unplug``, ``camera_frozen``, ``camera_garbage``,
``flood_images``: malformed images on /cameras/top/image_raw). Whether the camera node reported each camera
fault on /diagnostics is counted.

Counted: driver crashes (exits nobody asked for), commands whose change per write exceeds the step cap (from
every Goal_Position sync write the emulator applied), ticks held (the driver not "following commands" at a
command tick), per fault whether and how fast the driver recovered (diagnostics OK "following commands",
torque on, and goals reaching the servos again after the fault cleared), the rejection kinds the driver
logged on /rosout, and the RSS of every node process (driver, and with ``graph`` policy_server and
action_queue) and of this process (the emulator thread and the monitor) over time (:func:`memory_fits`: a
least-squares line over the second half of each process's life).

Used by ``benchmarks/soak.py`` (long runs, docs/reliability.md) and the soak test of so_arm_driver (short).
Plain Python around rclpy; nothing here is imported by the nodes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ros_harness

FAULTS = ("unplug", "brownout", "drop", "garble", "late", "flood", "param_fuzz", "kill")
#: with ``graph=True`` (policy_server + action_queue produce the commands) besides FAULTS
GRAPH_FAULTS = ("kill_server", "stall_model", "kill_queue", "flood_states")
#: with ``camera=True`` (a camera_node on a fake device feeds the action queue)
CAMERA_FAULTS = ("kill_camera", "camera_unplug", "camera_frozen", "camera_garbage", "flood_images")

#: calibration of the emulated follower (the one the driver tests use)
CAL = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1012, "range_min": 758, "range_max": 3322},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 1300, "range_min": 812, "range_max": 3199},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": -400, "range_min": 900, "range_max": 3100},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 900, "range_min": 1002, "range_max": 3220},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -260, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1400, "range_min": 2030, "range_max": 3470},
}
JOINTS = tuple(CAL)


@dataclass
class FaultRecord:
    name: str
    start: float  # s since the soak started
    clear: float  # when the fault was removed
    recovered_at: float | None = None  # first "following commands" with goals reaching the servos after clear
    camera_reported: str = ""  # camera faults: the camera node's first non-OK status during the fault

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.clear


@dataclass
class SoakResult:
    duration_s: float
    ticks: int = 0
    ticks_held: int = 0
    crashes: int = 0
    crash_logs: list[str] = field(default_factory=list)
    goal_writes: int = 0
    over_cap: int = 0
    over_cap_events: list[tuple[float, int, float]] = field(default_factory=list)  # (s, servo id, change rad)
    max_change_rad: float = 0.0
    faults: list[FaultRecord] = field(default_factory=list)
    rejection_kinds_logged: list[str] = field(default_factory=list)
    param_fuzz_accepted: list[str] = field(default_factory=list)
    params_restored: bool = True
    rss_driver: list[tuple[float, float, int]] = field(default_factory=list)  # (s, MB, driver process #)
    rss_harness: list[tuple[float, float]] = field(default_factory=list)
    #: every process: name -> [(s, VmRSS MB, process instance #)] (a restarted node is a new instance)
    rss: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    #: the same with RssAnon (private anonymous memory: the heap), and RssShmem (DDS shared memory)
    rss_anon: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    rss_shmem: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    final_torque_on: bool = False
    final_level: str = ""
    diag_log: list[tuple[float, int, str, str]] = field(default_factory=list)  # (s, level, message, torque)

    def fault_table(self) -> list[tuple[str, int, int, float, float]]:
        """(fault, injected, recovered, median recovery s, max recovery s) per fault kind."""
        rows = []
        for name in (*FAULTS, *GRAPH_FAULTS, *CAMERA_FAULTS):
            recs = [f for f in self.faults if f.name == name]
            if not recs:
                continue
            times = sorted(f.recovery_s for f in recs if f.recovery_s is not None)
            med = times[len(times) // 2] if times else math.nan
            rows.append((name, len(recs), len(times), med, times[-1] if times else math.nan))
        return rows

    @property
    def unrecovered(self) -> list[FaultRecord]:
        return [f for f in self.faults if f.recovered_at is None]


def memory_mb(pid: int) -> dict[str, float] | None:
    """VmRSS, RssAnon, RssFile, RssShmem of a process (MB). RssAnon is the private heap (what a leak grows);
    VmRSS also counts the shared-memory segments of the SHM-only DDS transport that the process touched
    (the same pages in every node) and mapped files."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return out if "VmRSS" in out else None


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def slope_mb_per_h(samples: Sequence[tuple[float, float]], skip: float = 0.2) -> float:
    """Least-squares slope of RSS over time (MB/h), the first ``skip`` fraction (warm-up) left out."""
    pts = list(samples)[int(len(samples) * skip) :]
    if len(pts) < 3:
        return math.nan
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    if var == 0:
        return math.nan
    return 3600.0 * sum((t - mt) * (v - mv) for t, v in pts) / var


def _malformed_messages(rng: random.Random) -> list[object]:
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    def msg(names: Sequence[str], points: Sequence[tuple[float, Sequence[float]]]) -> JointTrajectory:
        m = JointTrajectory()
        m.joint_names = list(names)
        for t, pos in points:
            p = JointTrajectoryPoint()
            p.positions = [float(x) for x in pos]
            sec = math.floor(t)
            p.time_from_start = Duration(sec=int(sec), nanosec=int((t - sec) * 1e9))
            m.points.append(p)
        return m

    six = list(JOINTS)
    out = [
        msg(six, [(0.0, [0.0] * 5)]),  # wrong size
        msg(six, [(0.0, [math.nan] * 6)]),
        msg(six, [(0.0, [math.inf, 0, 0, 0, 0, 0])]),
        msg(six, []),  # no points
        msg([], [(0.0, [])]),  # no names
        msg(["elbow"], [(0.0, [0.1])]),  # unknown name
        msg(["gripper", "gripper"], [(0.0, [0.1, 0.2])]),  # duplicate
        msg(six, [(0.5, [0.0] * 6), (0.2, [0.1] * 6)]),  # backwards
        msg(six, [(1.0, [1e9] * 6), (2.0, [-1e9] * 6)]),  # absurd values: clamped, capped
        msg(six, [(0.01 * k, [rng.uniform(-3, 3) for _ in range(6)]) for k in range(5000)]),  # huge
    ]
    bad_time = msg(six, [(0.0, [0.0] * 6), (0.1, [0.0] * 6)])
    bad_time.points[1].time_from_start.sec = -1  # negative time
    out.append(bad_time)
    return out


def _fuzz_values() -> list[object]:
    return [True, -1, 0, 10**12, -1e300, math.nan, math.inf, "x", "", [1.0, 2.0], ["a"], [True], [1, 2]]


class _Harness:
    """The test-side ROS node: command stream, malformed flood, monitor, parameter client."""

    def __init__(self, domain_id: int, rate_hz: float, seed: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.msg import Log
        from rcl_interfaces.srv import GetParameters, SetParameters
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("fault_soak", context=self.context)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.diag: tuple[float, int, str, dict[str, str]] | None = None  # (t, level, message, values)
        self.diag_log: list[tuple[float, int, str, str]] = []  # (t, level, message, torque_enabled)
        self.rosout: list[str] = []
        self.states = 0
        self.flooding = False
        self.flooding_states = False
        self.flooding_images = False
        self.camera_diag: list[tuple[float, int, str]] = []  # (t, level, message) of the camera node
        self.rate_hz = rate_hz
        self.malformed = _malformed_messages(self.rng)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(JointTrajectory, "/joint_commands", qos)
        self.state_pub = self.node.create_publisher(JointState, "/joint_states", 10)
        from sensor_msgs.msg import Image

        self.image_pub = self.node.create_publisher(Image, "/cameras/top/image_raw", 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.node.create_subscription(JointState, "/joint_states", self._on_state, 50)
        rosout_qos = QoSProfile(
            depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.node.create_subscription(Log, "/rosout", self._on_log, rosout_qos)
        self.set_params = self.node.create_client(SetParameters, "/so_arm_driver/set_parameters")
        self.server_params = self.node.create_client(SetParameters, "/policy_server/set_parameters")
        self.get_params = self.node.create_client(GetParameters, "/so_arm_driver/get_parameters")
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True, name="fault-soak-executor")
        self.thread.start()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _on_diag(self, msg) -> None:  # type: ignore[no-untyped-def]
        for st in msg.status:
            if "camera_node: camera" in st.name:
                level = int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level)
                with self.lock:
                    self.camera_diag.append((self.now(), level, st.message))
                continue
            if "Feetech bus" not in st.name:
                continue
            values = {kv.key: kv.value for kv in st.values}
            level = int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level)
            with self.lock:
                self.diag = (self.now(), level, st.message, values)
                self.diag_log.append((self.now(), level, st.message, values.get("torque_enabled", "")))

    def _on_state(self, msg) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            self.states += 1

    def _on_log(self, msg) -> None:  # type: ignore[no-untyped-def]
        if msg.name.endswith("so_arm_driver"):
            with self.lock:
                self.rosout.append(msg.msg)

    def target(self, t: float) -> list[float]:
        """Smooth targets well inside the limits (at most ~0.5 rad/s: below the step cap at 50 Hz)."""
        return [0.4 * math.sin(2 * math.pi * t / (6.0 + k)) for k in range(len(JOINTS))]

    def command(self, t: float) -> None:
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        msg = JointTrajectory()
        msg.joint_names = list(JOINTS)
        p = JointTrajectoryPoint()
        p.positions = self.target(t)
        msg.points = [p]
        self.pub.publish(msg)

    def flood_states(self, n: int) -> None:
        """Malformed /joint_states between the driver's (the action queue subscribes to them)."""
        from sensor_msgs.msg import JointState

        for _ in range(n):
            msg = JointState()
            msg.header.stamp = self.node.get_clock().now().to_msg()
            kind = self.rng.randrange(6)
            if kind == 0:
                msg.name, msg.position = list(JOINTS), [math.nan] * 6
            elif kind == 1:
                msg.name, msg.position = list(JOINTS), [0.0] * 3  # wrong size
            elif kind == 2:
                msg.name, msg.position = ["a", "b"], [0.0, 1.0]  # unknown names
            elif kind == 3:
                msg.name, msg.position = list(JOINTS), [1e9, -1e9, math.inf, -math.inf, 0.0, 0.0]
            elif kind == 4:
                msg.name, msg.position = list(JOINTS) * 500, [0.1] * 3000  # huge, duplicated names
            self.state_pub.publish(msg)  # kind 5: empty

    def flood_images(self, n: int) -> None:
        """Malformed images on the camera topic the action queue subscribes to: wrong sizes and steps, unknown
        and mismatched encodings, empty, huge, zero-sized, stamped far in the future."""
        from sensor_msgs.msg import Image

        for _ in range(n):
            msg = Image()
            msg.header.stamp = self.node.get_clock().now().to_msg()
            msg.header.frame_id = "top_camera_optical_frame"
            kind = self.rng.randrange(8)
            msg.height, msg.width, msg.encoding, msg.step = 48, 64, "rgb8", 64 * 3
            if kind == 0:
                msg.data = bytes(10)  # too little data for 64x48 rgb8
            elif kind == 1:
                msg.encoding, msg.data = "yuv422_yuy2", bytes(64 * 48 * 2)  # an encoding nobody expects
            elif kind == 2:
                msg.encoding, msg.data = "no_such_encoding", bytes(64 * 48 * 3)
            elif kind == 3:
                msg.height = msg.width = msg.step = 0  # empty
            elif kind == 4:
                msg.height, msg.width, msg.step = 2000, 2000, 6000  # huge (12 MB)
                msg.data = bytes(2000 * 6000)
            elif kind == 5:
                msg.step, msg.data = 7, bytes(64 * 48 * 3)  # a step that does not fit
            elif kind == 6:
                msg.encoding, msg.data = "32FC1", bytes(64 * 48 * 4)  # a depth image
            else:
                msg.data = bytes(64 * 48 * 3)
                msg.header.stamp.sec += 10**6  # from the far future
            self.image_pub.publish(msg)

    def flood(self, n: int) -> None:
        for _ in range(n):
            self.pub.publish(self.rng.choice(self.malformed))

    def call(self, client, request, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        future = client.call_async(request)
        if not ros_harness.wait_for(future.done, timeout):
            client.remove_pending_request(future)
            return None
        return future.result()

    def parameters(self, names: Sequence[str]) -> dict[str, object] | None:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        res = self.call(self.get_params, GetParameters.Request(names=list(names)))
        if res is None:
            return None
        return {n: parameter_value_to_python(v) for n, v in zip(names, res.values)}

    def set_parameter(self, name: str, value: object, client: Any = None) -> bool | None:
        from rcl_interfaces.msg import Parameter as ParameterMsg
        from rcl_interfaces.msg import ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        v = ParameterValue()
        if isinstance(value, bool):
            v.type, v.bool_value = ParameterType.PARAMETER_BOOL, value
        elif isinstance(value, int):
            v.type, v.integer_value = ParameterType.PARAMETER_INTEGER, max(-(2**63), min(2**63 - 1, value))
        elif isinstance(value, float):
            v.type, v.double_value = ParameterType.PARAMETER_DOUBLE, value
        elif isinstance(value, str):
            v.type, v.string_value = ParameterType.PARAMETER_STRING, value
        elif isinstance(value, list) and value and all(isinstance(x, bool) for x in value):
            v.type, v.bool_array_value = ParameterType.PARAMETER_BOOL_ARRAY, value
        elif isinstance(value, list) and value and all(isinstance(x, int) for x in value):
            v.type, v.integer_array_value = ParameterType.PARAMETER_INTEGER_ARRAY, value
        elif isinstance(value, list) and value and all(isinstance(x, float) for x in value):
            v.type, v.double_array_value = ParameterType.PARAMETER_DOUBLE_ARRAY, value
        else:
            v.type, v.string_array_value = ParameterType.PARAMETER_STRING_ARRAY, [str(x) for x in value]  # type: ignore[union-attr]
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=v)])
        res = self.call(client or self.set_params, request)
        return None if res is None else bool(res.results[0].successful)

    def close(self) -> None:
        import rclpy

        from smolvla_common.executor_shutdown import shutdown_executor

        shutdown_executor(self.executor, self.thread)
        self.thread.join(timeout=10.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run_soak(
    workdir: str | os.PathLike,
    duration_s: float,
    faults: Sequence[str] = FAULTS,
    fault_duration_s: float = 1.5,
    period_s: float = 8.0,
    rate_hz: float = 30.0,
    max_step: float = 0.05,
    seed: int = 0,
    domain_id: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    graph: bool = False,
    stall_s: float = 10.0,
    rss_period_s: float = 2.0,
    camera: bool = False,
) -> SoakResult:
    """Run the soak: one fault every ``period_s`` seconds (cycling through ``faults``), each held for
    ``fault_duration_s``, for ``duration_s`` seconds in total (at least one round of ``faults``)."""
    from so_arm_driver import calibration as calib
    from so_arm_driver.emulator import Emulator

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cal_file = work / "follower.json"
    cal_file.write_text(json.dumps(CAL, indent=2))
    cal = calib.from_dict(CAL)
    link = work / "ttyACM0"
    env = ros_harness.ros_environment(domain_id)
    domain = int(env["ROS_DOMAIN_ID"])
    params = {
        "port": str(link),
        "calibration_file": str(cal_file),
        "rate": 50.0,
        "max_step": max_step,
        "command_timeout": 0.5,
        "reconnect_period": 0.2,
        "verify_period": 0.5,
        "diagnostics_period": 0.25,
        "read_retries": 2,
        # the emulator is a thread of this (busy) process: a reply may wait for the CPU longer than a real
        # servo's (as EMULATED_BUS_TIMING); 2 x 50 + 2 ms per attempt instead of 2 x 16 + 2
        # (a restarted driver failed its connect; at 30 ms one was still not connected 60 s after the kill)
        "latency_timer_ms": 50.0,
    }
    cap_ticks = max_step / calib.RAD_PER_TICK + 1.0  # + 1: rounding of both goals to whole ticks
    result = SoakResult(duration_s=duration_s)
    positions = {m.id: (m.mid + m.homing_offset) % 4096 for m in cal.values()}
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # the in-process emulator thread answers in time (ENVIRONMENT.md §9)
    emu = Emulator(positions=positions, link=link, seed=seed)
    emu.goal_present_log = []
    emu.start()
    harness = _Harness(domain, rate_hz, seed)
    drivers: list[ros_harness.NodeProcess] = []

    def start_driver() -> ros_harness.NodeProcess:
        proc = ros_harness.NodeProcess(
            "so_arm_driver",
            "so_arm_driver",
            parameters=params,
            env=env,
            log_path=work / f"driver-{len(drivers)}.log",
        )
        drivers.append(proc)
        return proc

    driver = start_driver()
    killed: set[int] = set()
    # graph mode: the commands come from policy_server (scripted sinusoid) through action_queue
    others: dict[str, ros_harness.NodeProcess] = {}
    other_params = {
        "policy_server": {
            "backend": "scripted",
            "backend_options": json.dumps({"mode": "sinusoid", "amplitude": 0.3, "period_s": 6.0}),
            "publish_markers": False,
        },
        "action_queue": {
            "cameras": ["top" if camera else ""],
            "task": "soak",
            "similarity_epsilon": -1.0,
            "max_step": 0.5,
        },
    }
    restarts = {"policy_server": 0, "action_queue": 0, "camera_node": 0}
    fake_cam = None
    if camera:
        from fake_camera import FifoCamera

        fake_cam = FifoCamera(work / "video0")  # the camera "device": no USB camera here
        other_params["camera_node"] = {
            "name": "top",
            "source": str(fake_cam.path),
            "fps": 10.0,
            "width": 64,
            "height": 48,
            "reconnect_period": 0.1,
            "max_reconnect_period": 0.5,
            "frozen_timeout": 1.0,
            "diagnostics_period": 0.25,
        }

    def start_other(name: str) -> ros_harness.NodeProcess:
        proc = ros_harness.NodeProcess(
            "so_arm_driver" if name == "camera_node" else "smolvla_policy",
            name,
            parameters=other_params[name],
            env=env,
            log_path=work / f"{name}-{restarts[name]}.log",
        )
        restarts[name] += 1
        others[name] = proc
        return proc

    def kill(proc: ros_harness.NodeProcess) -> None:
        killed.add(id(proc))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.proc.pid, signal.SIGKILL)
        proc.proc.wait()

    if graph:
        start_other("policy_server")
        start_other("action_queue")
        if camera:
            start_other("camera_node")
    schedule: list[tuple[float, str]] = []
    n_faults = max(len(faults), int(duration_s // period_s))
    duration_s = max(duration_s, n_faults * period_s)
    result.duration_s = duration_s
    for k in range(n_faults):
        schedule.append((period_s * (k + 0.5), faults[k % len(faults)]))
    active: FaultRecord | None = None
    active_clear: Callable[[], None] | None = None
    brownouts = 0
    last_motion = -math.inf  # time.monotonic() of the last goal write that changed a servo's goal

    def drain_goals() -> None:
        """Take the applied goal writes out of the emulator's log (flat memory): step cap, motion."""
        nonlocal last_motion
        with emu.locked():
            new = list(emu.goal_present_log)
            emu.goal_present_log.clear()
        for when, motor_id, goal, present in new:
            if motor_id in last_goal:
                change = abs(goal - last_goal[motor_id])
                result.max_change_rad = max(result.max_change_rad, change * calib.RAD_PER_TICK)
                # a jump: neither a capped step from the last goal nor a hold where the servo is (after a
                # brown-out or a restart the arm stopped short of its last goal: holding there is no jump)
                if change > cap_ticks and abs(goal - present) > cap_ticks:
                    result.over_cap += 1
                    if len(result.over_cap_events) < 100:
                        result.over_cap_events.append(
                            (when - harness.t0, motor_id, change * calib.RAD_PER_TICK)
                        )
                if change > 0:
                    last_motion = when
            last_goal[motor_id] = goal
            result.goal_writes += 1

    def check_processes() -> None:
        """A node that exited without being asked is a crash: counted, its log kept, started again."""
        nonlocal driver
        if not driver.alive() and id(driver) not in killed:
            result.crashes += 1
            result.crash_logs.append(driver.output()[-4000:])
            driver = start_driver()
        for oname, proc in list(others.items()):
            if not proc.alive() and id(proc) not in killed:
                result.crashes += 1
                result.crash_logs.append(f"{oname}:\n" + proc.output()[-4000:])
                start_other(oname)

    last_goal: dict[int, int] = {}
    fuzzer: threading.Thread | None = None
    try:
        if not ros_harness.wait_for(
            lambda: harness.diag is not None and harness.diag[3].get("torque_enabled") == "True", 60.0
        ):
            raise RuntimeError("the driver did not come up with torque on:\n" + driver.output())
        if graph and not ros_harness.wait_for(
            lambda: harness.diag is not None and harness.diag[2] == "following commands", 180.0
        ):
            logs = "\n".join(f"--- {n}:\n{p.output()[-3000:]}" for n, p in others.items())
            raise RuntimeError("policy_server -> action_queue -> driver never started following:\n" + logs)
        harness.t0 = time.monotonic()
        t_next = 0.0
        dt = 1.0 / rate_hz
        next_rss = 0.0
        pending: list[FaultRecord] = []
        while True:
            t = harness.now()
            if t >= duration_s and active is None and not schedule:
                break
            # -- command tick ------------------------------------------------------------------------
            if not graph:
                harness.command(t)
            result.ticks += 1
            with harness.lock:
                diag = harness.diag
            if diag is None or diag[1] != 0 or diag[2] != "following commands":
                result.ticks_held += 1
            if harness.flooding:
                harness.flood(6)  # ~180 malformed messages a second between the good ones
            if harness.flooding_states:
                harness.flood_states(3)
            if harness.flooding_images:
                harness.flood_images(2)
            # -- crash detection -----------------------------------------------------------------------
            check_processes()
            # -- faults --------------------------------------------------------------------------------
            # the next fault waits for the previous one's recovery (at most one period after it cleared)
            waiting = any(t < rec.clear + period_s for rec in pending)
            if active is None and schedule and t >= schedule[0][0] and not waiting:
                _, name = schedule.pop(0)
                if progress:
                    progress(t, name)
                active = FaultRecord(name, t, math.inf)
                if name == "unplug":
                    emu.unplug()
                    active_clear = emu.replug
                elif name == "brownout":
                    emu.brownout(fault_duration_s, lose_eeprom=bool(brownouts % 2))
                    brownouts += 1
                    active_clear = lambda: None  # noqa: E731 (the servos come back by themselves)
                elif name == "drop":
                    emu.drop_replies(duration_s=fault_duration_s)
                    active_clear = lambda: None  # noqa: E731
                elif name == "late":
                    emu.hold_replies(count=10**9)
                    active_clear = lambda: emu.hold_replies(count=0)  # noqa: E731
                elif name == "garble":
                    emu.garble_replies(probability=0.3)
                    active_clear = lambda: emu.garble_replies(count=0, probability=0.0)  # noqa: E731
                elif name == "flood_states" and graph:
                    harness.flooding_states = True
                    active_clear = lambda: setattr(harness, "flooding_states", False)  # noqa: E731
                elif name == "flood":
                    harness.flooding = True
                    active_clear = lambda: setattr(harness, "flooding", False)  # noqa: E731
                elif name == "param_fuzz":  # in a thread of its own: the command stream goes on
                    fuzzer = threading.Thread(target=_fuzz_parameters, args=(harness, result), daemon=True)
                    fuzzer.start()
                    active_clear = fuzzer.join
                elif name == "kill":
                    kill(driver)
                    active_clear = lambda: None  # noqa: E731
                elif name in ("kill_server", "kill_queue") and graph:
                    oname = "policy_server" if name == "kill_server" else "action_queue"
                    kill(others[oname])
                    active_clear = lambda oname=oname: start_other(oname)  # type: ignore[misc]  # noqa: E731
                elif name == "kill_camera" and fake_cam is not None:
                    kill(others["camera_node"])
                    active_clear = lambda: start_other("camera_node")  # noqa: E731
                elif name in ("camera_unplug", "camera_frozen", "camera_garbage") and fake_cam is not None:
                    fake_cam.mode = {"camera_unplug": "unplugged", "camera_frozen": "frozen"}.get(
                        name, "garbage"
                    )
                    active_clear = lambda: setattr(fake_cam, "mode", "live")  # noqa: E731
                elif name == "flood_images" and fake_cam is not None:
                    harness.flooding_images = True
                    active_clear = lambda: setattr(harness, "flooding_images", False)  # noqa: E731
                elif name == "stall_model" and graph:
                    harness.set_parameter("latency_ms", 1000.0 * stall_s, harness.server_params)
                    active_clear = lambda: harness.set_parameter(  # noqa: E731
                        "latency_ms", 0.0, harness.server_params
                    )
                else:
                    raise ValueError(
                        f"unknown fault {name!r}; known: {FAULTS}, with graph=True {GRAPH_FAULTS}, with "
                        f"camera=True {CAMERA_FAULTS}"
                    )
            if (
                active is not None
                and math.isinf(active.clear)
                and t >= active.start + (stall_s if active.name == "stall_model" else fault_duration_s)
                and not (fuzzer is not None and fuzzer.is_alive())
            ):
                assert active_clear is not None
                if active.name == "kill":
                    driver = start_driver()
                else:
                    active_clear()
                if active.name in ("camera_unplug", "camera_frozen", "camera_garbage"):  # reported?
                    with harness.lock:
                        seen = [m for t_, lvl, m in harness.camera_diag if t_ >= active.start and lvl != 0]
                    active.camera_reported = seen[0] if seen else ""
                active.clear = harness.now()
                result.faults.append(active)
                pending.append(active)
                active = None
            # -- goals the servos applied: step cap, and recovery (the arm moves again) -----------------
            drain_goals()
            _settle(harness, pending, last_motion - harness.t0)
            # -- memory --------------------------------------------------------------------------------
            if t >= next_rss:
                next_rss = t + rss_period_s
                procs = [("so_arm_driver", driver.proc.pid, len(drivers) - 1, driver.alive())]
                procs += [(n, p.proc.pid, restarts[n] - 1, p.alive()) for n, p in others.items()]
                procs.append(("harness (emulator, monitor)", os.getpid(), 0, True))
                for pname, pid, instance, alive in procs:
                    if not alive or (m := memory_mb(pid)) is None:
                        continue
                    result.rss.setdefault(pname, []).append((t, m["VmRSS"], instance))
                    result.rss_anon.setdefault(pname, []).append((t, m.get("RssAnon", math.nan), instance))
                    result.rss_shmem.setdefault(pname, []).append((t, m.get("RssShmem", math.nan), instance))
                    if pname == "so_arm_driver":
                        result.rss_driver.append((t, m["VmRSS"], instance))
                    elif pid == os.getpid():
                        result.rss_harness.append((t, m["VmRSS"]))
            # -- pace ----------------------------------------------------------------------------------
            t_next += dt
            sleep = t_next - harness.now()
            if sleep > 0:
                time.sleep(sleep)
            else:
                t_next = harness.now()

        # the last faults get time to recover
        def still_pending() -> bool:
            check_processes()  # a node dying now (e.g. a restarted driver at connect) is a crash too
            drain_goals()
            return _settle(harness, pending, last_motion - harness.t0)

        ros_harness.wait_for(
            lambda: (harness.command(harness.now()) or True) and not still_pending(),
            120.0,  # a bound, not a measurement: a driver restarted at the end imports and connects first
            0.033,
        )
        with harness.lock:
            diag = harness.diag
        if diag is not None:
            result.final_level = {0: "OK", 1: "WARN"}.get(diag[1], "ERROR") + ": " + diag[2]
            result.final_torque_on = diag[3].get("torque_enabled") == "True"
        with harness.lock:
            logged = list(harness.rosout)
        from so_arm_driver.driver import rejection_key

        kinds = sorted(
            {
                rejection_key(m.split("ignored /joint_commands message: ", 1)[1])
                for m in logged
                if "ignored /joint_commands message: " in m
            }
        )
        result.rejection_kinds_logged = kinds
        with harness.lock:
            result.diag_log = list(harness.diag_log)
    finally:
        for proc in [*others.values(), *drivers]:
            if proc.alive():
                proc.stop()
        if fake_cam is not None:
            fake_cam.close()
        harness.close()
        emu.stop()
        sys.setswitchinterval(switch)
    return result


def driver_rss_slope(result: SoakResult) -> tuple[float, float, float]:
    """(slope MB/h, first MB, last MB) of the longest-running driver process (a restart starts over)."""
    runs: dict[int, list[tuple[float, float]]] = {}
    for t, mb, k in result.rss_driver:
        runs.setdefault(k, []).append((t, mb))
    if not runs:
        return math.nan, math.nan, math.nan
    longest = max(runs.values(), key=lambda r: r[-1][0] - r[0][0])
    settled = [(t, mb) for t, mb in longest if t - longest[0][0] >= 30.0]  # after imports and connect
    return slope_mb_per_h(settled, skip=0.0), (settled or longest)[0][1], longest[-1][1]


@dataclass
class MemoryFit:
    """RSS of one process (its longest-lived instance) and the least-squares line over the second half."""

    name: str
    samples: int  # samples of that instance
    start_s: float  # soak time of its first and last sample
    end_s: float
    first_mb: float
    last_mb: float
    fit_from_s: float  # the line is fitted from here (the middle of its life) to end_s
    slope_kb_min: float  # kB per minute over the second half
    slope_se_kb_min: float  # standard error of that slope
    max_mb: float
    intercept_mb: float  # the line's value at fit_from_s


def fit_line(pts: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares y = a + b (t - t0): (a at the first t, b per second, standard error of b)."""
    n = len(pts)
    if n < 3:
        return math.nan, math.nan, math.nan
    t0 = pts[0][0]
    mt = sum(t - t0 for t, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((t - t0 - mt) ** 2 for t, _ in pts)
    if sxx == 0:
        return math.nan, math.nan, math.nan
    b = sum((t - t0 - mt) * (y - my) for t, y in pts) / sxx
    a = my - b * mt
    resid = sum((y - a - b * (t - t0)) ** 2 for t, y in pts)
    se = math.sqrt(resid / (n - 2) / sxx)
    return a, b, se


def memory_fits(result: SoakResult, kind: str = "anon") -> list[MemoryFit]:
    """Per process: the longest-lived instance's memory (``kind`` "anon": RssAnon, the private heap; "rss":
    VmRSS; "shmem": RssShmem) and its least-squares slope over the second half of that instance's life
    (start-up growth, imports and first allocations, is no leak)."""
    fits = []
    series = {"anon": result.rss_anon, "rss": result.rss, "shmem": result.rss_shmem}[kind]
    for name, samples in series.items():
        runs: dict[int, list[tuple[float, float]]] = {}
        for t, mb, k in samples:
            runs.setdefault(k, []).append((t, mb))
        longest = max(runs.values(), key=lambda r: r[-1][0] - r[0][0])
        mid = 0.5 * (longest[0][0] + longest[-1][0])
        half = [(t, mb) for t, mb in longest if t >= mid]
        a, b, se = fit_line(half)
        fits.append(
            MemoryFit(
                name,
                len(longest),
                longest[0][0],
                longest[-1][0],
                longest[0][1],
                longest[-1][1],
                half[0][0] if half else mid,
                b * 60.0 * 1024.0,
                se * 60.0 * 1024.0,
                max(mb for _, mb in longest),
                a,
            )
        )
    return fits


def _settle(harness: _Harness, pending: list[FaultRecord], last_motion: float) -> bool:
    """Mark the pending faults recovered once the driver reports OK "following commands" with the torque on
    and the servos' goals move again after the fault cleared; True while some are still pending."""
    with harness.lock:
        diag = harness.diag
    if not pending or diag is None:
        return bool(pending)
    for rec in list(pending):
        if (
            diag[0] > rec.clear
            and diag[1] == 0
            and diag[2] == "following commands"
            and diag[3].get("torque_enabled") == "True"
            and last_motion > rec.clear
        ):
            rec.recovered_at = max(diag[0], last_motion)
            pending.remove(rec)
    return bool(pending)


def _fuzz_parameters(harness: _Harness, result: SoakResult) -> None:
    """Invalid values of every parameter (and an unknown one) through SetParameters; then every parameter
    set back to the value it had (an accepted fuzz value may be valid, e.g. verify_period 0)."""
    names = _param_names()
    before = harness.parameters(names)
    for pname in [*names, "no_such_parameter"]:
        for value in _fuzz_values():
            ok = harness.set_parameter(pname, value)
            if ok and not (before and _same(before.get(pname), value)):
                result.param_fuzz_accepted.append(f"{pname}={value!r}")
    if before:
        for pname, value in before.items():
            harness.set_parameter(pname, value)
        result.params_restored = harness.parameters(names) == before
    else:
        result.params_restored = False


def _param_names() -> list[str]:
    from so_arm_driver.nodes.driver_node import PARAMETERS

    return [p.name for p in PARAMETERS]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return a == float(b)
    return a == b
