"""Observation transport (issue 17): bytes per observation and PredictChunk overhead for raw, resized and JPEG
observations (2 and 3 cameras of 640x480), over shared memory and over UDP on loopback.

Per transport a child process runs: the ``policy_server`` executable (tiny random SmolVLA, 512x512 input, CPU,
1 torch thread, seed 0) in its own process, and an rclpy client that sends goals one at a time, built as the
action queue builds them (``smolvla_policy.compact_observation``). ``overhead = end-to-end - inference_ms``.
``prep`` is the client's resize/JPEG time. The UDP child uses ``config/fastdds_udp_peers.xml`` with shared
memory off and must run where lo is the only interface (``unshare -n``); it reports the namespace's multicast
and non-lo packet counters (both must be 0). The chunk's deviation from the raw-input chunk (same seed) is
given for the five arm joints in units of the checkpoint's action std (random weights: the trained model is
not available, so this shows the size of the input change the model sees, not a task effect).

Run: ``source scripts/env.sh && unshare -n python benchmarks/observation_transport.py [--goals 10]``.
Writes section ``observation_transport`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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
MODES = (("raw", "", 0), ("resized", "auto", 0), ("jpeg q90", "auto", 90))
RATE = 30.0


def build(images: dict[str, np.ndarray], size: str, quality: int, timestep: int) -> tuple[object, int, float]:
    from sensor_msgs.msg import CompressedImage

    from smolvla_common.image_conversion import numpy_to_image
    from smolvla_policy.compact_observation import (
        JPEG_FORMAT,
        CompactSettings,
        compact_camera,
        parse_image_size,
    )
    from smolvla_policy.server.testing import make_observation

    t0 = time.perf_counter()
    obs = make_observation(images, timestep=timestep, positions=[0.1, -0.2, 0.3, 0.0, 0.2, 0.4])
    settings = CompactSettings(parse_image_size(size), quality)
    if size or quality:
        out = [compact_camera(a, settings, (512, 512)) for a in images.values()]
        if quality:
            obs.images = []
            obs.compressed_images = [CompressedImage(format=JPEG_FORMAT, data=d) for _, d in out]
        else:
            obs.images = [numpy_to_image(p) for p, _ in out]
    prep = (time.perf_counter() - t0) * 1e3
    nbytes = sum(len(m.data) for m in obs.images) + sum(len(m.data) for m in obs.compressed_images)
    return obs, nbytes, prep


def child(transport: str, goals: int, warmup: int, tmp: str) -> None:
    import os

    from smolvla_policy.dds_profiles import bring_loopback_up, ip_counters, profile_variables

    env = ros_harness.apply_ros_environment()
    if transport == "udp":
        bring_loopback_up()
        for var in ("ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY", "FASTDDS_BUILTIN_TRANSPORTS"):
            os.environ.pop(var, None)
        os.environ.update(profile_variables(REPO_ROOT / "config" / "fastdds_udp_peers.xml"))
        env = dict(os.environ)
    import torch

    from smolvla_policy.model.testing import make_tiny_checkpoint
    from smolvla_policy.server.testing import PolicyClient, camera_images, status_name

    torch.set_num_threads(1)
    before = ip_counters()
    rows = []
    for ncam in (2, 3):
        keys = tuple(f"observation.images.{c}" for c in CAMERAS[:ncam])
        ckpt = make_tiny_checkpoint(Path(tmp) / f"ckpt{ncam}_{transport}", camera_keys=keys, seed=0)
        server = ros_harness.NodeProcess(
            "smolvla_policy",
            "policy_server",
            parameters={"checkpoint": str(ckpt), "device": "cpu", "seed": 0,
                        "backend_options": '{"num_threads": 1}', "publish_markers": False},
            env=env,
        )  # fmt: skip
        client = None
        try:
            if not server.wait_for_output("ready", 300.0):
                raise RuntimeError(f"policy_server did not start:\n{server.output()}")
            client = PolicyClient()
            if not client.action.wait_for_server(timeout_sec=60.0):
                raise RuntimeError("no action server")
            images = camera_images(CAMERAS[:ncam], 480, 640, seed=0)
            # natural-looking frames: smooth gradients plus noise (random noise is JPEG's worst case)
            y, x = np.mgrid[0:480, 0:640]
            rng = np.random.default_rng(0)
            for i, c in enumerate(images):
                base = np.stack([x / 2.6 + 30 * i, y / 1.9, (x + y) / 4.4], axis=2)
                images[c] = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
            ref_chunk = None
            for label, size, q in MODES:
                e2e, over, prep_ms, nbytes, chunk = [], [], [], 0, None
                for i in range(warmup + goals):
                    obs, nbytes, prep = build(images, size, q, i)
                    t0 = time.perf_counter()
                    status, result = client.result(client.send(obs))
                    t1 = time.perf_counter()
                    if status_name(status) != "succeeded":
                        raise RuntimeError(f"goal failed: {result.error}")
                    if i >= warmup:
                        e2e.append((t1 - t0) * 1e3)
                        over.append((t1 - t0) * 1e3 - float(result.chunk.inference_ms))
                        prep_ms.append(prep)
                    chunk = np.array([p.positions for p in result.chunk.trajectory.points])
                if ref_chunk is None:
                    ref_chunk = chunk
                dev_deg = np.degrees(np.abs(chunk[:, :5] - ref_chunk[:, :5]))
                rows.append({"transport": transport, "cams": ncam, "mode": label, "bytes": nbytes,
                             "over_p50": float(np.median(over)), "over_p95": float(np.percentile(over, 95)),
                             "e2e_p50": float(np.median(e2e)), "prep_p50": float(np.median(prep_ms)),
                             "dev_deg_max": float(dev_deg.max()), "ckpt": str(ckpt)})  # fmt: skip
                print(f"{transport} {ncam} cams {label}: {nbytes / 1e3:.0f} KB, overhead p50 "
                      f"{np.median(over):.1f} ms", file=sys.stderr, flush=True)  # fmt: skip
        finally:
            if client is not None:
                client.close()
            server.stop()
    after = ip_counters()
    counters = {
        k: after.get(k, 0) - before.get(k, 0) for k in ("OutMcastPkts", "other_tx_packets", "lo_tx_bytes")
    }
    print("RESULT " + json.dumps({"rows": rows, "counters": counters}), flush=True)


def action_std_deg(ckpt: str) -> np.ndarray:
    from safetensors.numpy import load_file

    from smolvla_policy.model.processor import UNNORMALIZER_FILE

    stats = load_file(str(Path(ckpt) / UNNORMALIZER_FILE))
    key = next(k for k in stats if k.startswith("action") and k.endswith("std"))
    return np.asarray(stats[key], dtype=np.float64)[:5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--goals", type=int, default=10, help="measured goals per case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--child", choices=("shm", "udp"), help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.goals, args.warmup, args.tmp)
        return
    from smolvla_policy.dds_profiles import loopback_only_reason

    reason = loopback_only_reason()
    if reason:
        sys.exit(f"error: {reason}")
    results, counters = [], {}
    with tempfile.TemporaryDirectory(prefix="obs_transport_") as tmp:
        for transport in ("shm", "udp"):
            cmd = [sys.executable, __file__, "--child", transport, "--goals", str(args.goals),
                   "--warmup", str(args.warmup), "--tmp", tmp]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            sys.stderr.write(res.stderr[-3000:])
            line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
            if res.returncode != 0 or line is None:
                sys.exit(f"error: {transport} run failed (rc {res.returncode})")
            data = json.loads(line[len("RESULT ") :])
            results += data["rows"]
            counters[transport] = data["counters"]
        std = {r["cams"]: action_std_deg(r["ckpt"]) for r in results}
    table_rows = []
    for r in results:
        dev_std = (
            "0 (reference)" if r["mode"] == "raw" else f"{r['dev_deg_max'] / float(std[r['cams']].min()):.3f}"
        )
        table_rows.append([r["transport"], r["cams"], r["mode"], f"{r['bytes'] / 1e3:.0f}",
                           f"{r['bytes'] * RATE * 8 / 1e6:.1f}", r["prep_p50"], r["over_p50"], r["over_p95"],
                           r["e2e_p50"], dev_std])  # fmt: skip
    table = markdown_table(
        ["transport", "cameras", "observation", "KB / observation", "Mbit/s at 30 Hz", "client prep p50 [ms]",
         "**overhead p50 [ms]**", "overhead p95 [ms]", "end-to-end p50 [ms]",
         "chunk deviation from raw, max [action std]"],
        table_rows,
    )  # fmt: skip
    udp = counters["udp"]
    body = f"""## Observation transport (`benchmarks/observation_transport.py`)

Bytes per PredictChunk observation and what the ROS path adds (end-to-end minus the server's
`inference_ms`) for raw frames (640x480 rgb8 per camera), frames resized with the model's resize-with-pad to
its 512x512 input without the padding (512x384 rgb8, `observation_image_size: auto`) and those JPEG-encoded
at quality 90 (`observation_jpeg_quality: 90`), over the shared-memory profile and over
`config/fastdds_udp_peers.xml` (UDPv4 unicast on 127.0.0.1, shared memory off) in a network namespace whose
only interface is lo. "Mbit/s at 30 Hz" = the image payload at a 30 Hz request rate (the queue requests far
less often: once per chunk threshold). Server: `policy_server` executable, tiny random SmolVLA (CPU, 1 torch
thread, seed 0), goals one at a time after {args.warmup} warm-up goals, {args.goals} measured per case.
Frames: smooth gradients plus noise (sigma 6). Chunk deviation: largest difference of the five arm joints from
the raw-input chunk (same seed), divided by the smallest action std of the checkpoint (random weights, so it
measures how much the input change moves the model, not a task effect). UDP run's namespace counters:
{udp["OutMcastPkts"]} multicast packets sent, {udp["other_tx_packets"]} packets on interfaces other than lo,
{udp["lo_tx_bytes"] / 1e6:.0f} MB sent on lo.

{machine_line()}

{table}
"""
    print(table)
    print(f"UDP namespace counters: {udp}")
    if not args.no_write:
        print(f"wrote {write_section('observation_transport', body)}")


if __name__ == "__main__":
    main()
