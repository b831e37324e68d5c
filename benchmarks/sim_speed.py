"""Simulator speed: physics steps/s, render time per camera, real-time factor of the closed loop with cameras.

    python benchmarks/sim_speed.py [--seconds 10] [--size 512] [--no-write]

Measures on the smolvla_sim core (no ROS): (1) ``mj_step`` rate of the pick-and-place scene without rendering,
(2) median render time per camera (EGL, shadows and MSAA off) at the given size, (3) the real-time factor of
the loop the sim node runs: 500 Hz physics, 50 Hz control, both cameras rendered at 30 Hz, driven by the
scripted expert. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
from _report import machine_line, markdown_table, write_section  # noqa: E402

from smolvla_sim.expert import ScriptedExpert  # noqa: E402
from smolvla_sim.sim import ArmSim, SimConfig  # noqa: E402


def physics_rate(sim: ArmSim, seconds: float) -> float:
    sim.reset(0)
    n = int(seconds * sim.config.physics_rate)
    t = time.perf_counter()
    sim.step_physics(n)
    return n / (time.perf_counter() - t)


def render_ms(sim: ArmSim, camera: str, frames: int) -> float:
    sim.render(camera)  # warm-up (context, textures)
    times = []
    for _ in range(frames):
        sim.step_physics(5)
        t = time.perf_counter()
        sim.render(camera)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def closed_loop(sim: ArmSim, seconds: float, camera_rate: float) -> tuple[float, int]:
    """Real-time factor of physics + control + cameras at ``camera_rate`` (expert-driven)."""
    sim.reset(1)
    expert = ScriptedExpert(sim, rate=sim.config.control_rate)
    expert.reset()
    cycles = int(seconds * sim.config.control_rate)
    next_cam, frames = 0.0, 0
    t = time.perf_counter()
    for _ in range(cycles):
        sim.set_targets(expert.act())
        sim.step_physics(sim.substeps)
        if camera_rate > 0 and sim.time + 1e-9 >= next_cam:
            for cam in sim.config.cameras:
                sim.render(cam)
                frames += 1
            next_cam += 1.0 / camera_rate
    wall = time.perf_counter() - t
    return cycles / sim.config.control_rate / wall, frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per measurement")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    rows = []
    for physics in (500.0, 1000.0):
        sim = ArmSim(SimConfig(physics_rate=physics, control_rate=50.0))
        rate = physics_rate(sim, args.seconds)
        rows.append(["physics only", f"{physics:g} Hz", f"{rate:,.0f} steps/s", f"{rate / physics:.0f}x"])
        sim.close()
    sim = ArmSim(SimConfig(control_rate=50.0, image_width=args.size, image_height=args.size))
    sim.reset(0)
    render = {cam: render_ms(sim, cam, args.frames) for cam in ("top", "wrist")}
    for cam, ms in render.items():
        rows.append([f"render `{cam}` {args.size}x{args.size}", "EGL, no shadows/MSAA", f"{ms:.1f} ms", "-"])
    rtf, frames = closed_loop(sim, args.seconds, 30.0)
    rows.append(
        [
            f"closed loop, 2 cameras {args.size}x{args.size} at 30 Hz",
            "500 Hz physics, 50 Hz control",
            f"{frames} frames",
            f"{rtf:.2f}x real time",
        ]
    )
    sim.close()
    small = ArmSim(SimConfig(control_rate=50.0, image_width=224, image_height=224))
    rtf224, frames224 = closed_loop(small, args.seconds, 30.0)
    rows.append(
        [
            "closed loop, 2 cameras 224x224 at 30 Hz",
            "500 Hz physics, 50 Hz control",
            f"{frames224} frames",
            f"{rtf224:.2f}x real time",
        ]
    )
    small.close()

    table = markdown_table(["measurement", "setting", "result", "vs real time"], rows)
    print(table)
    import mujoco

    body = (
        "## Simulator speed (`benchmarks/sim_speed.py`)\n\n"
        f"{machine_line()}. MuJoCo {mujoco.__version__}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, "
        f"{args.seconds:g} simulated seconds per measurement; scene: SO-101 of primitive shapes, table, "
        "cube, tray.\n\n"
        f"{table}\n\n"
        "The closed loop is what `sim_node` runs (physics, control cycle, rendering), without the ROS "
        "publishing; a factor above 1 means the simulation keeps up with real time. Render times are "
        "medians; "
        "the machine is shared, so figures are noisy (see the load average).\n"
    )
    if not args.no_write:
        print(f"written to {write_section('sim_speed', body)}")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
