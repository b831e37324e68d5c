#!/usr/bin/env python3
"""Figures of docs/closed_loop.md: camera strips of a successful and a failed episode, and the training curve.

    source scripts/env.sh
    python scripts/closed_loop_figures.py --train-log models/smolvla_sim_pick_place/train_log.csv

The episodes run in the simulator through the action queue's core on simulated time
(:mod:`smolvla_sim.policy_loop`, g = 0.7, no extra latency) on held-out seeds from ``--seed0`` on, until one
success and one failure are found (or ``--max-episodes``). Each strip shows the top (upper row) and wrist
(lower row) cameras every ``--every`` seconds.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "smolvla_sim_pick_place"
TASK = "Pick up the red cube and place it in the blue box."


def strip(frames: list[np.ndarray], size: int, label: str) -> np.ndarray:
    """frames: [top | wrist] side by side (H x 2H x 3) -> one image: tops on the upper row, wrists below."""
    import cv2

    tops = [f[:, :size] for f in frames]
    wrists = [f[:, size:] for f in frames]
    img = np.concatenate([np.concatenate(tops, axis=1), np.concatenate(wrists, axis=1)], axis=0)
    bar = np.full((22, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def training_curve(log: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, tuple[list[int], list[float]]] = {}
    with open(log) as fh:
        for row in csv.DictReader(fh):
            if row.get("loss"):
                steps, loss = runs.setdefault(row.get("run") or "training", ([], []))
                steps.append(int(row["step"]))
                loss.append(float(row["loss"]))
    if not runs:
        raise SystemExit(f"{log}: no loss rows")
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=110)
    for name, (steps, loss) in runs.items():
        k = max(1, len(loss) // 30)
        if k > 1:
            ax.plot(steps, loss, lw=0.5, alpha=0.3)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=1.5, label=f"{name} (mean of {k})" if k > 1 else name)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("flow-matching loss")
    ax.set_title("SmolVLA (1.5 M params) from random weights, simulated demos")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    ap.add_argument("--train-log", type=Path, default=CHECKPOINT / "train_log.csv", help="CSV: step,loss")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--seed0", type=int, default=300000)
    ap.add_argument("--max-episodes", type=int, default=12)
    ap.add_argument("--every", type=float, default=1.0, help="seconds between strip frames")
    ap.add_argument("--frames", type=int, default=12, help="frames per strip")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    import cv2
    import torch

    from smolvla_policy.model.checkpoint import load_policy
    from smolvla_sim.policy_loop import LoopConfig, policy_predictor, run_episode
    from smolvla_sim.sim import ArmSim, SimConfig
    from so_arm_description.robot_model import default_limits
    from so_arm_description.units import JointUnits

    torch.set_num_threads(2)
    if args.train_log.exists():
        training_curve(args.train_log, args.out_dir / "closed_loop_training_curve.png")
        print(f"wrote {args.out_dir / 'closed_loop_training_curve.png'}")
    policy = load_policy(args.checkpoint)
    size = int(policy.config.input_features["observation.images.top"]["shape"][-1])
    predict = policy_predictor(policy, TASK, JointUnits.lerobot(default_limits("so101")))
    every = max(1, round(args.every * 30))
    found: dict[bool, tuple[int, float, list[np.ndarray]]] = {}
    with ArmSim(SimConfig(image_width=size, image_height=size)) as sim:
        for k in range(args.max_episodes):
            cfg = LoopConfig(chunk_threshold=0.7, max_time_s=20.0, frame_every=every)
            res = run_episode(sim, predict, args.seed0 + k, cfg)
            print(f"seed {res.seed}: {'success' if res.success else 'failure'} after {res.duration_s:.1f} s")
            if res.success not in found:
                found[res.success] = (res.seed, res.duration_s, res.frames)
            if len(found) == 2:
                break
    rows = []
    for ok in (True, False):
        if ok in found:
            seed, dur, frames = found[ok]
            verdict = f"success after {dur:.1f} s" if ok else f"failure (no success in {dur:.0f} s)"
            rows.append(strip(frames[: args.frames], size, f"seed {seed}: {verdict}, one frame per second"))
    if not rows:
        print("no episode ran", file=sys.stderr)
        return 1
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    out = args.out_dir / "closed_loop_episodes.png"
    cv2.imwrite(str(out), np.concatenate(rows, axis=0)[:, :, ::-1])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
