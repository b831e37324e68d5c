"""Training-step throughput and peak memory on the CPU: smolvla_train vs lerobot 0.6.1, same batch, same run.

    source scripts/env.sh
    python benchmarks/train_step.py [--sizes small,full] [--rounds 2] [--steps 3] [--no-write]

For each size a checkpoint with random weights is written once (``small``: smolvla_train's ``small`` preset,
every parameter trained, as for training from scratch; ``full``: SmolVLM2-500M dimensions, lerobot's recipe:
action expert + projections trained), plus one fixed batch (2 cameras 256x256, state/action 6, chunk 50 with
padded steps, fixed noise and flow-matching times). Then, alternating for ``--rounds`` rounds so both see the
same machine load, each implementation runs in its own process (peak RSS per process): this project's step
(``flow_matching_loss`` + backward + clip + AdamW, as ``smolvla_train finetune`` does it) and lerobot's
(``tools/lerobot_reference/time_lerobot_train.py``: its preprocessor + ``SmolVLAPolicy.forward`` +
backward + clip + its AdamW preset), both on ``--threads`` torch threads. Wall-clock samples/s and, less
sensitive to other jobs on a shared machine, CPU seconds per step (process time, all threads). lerobot is
measured only when its reference venv exists (``SMOLVLA_LEROBOT_PYTHON``, default
/tmp/lerobot_ref_venv/bin/python). The first-step losses of the two must agree (same weights, batch, noise
and time): a sanity check that both do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
LEROBOT_PYTHON = Path(os.environ.get("SMOLVLA_LEROBOT_PYTHON", "/tmp/lerobot_ref_venv/bin/python"))
BATCH = {"small": 16, "full": 4}
MODE = {"small": "all", "full": "expert"}
IMAGE = (256, 256)
TASKS = ["pick up the red cube and put it in the box", "pick up the cube"]


def make_checkpoint(size: str, out: Path) -> None:
    """Random-weight checkpoint in lerobot's layout (our writer), features: 2 cameras, state/action 6."""
    import torch

    from smolvla_policy.model.configuration import VLMConfig, full_size_config
    from smolvla_policy.model.policy import SmolVLAPolicy
    from smolvla_policy.model.processor import Normalizer
    from smolvla_train.checkpointing import save_policy_dir
    from smolvla_train.policy_init import byte_level_tokenizer, read_init_config, resolve_init_file

    cams = ("observation.images.top", "observation.images.wrist")
    base = full_size_config(cams, image_shape=(3, *IMAGE))
    if size == "small":
        init = resolve_init_file("small")
        assert init is not None
        spec = read_init_config(init)
        config, vlm, tok = spec.config, spec.vlm, spec.tokenizer
        assert config is not None
        config.input_features, config.output_features = base.input_features, base.output_features
    else:
        config, vlm, tok = base, VLMConfig.smolvlm2_500m(), byte_level_tokenizer()
    stats = {
        k: {"mean": np.linspace(-10, 10, 6, dtype=np.float32), "std": np.linspace(5, 30, 6, dtype=np.float32)}
        for k in ("observation.state", "action")
    }
    torch.manual_seed(0)
    policy = SmolVLAPolicy(config, vlm, tokenizer=tok, normalizer=Normalizer.from_config(config, stats))
    save_policy_dir(policy, out, {"benchmark": "train_step", "size": size})


def make_batch(size: str, path: Path) -> None:
    rng = np.random.default_rng(0)
    b = BATCH[size]
    pad = np.zeros((b, 50), dtype=bool)
    pad[0, 30:] = True
    np.savez(
        path,
        camera_keys=np.array(["observation.images.top", "observation.images.wrist"]),
        image_0=rng.integers(0, 256, (b, *IMAGE, 3), dtype=np.uint8),
        image_1=rng.integers(0, 256, (b, *IMAGE, 3), dtype=np.uint8),
        state=rng.normal(0, 10, (b, 6)).astype(np.float32),
        action=rng.normal(0, 10, (b, 50, 6)).astype(np.float32),
        action_is_pad=pad,
        task=np.array([TASKS[i % 2] for i in range(b)]),
        noise=rng.standard_normal((b, 50, 32)).astype(np.float32),
        time=rng.uniform(0.05, 0.95, b).astype(np.float32),
    )


def worker(args: argparse.Namespace) -> None:
    """This project's training step (the same calls as smolvla_train.trainer), one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from smolvla_policy.model import SmolVLAPolicy
    from smolvla_train.trainer import LossModule, set_trainable

    policy = SmolVLAPolicy.from_pretrained(args.checkpoint)
    policy.train()
    params = [p for _, p in set_trainable(policy, args.mode)]
    cfg = policy.config
    optimizer = torch.optim.AdamW(
        params, lr=cfg.optimizer_lr, betas=cfg.optimizer_betas, eps=cfg.optimizer_eps,
        weight_decay=cfg.optimizer_weight_decay,
    )  # fmt: skip
    with np.load(args.batch_npz, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    keys = [str(k) for k in data["camera_keys"]]
    module = LossModule(policy)

    def raw_batch() -> dict:
        batch = {
            "observation.state": torch.from_numpy(data["state"]),
            "action": torch.from_numpy(data["action"]),
            "action_is_pad": torch.from_numpy(data["action_is_pad"]),
            "task": [str(t) for t in data["task"]],
        }
        for i, key in enumerate(keys):  # uint8 HWC, as the data loader delivers it
            batch[key] = torch.from_numpy(data[f"image_{i}"])
        return batch

    noise, t = torch.from_numpy(data["noise"]), torch.from_numpy(data["time"])
    times, cpu, losses = [], [], []
    for step in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = module(raw_batch(), noise, t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optimizer_grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        losses.append(float(loss.detach()))
        if step >= args.warmup:
            times.append(dt)
            cpu.append(dc)
    med = float(np.median(times))
    print(
        json.dumps(
            {
                "impl": "smolvla_train",
                "step_s": times,
                "cpu_s": cpu,
                "median_step_s": med,
                "samples_per_s": int(data["state"].shape[0]) / med,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "first_loss": losses[0],
                "trainable_params": sum(p.numel() for p in params),
            }
        )
    )


def _run(cmd: list[str], env: dict[str, str]) -> dict | None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"FAILED: {' '.join(cmd[:3])} ...\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,full")
    ap.add_argument("--rounds", type=int, default=2, help="alternating lerobot / ours rounds per size")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--make", choices=["small", "full"], help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--batch-npz", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="expert", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_checkpoint(args.make, Path(args.checkpoint))
        make_batch(args.make, Path(args.batch_npz))
        return
    if args.worker:
        worker(args)
        return

    sys.path.insert(0, str(REPO / "benchmarks"))
    from _report import machine_line, markdown_table, write_section

    machine = machine_line()
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    ref_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    ref_env["HF_HUB_OFFLINE"] = "1"
    have_ref = LEROBOT_PYTHON.exists()
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            ckpt, batch = Path(tmp) / f"{size}_ckpt", Path(tmp) / f"{size}_batch.npz"
            make = [
                sys.executable,
                __file__,
                "--make",
                size,
                "--checkpoint",
                str(ckpt),
                "--batch-npz",
                str(batch),
            ]
            subprocess.run(make, env=env, check=True)
            common = ["--checkpoint", str(ckpt), "--batch-npz", str(batch), "--mode", MODE[size],
                      "--steps", str(args.steps), "--warmup", str(args.warmup),
                      "--threads", str(args.threads)]  # fmt: skip
            res: dict[str, list[dict]] = {"smolvla_train": [], "lerobot": []}
            for rnd in range(args.rounds):
                runs = [("smolvla_train", [sys.executable, __file__, "--worker", *common], env)]
                if have_ref:
                    tool = str(REPO / "tools/lerobot_reference/time_lerobot_train.py")
                    runs.append(("lerobot", [str(LEROBOT_PYTHON), tool, *common], ref_env))
                for impl, cmd, e in runs if rnd % 2 == 0 else runs[::-1]:
                    r = _run(cmd, e)
                    if r is not None:
                        res[impl].append(r)
                        print(
                            f"{size:5s} {impl:13s} round {rnd}: {r['samples_per_s']:.3g} samples/s "
                            f"(median step {r['median_step_s']:.2f} s), peak RSS {r['peak_rss_mb']:.0f} MB, "
                            f"first loss {r['first_loss']:.6f}",
                            flush=True,
                        )
            results[size] = res
    rows = []
    notes = []
    for size, res in results.items():
        for impl in ("smolvla_train", "lerobot"):
            runs = res[impl]
            if not runs:
                continue
            steps = [s for r in runs for s in r["step_s"]]
            cpu = statistics.median([c for r in runs for c in r["cpu_s"]])
            med = statistics.median(steps)
            rows.append(
                [size, impl, BATCH[size], MODE[size], f"{runs[0]['trainable_params'] / 1e6:.2f} M",
                 BATCH[size] / med, med, min(steps), cpu, BATCH[size] / cpu,
                 max(r["peak_rss_mb"] for r in runs) / 1024]
            )  # fmt: skip
        if res["smolvla_train"] and res["lerobot"]:
            a, b = res["smolvla_train"][0]["first_loss"], res["lerobot"][0]["first_loss"]
            rel = abs(a - b) / abs(b)
            notes.append(
                f"{size}: first-step loss smolvla_train {a:.6f}, lerobot {b:.6f} (rel diff {rel:.1e})"
            )
    headers = ["config", "implementation", "batch", "trains", "trainable", "samples/s", "median step s",
               "min step s", "CPU s/step", "samples/CPU-s", "peak RSS GB"]  # fmt: skip
    table = markdown_table(headers, rows)
    print(table)
    for n in notes:
        print(n)
    if args.no_write:
        return
    body = "\n".join(
        [
            "## Training step (`benchmarks/train_step.py`)",
            "",
            f"{machine}. One optimizer step (preprocessing, forward, backward, clip, AdamW) on a fixed batch "
            f"of 2 cameras {IMAGE[0]}x{IMAGE[1]}, state/action 6, chunk 50; {args.threads} torch threads; "
            "each implementation in its own process (peak RSS of that process), alternating for "
            f"{args.rounds} "
            f"rounds x {args.steps} timed steps after {args.warmup} warm-up. `small` = smolvla_train's "
            "`small` preset trained from scratch (every parameter); `full` = SmolVLM2-500M dimensions with "
            "lerobot's recipe (expert + projections). lerobot = 0.6.1 in its reference venv, same weights "
            "(it loads the checkpoint this project wrote), batch, noise and time.",
            "",
            table,
            "",
            *[f"- {n}" for n in notes],
        ]
    )
    path = write_section("train_step", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
