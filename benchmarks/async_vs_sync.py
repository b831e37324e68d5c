"""Async vs sync inference with the action_queue node on real ROS, measured against the analytic prediction.

Processes: the ``action_queue`` node (installed executable), a PredictChunk server with an artificial latency
plus an ideal arm (``src/smolvla_policy/test/action_queue_fake_server.py``, chunk size 50, 30 fps), and this
process, which sets the server latency and the threshold g through SetParameters and records
``/smolvla/queue_status`` and ``/joint_commands``. For each latency x g cell, after a warm-up, it reports over
a window:

* idle fraction = idle ticks / ticks (from QueueStatus counters), beside the prediction of
  :func:`smolvla_policy.queue.analysis.predict` from the measured mean round trip, the chunk size and g;
* late actions per chunk, measured and predicted;
* control-period jitter: p50 / p99 of ``|period - 1/fps|`` from the command stamps (the node's tick times).

The paper's no-idle bound ``g* = E[latency] / period / n`` is printed per latency. The similarity filter is
off (``similarity_epsilon = -1``) so that the cells measure Algorithm 1's threshold alone.

Run (about 3-4 minutes): ``source scripts/env.sh && unshare -n python benchmarks/async_vs_sync.py``
(``--quick`` for a short smoke run). Writes section ``async_vs_sync`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO_ROOT, machine_line, markdown_table, write_section  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "tools"))
import ros_harness  # noqa: E402

FAKE_SERVER = REPO_ROOT / "src" / "smolvla_policy" / "test" / "action_queue_fake_server.py"
FPS = 30.0
CHUNK = 50
LATENCIES_MS = (100.0, 300.0, 1000.0)
THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)


class Recorder:
    def __init__(self, node: object) -> None:
        from trajectory_msgs.msg import JointTrajectory

        from smolvla_msgs.msg import QueueStatus

        self.lock = threading.Lock()
        self.status: list[object] = []
        self.stamps: list[float] = []
        node.create_subscription(QueueStatus, "/smolvla/queue_status", self._on_status, 100)  # type: ignore[attr-defined]
        node.create_subscription(JointTrajectory, "/joint_commands", self._on_cmd, 100)  # type: ignore[attr-defined]

    def _on_status(self, msg: object) -> None:
        with self.lock:
            self.status.append(msg)

    def _on_cmd(self, msg: object) -> None:
        st = msg.header.stamp  # type: ignore[attr-defined]
        with self.lock:
            self.stamps.append(st.sec + st.nanosec * 1e-9)

    def mark(self) -> tuple[int, int]:
        with self.lock:
            return len(self.status), len(self.stamps)

    def window(self, start: tuple[int, int]) -> tuple[list[object], list[float]]:
        with self.lock:
            return self.status[start[0] :], self.stamps[start[1] :]


def set_params(client: object, **values: object) -> None:
    from rclpy.parameter import Parameter

    future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])  # type: ignore[attr-defined]
    if not ros_harness.wait_for(future.done, 10.0):
        raise RuntimeError(f"setting {values} timed out")
    for r in future.result().results:
        if not r.successful:
            raise RuntimeError(f"setting {values} refused: {r.reason}")


def measure_cell(rec: Recorder, latency_ms: float, g: float, quick: bool) -> dict[str, float]:
    from smolvla_policy.queue import predict

    period = 1.0 / FPS
    pred0 = predict(latency_ms / 1000.0 + 0.01, period, CHUNK, g)
    cycle_s = pred0.ticks_per_chunk * period
    warmup = cycle_s + latency_ms / 1000.0 + 0.5
    window = max(2.0 if quick else 6.0, (1.5 if quick else 4.0) * cycle_s)
    time.sleep(warmup)
    start = rec.mark()
    time.sleep(window)
    status, stamps = rec.window(start)
    first, last = status[0], status[-1]
    ticks = last.tick - first.tick
    idle = last.idle_ticks - first.idle_ticks
    chunks = last.chunks_received - first.chunks_received
    late = last.actions_dropped_late - first.actions_dropped_late
    latencies, prev = [], first.chunks_received
    for m in status:
        if m.chunks_received != prev:
            prev = m.chunks_received
            latencies.append(m.last_latency_ms)
    mean_latency = float(np.mean(latencies)) / 1000.0 if latencies else latency_ms / 1000.0
    pred = predict(mean_latency, period, CHUNK, g)
    dev = np.abs(np.diff(np.asarray(stamps)) - period) * 1000.0
    return {
        "latency_ms": latency_ms,
        "g": g,
        "rtt_ms": mean_latency * 1000.0,
        "ticks": ticks,
        "idle": idle / ticks if ticks else math.nan,
        "idle_pred": pred.idle_fraction,
        "late": late / chunks if chunks else math.nan,
        "late_pred": pred.late_per_chunk,
        "chunks": chunks,
        "k": pred.latency_ticks,
        "q_star": pred.trigger_size,
        "jit50": float(np.percentile(dev, 50)) if len(dev) else math.nan,
        "jit99": float(np.percentile(dev, 99)) if len(dev) else math.nan,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer g values (smoke run)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    thresholds = (0.0, 0.5, 1.0) if args.quick else THRESHOLDS

    env = ros_harness.apply_ros_environment()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter_client import AsyncParameterClient

    header = machine_line()
    server = subprocess.Popen(
        [
            sys.executable,
            str(FAKE_SERVER),
            "--latency-ms",
            str(LATENCIES_MS[0]),
            "--chunk-size",
            str(CHUNK),
            "--arm",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "READY"
    queue = ros_harness.NodeProcess(
        "smolvla_policy",
        "action_queue",
        params_file=REPO_ROOT / "config" / "action_queue.yaml",
        parameters={"cameras": [""], "chunk_threshold": 0.0, "similarity_epsilon": -1.0, "fps": FPS},
        env=env,
    )
    rclpy.init()
    node = rclpy.create_node("async_vs_sync_bench")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    rows = []
    try:
        rec = Recorder(node)
        q_params = AsyncParameterClient(node, "action_queue")
        s_params = AsyncParameterClient(node, "fake_predict_server")
        if not (q_params.wait_for_services(20.0) and s_params.wait_for_services(20.0)):
            raise RuntimeError("parameter services not found")
        if not ros_harness.wait_for(lambda: rec.status and rec.status[-1].chunks_received > 0, 30.0):
            raise RuntimeError("no chunk received")
        for latency in LATENCIES_MS:
            set_params(s_params, latency_ms=latency)
            for g in thresholds:
                set_params(q_params, chunk_threshold=g)
                row = measure_cell(rec, latency, g, args.quick)
                rows.append(row)
                print(
                    f"latency {latency:6.0f} ms  g {g:.2f}: idle {row['idle']:.3f} "
                    f"(pred {row['idle_pred']:.3f}), late/chunk {row['late']:.1f} "
                    f"(pred {row['late_pred']:.1f}), rtt {row['rtt_ms']:.0f} ms, "
                    f"jitter p50/p99 {row['jit50']:.2f}/{row['jit99']:.2f} ms",
                    flush=True,
                )
    finally:
        executor.shutdown()
        spin.join(10)
        node.destroy_node()
        rclpy.try_shutdown()
        queue.stop()
        server.send_signal(2)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()

    table = markdown_table(
        [
            "latency (ms)",
            "g",
            "round trip (ms)",
            "k = ceil(rtt/dt)",
            "q* = floor(g n)",
            "idle fraction",
            "predicted",
            "late / chunk",
            "predicted",
            "chunks",
            "jitter p50 (ms)",
            "jitter p99 (ms)",
        ],
        [
            [
                f"{r['latency_ms']:.0f}",
                f"{r['g']:.2f}",
                f"{r['rtt_ms']:.0f}",
                r["k"],
                r["q_star"],
                f"{r['idle']:.3f}",
                f"{r['idle_pred']:.3f}",
                f"{r['late']:.1f}",
                f"{r['late_pred']:.1f}",
                r["chunks"],
                f"{r['jit50']:.2f}",
                f"{r['jit99']:.2f}",
            ]
            for r in rows
        ],
    )
    bounds = ", ".join(f"{lat:.0f} ms: g* = {lat / 1000 * FPS / CHUNK:.2f}" for lat in LATENCIES_MS)
    body = f"""## Async vs sync inference (action_queue, `benchmarks/async_vs_sync.py`)

{header}.

Real ROS: `action_queue` node, a PredictChunk server with an artificial latency (sleep) and an ideal arm in
another process, chunk size n = {CHUNK}, {FPS:.0f} fps, similarity filter off; g and the server latency are
changed at run time through SetParameters; {"quick run; " if args.quick else ""}each row is a window after a
warm-up.

* *Idle fraction*: ticks with an empty queue (arm holding) / ticks. *Predicted*: the cycle model of
  `smolvla_policy.queue.analysis.predict` from the measured mean round trip: k = ceil(rtt / dt) ticks until a
  chunk can be used, a request when the queue holds q* = floor(g n) actions; sync (g = 0): k / (k + n).
* *Jitter*: p50 / p99 of |period - 1/fps| of the command stamps (the machine is shared: see the load above).
* The paper's no-idle bound g* = E[latency] / dt / n: {bounds}.
* With one request in flight the queue also runs dry whenever k > n / 2 (1000 ms: k >= 30 > 25), whatever g:
  at least (2k - n) / 2k of the ticks idle.

{table}
"""
    print(table)
    if not args.no_write:
        path = write_section("async_vs_sync", body)
        print(f"wrote section async_vs_sync of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
