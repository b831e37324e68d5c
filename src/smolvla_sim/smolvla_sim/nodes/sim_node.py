"""ROS 2 node ``sim_node``: the MuJoCo arm behind the real arm's interface (thin adapter around ArmSim).

Publishes ``/joint_states`` (position, velocity, effort), ``/cameras/<name>/image_raw`` (rgb8) and
``/cameras/<name>/camera_info``, ``~/task_success`` (std_msgs/Bool), ``~/episode`` (std_msgs/UInt32, latched),
``~/objects`` (geometry_msgs/PoseArray: cube, tray[, cube_b, tray_b]; privileged state for scripted
demonstrations), ``/robot_description`` (the URDF with the simulated arm's joint limits, transient local) and,
with ``publish_clock``, ``/clock`` so the graph can run on simulated time (``real_time_factor`` 0.2 runs the
world five times slower than the wall clock; 0 = as fast as possible). Subscribes ``/joint_commands``
(one point = streamed target, several points = trajectory by ``time_from_start``), serves ``~/reset``
(std_srvs/Trigger; the response names the new episode and its seed). Parameters: ``config/sim_node.yaml``.

The simulation runs in one thread of its own (physics, rendering with the EGL context created there,
publishing); ROS callbacks only hand commands and resets over to it.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, UInt32
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from smolvla_common import robot_description
from smolvla_common.image_conversion import numpy_to_image
from smolvla_common.node_main import run_node
from smolvla_common.node_parameters import NodeParameters
from smolvla_common.parameters import Param, ParameterError, ParameterTable
from smolvla_sim.sim import CAMERAS, ArmSim, SimConfig
from smolvla_sim.tasks import TASKS
from so_arm_description.cameras import optical_frame
from so_arm_description.command_following import CommandFollower, command_from_message
from so_arm_description.robot_model import build_urdf


def _distinct(names: list[str]) -> str | None:
    return None if len(set(names)) == len(names) else "names must be distinct"


#: Every parameter of sim_node, declared once (smolvla_common.parameters); config/sim_node.yaml is checked
#: against this table by a test.
PARAMETERS = ParameterTable(
    "sim_node",
    [
        Param("robot", "so101", "Arm model.", "string", choices=("so101", "so100"), read_only=True),
        Param(
            "task",
            "pick_place",
            "Task: pick_place = red cube into the blue tray; sort = also green cube into the purple tray.",
            "string",
            choices=tuple(TASKS),
            read_only=True,
        ),
        Param(
            "seed",
            0,
            "Seed of the first episode; episode k uses seed + k - 1; -1 = random.",
            "int",
            -1,
            2**31 - 1,
        ),
        Param(
            "physics_rate",
            500.0,
            "Physics steps per simulated second.",
            "double",
            500.0,
            10000.0,
            read_only=True,
        ),
        Param(
            "joint_state_rate",
            50.0,
            "Control cycle and /joint_states rate [Hz of simulated time].",
            "double",
            1.0,
            1000.0,
            read_only=True,
        ),
        Param(
            "camera_rate",
            30.0,
            "Images per camera per simulated second; 0 = no images.",
            "double",
            0.0,
            120.0,
        ),
        Param("image_width", 512, "Image width [px].", "int", 8, 4096, read_only=True),
        Param("image_height", 512, "Image height [px].", "int", 8, 4096, read_only=True),
        Param(
            "cameras",
            list(CAMERAS),
            "Cameras published on /cameras/<name>/image_raw and camera_info.",
            "string_array",
            choices=tuple(CAMERAS),
            read_only=True,
            check=_distinct,
        ),
        Param(
            "publish_clock",
            False,
            "Publish /clock and stamp everything with simulated time (other nodes: use_sim_time:=true).",
            "bool",
            read_only=True,
        ),
        Param(
            "real_time_factor",
            1.0,
            "Simulated seconds per wall-clock second (0.2 = five times slower; 0 = as fast as possible).",
            "double",
            0.0,
            100.0,
        ),
        Param(
            "max_step",
            0.1,
            "Largest change of the joint goal per control cycle [rad], like the driver; 0 = unlimited.",
            "double",
            0.0,
            10.0,
        ),
        Param(
            "command_timeout",
            0.5,
            "Hold the commanded goal when no command arrived for this long [s of simulated time], like the "
            "driver's watchdog; 0 = never.",
            "double",
            0.0,
            60.0,
        ),
        Param(
            "status_rate",
            10.0,
            "Rate of ~/task_success and ~/objects [Hz of simulated time].",
            "double",
            0.1,
            100.0,
        ),
    ],
    check=lambda v: (
        f"parameter 'joint_state_rate' ({v['joint_state_rate']:g}) must not exceed 'physics_rate' "
        f"({v['physics_rate']:g})"
        if v["joint_state_rate"] > v["physics_rate"]
        else None
    ),
    source="smolvla_sim.nodes.sim_node:PARAMETERS",
)


@dataclass
class SimNodeConfig:
    """The validated values of :data:`PARAMETERS` (defaults there)."""

    robot: str
    task: str
    seed: int
    physics_rate: float
    joint_state_rate: float
    camera_rate: float
    image_width: int
    image_height: int
    cameras: list[str]
    publish_clock: bool
    real_time_factor: float
    max_step: float
    command_timeout: float
    status_rate: float


class SimStartupError(RuntimeError):
    pass


class SimNode(Node):
    def __init__(self, **kwargs: object) -> None:
        super().__init__("sim_node", **kwargs)
        # declared, validated (ParameterError names the parameter and the allowed values) and applied after
        # validation by _apply_parameters
        self.params = NodeParameters(self, PARAMETERS, on_change=self._apply_parameters)
        self.cfg = SimNodeConfig(**self.params.values)
        self.sim = ArmSim(
            SimConfig(
                robot=self.cfg.robot,
                task=self.cfg.task,
                physics_rate=self.cfg.physics_rate,
                control_rate=self.cfg.joint_state_rate,
                image_width=self.cfg.image_width,
                image_height=self.cfg.image_height,
                cameras=tuple(self.cfg.cameras),
            )
        )
        # the driver's command semantics, same code (so_arm_description.command_following), on sim time
        self.follower = CommandFollower(
            self.sim.joint_names,
            list(zip(self.sim.lower.tolist(), self.sim.upper.tolist())),
            self.cfg.max_step,
            self.cfg.command_timeout,
            on_hold=self.get_logger().info,
        )
        self.sim_clock = 0.0  # simulated seconds since start, monotonic across resets
        self._reset_request = threading.Event()
        self._reset_done = threading.Condition()
        self._reset_result = ""
        self._last_reject_log = 0.0
        self._stop = threading.Event()
        self.episode = 0
        self.seed = self.cfg.seed

        io = MutuallyExclusiveCallbackGroup()
        svc = MutuallyExclusiveCallbackGroup()
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.cfg.publish_clock else None
        self.success_pub = self.create_publisher(Bool, "~/task_success", 10)
        self.episode_pub = self.create_publisher(UInt32, "~/episode", latched)
        self.objects_pub = self.create_publisher(PoseArray, "~/objects", 10)
        self.image_pubs = {
            c: self.create_publisher(Image, f"cameras/{c}/image_raw", 5) for c in self.cfg.cameras
        }
        self.info_pubs = {
            c: self.create_publisher(CameraInfo, f"cameras/{c}/camera_info", 5) for c in self.cfg.cameras
        }
        # the simulated arm's limits (the MJCF's joint ranges) for the queue, the policy's units and bags
        limits = dict(zip(self.sim.joint_names, zip(self.sim.lower.tolist(), self.sim.upper.tolist())))
        self.description_pub = robot_description.publish(self, build_urdf(self.cfg.robot, limits))
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(JointTrajectory, "joint_commands", self._on_command, qos, callback_group=io)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=svc)
        self._do_reset()
        self._thread = threading.Thread(target=self._loop, name="sim-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.get_logger().info(
            f"simulating {self.cfg.robot} ({self.cfg.task}) at {self.cfg.physics_rate:g} Hz physics, "
            f"joint states {self.cfg.joint_state_rate:g} Hz, cameras {self.cfg.cameras} "
            f"{self.cfg.image_width}x{self.cfg.image_height} at {self.cfg.camera_rate:g} Hz, "
            f"real-time factor {self.cfg.real_time_factor:g}, "
            f"clock {'on' if self.cfg.publish_clock else 'off'}"
        )

    # -- parameters ----------------------------------------------------------------------------------------
    def _apply_parameters(self, changes: dict[str, object]) -> None:
        """Validated run-time changes (post-set): the loop reads self.cfg every cycle."""
        for name, value in changes.items():
            setattr(self.cfg, name, value)
        if "max_step" in changes:
            self.follower.max_step = self.cfg.max_step
        if "command_timeout" in changes:
            self.follower.command_timeout = self.cfg.command_timeout

    # -- stamps --------------------------------------------------------------------------------------------
    def _stamp(self) -> Time:
        if self.cfg.publish_clock:
            ns = int(round(self.sim_clock * 1e9))  # (rounding sec and nanosec apart gave k.0 s as k-1 s)
            return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        return self.get_clock().now().to_msg()

    def _stamp_seconds(self) -> float:
        if self.cfg.publish_clock:
            return self.sim_clock
        return self.get_clock().now().nanoseconds * 1e-9

    # -- commands and reset --------------------------------------------------------------------------------
    def _reject(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_reject_log > 1.0:
            self._last_reject_log = now
            self.get_logger().warning(f"ignored /joint_commands message: {reason}")

    def _on_command(self, msg: JointTrajectory) -> None:
        try:
            # received now on sim time; the stamps' clock is /clock (publish_clock) or this node's clock
            cmd = command_from_message(msg)
            reason = self.follower.command(cmd, now=self.sim_clock, clock_now=self._stamp_seconds())
            if reason is not None:
                self._reject(reason)
        except Exception as exc:  # noqa: BLE001 (a malformed message must never kill the node)
            self.follower.reject(f"malformed command: {exc!r}")
            self._reject(f"malformed command: {exc!r}")

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._reset_done:
            self._reset_result = ""
            self._reset_request.set()
            ok = self._reset_done.wait_for(lambda: bool(self._reset_result), timeout=30.0)
        response.success = bool(ok)
        response.message = self._reset_result if ok else "reset timed out (simulation loop not running?)"
        return response

    def _do_reset(self) -> str:
        seed = self.cfg.seed + self.episode if self.cfg.seed >= 0 else None
        self.sim.reset(seed)
        self.seed = self.sim.seed
        self.episode += 1
        self.follower.hold(self.sim.joint_positions)
        self.episode_pub.publish(UInt32(data=self.episode))
        message = f"episode {self.episode} seed {self.seed}"
        self.get_logger().info(f"reset: {message}")
        return message

    # -- publishing ----------------------------------------------------------------------------------------
    def _publish_joint_state(self, stamp: Time) -> None:
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = list(self.sim.joint_names)
        msg.position = self.sim.joint_positions.tolist()
        msg.velocity = self.sim.joint_velocities.tolist()
        msg.effort = self.sim.joint_efforts.tolist()
        self.joint_pub.publish(msg)

    def _publish_images(self, stamp: Time) -> None:
        w, h = self.cfg.image_width, self.cfg.image_height
        for cam in self.cfg.cameras:
            frame = optical_frame(cam)  # as camera_node: the same frames in sim and real, in the URDF
            img = numpy_to_image(self.sim.render(cam), "rgb8", Image())
            img.header.stamp, img.header.frame_id = stamp, frame
            k = self.sim.camera_intrinsics(cam)
            info = CameraInfo()
            info.header.stamp, info.header.frame_id = stamp, frame
            info.width, info.height = w, h
            info.distortion_model = "plumb_bob"
            info.d = [0.0] * 5
            info.k = k.reshape(-1).tolist()
            info.r = np.eye(3).reshape(-1).tolist()
            info.p = np.hstack([k, np.zeros((3, 1))]).reshape(-1).tolist()
            self.image_pubs[cam].publish(img)
            self.info_pubs[cam].publish(info)

    def _publish_status(self, stamp: Time) -> None:
        self.success_pub.publish(Bool(data=bool(self.sim.task_success())))
        arr = PoseArray()
        arr.header.stamp, arr.header.frame_id = stamp, "base"
        for p in self.sim.object_poses().values():  # cube, tray[, cube_b, tray_b]
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p[:3])
            pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (
                float(v) for v in p[3:]
            )
            arr.poses.append(pose)
        self.objects_pub.publish(arr)

    # -- loop ----------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001
            if not self._stop.is_set() and self.context.ok():
                self.get_logger().fatal(f"simulation loop failed: {exc!r}")
        finally:
            self.sim.close()  # the renderers belong to this thread's GL context

    def _run(self) -> None:
        cycle = 1.0 / self.cfg.joint_state_rate
        substeps = max(1, round(self.cfg.physics_rate * cycle))
        next_cam = 0.0
        next_status = 0.0
        wall0, sim0, rtf0 = time.monotonic(), self.sim_clock, self.cfg.real_time_factor
        eps = 1e-9
        while not self._stop.is_set():
            if self._reset_request.is_set():
                self._reset_request.clear()
                message = self._do_reset()
                with self._reset_done:
                    self._reset_result = message
                    self._reset_done.notify_all()
                next_cam = next_status = self.sim_clock
            self.sim.set_targets(np.asarray(self.follower.step(self.sim_clock).goal))
            self.sim.step_physics(substeps)
            self.sim_clock += substeps * self.sim.dt
            stamp = self._stamp()
            if self.clock_pub is not None:
                self.clock_pub.publish(Clock(clock=stamp))
            self._publish_joint_state(stamp)
            if self.cfg.camera_rate > 0 and self.cfg.cameras and self.sim_clock + eps >= next_cam:
                self._publish_images(stamp)
                next_cam = max(next_cam + 1.0 / self.cfg.camera_rate, self.sim_clock - cycle)
            if self.sim_clock + eps >= next_status:
                self._publish_status(stamp)
                next_status = max(next_status + 1.0 / self.cfg.status_rate, self.sim_clock - cycle)
            rtf = self.cfg.real_time_factor
            if rtf != rtf0:  # re-anchor pacing when the factor changes at run time
                wall0, sim0, rtf0 = time.monotonic(), self.sim_clock, rtf
            if rtf > 0:
                delay = wall0 + (self.sim_clock - sim0) / rtf - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -1.0:  # far behind (slow machine): do not try to catch up in a burst
                    wall0, sim0 = time.monotonic(), self.sim_clock

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)


def main(args: list[str] | None = None) -> int:
    return run_node(
        "sim_node",
        SimNode,
        args=args,
        start=True,
        startup_errors=(SimStartupError, ParameterError),
        num_threads=3,
    )


if __name__ == "__main__":
    sys.exit(main())
