"""What ROS adds to a PredictChunk round trip: end-to-end goal latency minus the model's own time.

The ``policy_server`` executable runs in its own process with a tiny SmolVLA checkpoint (3 cameras, random
weights, CPU, 1 torch thread); this process sends goals carrying 3 rgb8 images of 512x512 (2.36 MB) and a
6-joint state, one at a time, and measures send -> result received. ``overhead = end-to-end - inference_ms``
(``inference_ms`` is measured by the server around the backend call), i.e. goal transport and acceptance,
image conversion and checks, scheduling, result building, the result request/response and the rclpy
executors on both sides. A row with 1 camera of 64x64 separates the cost of the image payload.

Run: ``source scripts/env.sh && unshare -n python benchmarks/server_overhead.py [--goals 40]``
(about a minute). Writes section ``server_overhead`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO_ROOT, machine_line, markdown_table, write_section  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "tools"))
import ros_harness  # noqa: E402

CAMERAS = ("top", "wrist", "side")


def run_case(
    client: object, cameras: tuple[str, ...], size: int, goals: int, warmup: int
) -> dict[str, float]:
    from smolvla_policy.server.testing import camera_images, make_observation, status_name

    images = camera_images(cameras, size, size, seed=0)
    e2e, model, accept = [], [], []
    for i in range(warmup + goals):
        obs = make_observation(images, timestep=i, positions=[0.1, -0.2, 0.3, 0.0, 0.2, 0.4])
        t0 = time.perf_counter()
        ref = client.send(obs)  # type: ignore[attr-defined]
        t1 = time.perf_counter()
        status, result = client.result(ref)  # type: ignore[attr-defined]
        t2 = time.perf_counter()
        if status_name(status) != "succeeded":
            raise RuntimeError(f"goal failed: {result.error}")
        if i >= warmup:
            e2e.append((t2 - t0) * 1e3)
            accept.append((t1 - t0) * 1e3)
            model.append(float(result.chunk.inference_ms))
    e2e_a, model_a = np.array(e2e), np.array(model)
    over = e2e_a - model_a
    return {
        "e2e_med": float(np.median(e2e_a)),
        "e2e_p95": float(np.percentile(e2e_a, 95)),
        "model_med": float(np.median(model_a)),
        "accept_med": float(np.median(accept)),
        "over_med": float(np.median(over)),
        "over_p95": float(np.percentile(over, 95)),
        "over_min": float(over.min()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--goals", type=int, default=40, help="measured goals per case")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    ros_harness.apply_ros_environment()
    import torch

    from smolvla_policy.model.testing import make_tiny_checkpoint
    from smolvla_policy.server.testing import PolicyClient

    torch.set_num_threads(1)
    machine = machine_line()
    with tempfile.TemporaryDirectory(prefix="server_overhead_") as tmp:
        keys = tuple(f"observation.images.{c}" for c in CAMERAS)
        ckpt = make_tiny_checkpoint(Path(tmp) / "ckpt3", camera_keys=keys, seed=0)
        ckpt1 = make_tiny_checkpoint(Path(tmp) / "ckpt1", camera_keys=keys[:1], seed=0)
        rows = []
        for ckpt_dir, cams, size in ((ckpt, CAMERAS, 512), (ckpt1, CAMERAS[:1], 64)):
            server = ros_harness.NodeProcess(
                "smolvla_policy",
                "policy_server",
                parameters={
                    "checkpoint": str(ckpt_dir),
                    "device": "cpu",
                    "seed": 0,
                    "backend_options": '{"num_threads": 1}',
                    "publish_markers": False,
                },
            )
            client = None
            try:
                if not server.wait_for_output("ready", 180.0):
                    raise RuntimeError(f"policy_server did not start:\n{server.output()}")
                client = PolicyClient()
                if not client.action.wait_for_server(timeout_sec=30.0):
                    raise RuntimeError("no action server")
                r = run_case(client, cams, size, args.goals, args.warmup)
            finally:
                if client is not None:
                    client.close()
                server.stop()
            label = f"{len(cams)} x {size}x{size} rgb8 ({len(cams) * size * size * 3 / 1e6:.2f} MB)"
            rows.append(
                [
                    label,
                    args.goals,
                    r["e2e_med"],
                    r["e2e_p95"],
                    r["model_med"],
                    r["accept_med"],
                    r["over_med"],
                    r["over_p95"],
                    r["over_min"],
                ]
            )
            print(f"{label}: overhead median {r['over_med']:.1f} ms, p95 {r['over_p95']:.1f} ms", flush=True)

    table = markdown_table(
        [
            "goal images",
            "goals",
            "end-to-end median [ms]",
            "end-to-end p95 [ms]",
            "model (inference_ms) median",
            "send -> accepted median",
            "**overhead median [ms]**",
            "**overhead p95 [ms]**",
            "overhead min",
        ],
        rows,
    )
    body = f"""## Policy server overhead (`benchmarks/server_overhead.py`)

End-to-end latency of one PredictChunk goal (send -> result received) minus the model time the
server reports (`ActionChunk.inference_ms`): what the ROS path adds. Server = the `policy_server`
executable in its own process with a tiny random SmolVLA checkpoint (CPU, 1 torch thread, 10 denoising
steps, markers off); client = rclpy `ActionClient` in the benchmark process; shared-memory Fast DDS
profile; goals sent one at a time after {args.warmup} warm-up goals. An rclpy action round trip is two
requests (send_goal, then get_result after acceptance), so the overhead includes at least two service round
trips plus the goal's image transfer.

{machine}

{table}
"""
    print(table)
    if not args.no_write:
        print(f"wrote {write_section('server_overhead', body)}")


if __name__ == "__main__":
    main()
