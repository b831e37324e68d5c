"""Time lerobot 0.6.1's SmolVLA training step on a given checkpoint and batch (REFERENCE venv only).

    env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u PYTHONPATH HF_HUB_OFFLINE=1 /tmp/lerobot_ref_venv/bin/python \
        tools/lerobot_reference/time_lerobot_train.py --checkpoint DIR --batch-npz BATCH.npz \
        [--mode expert|all] [--steps 3] [--warmup 1] [--threads 2]

One step = lerobot's preprocessor on the raw batch + ``SmolVLAPolicy.forward`` (training mode, the batch's
fixed noise and time) + backward + gradient clipping + lerobot's AdamW preset step, as ``lerobot-train``
does it. ``--mode expert`` is lerobot's default trainable set; ``all`` trains every parameter. Prints one
JSON object: per-step seconds, samples/s, peak RSS, the first step's loss (compared with this project's by
``benchmarks/train_step.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--batch-npz", type=Path, required=True)
    ap.add_argument("--mode", choices=["expert", "all"], default="expert")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    ckpt = args.checkpoint.resolve()
    cwd = os.getcwd()
    os.chdir(ckpt)
    try:
        policy = SmolVLAPolicy.from_pretrained(str(ckpt))
        pre, _ = make_pre_post_processors(policy.config, pretrained_path=str(ckpt))
    finally:
        os.chdir(cwd)
    if args.mode == "all":
        vwe = policy.model.vlm_with_expert
        vwe.train_expert_only = False
        vwe.freeze_vision_encoder = False
        for name, p in policy.named_parameters():
            p.requires_grad_("lm_head" not in name)
    policy.train()
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = policy.config.get_optimizer_preset().build(params)
    clip = policy.config.optimizer_grad_clip_norm
    with np.load(args.batch_npz, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    keys = [str(k) for k in data["camera_keys"]]

    def raw_batch() -> dict:
        batch = {
            "observation.state": torch.from_numpy(data["state"]),
            "action": torch.from_numpy(data["action"]),
            "action_is_pad": torch.from_numpy(data["action_is_pad"]),
            "task": [str(t) for t in data["task"]],
        }
        for i, key in enumerate(keys):
            batch[key] = torch.from_numpy(data[f"image_{i}"]).permute(0, 3, 1, 2).float() / 255
        return batch

    noise, t = torch.from_numpy(data["noise"]), torch.from_numpy(data["time"])
    times, cpu, losses = [], [], []
    for step in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss, _ = policy.forward(pre(raw_batch()), noise=noise, time=t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        losses.append(float(loss.detach()))
        if step >= args.warmup:
            times.append(dt)
            cpu.append(dc)
    bsize = int(data["state"].shape[0])
    med = float(np.median(times))
    print(
        json.dumps(
            {
                "impl": "lerobot",
                "step_s": times,
                "cpu_s": cpu,
                "median_step_s": med,
                "samples_per_s": bsize / med,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "first_loss": losses[0],
                "trainable_params": sum(p.numel() for p in params),
            }
        )
    )


if __name__ == "__main__":
    main()
