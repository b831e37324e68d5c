"""The project's main job on a machine without a GPU or an arm: the closed loop in simulation.

Starts ``launch/sim_demo.launch.py`` (MuJoCo arm + cameras -> policy server -> action queue -> arm) the way
``ros2 launch`` would, under the project's network isolation, then watches it from a small monitor node:
every few seconds a status line (control tick, queue size, idle ticks, chunks, inference latency), one line
per finished episode (success or timeout), and a summary at the end. Episodes are restarted through the
simulator's ``~/reset`` service (the action queue is stopped and restarted around it).

    python tools/run_demo.py --episodes 5                       # the shipped SmolVLA checkpoint
    python tools/run_demo.py backend:=scripted --episodes 5     # the scripted expert behind the policy server
    python tools/run_demo.py backend:=smolvla checkpoint:=/path/to/finetuned_smolvla --episodes 3

Without a ``backend`` argument the policy server runs the SmolVLA checkpoint that ships in
``models/smolvla_sim_pick_place`` (trained by the suite on simulated demonstrations, see its MODEL_CARD.md),
with the camera size and instruction it was trained with, on simulated time (as evaluated: a loaded CPU slows
the simulation instead of the policy), from the first seed of its held-out evaluation (100000; it succeeds on
about 1 scene in 8, docs/closed_loop.md). ``backend:=scripted`` selects the simulator's scripted
pick-and-place expert (``smolvla_sim.expert_backend:make_backend``) behind the same PredictChunk
action.
``--results FILE`` appends one JSON line per episode (seed, success, duration).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mini_launch  # noqa: E402
import ros_harness  # noqa: E402

LAUNCH_FILE = ros_harness.REPO_ROOT / "launch" / "sim_demo.launch.py"
#: The SmolVLA checkpoint the main job runs by default, and the launch arguments it was trained for.
SHIPPED_CHECKPOINT = ros_harness.REPO_ROOT / "models" / "smolvla_sim_pick_place"
SHIPPED_DEFAULTS = {
    "image_size": "128",
    "task": "Pick up the red cube and place it in the blue box.",
    "seed": "100000",  # the first seed of its held-out evaluation (docs/closed_loop_eval.jsonl)
    "use_sim_time": "true",  # as evaluated: every node on the simulator's clock
}
EXPERT_BACKEND = "smolvla_sim.expert_backend:make_backend"


def resolve_overrides(overrides: dict[str, str]) -> dict[str, str]:
    """Launch arguments with the main job's defaults: the shipped SmolVLA unless a backend is given;
    ``backend:=scripted`` means the simulator's scripted expert."""
    out = dict(overrides)
    backend = out.get("backend")
    if backend is None:
        out["backend"] = "smolvla"
        out.setdefault("checkpoint", str(SHIPPED_CHECKPOINT))
    elif backend in ("scripted", "expert"):
        out["backend"] = EXPERT_BACKEND
    shipped = Path(out.get("checkpoint", "")).resolve() == SHIPPED_CHECKPOINT.resolve()
    if out["backend"] == "smolvla" and shipped:
        for key, value in SHIPPED_DEFAULTS.items():
            out.setdefault(key, value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("arguments", nargs="*", help="launch arguments of sim_demo.launch.py as name:=value")
    parser.add_argument(
        "--episodes", type=int, default=3, help="stop after this many episodes (0: until Ctrl-C)"
    )
    parser.add_argument("--episode-timeout", type=float, default=45.0, help="seconds before an episode fails")
    parser.add_argument("--status-period", type=float, default=5.0, help="seconds between status lines")
    parser.add_argument("--results", type=Path, default=None, help="append one JSON line per episode here")
    parser.add_argument(
        "--startup-timeout", type=float, default=120.0, help="seconds to wait for the first chunk"
    )
    args = parser.parse_args(argv)
    bad = [a for a in args.arguments if ":=" not in a]
    if bad:
        parser.error(f"launch arguments must be name:=value, got {bad[0]!r}")
    overrides = resolve_overrides(dict(a.split(":=", 1) for a in args.arguments))
    if overrides.get("checkpoint") == str(SHIPPED_CHECKPOINT) and not SHIPPED_CHECKPOINT.is_dir():
        parser.error(f"the shipped checkpoint {SHIPPED_CHECKPOINT} is missing (pass backend:=scripted)")
    sim_time = overrides.get("use_sim_time", "false").lower() in ("true", "1", "yes")
    plan = mini_launch.describe(LAUNCH_FILE, overrides)
    ros_harness.apply_ros_environment()

    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Bool
    from std_srvs.srv import Trigger

    from smolvla_msgs.msg import QueueStatus

    print(f"[demo] ROS_DOMAIN_ID={ros_harness.os.environ['ROS_DOMAIN_ID']}, DDS profile: shared memory only")
    print("[demo] nodes: " + ", ".join(f"{n.package}/{n.executable}" for n in plan.nodes))
    print(
        "[demo] backend: "
        + str(next(n for n in plan.nodes if n.executable == "policy_server").parameters["backend"])
    )
    procs = mini_launch.start_nodes(plan)
    rclpy.init(args=[])  # not sys.argv: rcl would read the launch arguments (name:=value) as remappings
    node = rclpy.create_node("demo_monitor")
    state: dict[str, object] = {"status": None, "success": False, "clock": None}
    if sim_time:  # episode times and timeouts in simulated seconds (the simulator may lag real time)
        node.create_subscription(
            Clock, "/clock", lambda m: state.update(clock=m.clock.sec + 1e-9 * m.clock.nanosec), 10
        )

    def now_s() -> float:
        clock = state["clock"]
        return float(clock) if sim_time and clock is not None else time.monotonic()

    node.create_subscription(QueueStatus, "/smolvla/queue_status", lambda m: state.update(status=m), 10)
    node.create_subscription(Bool, "/sim_node/task_success", lambda m: state.update(success=m.data), 10)
    reset = node.create_client(Trigger, "/sim_node/reset")
    q_start = node.create_client(Trigger, "/action_queue/start")
    q_stop = node.create_client(Trigger, "/action_queue/stop")
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()

    def call(client: object, name: str) -> str:
        if not client.wait_for_service(timeout_sec=10.0):  # type: ignore[attr-defined]
            return f"{name}: service not available"
        fut = client.call_async(Trigger.Request())  # type: ignore[attr-defined]
        t0 = time.monotonic()
        while not fut.done() and time.monotonic() - t0 < 10.0:
            time.sleep(0.02)
        return fut.result().message if fut.done() else f"{name}: no answer"

    results: list[tuple[int, bool, float]] = []
    seed = int(overrides.get("seed", "0"))

    def record(episode: int, ok: bool, duration: float) -> None:
        if args.results is None:
            return
        import json

        line = {"episode": episode, "seed": seed, "success": ok, "duration_s": round(duration, 3)}
        line["clock"] = "sim" if sim_time else "wall"
        with open(args.results, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    code = 0
    try:
        t_start = time.monotonic()
        while state["status"] is None or state["status"].chunks_received == 0:  # type: ignore[union-attr]
            dead = [p for p in procs if not p.alive()]
            if dead or time.monotonic() - t_start > args.startup_timeout:
                for p in dead or procs:
                    print(f"[demo] {p.executable} did not come up; last output:\n{p.output()[-1500:]}")
                return 1
            time.sleep(0.1)
        print(f"[demo] first chunk after {time.monotonic() - t_start:.1f} s; running")
        last_status = time.monotonic()
        episode_start = now_s()
        state["success"] = False
        while args.episodes == 0 or len(results) < args.episodes:
            time.sleep(0.05)
            now = now_s()
            if any(not p.alive() for p in procs):
                for p in procs:
                    if not p.alive():
                        print(f"[demo] {p.executable} exited ({p.proc.returncode}):\n{p.output()[-1500:]}")
                code = 1
                break
            st = state["status"]
            if time.monotonic() - last_status >= args.status_period and st is not None:
                last_status = time.monotonic()
                print(
                    f"[demo] episode {len(results) + 1} t={now - episode_start:5.1f}s tick={st.tick} "
                    f"queue={st.queue_size}/{st.chunk_size} g={st.threshold:.2f} idle={st.idle_ticks} "
                    f"chunks={st.chunks_received} late={st.actions_dropped_late} "
                    f"latency={st.last_latency_ms:.0f}ms"
                )
            timed_out = now - episode_start > args.episode_timeout
            if state["success"] or timed_out:
                ok = bool(state["success"])
                results.append((len(results) + 1, ok, now - episode_start))
                verdict = "SUCCESS" if ok else "timeout"
                duration = now - episode_start
                print(f"[demo] episode {len(results)}: {verdict} after {duration:.1f} s (seed {seed})")
                record(len(results), ok, now - episode_start)
                if args.episodes and len(results) >= args.episodes:
                    break
                call(q_stop, "stop")
                message = call(reset, "reset")
                print(f"[demo] reset: {message}")
                words = message.split()
                seed = int(words[words.index("seed") + 1]) if "seed" in words[:-1] else seed + 1
                state["success"] = False
                call(q_start, "start")
                episode_start = now_s()
    except KeyboardInterrupt:
        pass
    finally:
        st = state["status"]
        if results:
            n_ok = sum(ok for _, ok, _ in results)
            times = [t for _, ok, t in results if ok]
            mean = f" (mean {sum(times) / len(times):.1f} s when successful)" if times else ""
            print(f"[demo] {n_ok}/{len(results)} episodes succeeded{mean}")
        if st is not None:
            print(
                f"[demo] queue: {st.tick} ticks, {st.idle_ticks} idle, {st.chunks_received} chunks, "
                f"{st.observations_sent} observations sent, {st.observations_filtered} filtered, "
                f"{st.actions_dropped_late} late actions dropped, last latency {st.last_latency_ms:.0f} ms"
            )
        from smolvla_common.executor_shutdown import shutdown_executor

        shutdown_executor(executor, spin)
        try:
            node.destroy_node()
            rclpy.try_shutdown()
        except (ExternalShutdownException, Exception):  # noqa: BLE001
            pass
        for p in reversed(procs):
            p.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
