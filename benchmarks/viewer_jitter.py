"""Does the Rerun viewer slow the 30 Hz control loop down? Control-tick period jitter with and without it.

The simulated loop (launch/sim_demo.launch.py, scripted expert, real rclpy/DDS) runs ``--seconds`` per round,
alternately without and with the ``viewer`` node (``viewer:=true``; serving on free 127.0.0.1 ports, images
at its default rate), ``--rounds`` times each. The action queue stamps every ``/smolvla/queue_status`` with
the wall time of its tick; the intervals between consecutive stamps are the control periods. Reported per
condition: ticks, mean period, p50/p95/p99/max of |period - 1/fps|, and the share of ticks later than half a
period. The section ``viewer_jitter`` of docs/benchmarks.md is rewritten.

    python benchmarks/viewer_jitter.py --seconds 30 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO_ROOT, machine_line, markdown_table, write_section  # noqa: E402

import mini_launch  # noqa: E402
import ros_harness  # noqa: E402

FPS = 30.0


def run_round(with_viewer: bool, seconds: float, image_size: int) -> np.ndarray:
    """Control periods [s] of one round."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from smolvla_msgs.msg import QueueStatus

    args = {"backend": "smolvla_sim.expert_backend:make_backend", "image_size": str(image_size)}
    if with_viewer:
        args["viewer"] = "true"
    plan = mini_launch.describe(REPO_ROOT / "launch" / "sim_demo.launch.py", args)
    for n in plan.nodes:
        if n.executable == "viewer":
            n.parameters.update({"web_port": 0, "grpc_port": 0})
    procs = mini_launch.start_nodes(plan)
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    node = rclpy.create_node("viewer_jitter", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stamps: list[tuple[int, float]] = []
    started = {"t": None}

    def on_status(m: QueueStatus) -> None:
        if m.chunks_received > 0 and started["t"] is None:
            started["t"] = time.monotonic()
        if started["t"] is not None:
            stamps.append((int(m.tick), m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec))

    node.create_subscription(QueueStatus, "/smolvla/queue_status", on_status, 100)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (
            started["t"] is None or time.monotonic() - started["t"] < seconds
        ):
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        mini_launch.stop_all(procs, send_sigint=True)
    ticks = dict(stamps)  # one stamp per tick (a lost status message leaves a gap: consecutive ticks only)
    keys = sorted(ticks)
    return np.array([ticks[b] - ticks[a] for a, b in zip(keys, keys[1:]) if b == a + 1])


def summarize(periods: np.ndarray) -> list[object]:
    dev = np.abs(periods - 1.0 / FPS) * 1000.0
    return [
        len(periods),
        float(periods.mean() * 1000.0),
        float(np.percentile(dev, 50)),
        float(np.percentile(dev, 95)),
        float(np.percentile(dev, 99)),
        float(dev.max()),
        f"{100.0 * float((periods > 1.5 / FPS).mean()):.2f} %",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per condition (alternating)")
    parser.add_argument("--image-size", type=int, default=256, help="camera width and height")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    ros_harness.apply_ros_environment()
    from tqdm import tqdm

    periods: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for _ in tqdm(range(args.rounds), desc="rounds", unit="round"):
        for with_viewer in (False, True):
            periods[with_viewer].append(run_round(with_viewer, args.seconds, args.image_size))
    headers = ["condition", "ticks", "mean period [ms]", "p50 |dev| [ms]", "p95 |dev| [ms]", "p99 |dev| [ms]",
               "max |dev| [ms]", "periods > 1.5/fps"]  # fmt: skip
    rows = [
        ["without viewer", *summarize(np.concatenate(periods[False]))],
        ["with viewer", *summarize(np.concatenate(periods[True]))],
    ]
    table = markdown_table(headers, rows)
    print(table)
    if not args.no_write:
        body = (
            "## Viewer: control-loop jitter with and without the Rerun viewer "
            "(`benchmarks/viewer_jitter.py`)\n\n"
            f"Simulated loop at {FPS:g} Hz (scripted expert, {args.image_size}x{args.image_size} cameras), "
            f"{args.rounds} alternating rounds of {args.seconds:g} s per condition; periods from the action "
            "queue's tick stamps on /smolvla/queue_status (consecutive ticks only).\n\n"
            f"{table}\n\n{machine_line()}\n"
        )
        write_section("viewer_jitter", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
