"""ROS 2 node ``teleop``: leader-arm teleoperation, a thin adapter around ``teleop.TeleopCore``.

Subscribes ``leader/joint_states`` (from ``so_arm_driver`` with ``leader:=true``), ``joint_states`` (the
follower) and ``robot_description`` (the follower's calibrated limits, latched); publishes ``joint_commands``
(one-point JointTrajectory, the contract's joint names, radians) at ``rate`` while running -- the action that
``episode_recorder`` records. Services ``~/start`` and ``~/stop`` (std_srvs/Trigger); ``autostart`` starts
as soon as the limits and a follower state are known. Safety (refused NaN / out-of-range leader states, step
cap, hold when the leader is silent): :mod:`so_arm_driver.teleop`. Parameters: ``config/teleop.yaml``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from smolvla_common import robot_description
from smolvla_common.node_main import run_node
from smolvla_common.node_parameters import NodeParameters
from smolvla_common.parameters import Param, ParameterError, ParameterTable
from so_arm_description.robot_model import limits_from_urdf
from so_arm_description.robot_spec import JOINT_NAMES
from so_arm_driver.teleop import TeleopConfig, TeleopCore

PARAMETERS = ParameterTable(
    "teleop",
    [
        Param(
            "rate",
            30.0,
            "Command rate on joint_commands [Hz] (the recorded action rate).",
            "double",
            1.0,
            500.0,
        ),
        Param(
            "max_step",
            0.1,
            "Largest change of the command per tick and joint [rad] (0.1 at 30 Hz = 3 rad/s).",
            "double",
            1e-4,
            3.2,
        ),
        Param(
            "leader_timeout",
            0.25,
            "Hold the last command when no leader joint state arrived for this long [s].",
            "double",
            0.01,
            10.0,
        ),
        Param(
            "range_margin",
            0.2,
            "Leader positions up to this far outside the follower's limits are clamped; further out the "
            "leader state is refused [rad].",
            "double",
            0.0,
            3.2,
        ),
        Param(
            "autostart",
            False,
            "Start teleoperation as soon as limits and a follower state are known.",
            "bool",
        ),
    ],
    source="so_arm_driver.nodes.teleop_node:PARAMETERS",
)


@dataclass
class TeleopNodeConfig:
    rate: float
    max_step: float
    leader_timeout: float
    range_margin: float
    autostart: bool


class TeleopNode(Node):
    def __init__(self, **kwargs: object) -> None:
        super().__init__("teleop", **kwargs)
        self.params = NodeParameters(self, PARAMETERS, on_change=self._apply)
        self.cfg = TeleopNodeConfig(**self.params.values)
        self.core = TeleopCore(
            TeleopConfig(
                max_step=self.cfg.max_step,
                leader_timeout=self.cfg.leader_timeout,
                range_margin=self.cfg.range_margin,
            )
        )
        self._group = MutuallyExclusiveCallbackGroup()  # every callback touching the core
        self._last_warn: dict[str, float] = {}
        self._was_holding = False
        self.cmd_pub = self.create_publisher(JointTrajectory, "joint_commands", 10)
        self.create_subscription(
            JointState, "leader/joint_states", self._on_leader, 20, callback_group=self._group
        )
        self.create_subscription(
            JointState, "joint_states", self._on_follower, 20, callback_group=self._group
        )
        robot_description.subscribe(self, self._on_description, callback_group=self._group)
        self.create_service(Trigger, "~/start", self._on_start, callback_group=self._group)
        self.create_service(Trigger, "~/stop", self._on_stop, callback_group=self._group)
        self.timer = self.create_timer(1.0 / self.cfg.rate, self._on_tick, callback_group=self._group)
        self.get_logger().info(
            f"teleop: leader/joint_states -> joint_commands at {self.cfg.rate:g} Hz, max_step "
            f"{self.cfg.max_step:g} rad; {'autostart' if self.cfg.autostart else 'call ~/start to begin'}"
        )

    def _apply(self, changes: dict[str, object]) -> None:
        for name, value in changes.items():
            setattr(self.cfg, name, value)
            if name in ("max_step", "leader_timeout", "range_margin"):
                setattr(self.core.cfg, name, value)
        if "rate" in changes:
            self.timer.timer_period_ns = int(1e9 / self.cfg.rate)

    def _warn(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) > 2.0:
            self._last_warn[key] = now
            self.get_logger().warning(text)

    # -- inputs --------------------------------------------------------------------------------------------
    def _on_description(self, urdf: str) -> None:
        try:
            limits = limits_from_urdf(urdf)
            reason = self.core.set_limits([limits[n] for n in JOINT_NAMES])
        except Exception as exc:  # noqa: BLE001 (a bad description must not kill the node)
            reason = f"unreadable robot_description: {exc!r}"
        if reason:
            self._warn("description", f"follower limits not taken: {reason}")
        else:
            self.get_logger().info("follower limits from robot_description")
            self._maybe_autostart()

    def _on_follower(self, msg: JointState) -> None:
        try:
            self.core.on_follower(list(msg.name), list(msg.position))
        except Exception as exc:  # noqa: BLE001
            self._warn("follower", f"ignored follower joint state: {exc!r}")
        self._maybe_autostart()

    def _on_leader(self, msg: JointState) -> None:
        try:
            reason = self.core.on_leader(list(msg.name), list(msg.position), time.monotonic())
        except Exception as exc:  # noqa: BLE001
            reason = f"malformed leader state: {exc!r}"
        if reason:
            self._warn(reason.split(":")[0], reason)  # throttled per kind of refusal

    def _maybe_autostart(self) -> None:
        if self.cfg.autostart and not self.core.running and self.core.limits and self.core.follower:
            ok, message = self.core.start()
            if ok:
                self.cfg.autostart = False  # once; ~/stop then really stops
                self.get_logger().info(message)

    # -- services and tick ---------------------------------------------------------------------------------
    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.core.start()
        (self.get_logger().info if response.success else self.get_logger().error)(response.message)
        return response

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.core.stop()
        self.get_logger().info(response.message)
        return response

    def _on_tick(self) -> None:
        step = self.core.tick(time.monotonic())
        if step.holding and not self._was_holding:
            self.get_logger().warning("leader silent: holding the last command")
        elif self._was_holding and not step.holding and step.command is not None:
            self.get_logger().info("leader states again: following")
        self._was_holding = step.holding
        if step.command is None:
            return
        msg = JointTrajectory()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.joint_names = list(JOINT_NAMES)
        msg.points = [JointTrajectoryPoint(positions=step.command)]
        self.cmd_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node("teleop", TeleopNode, args=args, startup_errors=(ParameterError,))


if __name__ == "__main__":
    sys.exit(main())
