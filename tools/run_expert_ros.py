"""Run the scripted expert through ROS: a separate process that drives ``sim_node`` via ``/joint_commands``.

    python tools/run_expert_ros.py --episodes 50            # starts its own sim_node (no cameras)
    python tools/run_expert_ros.py --no-start-sim --sim-node sim_node --episodes 5

Per episode: call ``/<sim>/reset``, wait for fresh ``/joint_states`` and ``/<sim>/objects`` (the simulator's
true object poses), plan with the expert, stream the targets as one-point ``JointTrajectory`` messages paced
by the ``/joint_states`` stamps (so any real-time factor works; ``--multi-point`` sends the whole plan as one
trajectory instead), then read ``/<sim>/task_success``. Prints one line per episode and a summary; the exit
code is 0 when the success rate reaches ``--min-success``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class EpisodeResult:
    episode: str
    success: bool
    commands: int


def _quat_yaw(w: float, x: float, y: float, z: float) -> float:
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


class ExpertRunner:
    """The ROS side: subscriptions, the reset client and the command publisher (rclpy imported lazily)."""

    def __init__(self, sim_node: str, robot: str, rate: float, multi_point: bool, context=None) -> None:
        import rclpy
        from geometry_msgs.msg import PoseArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, UInt32
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory

        from smolvla_sim.expert import PickPlacePlanner
        from smolvla_sim.model import JOINT_NAMES, build_model

        self._rclpy = rclpy
        self._JointTrajectory = JointTrajectory
        self._Trigger = Trigger
        self.node = Node("expert_runner", context=context)
        self.rate = rate
        self.multi_point = multi_point
        self.joint_names = list(JOINT_NAMES)
        self.planner = PickPlacePlanner(build_model(robot), self.joint_names, rate=rate)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.js_stamp = -1.0
        self.js_positions: np.ndarray | None = None
        self.objects: tuple[float, list] | None = None
        self.success = False
        self.episode = 0
        self.on_joint_state = None  # callable(stamp) while streaming
        n = sim_node.strip("/")
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.node.create_subscription(JointState, "/joint_states", self._on_js, 20)
        self.node.create_subscription(PoseArray, f"/{n}/objects", self._on_objects, 10)
        self.node.create_subscription(Bool, f"/{n}/task_success", self._on_success, 10)
        self.node.create_subscription(UInt32, f"/{n}/episode", self._on_episode, latched)
        self.cmd_pub = self.node.create_publisher(
            JointTrajectory, "/joint_commands", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.reset_client = self.node.create_client(Trigger, f"/{n}/reset")
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    # -- callbacks -----------------------------------------------------------------------------------------
    def _on_js(self, msg) -> None:  # type: ignore[no-untyped-def]
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        try:
            idx = [list(msg.name).index(n) for n in self.joint_names]
        except ValueError:
            return
        with self.cond:
            self.js_stamp = stamp
            self.js_positions = np.array(msg.position)[idx]
            self.cond.notify_all()
        callback = self.on_joint_state
        if callback is not None:
            callback(stamp)

    def _on_objects(self, msg) -> None:  # type: ignore[no-untyped-def]
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.cond:
            self.objects = (stamp, [(p.position, p.orientation) for p in msg.poses])
            self.cond.notify_all()

    def _on_success(self, msg) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            self.success = bool(msg.data)

    def _on_episode(self, msg) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            self.episode = int(msg.data)
            self.cond.notify_all()

    # -- helpers -------------------------------------------------------------------------------------------
    def wait_ready(self, timeout: float) -> bool:
        if not self.reset_client.wait_for_service(timeout_sec=timeout):
            return False
        with self.cond:
            return self.cond.wait_for(lambda: self.js_positions is not None, timeout)

    def reset(self, timeout: float = 30.0) -> str:
        future = self.reset_client.call_async(self._Trigger.Request())
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError("reset service did not answer")
            time.sleep(0.005)
        response = future.result()
        if not response.success:
            raise RuntimeError(f"reset failed: {response.message}")
        # wait for state published after the reset (stamps move on; objects after the reset)
        with self.cond:
            t_reset = self.js_stamp
            self.cond.wait_for(
                lambda: self.objects is not None and self.objects[0] > t_reset and self.js_stamp > t_reset,
                timeout,
            )
        return response.message

    def _trajectory(self, rows: np.ndarray, times: list[float] | None = None):  # type: ignore[no-untyped-def]
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectoryPoint

        msg = self._JointTrajectory()
        msg.joint_names = list(self.joint_names)
        for k, row in enumerate(rows):
            p = JointTrajectoryPoint()
            p.positions = [float(v) for v in row]
            if times is not None:
                sec = int(times[k])
                p.time_from_start = Duration(sec=sec, nanosec=int((times[k] - sec) * 1e9))
            msg.points.append(p)
        return msg

    def run_episode(self, settle: float = 0.8, timeout: float = 120.0) -> EpisodeResult:
        message = self.reset()
        with self.cond:
            q = self.js_positions.copy()  # type: ignore[union-attr]
            poses = list(self.objects[1])  # type: ignore[index]
        items = []  # (cube, tray) pairs in the order of ~/objects
        for (cube_p, cube_o), (tray_p, _) in zip(poses[0::2], poses[1::2]):
            cube = np.array([cube_p.x, cube_p.y, cube_p.z])
            tray = np.array([tray_p.x, tray_p.y, tray_p.z])
            items.append((cube, _quat_yaw(cube_o.w, cube_o.x, cube_o.y, cube_o.z), tray))
        self.planner.home = q.copy()
        plan = self.planner.plan_sequence(q, items)
        duration = len(plan) / self.rate
        # the arm holds its pose while the plan is computed: start the plan's clock now, not before planning
        with self.cond:
            t0 = self.js_stamp
        sent = 0
        last_sent = {"stamp": t0 + duration}
        state = {"next": 0}
        if self.multi_point:
            times = [(k + 1) / self.rate for k in range(len(plan))]
            msg = self._trajectory(plan, times)
            msg.header.stamp.sec = int(t0)
            msg.header.stamp.nanosec = int((t0 - int(t0)) * 1e9)
            self.cmd_pub.publish(msg)
            sent = 1
            state["next"] = len(plan)
        else:

            def stream(stamp: float) -> None:
                nonlocal sent
                k = int((stamp - t0) * self.rate + 1e-6)
                if state["next"] < len(plan) and k >= state["next"]:
                    self.cmd_pub.publish(self._trajectory(plan[min(k, len(plan) - 1)][None]))
                    state["next"] = k + 1
                    sent += 1
                    if state["next"] >= len(plan):
                        last_sent["stamp"] = stamp

            self.on_joint_state = stream
        with self.cond:
            # settle after the last target was sent (a loaded machine may deliver the stream late)
            ok = self.cond.wait_for(
                lambda: (
                    self.js_stamp >= max(t0 + duration, last_sent["stamp"]) + settle
                    and state["next"] >= len(plan)
                ),
                timeout,
            )
        self.on_joint_state = None
        if not ok:
            raise TimeoutError("simulation time did not advance (is sim_node running?)")
        # the status topic runs at its own rate: wait for a value published after the settle time
        with self.cond:
            t_end = self.js_stamp
            self.cond.wait_for(lambda: self.objects is not None and self.objects[0] >= t_end, 10.0)
            time.sleep(0.05)
            success = self.success
        return EpisodeResult(message, success, sent)

    def close(self) -> None:
        from smolvla_common.executor_shutdown import shutdown_executor

        shutdown_executor(self.executor, self.thread)  # no "exception was never retrieved" (issue 19)
        self.thread.join(timeout=10.0)
        self.node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first episode (started sim only)")
    parser.add_argument("--robot", default="so101")
    parser.add_argument(
        "--task", default="pick_place", help="task of the started sim_node: pick_place | sort"
    )
    parser.add_argument("--rate", type=float, default=30.0, help="command rate [Hz of sim time]")
    parser.add_argument("--multi-point", action="store_true", help="send each plan as one trajectory")
    parser.add_argument("--sim-node", default="sim_node")
    parser.add_argument("--no-start-sim", action="store_true", help="use a running sim_node")
    parser.add_argument("--real-time-factor", type=float, default=1.0, help="for the started sim_node")
    parser.add_argument("--camera-rate", type=float, default=0.0, help="for the started sim_node")
    parser.add_argument("--min-success", type=float, default=0.9)
    parser.add_argument(
        "--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: the environment's)"
    )
    args = parser.parse_args(argv)

    import ros_harness

    ros_harness.apply_ros_environment(args.domain_id)
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    sim = None
    if not args.no_start_sim:
        sim = ros_harness.NodeProcess(
            "smolvla_sim",
            "sim_node",
            name=args.sim_node,
            parameters={
                "robot": args.robot,
                "task": args.task,
                "seed": args.seed,
                "real_time_factor": args.real_time_factor,
                "camera_rate": args.camera_rate,
                "publish_clock": True,
                "image_width": 128,
                "image_height": 128,
            },
        )
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C -> KeyboardInterrupt
    runner = None
    results: list[EpisodeResult] = []
    try:
        runner = ExpertRunner(args.sim_node, args.robot, args.rate, args.multi_point, context=context)
        if not runner.wait_ready(60.0):
            print("sim_node not reachable", file=sys.stderr)
            return 2
        for i in range(args.episodes):
            res = runner.run_episode()
            results.append(res)
            print(
                f"[{i + 1}/{args.episodes}] {res.episode}: {'success' if res.success else 'FAILED'}",
                flush=True,
            )
    except KeyboardInterrupt:
        pass
    finally:
        if runner is not None:
            runner.close()
        rclpy.try_shutdown(context=context)
        if sim is not None:
            sim.stop()
    n_ok = sum(r.success for r in results)
    rate = n_ok / max(1, len(results))
    mode = "multi-point trajectories" if args.multi_point else "streamed one-point targets"
    print(f"expert through ROS ({mode}): {n_ok}/{len(results)} episodes succeeded ({100 * rate:.1f} %)")
    return 0 if results and rate >= args.min_success else 1


if __name__ == "__main__":
    sys.exit(main())
