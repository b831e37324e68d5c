"""Measure what the episode recorder loses at 100 Hz (issue 11): N short episodes of a numbered topic.

A publisher in this process sends ``std_msgs/String`` numbers on ``/numbers`` at ``--rate`` (its publish
times kept); the installed ``episode_recorder`` records ``--episodes`` episodes of ``--duration`` seconds,
each ended through ``~/end_episode``. ``--freeze-start``/``--freeze-end`` stop the recorder process
(SIGSTOP/SIGCONT) for that long right before a start / an end request, like a machine that gives it no CPU:
its callbacks then lag behind the middleware. Per episode, against the publisher's numbering:

- ``expected``: numbers published at or after the episode's ``smolvla.start_ns`` and before the end was
  requested (what a window on the receive-time axis must hold: received after the start, and ahead of the
  end request in the recorder's shared-memory port);
- ``lost``: expected numbers missing from the bag; ``dropped``: what the recorder reported at the end;
  ``late``: what it counted in the bag's metadata afterwards (``smolvla.late``: handed over after the save);
  ``in_later_bag``: missing here but recorded in a later episode (after a stall longer than Fast DDS's 1 s
  shared-memory health check the middleware may deliver a message only after a repair, i.e. received after
  the end); ``unreported``: the rest (must be 0);
- ``gaps``: numbers missing between the bag's first and last; ``early``/``after_end``: messages whose log
  (receive) time lies before ``smolvla.start_ns`` / after ``smolvla.end_ns``.

``--recorder-pythonpath DIR`` runs the recorder with ``DIR`` first on its ``PYTHONPATH`` (e.g. a copy of an
older ``smolvla_train`` package, for a before/after comparison). Run it inside ``unshare -n`` after
``source scripts/env.sh`` (the shared-memory-only DDS profile), e.g.::

    unshare -n python tools/recorder_loss_repro.py --episodes 20 --freeze-start 0.3 --freeze-end 0.3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_harness  # noqa: E402


def _wait(future, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    if not ros_harness.wait_for(future.done, timeout, 0.005):
        raise TimeoutError("no answer from the recorder")
    return future.result()


def _custom(bag: Path) -> dict:
    import yaml

    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=20, help="number of episodes (>= 1)")
    parser.add_argument("--duration", type=float, default=0.5, help="episode length [s] (> 0)")
    parser.add_argument("--rate", type=float, default=100.0, help="publish rate [Hz] (> 0)")
    parser.add_argument("--freeze-start", type=float, default=0.0, help="SIGSTOP before each start [s]")
    parser.add_argument("--freeze-end", type=float, default=0.0, help="SIGSTOP before each end request [s]")
    parser.add_argument("--queue-depth", type=int, default=100, help="recorder subscription depth")
    parser.add_argument("--publisher-depth", type=int, default=1000, help="publisher history depth")
    parser.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID (default: random 102..200)")
    parser.add_argument("--out", default=None, help="bag directory (default: a temporary one)")
    parser.add_argument("--recorder-pythonpath", default="", help="prepended to the recorder's PYTHONPATH")
    parser.add_argument("--json", default=None, help="also write the per-episode rows to this file")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="wait after the last episode for late messages [s]"
    )
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.duration <= 0 or args.rate <= 0:
        parser.error("--episodes must be >= 1, --duration and --rate > 0")
    if args.freeze_start < 0 or args.freeze_end < 0:
        parser.error("freeze times must be >= 0")
    domain = args.domain if args.domain is not None else random.randint(102, 200)
    ros_harness.apply_ros_environment(domain)
    out = Path(args.out or tempfile.mkdtemp(prefix="recorder_loss_"))

    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader
    from std_msgs.msg import String
    from std_srvs.srv import SetBool
    from tqdm import tqdm

    from smolvla_common.action_client import send_goal_async
    from smolvla_msgs.action import RecordEpisode

    env = ros_harness.ros_environment(domain)
    if args.recorder_pythonpath:
        env["PYTHONPATH"] = args.recorder_pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    rec = ros_harness.NodeProcess(
        "smolvla_train",
        "episode_recorder",
        parameters={"out_dir": str(out), "topics": ["/numbers"], "queue_depth": args.queue_depth},
        env=env,
        log_path=str(out) + ".recorder.log",
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    node = rclpy.create_node("recorder_loss_repro", context=context)
    pub = node.create_publisher(
        String, "/numbers", QoSProfile(depth=args.publisher_depth, reliability=ReliabilityPolicy.RELIABLE)
    )
    action = ActionClient(node, RecordEpisode, "/episode_recorder/record")
    end = node.create_client(SetBool, "/episode_recorder/end_episode")
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    stop = threading.Event()
    published_at: dict[int, int] = {}
    last = [0]

    def publish() -> None:
        n, period, next_t = 0, 1.0 / args.rate, time.monotonic()
        while not stop.is_set():
            n += 1
            published_at[n] = time.time_ns()
            pub.publish(String(data=str(n)))
            last[0] = n
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    def freeze(seconds: float) -> int:
        if seconds > 0:
            os.kill(rec.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(seconds)
                return last[0]
            finally:
                os.kill(rec.proc.pid, signal.SIGCONT)
        return last[0]

    rows: list[dict] = []
    code = 0
    try:
        threading.Thread(target=publish, daemon=True).start()  # the recorder subscribes once it exists
        if not action.wait_for_server(timeout_sec=30.0) or not rec.wait_for_output("subscribed /numbers"):
            print(f"the recorder is not ready; its log: {rec.log_path}", file=sys.stderr)
            return 1
        episodes: list[tuple[int, Path, set[int], int]] = []  # (index, bag, expected, result dropped)
        for k in tqdm(range(args.episodes), desc="episodes", unit="ep"):
            freeze(args.freeze_start)
            handle = _wait(send_goal_async(action, RecordEpisode.Goal(task=f"episode {k}")))
            if not handle.accepted:
                raise RuntimeError(f"episode {k}: goal rejected")
            time.sleep(args.duration)
            requested = freeze(args.freeze_end)  # published before the end request
            _wait(end.call_async(SetBool.Request(data=True)))
            result = _wait(handle.get_result_async()).result
            if result.error:
                raise RuntimeError(f"episode {k}: {result.error}")
            bag = Path(result.bag_path)
            start_ns = int(_custom(bag)["smolvla.start_ns"])
            expected = {n for n, t in published_at.items() if t >= start_ns and n <= requested}
            episodes.append((k, bag, expected, int(result.dropped)))
        time.sleep(args.settle)  # messages held back by the middleware arrive; the recorder counts them
    finally:
        stop.set()
        rec.stop()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
    recorded: dict[int, set[int]] = {}
    for k, bag, expected, dropped in episodes:
        custom = _custom(bag)
        start_ns, end_ns = int(custom["smolvla.start_ns"]), int(custom["smolvla.end_ns"])
        got: list[tuple[int, int]] = []
        with AnyReader([bag]) as reader:
            for conn, t, raw in reader.messages():
                if conn.topic == "/numbers":
                    got.append((t, int(reader.deserialize(raw, conn.msgtype).data)))
        numbers = {n for _, n in got}
        recorded[k] = numbers
        missing = expected - numbers
        span = (max(numbers) - min(numbers) + 1 - len(numbers)) if numbers else 0
        reported = max(dropped, int(custom.get("smolvla.dropped", 0)))
        rows.append(
            {
                "episode": k,
                "recorded": len(got),
                "expected": len(expected),
                "lost": len(missing),
                "dropped": dropped,
                "late": int(custom.get("smolvla.late", 0)),
                "unreported": max(0, max(len(missing), span) - reported),
                "gaps": span,
                "early": sum(1 for t, _ in got if t < start_ns),
                "after_end": sum(1 for t, _ in got if t > end_ns),
                "_missing": missing,
            }
        )
    # received by the middleware only after their episode's end (repaired after a stall): they belong to a
    # later window; found in a later bag they are not lost
    for row in rows:
        missing = row.pop("_missing")
        later = {n for n in missing if any(n in v for j, v in recorded.items() if j > row["episode"])}
        row["in_later_bag"] = len(later)
        row["unreported"] = max(0, row["unreported"] - len(later))
    keys = [
        "episode",
        "recorded",
        "expected",
        "lost",
        "dropped",
        "late",
        "in_later_bag",
        "unreported",
        "gaps",
        "early",
        "after_end",
    ]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    total = {k: sum(r[k] for r in rows) for k in keys[1:]}
    print("| total | " + " | ".join(str(total[k]) for k in keys[1:]) + " |")
    print(
        f"{len(rows)} episodes of {args.duration:g} s at {args.rate:g} Hz, freeze start "
        f"{args.freeze_start:g} s, end {args.freeze_end:g} s: {total['lost']} of {total['expected']} "
        f"expected messages missing, {total['dropped']} reported at the end + {total['late']} after it, "
        f"{total['in_later_bag']} in a later bag, {total['unreported']} unreported, "
        f"{total['early']} from before the start"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "total": total}, indent=1))
    if total["unreported"] or total["early"] or total["after_end"]:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
