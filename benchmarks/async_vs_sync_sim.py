"""The SmolVLA paper's Figure 5 in the simulator: asynchronous (g = 0.7) vs synchronous (g = 0) inference with
the same trained policy and the same injected latency, on simulated time.

The shipped SmolVLA checkpoint (``models/smolvla_sim_pick_place``) drives the MuJoCo arm through the action
queue's core (Algorithm 1, :mod:`smolvla_sim.policy_loop`); each chunk becomes available ``--latency-ms`` of
*simulated* time after its observation was captured, so the result is the same on a fast or a slow machine
(the network's own CPU time is not counted; the latency stands for the whole round trip of the real graph).
For each mode and each window of ``--window`` simulated seconds, tasks run back to back on fresh scenes
(held-out seeds, the same sequence for both modes); reported: tasks completed per window and the mean time of
a successful task, beside the paper's (real SO-100, pick-place: 9.7 s vs 13.75 s per task, 19 vs 9 cubes in
60 s).

Run (minutes on 2 cores): ``source scripts/env.sh && python benchmarks/async_vs_sync_sim.py``
(``--windows 1`` for a short run). Writes section ``async_vs_sync_sim`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO_ROOT, machine_line, markdown_table, write_section  # noqa: E402

CHECKPOINT = REPO_ROOT / "models" / "smolvla_sim_pick_place"


def expert_predictor(sim: object, chunk_size: int):  # type: ignore[no-untyped-def]
    """The scripted expert's plan (made at the episode's first request) served in chunks from the request's
    timestep on."""
    from smolvla_sim.expert import ScriptedExpert

    state: dict[str, np.ndarray] = {}

    def predict(images: dict, joints: np.ndarray, timestep: int) -> np.ndarray:
        if timestep == 0 or "plan" not in state:
            state["plan"] = ScriptedExpert(sim).reset()
        plan = state["plan"]
        chunk = plan[min(timestep, len(plan) - 1) : timestep + chunk_size]
        return np.concatenate([chunk, np.repeat(plan[-1:], chunk_size - len(chunk), axis=0)])

    return predict


TASK = "Pick up the red cube and place it in the blue box."
PAPER = {"async": (9.7, 19), "sync": (13.75, 9)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    ap.add_argument(
        "--policy",
        choices=["smolvla", "expert", "both"],
        default="both",
        help="the trained SmolVLA, the scripted expert's plan served in chunks (control), or both",
    )
    ap.add_argument("--latency-ms", type=float, default=700.0, help="injected latency [ms of simulated time]")
    ap.add_argument("--window", type=float, default=60.0, help="window length [s of simulated time]")
    ap.add_argument("--windows", type=int, default=3, help="windows per mode (different scenes)")
    ap.add_argument("--episode-timeout", type=float, default=30.0, help="[s] before a task counts as failed")
    ap.add_argument("--seed0", type=int, default=200000, help="first scene seed (held out from training)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the per-episode results here")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.latency_ms < 0 or args.window <= 0 or args.windows < 1:
        ap.error("--latency-ms must be >= 0, --window > 0, --windows >= 1")

    import torch
    from tqdm import tqdm

    from smolvla_policy.model.checkpoint import load_policy
    from smolvla_sim.policy_loop import LoopConfig, policy_predictor, run_window
    from smolvla_sim.sim import ArmSim, SimConfig
    from so_arm_description.robot_model import default_limits
    from so_arm_description.units import JointUnits

    torch.set_num_threads(args.threads)
    policy = load_policy(args.checkpoint)
    size = int(policy.config.input_features["observation.images.top"]["shape"][-1])
    sim = ArmSim(SimConfig(image_width=size, image_height=size))
    predictors = {}
    if args.policy in ("smolvla", "both"):
        predictors["SmolVLA (shipped)"] = policy_predictor(
            policy, TASK, JointUnits.lerobot(default_limits("so101"))
        )
    if args.policy in ("expert", "both"):
        predictors["scripted expert, chunked"] = expert_predictor(sim, policy.chunk_size)
    modes = {"async": 0.7, "sync": 0.0}
    per_mode: dict[tuple[str, str], dict] = {}
    log: list[dict] = []
    t0 = time.time()
    bar = tqdm(total=len(predictors) * len(modes) * args.windows, desc="windows", unit="win")
    for pname, predict in predictors.items():
        for name, g in modes.items():
            completed, durations, idle, ticks, episodes = [], [], 0, 0, 0
            for w in range(args.windows):
                cfg = LoopConfig(
                    chunk_threshold=g, latency_s=args.latency_ms / 1000.0, max_time_s=args.episode_timeout
                )
                seeds = iter(range(args.seed0 + 1000 * w, args.seed0 + 1000 * (w + 1)))
                n_ok, results = run_window(sim, predict, seeds, args.window, cfg)
                completed.append(n_ok)
                durations += [r.duration_s for r in results if r.success]
                idle += sum(r.idle_ticks for r in results)
                ticks += sum(r.ticks for r in results)
                episodes += len(results)
                log += [{"policy": pname, "mode": name, "g": g, "window": w, **r.summary()} for r in results]
                bar.update(1)
            per_mode[(pname, name)] = {
                "g": g,
                "tasks_per_window": float(np.mean(completed)),
                "tasks_list": completed,
                "mean_task_s": float(np.mean(durations)) if durations else float("nan"),
                "std_task_s": float(np.std(durations)) if durations else float("nan"),
                "idle_fraction": idle / max(1, ticks),
                "episodes": episodes,
            }
    bar.close()
    if args.json:
        modes_json = {f"{p} / {m}": r for (p, m), r in per_mode.items()}
        args.json.write_text(json.dumps({"modes": modes_json, "episodes": log}, indent=1))
    rows = []
    for (pname, name), r in per_mode.items():
        paper_t, paper_n = PAPER[name]
        rows.append(
            [
                pname,
                f"{name} (g = {r['g']:.1f})",
                f"{r['mean_task_s']:.2f} +- {r['std_task_s']:.2f}",
                f"{r['tasks_per_window']:.1f} ({', '.join(str(c) for c in r['tasks_list'])})",
                f"{r['idle_fraction']:.3f}",
                r["episodes"],
                f"{paper_t}",
                f"{paper_n}",
            ]
        )
    table = markdown_table(
        [
            "policy",
            "mode",
            "mean task time [s]",
            f"tasks in {args.window:.0f} s (per window)",
            "idle fraction",
            "episodes",
            "paper: task time [s]",
            "paper: cubes in 60 s",
        ],
        rows,
    )
    ratios = []
    for pname in predictors:
        a, sy = per_mode[(pname, "async")], per_mode[(pname, "sync")]
        ratio = a["mean_task_s"] / sy["mean_task_s"] if sy["mean_task_s"] > 0 else float("nan")
        ratios.append(
            f"* {pname}: async / sync task time x{ratio:.2f} (paper 9.7 / 13.75 = x0.71); tasks per window "
            f"{a['tasks_per_window']:.1f} vs {sy['tasks_per_window']:.1f} (paper 19 vs 9)."
        )
    summary = "\n".join(ratios)
    body = f"""## Figure 5 in simulation: async vs sync, trained SmolVLA (`benchmarks/async_vs_sync_sim.py`)

{machine_line()}; wall time {time.time() - t0:.0f} s.

The shipped checkpoint `models/smolvla_sim_pick_place` in the MuJoCo pick-and-place task, through the action
queue's core (`smolvla_sim.policy_loop`: Algorithm 1, chunk size {policy.chunk_size}, 30 fps, weighted-average
fusion, similarity filter off) on **simulated time**: every chunk arrives {args.latency_ms:.0f} ms (simulated)
after its observation, for both modes (the paper's regime: a latency of the order of its sync idle time per
chunk). Tasks run back to back on fresh held-out scenes for {args.windows} windows of {args.window:.0f} s
per mode (same scene sequence in both modes; a task fails after {args.episode_timeout:.0f} s). *Mean task
time*: successful tasks only. Paper: SO-100, real robot, pick-place.

{table}

{summary}

The *scripted expert, chunked* rows are a control with a policy that succeeds: the expert's plan for the
scene, served from each request's timestep on in chunks of the same size through the same queue and
latency (open loop: it does not look at the observation). They isolate the effect of g from the trained
policy's success rate.
"""
    print(table)
    if not args.no_write:
        path = write_section("async_vs_sync_sim", body)
        print(f"wrote section async_vs_sync_sim of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
