"""Two training processes on the CPU (torchrun + accelerate's DDP, gloo): the same code path as multi-GPU.

The check is independent of DDP: the test recomputes the first optimizer step by hand in this process (each
rank's micro-batch from the sampler's stream, each rank's noise generator, gradients averaged over the two
ranks, clipping, AdamW with the cosine schedule) and compares the logged loss and the weights of the
checkpoint written after that step. Slow: it starts two processes. Runs in a private network namespace with
only ``lo`` up (gloo needs an interface); skipped where ``unshare -n`` is not permitted.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
from train_testing import DATASET, TINY_INIT  # noqa: E402

SEED = 3
BATCH = 2


def _can_unshare() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True)
    return r.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -n (private network namespace with lo up)")
def test_two_processes_average_gradients_of_their_shards(tmp_path: Path) -> None:
    init = tmp_path / "tiny_init.json"
    init.write_text(json.dumps(TINY_INIT))
    out = tmp_path / "run"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = (
        f"ip link set lo up && exec {torchrun} --nproc_per_node 2 --master_addr 127.0.0.1 "
        "--master_port 29533 "
        f"-m smolvla_train.finetune --dataset {DATASET} --init {init} --out {out} --train-all "
        f"--batch-size {BATCH} --num-workers 0 --log-every 1 --val-samples 4 --no-progress --seed {SEED} "
        "--steps 1 --save-every 1"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out / "train_log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if r["step"] == "1")
    assert row["samples"] == str(2 * BATCH)  # two processes took part
    logged_loss = float(row["loss"])
    trained = load_file(str(out / "checkpoints" / "last" / "pretrained_model" / "model.safetensors"))
    rng = load_file(str(out / "checkpoints" / "last" / "training_state" / "rng_state.safetensors"))
    assert {"generator.noise_rank0", "generator.noise_rank1"} <= set(rng)  # both processes can resume

    # the same step by hand, in one process
    from smolvla_policy.model.training import sample_time
    from smolvla_train.dataset import DatasetMeta, LeRobotV3Dataset
    from smolvla_train.policy_init import build_policy
    from smolvla_train.trainer import (
        LossModule,
        StreamSampler,
        collate,
        cosine_decay_with_warmup,
        set_trainable,
    )

    torch.set_num_threads(1)
    meta = DatasetMeta.load(DATASET)
    policy, _ = build_policy(str(init), meta, seed=SEED)
    policy.train()
    named = set_trainable(policy, "all")
    params = [p for _, p in named]
    cfg = policy.config
    ds = LeRobotV3Dataset(meta, cfg.chunk_size, episodes=[0, 1, 2])  # the 10% held out: episode 3
    losses, grads = [], []
    for rank in range(2):
        it = iter(StreamSampler(len(ds), BATCH, SEED, rank, 2))
        batch = collate([ds[next(it)] for _ in range(BATCH)])
        gen = torch.Generator().manual_seed(SEED * 7919 + 17 + rank)
        noise = torch.randn(BATCH, cfg.chunk_size, cfg.max_action_dim, generator=gen)
        t = sample_time(BATCH, gen)
        for p in params:
            p.grad = None
        loss = LossModule(policy)(batch, noise, t)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params])
    assert logged_loss == pytest.approx(sum(losses) / 2, rel=1e-5)
    for p, g0, g1 in zip(params, *grads):
        p.grad = (g0 + g1) / 2
    torch.nn.utils.clip_grad_norm_(params, cfg.optimizer_grad_clip_norm)
    opt = torch.optim.AdamW(
        params, lr=cfg.optimizer_lr, betas=cfg.optimizer_betas, eps=cfg.optimizer_eps,
        weight_decay=cfg.optimizer_weight_decay,
    )  # fmt: skip
    lam, _, _ = cosine_decay_with_warmup(cfg.optimizer_lr, cfg.scheduler_decay_lr, 0, 30000, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    opt.step()
    sched.step()
    expected = dict(named)
    worst = max(
        float((trained[n] - p.detach()).abs().max() / p.detach().abs().max().clamp_min(1e-12))
        for n, p in expected.items()
    )
    assert worst < 1e-5, worst
    # and not trivially: the step moved the weights
    before, _ = build_policy(str(init), meta, seed=SEED)
    moved = max(float((trained[n] - b).abs().max()) for n, b in before.state_dict().items() if n in expected)
    assert moved > 1e-4
