"""Record scripted-expert demonstrations in simulation, end to end, through real ROS.

    smolvla_train record-sim --episodes 10 --seed0 0 --out ~/demos_sim
    python -m smolvla_train.cli record-sim --help      # the same without the installed script on PATH

Starts ``sim_node`` (publishing ``/clock``: the graph runs on simulated time, so a slow machine only slows
the run down) and ``episode_recorder`` (``use_sim_time``), then per episode: the simulator starts the
episode with seed ``seed0 + k`` (the first from its start-up state, the others through ``~/reset``), the
recorder gets a ``RecordEpisode`` goal, the scripted expert (the teleoperator) plans from the simulator's
object poses and streams its targets on ``/joint_commands`` paced by the ``/joint_states`` stamps (each
command's header stamp = the simulated time of the joint state it answers, on ``/clock``), and the
episode ends when the plan has been executed and the arm settled (or at ``--time-limit`` seconds of
simulated time, or at the first success with ``--stop-at-success``); ``~/end_episode`` saves the bag with
the outcome read from ``~/task_success``. One line per episode goes to ``<out>/record_sim.jsonl`` (seed,
bag, outcome, commands sent, per-topic counts, losses).

Python: :func:`record_sim` (same options as keyword arguments) returns the per-episode records.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_TOPICS_WAIT = ("/joint_states", "/joint_commands")


@dataclass
class SimRecordConfig:
    out_dir: str
    episodes: int = 3
    seed0: int = 0
    task: str = "pick_place"  # the simulator's task: pick_place | sort
    task_text: str = ""  # the instruction stored in the bags; default: the simulator's text for the task
    robot: str = "so101"
    image_width: int = 640
    image_height: int = 480
    camera_rate: float = 30.0
    joint_state_rate: float = 50.0
    real_time_factor: float = 1.0
    command_rate: float = 30.0
    time_limit: float = 60.0  # [s of simulated time]
    settle: float = 0.8
    stop_at_success: bool = False
    storage: str = "mcap"
    compression: str = "none"
    domain_id: int | None = None
    log_dir: str | None = None
    progress: bool = True
    # robustness (Python API only): the recorder's own time limit lies this far behind the teleoperator's
    # [s of simulated time]; waits for ~/end_episode and for the RecordEpisode result [s wall clock] (longer
    # than the recorder's own bounds: episode_recorder END_WAIT 300 s, bag writer 120 s); consecutive
    # episodes that may fail to finish before record-sim gives up
    recorder_margin: float = 10.0
    end_timeout: float = 330.0
    result_timeout: float = 180.0
    max_consecutive_failures: int = 3


@dataclass
class SimEpisodeRecord:
    episode_index: int
    seed: int
    bag_path: str
    success: bool
    outcome: str
    commands_sent: int
    counts: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    duration: float = 0.0
    error: str = ""


def _stamp(msg) -> float:  # type: ignore[no-untyped-def]
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _quat_yaw(w: float, x: float, y: float, z: float) -> float:
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


class SimTeleop:
    """In-process ROS client: the scripted expert as teleoperator, the simulator's reset, the recorder's
    action and end service (rclpy imported lazily)."""

    def __init__(self, cfg: SimRecordConfig, context) -> None:  # type: ignore[no-untyped-def]
        from geometry_msgs.msg import PoseArray
        from rclpy.action import ActionClient
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, String
        from std_srvs.srv import SetBool, Trigger
        from trajectory_msgs.msg import JointTrajectory

        from smolvla_msgs.action import RecordEpisode
        from smolvla_sim.expert import PickPlacePlanner
        from smolvla_sim.model import JOINT_NAMES, build_model

        self.cfg = cfg
        self._JointTrajectory = JointTrajectory
        self._RecordEpisode = RecordEpisode
        self._Trigger, self._SetBool = Trigger, SetBool
        self.node = Node("record_sim_teleop", context=context)
        self.joint_names = list(JOINT_NAMES)
        self.planner = PickPlacePlanner(build_model(cfg.robot), self.joint_names, rate=cfg.command_rate)
        self.cond = threading.Condition()
        self.js_stamp = -1.0
        self.js_positions: np.ndarray | None = None
        self.objects: tuple[float, list] | None = None
        self.success: tuple[float, bool] = (-1.0, False)
        self.events: list[dict] = []
        self.on_joint_state = None
        self.node.create_subscription(JointState, "/joint_states", self._on_js, 50)
        self.node.create_subscription(PoseArray, "/sim_node/objects", self._on_objects, 10)
        self.node.create_subscription(Bool, "/sim_node/task_success", self._on_success, 10)
        self.node.create_subscription(String, "/smolvla/episode", self._on_event, 10)
        self.cmd_pub = self.node.create_publisher(
            JointTrajectory, "/joint_commands", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.reset_client = self.node.create_client(Trigger, "/sim_node/reset")
        self.end_client = self.node.create_client(SetBool, "/episode_recorder/end_episode")
        self.record_client = ActionClient(self.node, RecordEpisode, "/episode_recorder/record")
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    # -- callbacks -----------------------------------------------------------------------------------------
    def _on_js(self, msg) -> None:  # type: ignore[no-untyped-def]
        try:
            idx = [list(msg.name).index(n) for n in self.joint_names]
        except ValueError:
            return
        stamp = _stamp(msg)
        with self.cond:
            self.js_stamp = stamp
            self.js_positions = np.array(msg.position)[idx]
            self.cond.notify_all()
        callback = self.on_joint_state
        if callback is not None:
            callback(stamp, msg.header.stamp)

    def _on_objects(self, msg) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            self.objects = (_stamp(msg), [(p.position, p.orientation) for p in msg.poses])
            self.cond.notify_all()

    def _on_success(self, msg) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            self.success = (self.js_stamp, bool(msg.data))
            self.cond.notify_all()

    def _on_event(self, msg) -> None:  # type: ignore[no-untyped-def]
        try:
            event = json.loads(msg.data)
        except ValueError:
            return
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    # -- helpers -------------------------------------------------------------------------------------------
    def _wait_future(self, future, timeout: float, what: str):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer within {timeout:g} s")
            time.sleep(0.005)
        return future.result()

    def wait_ready(self, timeout: float, topics: list[str]) -> None:
        deadline = time.monotonic() + timeout
        for what, ok in (
            ("sim_node ~/reset", lambda: self.reset_client.service_is_ready()),
            ("episode_recorder ~/record", lambda: self.record_client.server_is_ready()),
            ("episode_recorder ~/end_episode", lambda: self.end_client.service_is_ready()),
            (
                "/joint_states and ~/objects",
                lambda: self.js_positions is not None and self.objects is not None,
            ),
        ):
            while not ok():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{what} not available within {timeout:g} s")
                time.sleep(0.05)
        # the recorder subscribes once a topic has a publisher: wait until it did for every topic we need
        for topic in topics:
            while not any(
                i.node_name == "episode_recorder" for i in self.node.get_subscriptions_info_by_topic(topic)
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"episode_recorder did not subscribe to {topic} within {timeout:g} s")
                time.sleep(0.05)

    def reset(self, timeout: float = 60.0) -> str:
        response = self._wait_future(
            self.reset_client.call_async(self._Trigger.Request()), timeout, "sim_node ~/reset"
        )
        if not response.success:
            raise RuntimeError(f"reset failed: {response.message}")
        with self.cond:
            t_reset = self.js_stamp
            ok = self.cond.wait_for(
                lambda: self.objects is not None and self.objects[0] > t_reset and self.js_stamp > t_reset,
                timeout,
            )
        if not ok:
            raise TimeoutError("no state from sim_node after the reset")
        return response.message

    def _trajectory(self, row: np.ndarray, stamp):  # type: ignore[no-untyped-def]
        """One streamed target, stamped with ``stamp`` (builtin_interfaces/Time on the simulator's clock)."""
        from trajectory_msgs.msg import JointTrajectoryPoint

        msg = self._JointTrajectory()
        msg.header.stamp = stamp
        msg.joint_names = list(self.joint_names)
        msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in row]))
        return msg

    def start_recording(self, task_text: str, time_limit: float, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        with self.cond:
            n_events = len(self.events)
        goal = self._RecordEpisode.Goal(task=task_text, time_limit=float(time_limit))
        from smolvla_common.action_client import send_goal_async

        handle = self._wait_future(send_goal_async(self.record_client, goal), timeout, "RecordEpisode goal")
        if not handle.accepted:
            raise RuntimeError("episode_recorder rejected the RecordEpisode goal (an episode is running?)")
        result_future = handle.get_result_async()
        with self.cond:
            started = self.cond.wait_for(
                lambda: (
                    any(e.get("event") == "start" for e in self.events[n_events:]) or result_future.done()
                ),
                timeout,
            )
        if result_future.done():
            raise RuntimeError(
                f"the recorder ended the episode at once: {result_future.result().result.error}"
            )
        if not started:
            raise TimeoutError("no start event from episode_recorder")
        return handle, result_future

    def run_expert(self, time_limit: float) -> tuple[int, bool]:
        """Plan from the current state and stream the plan; returns (commands sent, success)."""
        cfg = self.cfg
        with self.cond:
            q = self.js_positions.copy()  # type: ignore[union-attr]
            poses = list(self.objects[1])  # type: ignore[index]
            t_start = self.js_stamp
        items = []
        for (cube_p, cube_o), (tray_p, _) in zip(poses[0::2], poses[1::2]):
            cube = np.array([cube_p.x, cube_p.y, cube_p.z])
            tray = np.array([tray_p.x, tray_p.y, tray_p.z])
            items.append((cube, _quat_yaw(cube_o.w, cube_o.x, cube_o.y, cube_o.z), tray))
        self.planner.home = q.copy()
        plan = self.planner.plan_sequence(q, items)
        duration = len(plan) / cfg.command_rate
        with self.cond:
            t0 = self.js_stamp  # the plan's clock starts after planning (the arm held its pose meanwhile)
        state = {"next": 0, "sent": 0, "last": t0 + duration}

        def stream(stamp: float, header_stamp) -> None:  # type: ignore[no-untyped-def]
            # the command is stamped with the simulated time of the state it answers (the ROS clock of the
            # graph, /clock): its time does not depend on when this process or the recorder got to run
            # (unstamped, the converter fell back to the recorder's receive times: up to ~220 ms of jitter)
            k = int((stamp - t0) * cfg.command_rate + 1e-6)
            if state["next"] < len(plan) and k >= state["next"] and stamp - t_start < time_limit:
                self.cmd_pub.publish(self._trajectory(plan[min(k, len(plan) - 1)], header_stamp))
                state["next"] = k + 1
                state["sent"] += 1
                if state["next"] >= len(plan):
                    state["last"] = stamp

        self.on_joint_state = stream
        deadline_wall = time.monotonic() + max(
            120.0, 20.0 * (duration + cfg.settle) / max(cfg.real_time_factor, 0.05)
        )
        try:
            with self.cond:
                while True:
                    now = self.js_stamp
                    done = (
                        state["next"] >= len(plan) and now >= max(t0 + duration, state["last"]) + cfg.settle
                    )
                    if done or now - t_start >= time_limit:
                        break
                    if cfg.stop_at_success and self.success[1] and self.success[0] > t0:
                        break
                    if time.monotonic() > deadline_wall:
                        raise TimeoutError("simulation time did not advance (is sim_node running?)")
                    self.cond.wait(0.1)
        finally:
            self.on_joint_state = None
        # the status topic has its own rate: use a value published after the end
        with self.cond:
            t_end = self.js_stamp
            self.cond.wait_for(lambda: self.success[0] >= t_end, 10.0)
            success = self.success[1]
        return state["sent"], success

    def end_recording(  # type: ignore[no-untyped-def]
        self,
        success: bool | None,
        handle,
        result_future,
        end_timeout: float = 330.0,
        result_timeout: float = 180.0,
    ):
        """End the episode with its outcome (``None``: cancel, outcome unknown); returns (error or "", the
        RecordEpisode result or None, the bag path ``~/end_episode`` answered or ""). Never raises and never
        waits unbounded: the answer of ``~/end_episode`` (or of the cancel) and the goal's result are waited
        for together (whichever comes first: one lost answer does not decide); if neither comes, the goal is
        canceled; if no result comes, the error says so (the recorder saves a running episode when it stops,
        and ``recover-bags`` finishes a partial one).

        An episode the recorder ended itself (its time limit: the answer is then "no episode is being
        recorded", or the saved bag) is no error: its bag is in the result."""
        error, answered_path = "", ""
        if not result_future.done():
            if success is None:
                what, future = "RecordEpisode cancel", handle.cancel_goal_async()
            else:
                request = self._SetBool.Request(data=bool(success))
                what, future = "~/end_episode", self.end_client.call_async(request)
            deadline = time.monotonic() + end_timeout
            while not (future.done() or result_future.done()):
                if time.monotonic() > deadline:
                    error = f"{what} did not answer within {end_timeout:g} s"
                    if success is not None:
                        with contextlib.suppress(Exception):  # (the result wait below decides)
                            handle.cancel_goal_async()
                    break
                time.sleep(0.005)
            if success is not None and future.done() and future.exception() is None:
                response = future.result()
                if response.success:
                    answered_path = response.message
                else:
                    error = response.message
        try:
            result = self._wait_future(result_future, result_timeout, "RecordEpisode result").result
        except TimeoutError as exc:
            return (f"{error}; {exc}" if error and not answered_path else str(exc)), None, answered_path
        if result.bag_path:
            return "", result, result.bag_path
        return (result.error or error or "the recorder saved no bag"), result, ""

    def close(self) -> None:
        from smolvla_common.executor_shutdown import shutdown_executor

        shutdown_executor(self.executor, self.thread)  # no "exception was never retrieved" (issue 19)
        self.thread.join(timeout=10.0)
        self.record_client.destroy()
        self.node.destroy_node()


def _record_episode(teleop: SimTeleop, cfg: SimRecordConfig, task_text: str, seed: int) -> SimEpisodeRecord:
    """One episode: start the recording, run the expert, end it. An episode that fails to start or to finish
    comes back with ``error`` set (and its bag if the recorder saved one), never as an exception: a saved
    episode is always reported."""
    try:
        # the recorder's time limit: a safety net behind the teleoperator's (which sets the outcome)
        handle, result_future = teleop.start_recording(task_text, cfg.time_limit + cfg.recorder_margin)
    except (RuntimeError, TimeoutError) as exc:
        return SimEpisodeRecord(-1, seed, "", False, "", 0, error=f"could not start the recording: {exc}")
    sent, success, run_error = 0, False, ""
    try:
        sent, success = teleop.run_expert(cfg.time_limit)
    except (RuntimeError, TimeoutError) as exc:
        run_error = f"the expert did not finish: {exc}"
    end_error, result, saved_path = teleop.end_recording(
        None if run_error else success, handle, result_future, cfg.end_timeout, cfg.result_timeout
    )
    if result is None:
        if saved_path and not run_error:  # saved (the answer says so), only the result got lost
            outcome = "success" if success else "failure"
            return SimEpisodeRecord(-1, seed, saved_path, success, outcome, sent)
        return SimEpisodeRecord(-1, seed, "", success, "", sent, error=run_error or end_error)
    return SimEpisodeRecord(
        episode_index=int(result.episode_index),
        seed=seed,
        bag_path=result.bag_path,
        success=success,
        outcome=result.outcome,
        commands_sent=sent,
        counts=dict(zip(result.topics, (int(c) for c in result.message_counts))),
        dropped=int(result.dropped),
        duration=float(result.duration),
        error=run_error or end_error,
    )


def record_sim(cfg: SimRecordConfig) -> list[SimEpisodeRecord]:
    """Record ``cfg.episodes`` expert episodes; returns one record per episode (also on partial failure)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from smolvla_sim.tasks import DEFAULT_TASK_TEXT
    from smolvla_train.recording.processes import RosProcess, apply_ros_environment

    if cfg.episodes < 1:
        raise ValueError("episodes must be >= 1")
    if cfg.seed0 < 0:
        raise ValueError("seed0 must be >= 0")
    task_text = cfg.task_text or DEFAULT_TASK_TEXT[cfg.task]
    out_dir = Path(cfg.out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    env = apply_ros_environment(cfg.domain_id)
    log_dir = Path(cfg.log_dir) if cfg.log_dir else out_dir / ".logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    cameras = ["top", "wrist"] if cfg.camera_rate > 0 else []
    sim = RosProcess(
        "smolvla_sim",
        "sim_node",
        {
            "robot": cfg.robot,
            "task": cfg.task,
            "seed": cfg.seed0,
            "real_time_factor": cfg.real_time_factor,
            "camera_rate": cfg.camera_rate,
            "joint_state_rate": cfg.joint_state_rate,
            "publish_clock": True,
            "image_width": cfg.image_width,
            "image_height": cfg.image_height,
        },
        log_dir / "sim_node.log",
        env,
    )
    recorder = RosProcess(
        "smolvla_train",
        "episode_recorder",
        {
            "out_dir": str(out_dir),
            "storage": cfg.storage,
            "compression": cfg.compression,
            "robot": cfg.robot,
            "use_sim_time": True,
        },
        log_dir / "episode_recorder.log",
        env,
    )
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    teleop = None
    records: list[SimEpisodeRecord] = []
    bar = None
    try:
        teleop = SimTeleop(cfg, context)
        wait_topics = list(DEFAULT_TOPICS_WAIT)
        wait_topics += [f"/cameras/{c}/image_raw" for c in cameras]
        teleop.wait_ready(120.0, wait_topics)
        if cfg.progress:
            try:
                from tqdm import tqdm

                bar = tqdm(total=cfg.episodes, desc="record-sim", unit="episode")
            except ImportError:
                bar = None
        failures = 0
        for k in range(cfg.episodes):
            if failures >= cfg.max_consecutive_failures:
                raise RuntimeError(
                    f"{failures} episodes in a row failed to finish (last: {records[-1].error}); "
                    f"see {log_dir}"
                )
            seed = cfg.seed0 + k
            if k > 0:
                message = teleop.reset()  # "episode N seed S"
                parts = message.split()
                if "seed" in parts:
                    seed = int(parts[parts.index("seed") + 1])
            rec = _record_episode(teleop, cfg, task_text, seed)
            records.append(rec)
            failures = failures + 1 if rec.error else 0
            with open(out_dir / "record_sim.jsonl", "a") as f:
                f.write(json.dumps(asdict(rec)) + "\n")
            line = (
                f"[{k + 1}/{cfg.episodes}] seed {seed}: {rec.outcome}, {rec.duration:.1f} s, "
                f"{rec.commands_sent} commands, lost {rec.dropped} -> "
                f"{rec.bag_path or 'FAILED: ' + rec.error}"
            )
            if bar is not None:
                bar.write(line)
                bar.update(1)
            else:
                print(line, flush=True)
    finally:
        if bar is not None:
            bar.close()
        if teleop is not None:
            teleop.close()
        rclpy.try_shutdown(context=context)
        recorder.stop()
        sim.stop()
    return records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smolvla_train record-sim",
        description="Record scripted-expert episodes in simulation (sim_node + episode_recorder) into one "
        "rosbag2 bag per episode.",
    )
    d = SimRecordConfig(out_dir="")
    p.add_argument("--out", required=True, help="output directory of the bags (created if missing)")
    p.add_argument(
        "--episodes", type=int, default=d.episodes, help="episodes to record (default %(default)s)"
    )
    p.add_argument(
        "--seed0", type=int, default=d.seed0, help="seed of the first episode; episode k uses seed0+k"
    )
    p.add_argument("--task", default=d.task, choices=["pick_place", "sort"], help="simulated task")
    p.add_argument("--task-text", default="", help="instruction stored in the bags (default: the task's)")
    p.add_argument("--robot", default=d.robot, choices=["so101", "so100"])
    p.add_argument("--image-width", type=int, default=d.image_width)
    p.add_argument("--image-height", type=int, default=d.image_height)
    p.add_argument("--camera-rate", type=float, default=d.camera_rate, help="Hz per camera; 0 = no cameras")
    p.add_argument(
        "--real-time-factor", type=float, default=d.real_time_factor, help="0 = as fast as possible"
    )
    p.add_argument("--time-limit", type=float, default=d.time_limit, help="[s of simulated time] per episode")
    p.add_argument("--stop-at-success", action="store_true", help="end an episode at its first success")
    p.add_argument("--storage", default=d.storage, choices=["mcap", "sqlite3"])
    p.add_argument("--compression", default=d.compression, choices=["none", "zstd"])
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: the environment's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name, ok in (
        ("--episodes", args.episodes >= 1),
        ("--seed0", args.seed0 >= 0),
        ("--image-width", 8 <= args.image_width <= 4096),
        ("--image-height", 8 <= args.image_height <= 4096),
        ("--camera-rate", 0 <= args.camera_rate <= 120),
        ("--real-time-factor", 0 <= args.real_time_factor <= 100),
        ("--time-limit", args.time_limit > 0),
    ):
        if not ok:
            print(f"smolvla_train record-sim: invalid {name}", file=sys.stderr)
            return 2
    cfg = SimRecordConfig(
        out_dir=args.out,
        episodes=args.episodes,
        seed0=args.seed0,
        task=args.task,
        task_text=args.task_text,
        robot=args.robot,
        image_width=args.image_width,
        image_height=args.image_height,
        camera_rate=args.camera_rate,
        real_time_factor=args.real_time_factor,
        time_limit=args.time_limit,
        stop_at_success=args.stop_at_success,
        storage=args.storage,
        compression=args.compression,
        domain_id=args.domain_id,
        progress=not args.no_progress,
    )
    try:
        records = record_sim(cfg)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, ValueError) as exc:
        print(f"smolvla_train record-sim: {exc}", file=sys.stderr)
        return 1
    ok = sum(r.success for r in records)
    failed = [r for r in records if r.error]
    print(
        f"recorded {len(records) - len(failed)}/{len(records)} episodes into {Path(args.out).expanduser()} "
        f"({ok} successful); lost messages: {sum(r.dropped for r in records)}"
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
