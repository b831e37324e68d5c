"""The SmolVLA training loop: lerobot's recipe, resumable, one code path for 1..N processes (accelerate).

Recipe (lerobot 0.6.1's SmolVLA presets, taken from the policy config unless overridden): AdamW with
betas (0.9, 0.95), eps 1e-8, weight decay 1e-10, gradient clipping at norm 10, lr 1e-4 with lerobot's
``CosineDecayWithWarmup`` schedule (linear warmup from lr/(w+1) over 1000 steps, cosine to 2.5e-6 over 30000
steps; both shortened proportionally when the run has fewer steps than the decay), VLM frozen (the action
expert, ``state_proj`` and the action/time projections train), batch 64 per process, bf16 autocast on CUDA.

Determinism and resume: the data order is a seeded permutation per epoch, consumed as a stream of global
batches (process r of W takes the r-th slice of each), so the position in the data is just the number of
micro-batches done; noise and flow-matching times come from a per-process ``torch.Generator`` whose state is
saved with the optimizer, scheduler and step. A resumed run reproduces the losses of an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smolvla_policy.model.training import flow_matching_loss, sample_time, trainable_parameters
from smolvla_train import checkpointing as ckpt
from smolvla_train.dataset import DatasetMeta, LeRobotV3Dataset, resolve_dataset_root, split_episodes
from smolvla_train.policy_init import build_policy, resolve_init_file

log = logging.getLogger(__name__)
CSV_NAME = "train_log.csv"
PNG_NAME = "loss_curve.png"
CSV_FIELDS = ["step", "epoch", "samples", "loss", "grad_norm", "lr", "val_loss", "elapsed_s", "samples_per_s"]


@dataclass
class TrainSettings:
    dataset: str
    init: str
    out: str
    steps: int = 1000
    batch_size: int = 64
    grad_accum: int = 1
    lr: float | None = None
    warmup_steps: int | None = None
    decay_steps: int | None = None
    decay_lr: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    seed: int = 1000
    device: str = "cpu"
    amp: str = "auto"  # auto (bf16 on cuda) | bf16 | no
    num_workers: int = 2
    train_vision: bool = False
    train_all: bool = False
    camera_map: str | None = None
    tokenizer: str | None = None
    empty_cameras: int | None = None
    episodes: list[int] | None = None
    val_episodes: list[int] | None = None
    val_fraction: float = 0.1
    val_samples: int = 256
    val_every: int | None = None
    save_every: int = 500
    log_every: int = 10
    keep_all: bool = False
    resume: bool = False
    frame_cache_mb: float = 256.0
    num_threads: int = 0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        checks = [
            (self.steps >= 1, "--steps must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.grad_accum >= 1, "--grad-accum must be >= 1"),
            (self.save_every >= 1, "--save-every must be >= 1"),
            (self.log_every >= 1, "--log-every must be >= 1"),
            (self.val_every is None or self.val_every >= 1, "--val-every must be >= 1"),
            (self.val_samples >= 1, "--val-samples must be >= 1"),
            (0.0 <= self.val_fraction < 1.0, "--val-fraction must be in [0, 1)"),
            (self.num_workers >= 0, "--num-workers must be >= 0"),
            (self.empty_cameras is None or self.empty_cameras >= 0, "--empty-cameras must be >= 0"),
            (self.lr is None or self.lr > 0, "--lr must be > 0"),
            (self.amp in ("auto", "bf16", "no"), "--amp must be auto, bf16 or no"),
            (self.device.split(":")[0] in ("cpu", "cuda"), "--device must be cpu or cuda[:N]"),
            (not (self.train_vision and self.train_all), "--train-vision and --train-all exclude each other"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


# ------------------------------------------------------------------------------------------------------------
# schedule, sampler, loss module
# ------------------------------------------------------------------------------------------------------------
def cosine_decay_with_warmup(
    peak_lr: float, decay_lr: float, warmup_steps: int, decay_steps: int, total_steps: int
) -> tuple[Any, int, int]:
    """lerobot's CosineDecayWithWarmupSchedulerConfig as an lr multiplier; returns (lambda, warmup, decay)
    after its auto-scaling (both shortened by total/decay when the run is shorter than the decay)."""
    warmup, decay = warmup_steps, decay_steps
    if total_steps < decay_steps:
        scale = total_steps / decay_steps
        warmup, decay = int(warmup_steps * scale), total_steps
    alpha = decay_lr / peak_lr

    def lr_lambda(step: int) -> float:
        if step < warmup:
            if step <= 0:
                return 1 / (warmup + 1)
            frac = 1 - step / warmup
            return (1 / (warmup + 1) - 1) * frac + 1
        s = min(step, decay)
        cosine = 0.5 * (1 + math.cos(math.pi * s / decay))
        return (1 - alpha) * cosine + alpha

    return lr_lambda, warmup, decay


class StreamSampler(torch.utils.data.Sampler[int]):
    """Endless stream of dataset indices: epoch e is ``randperm(n)`` seeded with ``seed + e``; micro-batch m
    of process r (of W) is positions ``m*B*W + r*B ... + B`` of the concatenated epochs; starts at micro-batch
    ``start``."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        self.n, self.b, self.seed, self.rank, self.world, self.start = n, batch_size, seed, rank, world, start
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    def _at(self, pos: int) -> int:
        epoch, off = divmod(pos, self.n)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            self._perm_epoch = epoch
        assert self._perm is not None
        return int(self._perm[off])

    def __iter__(self) -> Iterator[int]:
        m = self.start
        while True:
            base = m * self.b * self.world + self.rank * self.b
            for j in range(self.b):
                yield self._at(base + j)
            m += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


class LossModule(nn.Module):
    """forward(batch, noise, time) -> scalar flow-matching loss (the module DDP wraps)."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, Any], noise: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return flow_matching_loss(self.policy, batch, noise=noise, time=time)


def set_trainable(policy: Any, mode: str) -> list[tuple[str, nn.Parameter]]:
    """expert (lerobot's default) | vision (+ vision encoder and connector) | all (everything but lm_head)."""
    trainable_parameters(policy)  # VLM frozen + eval, expert/projections trainable
    model = policy.model
    if mode in ("vision", "all"):
        backbone = model.vlm_with_expert.vlm.model
        parts = [backbone.vision_model, backbone.connector]
        if mode == "all":
            parts = [model.vlm_with_expert.vlm]
        for part in parts:
            part.requires_grad_(True)
            part.train()
        model.vlm_with_expert.vlm.lm_head.requires_grad_(False)  # never used
    return [(n, p) for n, p in policy.named_parameters() if p.requires_grad]


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        if torch.is_tensor(vals[0]):
            out[key] = torch.stack(vals)
        elif isinstance(vals[0], str):
            out[key] = vals
        else:
            out[key] = torch.as_tensor(vals)
    return out


# ------------------------------------------------------------------------------------------------------------
# logs
# ------------------------------------------------------------------------------------------------------------
def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    os.replace(tmp, path)


def plot_curve(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(csv_path)
    tr = [(int(r["step"]), float(r["loss"])) for r in rows if r.get("loss")]
    va = [(int(r["step"]), float(r["val_loss"])) for r in rows if r.get("val_loss")]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if tr:
        ax.plot(*zip(*tr), label="train loss", lw=1)
    if va:
        ax.plot(*zip(*va), "o-", label="validation loss", lw=1.5, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    if tr or va:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"SmolVLA training ({csv_path.parent.name})")
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)


# ------------------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------------------
def _portable(value: str | None) -> str | None:
    """No machine paths in saved configs: a path becomes its last component."""
    if value is None:
        return None
    p = Path(value)
    return p.name if (p.is_absolute() or os.sep in value or p.exists()) else value


class Trainer:
    def __init__(self, settings: TrainSettings):
        settings.validate()
        self.s = settings
        self.out = Path(settings.out)
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        cpu = settings.device == "cpu"
        if not cpu and not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available")
        mode = "all" if settings.train_all else ("vision" if settings.train_vision else "expert")
        self.mode = mode
        self.accel = Accelerator(
            cpu=cpu,
            mixed_precision="no",
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=mode != "expert")],
        )
        self.rank, self.world = self.accel.process_index, self.accel.num_processes
        self.main = self.accel.is_main_process
        self.device = self.accel.device
        if self.world == 1 and ":" in settings.device:  # an explicit cuda:N in a single process
            self.device = torch.device(settings.device)
        self.amp = settings.amp == "bf16" or (settings.amp == "auto" and self.device.type == "cuda")
        if settings.num_threads > 0:
            torch.set_num_threads(settings.num_threads)

    # ---- setup -------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        s = self.s
        root = resolve_dataset_root(s.dataset)
        self.meta = DatasetMeta.load(root)
        episodes = s.episodes if s.episodes is not None else sorted(self.meta.episodes)
        self.train_eps, self.val_eps = split_episodes(episodes, s.val_episodes, s.val_fraction)
        last = self.out / ckpt.CHECKPOINTS_DIR / ckpt.LAST
        self.start_step = 0
        init = s.init
        if s.resume:
            if not last.exists():
                raise FileNotFoundError(f"--resume: {last} does not exist")
            init = str(last.resolve() / ckpt.PRETRAINED_DIR)
        elif last.exists():
            raise FileExistsError(
                f"{self.out} already holds checkpoints; pass --resume to continue it or choose another --out"
            )
        from smolvla_train.policy_init import parse_camera_map

        self.camera_map = parse_camera_map(s.camera_map)
        policy, self.cameras = build_policy(
            init,
            self.meta,
            self.camera_map,
            s.tokenizer,
            seed=s.seed,
            device=str(self.device),
            empty_cameras=s.empty_cameras,
        )
        self.policy = policy
        cfg = policy.config
        named = set_trainable(policy, self.mode)
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        lr = s.lr if s.lr is not None else cfg.optimizer_lr
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=lr,
            betas=tuple(cfg.optimizer_betas),
            eps=cfg.optimizer_eps,
            weight_decay=s.weight_decay if s.weight_decay is not None else cfg.optimizer_weight_decay,
        )
        self.grad_clip = s.grad_clip if s.grad_clip is not None else cfg.optimizer_grad_clip_norm
        lam, self.warmup, self.decay = cosine_decay_with_warmup(
            lr,
            s.decay_lr if s.decay_lr is not None else cfg.scheduler_decay_lr,
            s.warmup_steps if s.warmup_steps is not None else cfg.scheduler_warmup_steps,
            s.decay_steps if s.decay_steps is not None else cfg.scheduler_decay_steps,
            s.steps,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lam)
        self.lr = lr
        self.noise_gen = torch.Generator().manual_seed(s.seed * 7919 + 17 + self.rank)
        self.generators = {f"noise_rank{self.rank}": self.noise_gen}
        if s.resume:
            state_dir = last.resolve() / ckpt.STATE_DIR
            info = ckpt.load_training_state(
                state_dir, self.optimizer, self.scheduler, self.generators, self.param_names
            )
            for key, want in (("batch_size", s.batch_size), ("grad_accum", s.grad_accum),
                              ("num_processes", self.world), ("seed", s.seed)):  # fmt: skip
                if info.get(key) != want:
                    raise ValueError(
                        f"--resume: checkpoint trained with {key}={info.get(key)}, this run has {want}"
                    )
            self.start_step = int(info["step"])
            if self.start_step >= s.steps:
                raise ValueError(
                    f"--resume: the checkpoint is at step {self.start_step} >= --steps {s.steps}"
                )
        self.train_ds = LeRobotV3Dataset(
            self.meta,
            cfg.chunk_size,
            self.train_eps,
            camera_map=self._dataset_camera_map(),
            frame_cache_mb=s.frame_cache_mb,
        )
        self.val_ds = (
            LeRobotV3Dataset(
                self.meta,
                cfg.chunk_size,
                self.val_eps,
                camera_map=self._dataset_camera_map(),
                frame_cache_mb=s.frame_cache_mb,
            )
            if self.val_eps
            else None
        )
        self.loss_module = self.accel.prepare_model(LossModule(policy), device_placement=False)
        self.policy.train()
        set_trainable(policy, self.mode)  # train() above put the frozen VLM back into train mode

    def _dataset_camera_map(self) -> dict[str, str | None]:
        return {k: self.cameras.get(k) for k in self.meta.camera_keys}

    def train_config(self) -> dict[str, Any]:
        s = self.s
        return {
            "dataset": {
                "repo_id": _portable(s.dataset),
                "episodes": self.train_eps,
                "val_episodes": self.val_eps,
                "fps": self.meta.fps,
                "camera_map": dict(self.cameras.items()),
            },
            "init": _portable(s.init) if resolve_init_file(s.init) is None else Path(s.init).stem,
            "policy": {"type": "smolvla", "trainable": self.mode, "seed": s.seed},
            "steps": s.steps,
            "batch_size": s.batch_size,
            "grad_accum": s.grad_accum,
            "num_processes": self.world,
            "effective_batch_size": s.batch_size * s.grad_accum * self.world,
            "optimizer": {
                "type": "adamw",
                "lr": self.lr,
                "betas": list(self.optimizer.param_groups[0]["betas"]),
                "eps": self.optimizer.param_groups[0]["eps"],
                "weight_decay": self.optimizer.param_groups[0]["weight_decay"],
                "grad_clip_norm": self.grad_clip,
            },
            "scheduler": {
                "type": "cosine_decay_with_warmup",
                "peak_lr": self.lr,
                "num_warmup_steps": self.warmup,
                "num_decay_steps": self.decay,
            },
            "amp": "bf16" if self.amp else "no",
            "device": self.device.type,
            "save_every": s.save_every,
            "val_every": self.val_every,
            "tool": "smolvla_train finetune",
        }

    def _generator_states(self) -> dict[str, torch.Tensor]:
        """Every process's noise-generator state (gathered to all), so each can resume its own stream."""
        mine = [(f"noise_rank{self.rank}", self.noise_gen.get_state())]
        if self.world == 1:
            return dict(mine)
        from accelerate.utils import gather_object

        return dict(gather_object(mine))

    @property
    def val_every(self) -> int:
        return self.s.val_every or self.s.save_every

    # ---- one step ----------------------------------------------------------------------------------------
    def _loss(self, batch: dict[str, Any], generator: torch.Generator, module: nn.Module) -> torch.Tensor:
        cfg = self.policy.config
        bsize = batch["action"].shape[0]
        noise = torch.randn(bsize, cfg.chunk_size, cfg.max_action_dim, generator=generator)
        t = sample_time(bsize, generator)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return module(batch, noise.to(self.device), t.to(self.device))

    @torch.no_grad()
    def validate(self) -> float | None:
        if self.val_ds is None:
            return None
        n = len(self.val_ds)
        idx = np.unique(np.linspace(0, n - 1, min(n, self.s.val_samples)).round().astype(np.int64))
        mine = idx[self.rank :: self.world]
        gen = torch.Generator().manual_seed(self.s.seed + 1_000_003 + self.rank)
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        was_training = self.policy.training
        self.policy.eval()
        for a in range(0, len(mine), self.s.batch_size):
            batch = collate([self.val_ds[int(i)] for i in mine[a : a + self.s.batch_size]])
            loss = self._loss(batch, gen, LossModule(self.policy))
            total[0] += float(loss) * len(batch["task"])
            total[1] += len(batch["task"])
        if was_training:
            self.policy.train()
            set_trainable(self.policy, self.mode)
        total = self.accel.reduce(total, reduction="sum") if self.world > 1 else total
        return float(total[0] / total[1]) if total[1] > 0 else None

    # ---- main loop ---------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self._setup()
        s = self.s
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(self.train_config(), indent=4) + "\n")
        csv_path, png_path = self.out / CSV_NAME, self.out / PNG_NAME
        rows = [r for r in read_csv(csv_path) if int(r["step"]) <= self.start_step] if s.resume else []
        best = min((float(r["val_loss"]) for r in rows if r.get("val_loss")), default=math.inf)
        sampler = StreamSampler(
            len(self.train_ds),
            s.batch_size,
            s.seed,
            self.rank,
            self.world,
            start=self.start_step * s.grad_accum,
        )
        loader = torch.utils.data.DataLoader(
            self.train_ds,
            batch_size=s.batch_size,
            sampler=sampler,
            num_workers=s.num_workers,
            collate_fn=collate,
            persistent_workers=s.num_workers > 0,
            worker_init_fn=_worker_init,
            prefetch_factor=2 if s.num_workers > 0 else None,
        )
        it = iter(loader)
        if self.start_step == 0 and self.val_ds is not None:  # the baseline of the validation curve
            val0 = self.validate()
            rows.append(
                {"step": 0, "epoch": "0.0000", "samples": 0, "val_loss": f"{val0:.6g}", "elapsed_s": "0.00"}
            )
            if self.main:
                write_csv(csv_path, rows)
        from tqdm import tqdm

        bar = tqdm(
            total=s.steps,
            initial=self.start_step,
            disable=not (self.main and s.progress),
            unit="step",
            dynamic_ncols=True,
            desc="finetune",
        )
        t0 = time.perf_counter()
        prior_elapsed = float(rows[-1]["elapsed_s"]) if rows and rows[-1].get("elapsed_s") else 0.0
        window: list[float] = []
        last_val: float | None = None
        samples_per_step = s.batch_size * s.grad_accum * self.world
        last_log_t, last_log_step = t0, self.start_step
        for step in range(self.start_step + 1, s.steps + 1):
            step_loss = torch.zeros((), dtype=torch.float64)
            for micro in range(s.grad_accum):
                batch = next(it)
                sync = micro == s.grad_accum - 1 or self.world == 1
                ctx = self.accel.no_sync(self.loss_module) if not sync else _null()
                with ctx:
                    loss = self._loss(batch, self.noise_gen, self.loss_module)
                    self.accel.backward(loss / s.grad_accum)
                step_loss += float(loss.detach()) / s.grad_accum
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.world > 1:
                step_loss = self.accel.reduce(step_loss.to(self.device), reduction="mean").cpu()
            loss_value = float(step_loss)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {step}; lower --lr or check the data")
            window.append(loss_value)
            val_loss = None
            if step % self.val_every == 0 or step == s.steps:
                val_loss = self.validate()
                last_val = val_loss if val_loss is not None else last_val
            if step % s.log_every == 0 or val_loss is not None or step == s.steps:
                now = time.perf_counter()
                rate = (step - last_log_step) * samples_per_step / max(now - last_log_t, 1e-9)
                last_log_t, last_log_step = now, step
                rows.append(
                    {
                        "step": step,
                        "epoch": f"{step * samples_per_step / len(self.train_ds):.4f}",
                        "samples": step * samples_per_step,
                        "loss": f"{float(np.mean(window)):.6g}",
                        "grad_norm": f"{float(grad_norm):.6g}",
                        "lr": f"{self.scheduler.get_last_lr()[0]:.6g}",
                        "val_loss": "" if val_loss is None else f"{val_loss:.6g}",
                        "elapsed_s": f"{prior_elapsed + now - t0:.2f}",
                        "samples_per_s": f"{rate:.3g}",
                    }
                )
                window = []
                if self.main:
                    write_csv(csv_path, rows)
            if step % s.save_every == 0 or step == s.steps:
                metric = last_val if last_val is not None else loss_value
                is_best = metric < best
                best = min(best, metric)
                gens = self._generator_states()  # collective: every process takes part
                if self.main:
                    ckpt.write_checkpoint(
                        self.out,
                        step,
                        self.policy,
                        self.train_config(),
                        self.optimizer,
                        self.scheduler,
                        gens,
                        self.param_names,
                        {
                            "step": step,
                            "batch_size": s.batch_size,
                            "grad_accum": s.grad_accum,
                            "num_processes": self.world,
                            "seed": s.seed,
                            "samples": step * samples_per_step,
                            "metric": metric,
                        },
                        is_best,
                        s.keep_all,
                    )
                    plot_curve(csv_path, png_path)
                self.accel.wait_for_everyone()
            post = {"loss": f"{loss_value:.4f}", "lr": f"{self.scheduler.get_last_lr()[0]:.2e}"}
            if last_val is not None:
                post["val"] = f"{last_val:.4f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)
        bar.close()
        self.accel.wait_for_everyone()
        root = self.out / ckpt.CHECKPOINTS_DIR
        return {
            "last": str(root / ckpt.LAST / ckpt.PRETRAINED_DIR),
            "best": str(root / ckpt.BEST / ckpt.PRETRAINED_DIR),
            "final_loss": rows[-1]["loss"] if rows else None,
            "final_val_loss": last_val,
        }


def _worker_init(_: int) -> None:
    """One intra-op thread per data-loader worker (the training process keeps the cores)."""
    torch.set_num_threads(1)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
