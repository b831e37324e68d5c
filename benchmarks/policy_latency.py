#!/usr/bin/env python3
"""SmolVLA chunk latency on the CPU: full-size (450M, random weights) and tiny model, per inference mode.

Workload (as the reference measurement): 2 cameras 512x512, 6-joint state, a 12-token task, 10 Euler steps,
``torch.set_num_threads(2)``. Each (model, mode) runs in its own process, so its peak RSS is its own.
Reported:
median (min-max) chunk latency, breakdown vision / prefix (VLM layers) / denoising, CPU seconds per chunk,
peak
RSS and the max |deviation| of the chunk from the float32 chunk (same weights, same noise).

Modes: ``fp32`` (the parity mode), ``int8`` (dynamic int8 Linear layers everywhere: vision, connector, text,
expert), ``int8-vision`` (only the vision tower + connector in int8), ``bf16`` (VLM + expert weights
bfloat16).

The lerobot 0.6.1 reference is measured in the same run when ``SMOLVLA_LEROBOT_PYTHON`` points at a python
with
lerobot installed and ``tools/lerobot_reference/time_lerobot.py`` exists (it prints JSON timings); otherwise
the
published reference figures are quoted and marked as not re-measured.

    python benchmarks/policy_latency.py                 # full + tiny, modes fp32,int8,int8-vision,bf16
    python benchmarks/policy_latency.py --sizes tiny --modes fp32 --runs 5 --no-write
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "src" / "smolvla_policy"))

TASK = "grasp a cup"  # 11 bytes + "\n" = 12 tokens with the byte-level test tokenizer
PUBLISHED = {"total_s": 6.94, "vision_s": 4.20, "prefix_s": 0.60, "denoise_s": 2.01, "rss_gb": 2.52}
MODES = {
    "fp32": ("float32", None),
    "int8": ("float32", ("vision", "connector", "text", "expert")),
    "int8-vision": ("float32", ("vision", "connector")),
    "bf16": ("bfloat16", None),
}


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from smolvla_policy.model import SmolVLAPolicy

    dtype, quant = MODES[args.mode]
    t0 = time.perf_counter()
    policy = SmolVLAPolicy.from_pretrained(args.checkpoint, dtype=dtype)
    if quant:
        policy.quantize_dynamic_int8(quant)
    cfg = policy.config
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    images = {k: rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for k in policy.camera_keys}
    state = rng.normal(0, 20, policy.state_dim).astype(np.float32)
    noise = torch.randn((policy.chunk_size, cfg.max_action_dim), generator=torch.Generator().manual_seed(1))
    n_tokens = int(policy.tokenizer([TASK + "\n"], return_tensors="pt")["input_ids"].shape[1])
    runs = []
    chunk = None
    for i in range(args.warmup + args.runs):
        c0, w0 = time.process_time(), time.perf_counter()
        chunk = policy.predict_chunk(images, state, TASK, noise=noise.numpy(), num_steps=10)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if i >= args.warmup:
            t = policy.timings
            runs.append(
                {
                    "total": wall,
                    "cpu": cpu,
                    "vision": t.vision_ms / 1e3,
                    "prefix": t.prefix_ms / 1e3,
                    "denoise": t.denoise_ms / 1e3,
                }
            )
    np.save(args.out + ".npy", chunk)
    result = {
        "size": args.size,
        "mode": args.mode,
        "params": sum(p.numel() for p in policy.parameters()),
        "build_s": build_s,
        "tokens": n_tokens,
        "runs": runs,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    Path(args.out).write_text(json.dumps(result))


def make_checkpoint(args: argparse.Namespace) -> None:
    """A checkpoint with seeded random weights (sane scales) in lerobot's layout + vlm/ (test tokenizer)."""
    import torch

    from smolvla_policy.model import SmolVLAPolicy
    from smolvla_policy.model.configuration import VLMConfig, full_size_config
    from smolvla_policy.model.processor import Normalizer
    from smolvla_policy.model.testing import (
        make_test_tokenizer,
        random_stats,
        randomize_,
        tiny_config,
        tiny_vlm_config,
    )

    if args.size == "full":
        cfg, vlm = full_size_config(image_shape=(3, 512, 512)), VLMConfig.smolvlm2_500m()
    else:
        cfg, vlm = tiny_config(image_shape=(3, 512, 512)), tiny_vlm_config()
    torch.manual_seed(0)
    policy = SmolVLAPolicy(
        cfg,
        vlm,
        tokenizer=make_test_tokenizer(),
        normalizer=Normalizer.from_config(cfg, random_stats(cfg)),
        dtype=None,
    )
    randomize_(policy, seed=0)
    policy.save_pretrained(args.checkpoint)


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    return env


def run_worker(size: str, mode: str, args: argparse.Namespace, tmp: Path, tag: str = "") -> dict:
    out = tmp / f"{size}-{mode}{tag}.json"
    ckpt = tmp / f"ckpt-{size}"
    if not ckpt.exists():
        subprocess.run(
            [sys.executable, __file__, "--make-checkpoint", "--size", size, "--checkpoint", str(ckpt)],
            check=True,
            env=worker_env(args),
        )
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--size",
        size,
        "--mode",
        mode,
        "--out",
        str(out),
        "--checkpoint",
        str(ckpt),
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
    ]
    subprocess.run(cmd, check=True, env=worker_env(args))
    res = json.loads(out.read_text())
    import numpy as np

    res["chunk"] = np.load(str(out) + ".npy")
    return res


def lerobot_reference(size: str, args: argparse.Namespace) -> dict | None:
    """lerobot 0.6.1 measured by tools/lerobot_reference/time_lerobot.py in its own venv, or None."""
    python = os.environ.get("SMOLVLA_LEROBOT_PYTHON")
    script = REPO / "tools" / "lerobot_reference" / "time_lerobot.py"
    if not python or not script.exists():
        return None
    env = {
        k: v for k, v in worker_env(args).items() if k not in ("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "PYTHONPATH")
    }
    cmd = [python, str(script), "--size", size, "--threads", str(args.threads), "--repeats", str(args.runs)]
    cmd += ["--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"lerobot reference ({size}) failed: {proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pool_reference(rounds: list[dict]) -> dict:
    """Pool several time_lerobot.py results: all chunk latencies; stage/CPU medians over the rounds."""
    lat = [x for r in rounds for x in r["latency_s"]]
    out = dict(rounds[-1])
    out["latency_s"] = lat
    out["median_s"] = statistics.median(lat)
    out["min_s"], out["max_s"] = min(lat), max(lat)
    for key in ("vision_s", "prefix_s", "denoise_s", "cpu_s_per_chunk"):
        out[key] = statistics.median(r[key] for r in rounds)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    return out


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="full,tiny")
    ap.add_argument("--modes", default="fp32,int8-vision,int8", help="any of fp32,int8-vision,int8,bf16")
    ap.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY for every measured process, ours and lerobot's ('' = OpenMP default)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="timed chunks per process")
    ap.add_argument("--rounds", type=int, default=3, help="alternating lerobot / our fp32 rounds per size")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--make-checkpoint", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_checkpoint:
        make_checkpoint(args)
        return
    if args.worker:
        worker(args)
        return

    import numpy as np
    from _report import machine_line, markdown_table, write_section

    machine = machine_line()
    results = []
    refs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            # lerobot and our fp32 alternate for --rounds rounds (the load drifts); every timed chunk
            # of every round is pooled, so neither side gets only the quiet (or the busy) minutes.
            ref_rounds: list[dict] = []
            fp32_rounds: list[dict] = []
            for rnd in range(args.rounds):
                ref = lerobot_reference(size, args)
                if ref is not None:
                    ref_rounds.append(ref)
                    print(
                        f"{size:4s} lerobot     round {rnd}: median {ref['median_s']:.3f} s "
                        f"(vision {ref['vision_s']:.3f}, prefix {ref['prefix_s']:.3f}, "
                        f"denoise {ref['denoise_s']:.3f}), cpu {ref['cpu_s_per_chunk']:.2f} s",
                        flush=True,
                    )
                if "fp32" in args.modes.split(","):
                    res = run_worker(size, "fp32", args, Path(tmp), tag=f"r{rnd}")
                    fp32_rounds.append(res)
                    r = res["runs"]
                    print(
                        f"{size:4s} fp32        round {rnd}: median {med(r, 'total'):.3f} s "
                        f"(vision {med(r, 'vision'):.3f}, prefix {med(r, 'prefix'):.3f}, "
                        f"denoise {med(r, 'denoise'):.3f}), cpu {med(r, 'cpu'):.2f} s",
                        flush=True,
                    )
            if ref_rounds:
                refs[size] = pool_reference(ref_rounds)
            ref_chunk = None
            if fp32_rounds:
                res = dict(fp32_rounds[-1])
                res["runs"] = [x for rr in fp32_rounds for x in rr["runs"]]
                res["peak_rss_gb"] = max(rr["peak_rss_gb"] for rr in fp32_rounds)
                res["dev"], res["scale"] = 0.0, float(np.abs(res["chunk"]).max())
                ref_chunk = res["chunk"]
                results.append(res)
            for mode in args.modes.split(","):
                if mode == "fp32":
                    continue
                res = run_worker(size, mode, args, Path(tmp))
                res["dev"] = float(np.abs(res["chunk"] - ref_chunk).max()) if ref_chunk is not None else None
                res["scale"] = float(np.abs(ref_chunk).max()) if ref_chunk is not None else None
                results.append(res)
                r = res["runs"]
                print(
                    f"{size:4s} {mode:11s} median {med(r, 'total'):.3f} s (vision {med(r, 'vision'):.3f}, "
                    f"prefix {med(r, 'prefix'):.3f}, denoise {med(r, 'denoise'):.3f}), "
                    f"cpu {med(r, 'cpu'):.2f} s, "
                    f"rss {res['peak_rss_gb']:.2f} GB, dev {res['dev']}",
                    flush=True,
                )
    rows = []
    for res in results:
        r = res["runs"]
        totals = [x["total"] for x in r]
        dev = "-" if res["mode"] == "fp32" else f"{res['dev']:.3g} (of {res['scale']:.3g})"
        rows.append(
            [
                res["size"],
                res["mode"],
                f"{med(r, 'total'):.3f} ({min(totals):.3f}-{max(totals):.3f})",
                f"{med(r, 'vision'):.3f}",
                f"{med(r, 'prefix'):.3f}",
                f"{med(r, 'denoise'):.3f}",
                f"{med(r, 'cpu'):.2f}",
                f"{res['peak_rss_gb']:.2f}",
                dev,
            ]
        )
    for size, ref in refs.items():
        rows.append(
            [
                size,
                "lerobot 0.6.1 fp32 (measured in this run)",
                f"{ref['median_s']:.3f} ({ref['min_s']:.3f}-{ref['max_s']:.3f})",
                f"{ref['vision_s']:.3f}",
                f"{ref['prefix_s']:.3f}",
                f"{ref['denoise_s']:.3f}",
                f"{ref['cpu_s_per_chunk']:.2f}",
                f"{ref['peak_rss_mb'] / 1024:.2f}",
                "reference",
            ]
        )
    p = PUBLISHED
    rows.append(
        [
            "full",
            "lerobot 0.6.1 fp32 (published, quiet machine)",
            f"{p['total_s']:.2f}",
            f"{p['vision_s']:.2f}",
            f"{p['prefix_s']:.2f}",
            f"{p['denoise_s']:.2f}",
            "13.6",
            f"{p['rss_gb']:.2f}",
            "reference",
        ]
    )
    headers = [
        "model",
        "mode",
        "chunk s median (min-max)",
        "vision s",
        "prefix s",
        "denoise s",
        "CPU s/chunk",
        "peak RSS GB",
        "max abs dev vs fp32 (units)",
    ]
    table = markdown_table(headers, rows)
    print(table)
    full_fp32 = next((x for x in results if x["size"] == "full" and x["mode"] == "fp32"), None)
    verdict = ""
    if full_fp32:
        ours = med(full_fp32["runs"], "total")
        ours_cpu = med(full_fp32["runs"], "cpu")
        if "full" in refs:
            ref = refs["full"]
            ours_min = min(x["total"] for x in full_fp32["runs"])
            verdict = (
                f"Full-size float32 vs lerobot measured in the same run: {ours / ref['median_s']:.2f} x its "
                f"median latency, {ours_min / ref['min_s']:.2f} x its best latency, "
                f"{ours_cpu / ref['cpu_s_per_chunk']:.2f} x its CPU time (goal <= 0.5); "
                f"{ours / PUBLISHED['total_s']:.2f} x the published quiet-machine 6.94 s.\n"
            )
        else:
            verdict = (
                f"Full-size float32: {ours / PUBLISHED['total_s']:.2f} x the published lerobot latency "
                "(not re-measured in this run; goal <= 0.5).\n"
            )
    if "full" in refs:
        ref = refs["full"]
        share = ref["vision_s"] / ref["median_s"]
        lines = [
            f"Vision is {share:.0%} of lerobot's chunk and runs the same code in both implementations "
            "(transformers' SmolVLM SigLIP tower with SDPA attention; we only batch the cameras), "
            "GEMM-bound at ~240 GFLOPS on 2 threads, i.e. at this CPU's fp32 peak: even with prefix and "
            "denoising free, "
            f"float32 could not go below {share:.2f} x lerobot here. The float32 gains are in the denoising "
            "(per-chunk cross-attention K/V and RoPE/mask tables, column-major expert weights for the 50-row "
            "GEMMs, fused RMSNorm, GQA-native SDPA) and in memory (lm_head memory-mapped, no duplicate "
            "weights)."
        ]
        for res in results:
            if res["size"] == "full" and res["mode"] != "fp32":
                lines.append(
                    f"Full-size {res['mode']}: {med(res['runs'], 'total') / ref['median_s']:.2f} x lerobot's "
                    f"median latency, max deviation {res['dev']:.3g} (fp32 chunk max {res['scale']:.3g})."
                )
        verdict += "\n".join(lines) + "\n"
    body = (
        "## SmolVLA chunk latency (`benchmarks/policy_latency.py`)\n\n"
        f"{machine}; torch threads {args.threads}, OMP_WAIT_POLICY={args.omp_wait_policy or 'default'} "
        f"(for lerobot too); {args.warmup} warm-up + {args.runs} timed chunks per process; lerobot and our "
        f"fp32 alternate for {args.rounds} rounds (fresh processes) and their chunks are pooled, other modes "
        "run once; "
        "each row in its own process (peak RSS is that process's). Workload: 2 cameras 512x512, 6-joint "
        "state, 12-token task, 10 Euler steps; seeded random weights saved in lerobot's layout and loaded "
        "with `SmolVLAPolicy.from_pretrained` (the unused lm_head stays memory-mapped). Deviation: "
        "max |chunk - fp32 chunk| in checkpoint units (normalised actions are unnormalised with degree-like "
        "stats, std 5-30), same weights and noise.\n\n"
        f"{table}\n\n{verdict}"
        "Modes: `fp32` is the parity mode (<= 1e-4 vs lerobot, see test_lerobot_parity); `int8` runs every "
        "Linear of the vision tower, connector, text layers and expert with dynamically quantised int8 "
        "(PyTorch dynamic quantisation, fp32 accumulation; norms, RoPE, attention, projections and the Euler "
        "loop in fp32); `int8-vision` quantises only the vision tower + connector; `bf16` keeps the VLM and "
        "expert weights in bfloat16 (lerobot's layout) -- this CPU has no fast bf16 GEMM path in PyTorch's "
        "CPU kernels (measured ~50 GFLOPS vs ~200 fp32), so bf16 is for GPUs.\n"
        "The machine is shared with other jobs: compare rows of the same run, and CPU s/chunk, which is less "
        "sensitive to contention than wall time.\n"
    )
    if not args.no_write:
        path = write_section("policy_latency", body)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
