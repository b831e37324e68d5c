"""Fault-injected soak (issue 19): closed loop at 30 Hz through the real so_arm_driver node on the emulated
servo bus, faults injected on a schedule (tools/fault_soak.py), for ``--minutes`` (the issue's goal: 30).

Prints a table and writes the results and the fault table into docs/reliability.md (between markers, the rest
of that file is prose) and a summary section ``soak`` of docs/benchmarks.md. Goal: 0 crashes, 0 over-cap
commands, flat memory, every fault recovered.

Run:  ``source scripts/env.sh && unshare -n python benchmarks/soak.py --minutes 30``
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import fault_soak  # noqa: E402
from _report import REPO_ROOT, machine_line, markdown_table, write_section  # noqa: E402

RELIABILITY_MD = REPO_ROOT / "docs" / "reliability.md"
FIGURE = REPO_ROOT / "docs" / "images" / "soak_memory.png"
BEGIN, END = "<!-- BEGIN soak results -->", "<!-- END soak results -->"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="soak length (default 30)")
    p.add_argument("--period", type=float, default=20.0, help="s between two faults (default 20)")
    p.add_argument("--fault-duration", type=float, default=2.0, help="s each fault lasts (default 2)")
    p.add_argument("--rate", type=float, default=30.0, help="command rate [Hz] (default 30)")
    p.add_argument("--max-step", type=float, default=0.05, help="the driver's step cap [rad] (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--graph",
        action="store_true",
        help="commands from policy_server (scripted) through action_queue; adds the faults kill_server, "
        "stall_model (--stall s), kill_queue",
    )
    p.add_argument("--stall", type=float, default=10.0, help="model stall of the stall_model fault [s]")
    p.add_argument(
        "--camera",
        action="store_true",
        help="with --graph: a camera_node on a fake device (a FIFO: no USB camera here) feeds the action "
        "queue; adds the faults kill_camera, camera_unplug, camera_frozen, camera_garbage, flood_images",
    )
    p.add_argument(
        "--skip", action="append", default=[], metavar="FAULT", help="leave this fault out (repeatable)"
    )
    p.add_argument("--rss-period", type=float, default=2.0, help="s between two RSS samples (default 2)")
    p.add_argument(
        "--figure",
        default=str(FIGURE),
        help="memory figure (PNG; its samples go next to it as .csv); default docs/images/soak_memory.png",
    )
    p.add_argument(
        "--record",
        metavar="DIR",
        help="keep the node logs and the result (result.json: faults, over-cap goals, diagnostics, RSS) here",
    )
    p.add_argument("--no-write", action="store_true", help="print only, write no docs and no figure")
    return p


def report(result: fault_soak.SoakResult, args: argparse.Namespace, wall_s: float) -> str:
    slope, rss0, rss1 = fault_soak.driver_rss_slope(result)
    harness_slope = fault_soak.slope_mb_per_h(result.rss_harness)
    rows = [(name, n, ok, med, worst) for name, n, ok, med, worst in result.fault_table()]
    held_frac = result.ticks_held / max(1, result.ticks)
    totals = [
        (
            "duration",
            f"{result.duration_s / 60:.1f} min closed loop at {args.rate:g} Hz ({wall_s / 60:.1f} min wall)",
        ),
        (
            "faults injected / recovered",
            f"{len(result.faults)} / {len(result.faults) - len(result.unrecovered)}",
        ),
        ("node crashes", result.crashes),
        (
            "commands over the step cap",
            f"{result.over_cap} of {result.goal_writes} goal writes "
            f"(largest change {result.max_change_rad:.4f} rad, cap {args.max_step:g} + 1 tick)",
        ),
        (
            "ticks held",
            f"{result.ticks_held} of {result.ticks} ({100.0 * held_frac:.1f} %)",
        ),
        (
            "driver RSS",
            f"{rss0:.1f} -> {rss1:.1f} MB, slope {slope:+.2f} MB/h (longest-lived process, after 30 s)",
        ),
        ("harness RSS slope (emulator, monitor)", f"{harness_slope:+.2f} MB/h"),
        ("parameter fuzz: values accepted", ", ".join(result.param_fuzz_accepted) or "none"),
        ("parameters back to their values", result.params_restored),
        ("rejection kinds logged", len(result.rejection_kinds_logged)),
        ("final state", f"{result.final_level}, torque {'on' if result.final_torque_on else 'OFF'}"),
    ]
    if result.over_cap_events:
        events = ", ".join(f"{t:.1f} s id {i} {c:.3f} rad" for t, i, c in result.over_cap_events[:10])
        totals.append(("over-cap goals (first 10)", events))
    cam = [f for f in result.faults if f.name in ("camera_unplug", "camera_frozen", "camera_garbage")]
    if cam:
        totals.append(
            (
                "camera faults reported by camera_node on /diagnostics",
                f"{sum(bool(f.camera_reported) for f in cam)} of {len(cam)} (unplug, frozen, garbage)",
            )
        )
    recov = [f.recovery_s for f in result.faults if f.recovery_s is not None]
    if recov:
        totals.append(("recovery time median / max", f"{statistics.median(recov):.2f} / {max(recov):.2f} s"))
    anon = {f.name: f for f in fault_soak.memory_fits(result, "anon")}
    shm = {f.name: f for f in fault_soak.memory_fits(result, "shmem")}
    mem_rows = [
        (
            f.name,
            f"{(f.end_s - f.start_s) / 60:.1f} min, {f.samples}",
            f"{anon[f.name].first_mb:.1f} -> {anon[f.name].last_mb:.1f}",
            f"{anon[f.name].slope_kb_min:+.1f} ± {anon[f.name].slope_se_kb_min:.1f}",
            f"{f.first_mb:.1f} -> {f.last_mb:.1f}",
            f"{f.slope_kb_min:+.1f} ± {f.slope_se_kb_min:.1f}",
            f"{shm[f.name].last_mb:.1f}",
        )
        for f in fault_soak.memory_fits(result, "rss")
    ]
    body = [
        f"Run: `benchmarks/soak.py --minutes {args.minutes:g} --period {args.period:g} "
        f"--fault-duration {args.fault_duration:g}{' --graph' if args.graph else ''}"
        f"{' --camera' if args.camera else ''}"
        f"{''.join(' --skip ' + f for f in args.skip)}` on "
        f"{time.strftime('%Y-%m-%d')}; {machine_line()}",
        "",
        "Commands: "
        + (
            "policy_server (scripted sinusoid) -> action_queue -> driver."
            if args.graph
            else f"the harness's {args.rate:g} Hz stream -> driver."
        )
        + (
            " Camera: camera_node 'top' on a fake device (a FIFO fed by the harness; no USB camera here), "
            "its images needed by the action queue."
            if args.camera
            else ""
        ),
        "",
        markdown_table(["fault", "injected", "recovered", "median recovery s", "max recovery s"], rows),
        "",
        markdown_table(["measure", "value"], totals),
        "",
        f"Memory, sampled every {args.rss_period:g} s (the longest-lived instance of each process; slope: "
        "least-squares line over the second half of its life ± standard error). RssAnon is the private heap "
        "(what a leak grows); VmRSS also counts the DDS shared-memory segments (RssShmem, the same pages in "
        "every node) and mapped files:",
        "",
        markdown_table(
            [
                "process",
                "life, samples",
                "RssAnon MB first -> last",
                "RssAnon slope kB/min",
                "VmRSS MB first -> last",
                "VmRSS slope kB/min",
                "RssShmem MB (last)",
            ],
            mem_rows,
        ),
    ]
    return "\n".join(body)


def write_figure(result: fault_soak.SoakResult, path: Path) -> None:
    """RssAnon and VmRSS of every process over the soak, each fitted over the second half; samples as CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    panels = [
        (axes[0], "anon", result.rss_anon, "RssAnon (private heap) [MB]"),
        (axes[1], "rss", result.rss, "VmRSS (incl. DDS shared memory) [MB]"),
    ]
    for ax, kind, series, ylabel in panels:
        fits = {f.name: f for f in fault_soak.memory_fits(result, kind)}
        for k, (name, samples) in enumerate(sorted(series.items())):
            color = f"C{k}"
            f = fits[name]
            ax.plot(
                [x[0] / 60 for x in samples],
                [x[1] for x in samples],
                ".",
                ms=2,
                color=color,
                label=f"{name}: {f.slope_kb_min:+.1f} kB/min",
            )
            y1 = f.intercept_mb + f.slope_kb_min / 1024.0 * (f.end_s - f.fit_from_s) / 60.0
            ax.plot([f.fit_from_s / 60, f.end_s / 60], [f.intercept_mb, y1], "-", lw=1.5, color="k")
        for rec in result.faults:
            ax.axvline(rec.start / 60, color="0.88", lw=0.6, zorder=0)
        ax.set_xlabel("soak time [min] (grey: faults injected)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", title="slope over the 2nd half (black line)", title_fontsize=7)
    fig.suptitle("Fault-injected soak (benchmarks/soak.py): memory of every process")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    csv_tmp = path.with_suffix(".csv.tmp")
    with csv_tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["process", "instance", "t_s", "vmrss_mb", "rss_anon_mb", "rss_shmem_mb"])
        for name, samples in sorted(result.rss.items()):
            for (t, mb, k), (_, anon, _), (_, shm, _) in zip(
                samples, result.rss_anon[name], result.rss_shmem[name]
            ):
                w.writerow([name, k, f"{t:.2f}", f"{mb:.3f}", f"{anon:.3f}", f"{shm:.3f}"])
    csv_tmp.replace(path.with_suffix(".csv"))


def write_record(result: fault_soak.SoakResult, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "result.json.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(result), default=str))
    tmp.replace(directory / "result.json")


def write_reliability(text: str) -> None:
    doc = RELIABILITY_MD.read_text() if RELIABILITY_MD.exists() else "# Reliability\n"
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n## Soak results\n\n" + block + "\n"
    RELIABILITY_MD.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes <= 0 or args.period <= args.fault_duration or args.fault_duration <= 0:
        raise SystemExit("--minutes and --fault-duration must be > 0 and --period > --fault-duration")
    if not args.rss_period > 0:
        raise SystemExit("--rss-period must be > 0")
    if args.camera and not args.graph:
        raise SystemExit("--camera needs --graph (the camera feeds the action queue)")
    from tqdm import tqdm

    total = args.minutes * 60.0
    bar = tqdm(total=math.ceil(total), unit="s", desc="soak")
    done = [0.0]

    def progress(t: float, name: str) -> None:
        bar.update(max(0, int(t - done[0])))
        done[0] = float(int(t))
        bar.set_postfix_str(f"fault {name}")

    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        work = args.record or stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-"))
        result = fault_soak.run_soak(
            work,
            duration_s=total,
            fault_duration_s=args.fault_duration,
            period_s=args.period,
            rate_hz=args.rate,
            max_step=args.max_step,
            seed=args.seed,
            progress=progress,
            faults=[
                f
                for f in ((*fault_soak.FAULTS, *fault_soak.GRAPH_FAULTS) if args.graph else fault_soak.FAULTS)
                + (fault_soak.CAMERA_FAULTS if args.camera else ())
                if f not in args.skip
            ],
            graph=args.graph,
            camera=args.camera,
            stall_s=args.stall,
            rss_period_s=args.rss_period,
        )
        if args.record:
            write_record(result, Path(args.record))
    bar.close()
    text = report(result, args, time.monotonic() - t0)
    print(text)
    for log in result.crash_logs:
        print("--- crash log ---\n" + log)
    if not args.no_write:
        write_figure(result, Path(args.figure))
        write_reliability(text)
        write_section(
            "soak",
            "## Fault-injected soak (`benchmarks/soak.py`)\n\n" + text + "\n\nFault table and "
            "method: [reliability.md](reliability.md).",
        )
    ok = result.crashes == 0 and result.over_cap == 0 and not result.unrecovered
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
