"""Record lerobot 0.6.1's real-time chunking (RTC) for the RTC parity test (runs in the REFERENCE venv only).

    env -u PYTHONPATH HF_HUB_OFFLINE=1 /tmp/lerobot_ref_venv/bin/python \
        tools/lerobot_reference/make_rtc_fixtures.py [--skip-full] [--out DIR]

Reuses the parity fixtures of ``make_fixtures.py`` (same checkpoints, same images / state / task / noise of
``<name>_case1.npz``) and writes into ``src/smolvla_policy/test/fixtures/lerobot_reference/``:

* ``rtc_tables.npz``  lerobot's ``RTCProcessor.get_prefix_weights`` for every schedule on a grid of
                      (inference delay, execution horizon, chunk length), and its guidance weight at the
                      Euler times of 10 and 7 steps for two ``max_guidance_weight`` values;
* ``rtc_tiny.npz``    the ``tiny`` checkpoint: per case (schedule, delay, horizon, max guidance weight) the
                      chunk of ``predict_action_chunk(..., inference_delay=, prev_chunk_left_over=,
                      execution_horizon=)`` with RTC enabled in the policy config;
* ``rtc_full.npz``    the same for the full-size model (weights from ``deterministic_weights.py``),
                      2 schedules x 2 delays.

The previous chunk (``prefix``) is a perturbed, shifted copy of the recorded unguided chunk, 44 actions long
(shorter than the chunk: lerobot zero-pads it) with 6 of 32 action dims (zero-padded as well). It is stored
normalised (what lerobot receives) and in checkpoint units (lerobot's own postprocessor; what this project's
``predict_chunk`` receives). lerobot is imported at run time only; nothing of it is copied.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_OUT = REPO / "src/smolvla_policy/test/fixtures/lerobot_reference"
PREFIX_SHIFT = 6  # the prefix is the recorded chunk from action 6 on (44 actions), perturbed

# (schedule, inference_delay, execution_horizon, max_guidance_weight, horizon passed per call?)
TINY_CASES = [
    ("LINEAR", 4, 10, 10.0, False),
    ("LINEAR", 8, 20, 5.0, True),
    ("EXP", 4, 10, 10.0, False),
    ("EXP", 8, 20, 5.0, True),
    ("ZEROS", 6, 12, 10.0, False),
    ("ONES", 6, 12, 10.0, False),
    ("LINEAR", 3, 60, 10.0, True),  # horizon beyond the prefix (44): clipped
    ("EXP", 0, 15, 2.0, False),  # no delay: the ramp starts at the first action
]
FULL_CASES = [
    ("LINEAR", 4, 12, 10.0, False),
    ("LINEAR", 9, 12, 10.0, False),
    ("EXP", 4, 12, 10.0, False),
    ("EXP", 9, 12, 10.0, False),
]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_case(out: Path, name: str) -> dict:
    with np.load(out / f"{name}_case1.npz", allow_pickle=False) as data:
        case = {k: data[k] for k in data.files}
    keys = [str(k) for k in case["camera_keys"]]
    case["images"] = {key: case[f"image_{i}"] for i, key in enumerate(keys)}
    case["task"] = str(case["task"])
    return case


def make_prefix(case: dict) -> np.ndarray:
    """(44, 6) normalised: the unguided chunk shifted by PREFIX_SHIFT plus a smooth offset (so the guided
    chunk differs clearly from the unguided one)."""
    base = case["chunk_normalized"][PREFIX_SHIFT:].astype(np.float64)
    n, d = base.shape
    i = np.arange(n)[:, None]
    j = np.arange(d)[None, :]
    offset = 0.6 * np.sin(0.15 * i + 0.9 * j) + 0.25 * (j - 2.5) / 2.5
    return (base + offset).astype(np.float32)


def rtc_config(schedule: str, horizon: int, max_gw: float):
    from lerobot.configs import RTCAttentionSchedule
    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    return RTCConfig(
        enabled=True,
        prefix_attention_schedule=RTCAttentionSchedule[schedule],
        max_guidance_weight=max_gw,
        execution_horizon=horizon,
    )


def tables() -> dict[str, np.ndarray]:
    from lerobot.policies.rtc.modeling_rtc import RTCProcessor

    out: dict[str, np.ndarray] = {}
    grid = []
    weights = []
    schedules = ["ZEROS", "ONES", "LINEAR", "EXP"]
    for si, schedule in enumerate(schedules):
        proc = RTCProcessor(rtc_config(schedule, 10, 10.0))
        for total in (1, 5, 50):
            for start in (0, 1, 3, 7, 49, 50, 60):
                for end in (0, 1, 4, 10, 50, 70):
                    w = proc.get_prefix_weights(start, end, total).float().numpy()
                    assert w.shape == (total,), (schedule, start, end, total, w.shape)
                    grid.append((si, start, end, total))
                    weights.append(np.pad(w, (0, 50 - total), constant_values=np.nan))
    out["schedules"] = np.array(schedules)
    out["weight_grid"] = np.array(grid, dtype=np.int64)  # schedule index, delay, horizon, total
    out["weights"] = np.stack(weights).astype(np.float32)  # padded with NaN beyond total
    # guidance weight: denoise_step with v = 0, x = 0, prefix = 1 and ONES weights returns -weight
    gw_rows = []
    for max_gw in (10.0, 2.5):
        proc = RTCProcessor(rtc_config("ONES", 50, max_gw))
        for steps in (10, 7):
            dt = -1.0 / steps
            for step in range(steps):
                t = 1.0 + step * dt
                v = proc.denoise_step(
                    torch.zeros(1, 50, 1), torch.ones(1, 50, 1), 0, t, lambda x: torch.zeros_like(x)
                )
                gw_rows.append((max_gw, t, -float(v[0, 0, 0])))
    out["guidance"] = np.array(gw_rows, dtype=np.float64)  # max_gw, time, weight (float32 value)
    return out


@torch.no_grad()
def record(policy, cfg, case: dict, cases: list, label: str, stats) -> dict[str, np.ndarray]:
    from lerobot.policies.factory import make_pre_post_processors

    pre, post = make_pre_post_processors(policy_cfg=cfg, dataset_stats=stats)
    batch = {"observation.state": torch.from_numpy(case["state"].copy()), "task": case["task"]}
    for key, img in case["images"].items():
        batch[key] = torch.from_numpy(img.copy()).permute(2, 0, 1).to(torch.float32) / 255.0
    proc = pre(batch)
    noise = torch.from_numpy(case["noise"].copy())
    # self-check: RTC off reproduces the recorded unguided chunk
    policy.config.rtc_config = None
    policy.init_rtc_processor()
    policy.model.rtc_processor = None
    plain = policy.predict_action_chunk(dict(proc), noise=noise.clone())[0].float().numpy()
    d = float(np.abs(plain - case["chunk_normalized"]).max())
    print(f"  {label}: unguided chunk vs recorded case1: max |diff| = {d:.3g}")
    assert d == 0.0, d
    prefix_norm = make_prefix(case)
    prefix_units = post(torch.from_numpy(prefix_norm[None].copy())).float().numpy()[0]
    arrays: dict[str, np.ndarray] = {
        "prefix_normalized": prefix_norm,
        "prefix": prefix_units.astype(np.float32),
        "unguided_chunk_normalized": plain,
    }
    settings = []
    for k, (schedule, delay, horizon, max_gw, per_call) in enumerate(cases):
        policy.config.rtc_config = rtc_config(schedule, 10 if per_call else horizon, max_gw)
        policy.init_rtc_processor()
        kwargs = {"inference_delay": delay, "prev_chunk_left_over": torch.from_numpy(prefix_norm.copy())}
        if per_call:
            kwargs["execution_horizon"] = horizon
        t0 = time.perf_counter()
        norm = policy.predict_action_chunk(dict(proc), noise=noise.clone(), **kwargs)
        ms = (time.perf_counter() - t0) * 1e3
        chunk = post(norm).float().numpy()[0]
        arrays[f"case{k}_chunk"] = chunk.astype(np.float32)
        arrays[f"case{k}_chunk_normalized"] = norm[0].float().numpy()
        settings.append((schedule, delay, horizon, max_gw, per_call))
        moved = float(np.abs(norm[0].float().numpy() - plain).max())
        print(
            f"  {label} case{k}: {schedule:6s} delay {delay} horizon {horizon:2d} max_gw {max_gw:4.1f} "
            f"per_call {per_call!s:5s}: max |guided - unguided| {moved:.3f} (normalised), {ms:.0f} ms"
        )
    arrays["case_schedule"] = np.array([s[0] for s in settings])
    arrays["case_delay"] = np.array([s[1] for s in settings], dtype=np.int64)
    arrays["case_horizon"] = np.array([s[2] for s in settings], dtype=np.int64)
    arrays["case_max_guidance_weight"] = np.array([s[3] for s in settings], dtype=np.float64)
    arrays["case_horizon_per_call"] = np.array([s[4] for s in settings], dtype=bool)
    policy.config.rtc_config = None
    policy.init_rtc_processor()
    return arrays


def tiny_policy(ckpt: Path):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    cwd = os.getcwd()
    os.chdir(ckpt)  # vlm_model_name "vlm" is relative to the checkpoint
    try:
        policy = SmolVLAPolicy.from_pretrained(str(ckpt))
    finally:
        os.chdir(cwd)
    policy.eval()
    return policy, policy.config


def full_policy(out: Path, mf, dw):
    seed = dw.DEFAULT_SEED
    cfg, policy = mf.build_policy(out / "full" / "vlm")
    policy.eval()
    dw.fill_module(policy, seed=seed)
    return policy, cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--skip-full", action="store_true", help="only the tables and the tiny checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mf = _load(HERE / "make_fixtures.py", "lerobot_ref_make_fixtures")
    dw = _load(args.out / "deterministic_weights.py", "lerobot_ref_deterministic_weights")
    stats = mf.stats_tensors()

    np.savez_compressed(args.out / "rtc_tables.npz", **tables())
    print("wrote rtc_tables.npz")

    args.out = args.out.resolve()
    policy, cfg = tiny_policy(args.out / "tiny")
    cwd = os.getcwd()
    os.chdir(args.out / "tiny")  # the processors resolve tokenizer_name "vlm" against the working directory
    try:
        arrays = record(policy, cfg, load_case(args.out, "tiny"), TINY_CASES, "tiny", stats)
    finally:
        os.chdir(cwd)
    np.savez_compressed(args.out / "rtc_tiny.npz", **arrays)
    print("wrote rtc_tiny.npz")
    del policy

    if not args.skip_full:
        t0 = time.perf_counter()
        policy, cfg = full_policy(args.out, mf, dw)
        print(f"  built + filled the full-size model in {time.perf_counter() - t0:.1f} s")
        arrays = record(policy, cfg, load_case(args.out, "full"), FULL_CASES, "full", stats)
        np.savez_compressed(args.out / "rtc_full.npz", **arrays)
        print("wrote rtc_full.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
