"""Extra inference time of real-time chunking (RTC) on the CPU, tiny and full-size SmolVLA.

RTC here is lerobot 0.6.1's variant: every Euler step corrects the velocity with the denoiser's own
clean-action estimate (``x1 = x_t - t v_t``), with no backward pass through the network (the paper's
vector-Jacobian variant is not offered). Its cost is a few element-wise operations on a 50 x 32 tensor per
step, so the difference should be lost in the noise; this measures it.

Per size, after one warm-up of each, ``--rounds`` rounds alternate a plain and an RTC chunk on the same inputs
and noise (prefix 40 actions, inference delay 5, linear schedule, horizon 20); reported: minimum denoising
time (the Euler loop, where RTC acts) and minimum total ``predict_chunk`` time of each, and the cost of the
correction itself (the minimum of many calls). Full size = SmolVLM2-500M dimensions with the parity fixture's
deterministic weights (generated into a temporary ``model.safetensors``, 1.8 GB).

Run: ``source scripts/env.sh && python benchmarks/rtc_overhead.py [--rounds 5] [--skip-full]``.
Writes section ``rtc_overhead`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO_ROOT, machine_line, markdown_table, write_section  # noqa: E402

FIXTURES = REPO_ROOT / "src" / "smolvla_policy" / "test" / "fixtures" / "lerobot_reference"


def load_case(name: str) -> dict:
    with np.load(FIXTURES / f"{name}_case1.npz", allow_pickle=False) as data:
        case = {k: data[k] for k in data.files}
    keys = [str(k) for k in case["camera_keys"]]
    case["images"] = {key: case[f"image_{i}"] for i, key in enumerate(keys)}
    case["task"] = str(case["task"])
    return case


def full_checkpoint(tmp: Path) -> Path:
    from safetensors.torch import save_file

    spec = importlib.util.spec_from_file_location("dw_rtc_bench", FIXTURES / "deterministic_weights.py")
    dw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dw)
    ckpt = tmp / "full"
    shutil.copytree(FIXTURES / "full", ckpt)
    manifest = json.loads((ckpt / "state_dict_manifest.json").read_text())
    tensors = dw.deterministic_state_dict(manifest["shapes"], seed=manifest["seed"], gain=manifest["gain"])
    save_file(tensors, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    del tensors
    gc.collect()
    return ckpt


def measure(ckpt: Path, case_name: str, rounds: int, bar) -> dict[str, float]:
    from smolvla_policy.model.policy import SmolVLAPolicy
    from smolvla_policy.model.rtc import RTCConfig

    policy = SmolVLAPolicy.from_pretrained(ckpt, tokenizer=None, device="cpu", dtype="float32")
    case = load_case(case_name)
    prefix = np.asarray(case["chunk"][5:45], dtype=np.float32) + 1.0
    rtc = RTCConfig(enabled=True, prefix_attention_schedule="linear", execution_horizon=20)
    args = (case["images"], case["state"], case["task"])
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "rtc": []}

    def run(mode: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        if mode == "rtc":
            policy.predict_chunk(
                *args, noise=case["noise"], prev_chunk=prefix, inference_delay=5, rtc_config=rtc
            )
        else:
            policy.predict_chunk(*args, noise=case["noise"])
        return policy.timings.denoise_ms, (time.perf_counter() - t0) * 1e3

    run("plain"), run("rtc")  # warm-up
    for r in range(rounds):
        for mode in ("plain", "rtc") if r % 2 == 0 else ("rtc", "plain"):
            times[mode].append(run(mode))
            bar.update(1)
    out = {
        "guidance_per_chunk": guidance_cost(policy.chunk_size, policy.config.max_action_dim)
        * policy.num_steps
    }
    policy = None  # free the model before the next size
    gc.collect()
    for mode, vals in times.items():
        arr = np.asarray(vals)
        out[f"{mode}_denoise"] = float(arr[:, 0].min())
        out[f"{mode}_total"] = float(arr[:, 1].min())
    return out


def guidance_cost(chunk_size: int, action_dim: int, calls: int = 2000) -> float:
    """Milliseconds of one guided-velocity correction (the whole of RTC's work per Euler step), the minimum
    over ``calls`` calls (the least disturbed by other jobs on the machine)."""
    import torch

    from smolvla_policy.model.rtc import RTCConfig, RTCGuidance

    guide = RTCGuidance(
        torch.randn(40, 6), 5, RTCConfig(enabled=True, execution_horizon=20), chunk_size, action_dim
    )
    x, v = torch.randn(1, chunk_size, action_dim), torch.randn(1, chunk_size, action_dim)
    best = float("inf")
    with torch.inference_mode():
        for i in range(calls):
            t0 = time.perf_counter()
            guide(x, v, 1.0 - (i % 10) / 10)
            best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    sizes = ["tiny"] + ([] if args.skip_full else ["full"])
    rows, t0 = [], time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="rtc_overhead_") as tmp,
        tqdm(total=2 * args.rounds * len(sizes), desc="chunks") as bar,
    ):
        for size in sizes:
            ckpt = FIXTURES / "tiny" if size == "tiny" else full_checkpoint(Path(tmp))
            m = measure(ckpt, size, args.rounds, bar)
            if size == "full":
                (ckpt / "model.safetensors").unlink()
            rows.append([
                size, m["guidance_per_chunk"], 100.0 * m["guidance_per_chunk"] / m["plain_denoise"],
                m["plain_denoise"], m["rtc_denoise"], m["plain_total"], m["rtc_total"],
            ])  # fmt: skip
    headers = ["model", "RTC work per chunk (ms)", "% of denoising", "denoise plain (ms)", "denoise RTC (ms)",
               "chunk plain (ms)", "chunk RTC (ms)"]  # fmt: skip
    table = markdown_table(headers, rows)
    print(table)
    body = f"""## Real-time chunking: extra inference time (`benchmarks/rtc_overhead.py`)

{machine_line()}; {time.perf_counter() - t0:.0f} s; {args.threads} torch threads, fp32, 10 denoising steps.

lerobot's RTC variant (the default and only one here): the guidance uses the denoiser's own clean-action
estimate, no backward pass, so RTC's whole work is one element-wise correction of the 50 x 32 velocity per
Euler step. "RTC work per chunk" = the minimum time of that correction over 2000 calls x 10 steps (robust to
the other jobs on this shared machine). The end-to-end columns are the minima over {args.rounds} alternating
rounds of plain and RTC chunks on the same inputs and noise (prefix 40 actions, inference delay 5, linear
schedule, horizon 20); with other jobs on the two cores their difference is noise, not RTC. Full size:
SmolVLM2-500M dimensions, deterministic weights of the parity fixture.

{table}
"""
    if not args.no_write:
        print(f"wrote section rtc_overhead of {write_section('rtc_overhead', body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
