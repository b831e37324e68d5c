"""The closed loop with the policy server as a separate machine would run it (issue 17): the simulator and the
action queue in their processes, the policy server in another, over shared memory and over the two-host UDP
profile on loopback (shared memory off), with raw and compact (JPEG) observations.

Per configuration a child process applies the DDS profile, starts ``sim_node`` (2 cameras, 128x128, the
shipped checkpoint's training size), ``policy_server`` (the shipped SmolVLA checkpoint
``models/smolvla_sim_pick_place``, CPU) and ``action_queue`` (g = 0.7, 30 Hz) as separate processes, waits
for the first chunk and then records ``/smolvla/queue_status`` for ``--duration`` seconds: the queue's
measured round trip (observation sent -> chunk received, ``last_latency_ms`` at each new chunk) and the idle
fraction (ticks without an action to execute). The UDP runs must be in a namespace whose only interface is
lo; the namespace's counters (multicast packets, packets off lo) are reported.

Run: ``source scripts/env.sh && unshare -n python benchmarks/remote_closed_loop.py [--duration 40]``.
Writes section ``remote_closed_loop`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO_ROOT, machine_line, markdown_table, write_section  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "tools"))
import ros_harness  # noqa: E402

CHECKPOINT = REPO_ROOT / "models" / "smolvla_sim_pick_place"
TASK = "Pick up the red cube and place it in the blue box."
CONFIGS = {
    "shm-raw": ("shm", "", 0),
    "udp-raw": ("udp", "", 0),
    "udp-jpeg90": ("udp", "auto", 90),
}


def child(name: str, duration: float) -> None:
    from smolvla_policy.dds_profiles import bring_loopback_up, ip_counters, profile_variables

    transport, size, quality = CONFIGS[name]
    ros_harness.apply_ros_environment()
    if transport == "udp":
        bring_loopback_up()
        for var in ("ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY", "FASTDDS_BUILTIN_TRANSPORTS"):
            os.environ.pop(var, None)
        os.environ.update(profile_variables(REPO_ROOT / "config" / "fastdds_udp_peers.xml"))
    env = dict(os.environ)
    before = ip_counters()
    import rclpy
    from rclpy.qos import QoSProfile

    from smolvla_msgs.msg import QueueStatus

    procs = []
    try:
        procs.append(ros_harness.NodeProcess(
            "smolvla_policy", "policy_server",
            params_file=REPO_ROOT / "config" / "policy_server.yaml",
            parameters={"backend": "smolvla", "checkpoint": str(CHECKPOINT), "device": "cpu",
                        "default_task": TASK, "publish_markers": False},
            env=env,
        ))  # fmt: skip
        procs.append(ros_harness.NodeProcess(
            "smolvla_sim", "sim_node", params_file=REPO_ROOT / "config" / "sim_node.yaml",
            parameters={"image_width": 128, "image_height": 128, "seed": 3}, env=env,
        ))  # fmt: skip
        if not procs[0].wait_for_output("ready", 600.0):
            raise RuntimeError(f"policy_server did not start:\n{procs[0].output()}")
        procs.append(ros_harness.NodeProcess(
            "smolvla_policy", "action_queue", params_file=REPO_ROOT / "config" / "action_queue.yaml",
            parameters={"task": TASK, "observation_image_size": size, "observation_jpeg_quality": quality},
            env=env,
        ))  # fmt: skip
        rclpy.init()
        node = rclpy.create_node("remote_closed_loop_monitor")
        samples: list[QueueStatus] = []
        node.create_subscription(QueueStatus, "/smolvla/queue_status", samples.append, QoSProfile(depth=100))
        deadline = time.monotonic() + 300.0
        while time.monotonic() < deadline and not (samples and samples[-1].chunks_received > 0):
            rclpy.spin_once(node, timeout_sec=0.1)
        if not samples or samples[-1].chunks_received == 0:
            raise RuntimeError("no chunk within 300 s:\n" + procs[2].output()[-2000:])
        first = samples[-1]
        end = time.monotonic() + duration
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        last = samples[-1]
        lat, prev = [], first.chunks_received
        for s in samples:
            if s.chunks_received > prev:
                lat.append(float(s.last_latency_ms))
                prev = s.chunks_received
        node.destroy_node()
        rclpy.shutdown()
        queue_log = procs[2].output()
    finally:
        for p in reversed(procs):
            p.stop()
    warnings = [x for x in queue_log.splitlines() if "WARN" in x or "ERROR" in x]
    print("\n".join(warnings[:5]), file=sys.stderr, flush=True)
    after = ip_counters()
    ticks = last.tick - first.tick
    row = {
        "config": name, "ticks": int(ticks), "seconds": duration,
        "idle": float((last.idle_ticks - first.idle_ticks) / max(1, ticks)),
        "chunks": int(last.chunks_received - first.chunks_received),
        "failed": int(last.requests_failed - first.requests_failed),
        "lat_p50": float(np.median(lat)) if lat else float("nan"),
        "lat_p95": float(np.percentile(lat, 95)) if lat else float("nan"),
        "mcast": after.get("OutMcastPkts", 0) - before.get("OutMcastPkts", 0),
        "off_lo": after["other_tx_packets"] - before["other_tx_packets"],
        "lo_mb": (after["lo_tx_bytes"] - before["lo_tx_bytes"]) / 1e6,
    }  # fmt: skip
    print("RESULT " + json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=40.0, help="seconds measured per configuration")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated of {list(CONFIGS)}")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--child", choices=tuple(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.duration)
        return
    from smolvla_policy.dds_profiles import loopback_only_reason

    reason = loopback_only_reason()
    if reason:
        sys.exit(f"error: {reason}")
    if not CHECKPOINT.is_dir():
        sys.exit(f"error: the shipped checkpoint {CHECKPOINT} is missing")
    rows = []
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if name not in CONFIGS:
            sys.exit(f"error: unknown configuration '{name}' (known: {', '.join(CONFIGS)})")
        cmd = [sys.executable, __file__, "--child", name, "--duration", str(args.duration)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        if res.returncode != 0 or line is None:
            sys.stderr.write(res.stderr[-4000:])
            sys.exit(f"error: {name} failed (rc {res.returncode})")
        r = json.loads(line[len("RESULT ") :])
        if r["failed"]:
            print(f"{name}: queue warnings:\n{res.stderr[-1500:]}", flush=True)
        print(f"{name}: round trip p50 {r['lat_p50']:.0f} ms, idle {r['idle'] * 100:.1f} %", flush=True)
        idle, lo_mb = f"{r['idle'] * 100:.1f}", f"{r['lo_mb']:.1f}"
        rows.append([r["config"], r["seconds"], r["ticks"], r["chunks"], r["failed"], r["lat_p50"],
                     r["lat_p95"], idle, r["mcast"], r["off_lo"], lo_mb])  # fmt: skip
    table = markdown_table(
        ["configuration", "seconds", "ticks", "chunks", "failed requests", "**round trip p50 [ms]**",
         "round trip p95 [ms]", "**idle [%]**", "multicast packets", "packets off lo", "MB on lo"],
        rows,
    )  # fmt: skip
    body = f"""## Remote policy server, closed loop over UDP (`benchmarks/remote_closed_loop.py`)

`sim_node` (2 cameras, 128x128) and `action_queue` (30 Hz, g = 0.7, weighted_average) in their processes,
`policy_server` with the shipped SmolVLA checkpoint (CPU) in another; each configuration measured for
{args.duration:g} s after the first chunk. `shm-raw`: the shared-memory profile; `udp-*`:
`config/fastdds_udp_peers.xml` (UDPv4 unicast on 127.0.0.1, shared memory off) in a network namespace whose
only interface is lo; `jpeg90`: `observation_image_size: auto`, `observation_jpeg_quality: 90` (at 128x128
the resize is an identity; the JPEG makes the observation ~10x smaller). Round trip = the queue's
observation-sent -> chunk-received time per chunk (mostly the model on this CPU); idle = ticks with nothing to
execute. Counters are the namespace's (SHM runs send nothing on lo).

{machine_line()}

{table}
"""
    print(table)
    if not args.no_write:
        print(f"wrote {write_section('remote_closed_loop', body)}")


if __name__ == "__main__":
    main()
