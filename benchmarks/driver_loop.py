"""Driver loop benchmark: publish rate and read-write cycle time of so_arm_driver against the servo emulator.

The emulator runs as its own process with a 1 ms USB-adapter latency and 1 Mbaud wire time modelled
(``so_arm_emulator --latency-ms 1 --baud 1000000``). Measured:

1. the driver core (no ROS) at the target rate, and unthrottled (the highest rate the bus model allows);
2. the ``so_arm_driver`` node process: achieved /joint_states rate seen by a subscriber, the node's own cycle
   times (from /diagnostics) and its CPU use.

Run:  ``source scripts/env.sh && unshare -n python benchmarks/driver_loop.py [--seconds 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, markdown_table, write_section  # noqa: E402

import ros_harness  # noqa: E402  (put on sys.path by _report)
from so_arm_description.robot_spec import MOTOR_IDS, SO101_LIMITS  # noqa: E402
from so_arm_driver import calibration as calib  # noqa: E402
from so_arm_driver.bus import FeetechBus  # noqa: E402
from so_arm_driver.driver import ArmDriver, DriverConfig  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def start_emulator(tmp: Path, cal_path: Path, latency_ms: float, baud: int) -> tuple[subprocess.Popen, str]:
    port_file = tmp / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "so_arm_driver.emulator",
            "--port-file",
            str(port_file),
            "--calibration",
            str(cal_path),
            "--latency-ms",
            str(latency_ms),
            "--baud",
            str(baud),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("emulator did not start")
        time.sleep(0.02)
    return proc, port_file.read_text().strip()


def core_loop(port: str, cal: calib.Calibration, rate: float, seconds: float, read_extra: bool) -> dict:
    cfg = DriverConfig(read_velocity=read_extra, read_load=read_extra, max_step=0.05, command_timeout=1e9)
    driver = ArmDriver(FeetechBus(port), cal, cfg)
    driver.connect()
    durations, failures = [], 0
    period = 1.0 / rate if rate > 0 else 0.0
    t_start = time.monotonic()
    next_t = t_start
    n = 0
    while time.monotonic() - t_start < seconds:
        driver.set_target(["elbow_flex"], [0.3 * ((n // 50) % 2)])  # a square wave: keeps the goals moving
        t0 = time.monotonic()
        res = driver.cycle()
        durations.append(time.monotonic() - t0)
        failures += res.sample is None
        n += 1
        if period:
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    elapsed = time.monotonic() - t_start
    driver.close()
    return {"rate": n / elapsed, "cycles": n, "failures": failures, "durations": durations}


def node_run(port: str, cal_path: Path, rate: float, seconds: float) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState

    node_proc = ros_harness.NodeProcess(
        "so_arm_driver",
        "so_arm_driver",
        parameters={"port": port, "calibration_file": str(cal_path), "rate": rate, "diagnostics_period": 0.5},
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("driver_loop_probe", context=context)
    arrivals: list[float] = []
    diag: dict[str, str] = {}
    lock = threading.Lock()

    def on_state(_msg: JointState) -> None:
        with lock:
            arrivals.append(time.monotonic())

    def on_diag(msg: DiagnosticArray) -> None:
        with lock:
            for st in msg.status:
                diag.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(JointState, "/joint_states", on_state, 100)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        if not ros_harness.wait_for(lambda: len(arrivals) > 20 or not node_proc.alive(), 60):
            raise RuntimeError("no /joint_states from the node:\n" + node_proc.output())
        time.sleep(1.0)  # warm-up
        with lock:
            n0 = len(arrivals)
        cpu0 = _cpu_seconds(node_proc.proc.pid)
        t0 = time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
        cpu1 = _cpu_seconds(node_proc.proc.pid)
        with lock:
            window = [t for t in arrivals[n0:] if t <= t1]
        time.sleep(0.6)  # one more diagnostics message
        with lock:
            stats = dict(diag)
    finally:
        node_proc.stop()
        executor.shutdown(timeout_sec=5)
        thread.join(5)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    gaps = [b - a for a, b in zip(window, window[1:])]
    return {
        "rate": len(window) / (t1 - t0),
        "gap_p95_ms": 1000 * pct(gaps, 0.95),
        "gap_max_ms": 1000 * max(gaps),
        "cycle_median_ms": float(stats.get("cycle_time_median_ms", "nan")),
        "cycle_p95_ms": float(stats.get("cycle_time_p95_ms", "nan")),
        "cycle_max_ms": float(stats.get("cycle_time_max_ms", "nan")),
        "read_errors": stats.get("read_errors", "?"),
        "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measurement window per run")
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--latency-ms", type=float, default=1.0)
    ap.add_argument("--baud", type=int, default=1_000_000)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    ros_harness.apply_ros_environment()
    cal = calib.default_calibration(SO101_LIMITS, MOTOR_IDS)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cal_path = calib.save(cal, tmp / "cal.json")
        emu, port = start_emulator(tmp, cal_path, args.latency_ms, args.baud)
        try:
            core_rows = []
            for label, rate, extra in (
                (f"core, {args.rate:g} Hz, position+velocity+load", args.rate, True),
                (f"core, {args.rate:g} Hz, position only", args.rate, False),
                ("core, unthrottled, position+velocity+load", 0.0, True),
            ):
                r = core_loop(port, cal, rate, args.seconds, extra)
                d = [1000 * x for x in r["durations"]]
                core_rows.append(
                    [label, r["rate"], statistics.median(d), pct(d, 0.95), max(d), r["failures"]]
                )
                print(
                    json.dumps({"run": label, "rate": r["rate"], "median_ms": statistics.median(d)}),
                    flush=True,
                )
            node = node_run(port, cal_path, args.rate, args.seconds)
            print(json.dumps(node), flush=True)
        finally:
            emu.terminate()
            emu.wait(10)
    table1 = markdown_table(
        ["run", "achieved rate (Hz)", "cycle median (ms)", "p95 (ms)", "max (ms)", "failed cycles"], core_rows
    )
    table2 = markdown_table(
        [
            "node",
            "/joint_states rate (Hz)",
            "gap p95 (ms)",
            "gap max (ms)",
            "cycle median (ms)",
            "cycle p95 (ms)",
            "cycle max (ms)",
            "read errors",
            "CPU (% of a core)",
        ],
        [
            [
                f"so_arm_driver, rate {args.rate:g} Hz",
                node["rate"],
                node["gap_p95_ms"],
                node["gap_max_ms"],
                node["cycle_median_ms"],
                node["cycle_p95_ms"],
                node["cycle_max_ms"],
                node["read_errors"],
                node["cpu_pct"],
            ]
        ],
    )
    body = (
        "## Driver loop (`benchmarks/driver_loop.py`)\n\n"
        f"{machine_line()}. Six emulated STS3215 servos in a separate process on a pty, "
        f"{args.latency_ms:g} ms adapter latency and {args.baud} baud wire time modelled; one cycle = one "
        "sync read (6 servos) + one sync write of Goal_Position through the real scservo_sdk; "
        f"{args.seconds:g} s per run.\n\n"
        f"{table1}\n\n{table2}\n\n"
        "Gap = time between consecutive /joint_states messages at the subscriber (another process). "
        "Cycle times include the GIL/scheduler noise of a shared 2-core machine; on hardware add the real "
        "adapter latency (FTDI/CH34x latency timer 1-16 ms).\n"
    )
    print(body)
    if not args.no_write:
        print(f"written to {write_section('driver_loop', body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
