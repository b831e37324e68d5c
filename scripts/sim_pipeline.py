#!/usr/bin/env python3
"""The whole learning loop in simulation, as a user runs it on a real arm: record, convert, train, evaluate.

Stages (each resumable: rerunning the command skips or continues what is done; ``--stages`` picks some):

1. ``record``  -- N scripted-expert demonstrations through ROS: ``sim_node`` + the expert streaming
   ``/joint_commands`` + ``episode_recorder`` writing one rosbag2 bag per episode
   (``smolvla_train record-sim``). Seeds ``--seed0 .. --seed0+N-1``. Resumes after the last saved episode.
2. ``convert`` -- the bags -> a LeRobot v3.0 dataset (``smolvla_train bag2lerobot``; lerobot units, videos).
3. ``train``   -- ``smolvla_train finetune`` of a small SmolVLA-architecture policy (``--init``: a config
   JSON for random weights, e.g. ``models/smolvla_sim_pick_place/init_config.json``, or a checkpoint to
   continue from); ``--resume`` is passed when the run has checkpoints already.
4. ``eval``    -- closed loop through real ROS on held-out seeds (``--eval-seed0``, never used for
   recording): ``sim_node`` + ``policy_server`` (backend smolvla, the trained checkpoint) + ``action_queue``
   (``tools/run_demo.py``), on simulated time (``--real-time-factor``) so a slow CPU does not change the
   result. One JSON line per episode in ``OUT/eval.jsonl``; resumes after the last episode.
5. ``summary`` -- ``OUT/summary.json`` and a table: demonstrations, dataset frames, training steps and time,
   success rate and mean time per successful task.

    source scripts/env.sh
    python scripts/sim_pipeline.py --out /tmp/sim_loop --episodes 100 --steps 3000
    python scripts/sim_pipeline.py --out /tmp/sim_loop --stages eval,summary \\
        --checkpoint models/smolvla_sim_pick_place --eval-episodes 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("record", "convert", "train", "eval", "summary")
DEFAULT_INIT = ROOT / "models" / "smolvla_sim_pick_place" / "init_config.json"
TASK_TEXT = "Pick up the red cube and place it in the blue box."


def log(msg: str) -> None:
    print(f"[sim-pipeline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], log_file: Path) -> int:
    """Run ``cmd`` with its output shown and appended to ``log_file``; returns the exit code."""
    log(" ".join(cmd))
    with open(log_file, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            fh.write(line)
        return proc.wait()


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: ignored (that episode is redone)
                continue
    return out


# -- stages ---------------------------------------------------------------------------------------------
def recorded_episodes(bags: Path) -> list[dict]:
    """Episodes saved so far (all batches), without errors, in seed order."""
    records = []
    for part in sorted(bags.glob("part_*")):
        records += [r for r in read_jsonl(part / "record_sim.jsonl") if not r.get("error")]
    return sorted(records, key=lambda r: r["seed"])


def stage_record(args: argparse.Namespace, out: Path) -> None:
    bags = out / "bags"
    bags.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):
        done = {r["seed"] for r in recorded_episodes(bags) if r.get("success")}
        todo = [s for s in range(args.seed0, args.seed0 + args.episodes) if s not in done]
        if not todo:
            break
        first = todo[0]
        n = 1
        while first + n in todo:  # record-sim records consecutive seeds
            n += 1
        log(f"record: {len(done)} of {args.episodes} demonstrations saved; recording {n} from seed {first}")
        part = bags / f"part_{first:06d}"
        if part.exists():  # a batch that died: keep its saved episodes, continue in a new batch directory
            part = bags / f"part_{first:06d}_{int(time.time())}"
        cmd = [sys.executable, "-m", "smolvla_train.cli", "record-sim", "--out", str(part)]
        cmd += ["--episodes", str(n), "--seed0", str(first), "--image-width", str(args.image_size)]
        cmd += ["--image-height", str(args.image_size), "--real-time-factor", str(args.record_rtf)]
        cmd += ["--task-text", TASK_TEXT, "--no-progress"]
        code = run(cmd, out / "pipeline.log")
        if code != 0:
            log(f"record-sim exited with {code}; retrying the missing demonstrations")
    records = recorded_episodes(bags)
    ok = len({r["seed"] for r in records if r.get("success")})
    log(f"record: {len(records)} episodes saved, {ok} successful demonstrations")
    if ok < args.episodes:
        log(f"record: only {ok} of {args.episodes} demonstrations succeeded (the rest is left out)")


def stage_convert(args: argparse.Namespace, out: Path) -> None:
    dataset, marker = out / "dataset", out / "dataset.done.json"
    records = recorded_episodes(out / "bags")
    best: dict[int, str] = {}
    for r in records:  # one bag per seed: its (last) successful recording
        if r.get("success"):
            best[r["seed"]] = r["bag_path"]
    bag_paths = [best[s] for s in sorted(best)]
    if marker.exists() and json.loads(marker.read_text()).get("bags") == bag_paths:
        log(f"convert: {dataset} is up to date ({len(bag_paths)} episodes)")
        return
    if not bag_paths:
        raise SystemExit("convert: no successful demonstrations recorded (run the record stage)")
    cmd = [sys.executable, "-m", "smolvla_train.cli", "bag2lerobot", *bag_paths, "-o", str(dataset)]
    cmd += ["--fps", "30", "--overwrite", "--report", str(out / "convert_report.json"), "--no-progress"]
    code = run(cmd, out / "pipeline.log")
    if code != 0:
        raise SystemExit(f"convert: bag2lerobot exited with {code}")
    marker.write_text(json.dumps({"bags": bag_paths}, indent=1))


def trained_checkpoint(out: Path) -> Path:
    return out / "train" / "checkpoints" / "last" / "pretrained_model"


def stage_train(args: argparse.Namespace, out: Path) -> None:
    train = out / "train"
    done = out / "train.done.json"
    if done.exists() and json.loads(done.read_text()).get("steps") == args.steps:
        log(f"train: done ({args.steps} steps), checkpoint {trained_checkpoint(out)}")
        return
    cmd = [sys.executable, "-m", "smolvla_train.cli", "finetune", "--dataset", str(out / "dataset")]
    cmd += ["--init", str(args.init), "--out", str(train), "--steps", str(args.steps), "--train-all"]
    cmd += ["--batch-size", str(args.batch_size), "--save-every", str(args.save_every), "--no-progress"]
    cmd += ["--num-threads", str(args.threads), "--num-workers", str(args.workers)]
    if (train / "checkpoints" / "last").exists():
        cmd.append("--resume")
    t0 = time.time()
    code = run(cmd, out / "pipeline.log")
    if code != 0:
        raise SystemExit(f"train: finetune exited with {code} (rerun to resume)")
    done.write_text(json.dumps({"steps": args.steps, "wall_s_last_run": round(time.time() - t0, 1)}))


def stage_eval(args: argparse.Namespace, out: Path) -> None:
    checkpoint = Path(args.checkpoint) if args.checkpoint else trained_checkpoint(out)
    if not (checkpoint / "config.json").exists():
        raise SystemExit(f"eval: no checkpoint at {checkpoint} (run the train stage or pass --checkpoint)")
    results = out / "eval.jsonl"
    for _attempt in range(3):
        done = read_jsonl(results)
        remaining = args.eval_episodes - len(done)
        if remaining <= 0:
            break
        seed = args.eval_seed0 + len(done)
        log(f"eval: {len(done)} of {args.eval_episodes} episodes done; next seed {seed}")
        cmd = [sys.executable, str(ROOT / "tools" / "run_demo.py"), "backend:=smolvla"]
        cmd += [f"checkpoint:={checkpoint}", f"image_size:={args.image_size}", f"task:={TASK_TEXT}"]
        cmd += [f"seed:={seed}", "use_sim_time:=true", f"real_time_factor:={args.real_time_factor}"]
        cmd += ["--episodes", str(remaining), "--episode-timeout", str(args.eval_timeout)]
        cmd += ["--results", str(results), "--status-period", "30"]
        code = run(cmd, out / "pipeline.log")
        if code != 0:
            log(f"run_demo exited with {code}; continuing after the last recorded episode")


def summarize(args: argparse.Namespace, out: Path) -> dict:
    records = recorded_episodes(out / "bags")
    info_path = out / "dataset" / "meta" / "info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    evals = read_jsonl(out / "eval.jsonl")
    ok = [e for e in evals if e.get("success")]
    train_done = out / "train.done.json"
    summary = {
        "demonstrations_recorded": len(records),
        "demonstrations_successful": sum(bool(r.get("success")) for r in records),
        "dataset_episodes": info.get("total_episodes"),
        "dataset_frames": info.get("total_frames"),
        "train": json.loads(train_done.read_text()) if train_done.exists() else None,
        "checkpoint": str(Path(args.checkpoint) if args.checkpoint else trained_checkpoint(out)),
        "eval_episodes": len(evals),
        "eval_seeds": [e.get("seed") for e in evals[:1]] + [e.get("seed") for e in evals[-1:]],
        "success_rate": (len(ok) / len(evals)) if evals else None,
        "mean_success_time_s": (sum(e["duration_s"] for e in ok) / len(ok)) if ok else None,
        "time_clock": evals[0].get("clock") if evals else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log("summary:")
    for key, value in summary.items():
        print(f"  {key:28s} {value}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="working directory of the run (created)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    p.add_argument("--episodes", type=int, default=100, help="demonstrations to record")
    p.add_argument("--seed0", type=int, default=0, help="seed of the first demonstration")
    p.add_argument("--image-size", type=int, default=128, help="camera width = height [px]")
    p.add_argument("--record-rtf", type=float, default=0.5, help="real-time factor while recording")
    p.add_argument("--init", type=Path, default=DEFAULT_INIT, help="finetune --init (config JSON or ckpt)")
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=2, help="torch threads for training")
    p.add_argument("--workers", type=int, default=1, help="data-loader workers")
    p.add_argument("--checkpoint", default=None, help="evaluate this checkpoint instead of the trained one")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--eval-seed0", type=int, default=100000, help="first held-out seed")
    p.add_argument("--eval-timeout", type=float, default=30.0, help="[s of simulated time] per episode")
    p.add_argument("--real-time-factor", type=float, default=0.5, help="simulated s per wall s in eval")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"sim_pipeline: unknown stage(s) {unknown}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    if args.episodes < 1 or args.eval_episodes < 1 or args.steps < 1:
        print("sim_pipeline: --episodes, --eval-episodes and --steps must be >= 1", file=sys.stderr)
        return 2
    if args.eval_seed0 < args.seed0 + args.episodes and args.eval_seed0 + args.eval_episodes > args.seed0:
        print("sim_pipeline: the evaluation seeds overlap the recorded seeds", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    t0 = time.time()
    for stage in STAGES:
        if stage not in stages:
            continue
        log(f"stage {stage}")
        ts = time.time()
        if stage == "summary":
            summarize(args, args.out)
        else:
            globals()[f"stage_{stage}"](args, args.out)
        log(f"stage {stage} done in {time.time() - ts:.0f} s")
    log(f"all done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
