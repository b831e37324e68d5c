#!/usr/bin/env python3
"""The recipe of the shipped simulator policy (models/smolvla_sim_pick_place): in-process demonstrations and
a from-scratch training run of a small SmolVLA, fast enough for a 2-core CPU.

    source scripts/env.sh
    python scripts/sim_policy_recipe.py tokenizer --out /tmp/tok
    python scripts/sim_policy_recipe.py demos --out /tmp/demos --seed0 1000 --episodes 300
    python scripts/sim_policy_recipe.py train --data /tmp/demos --out /tmp/policy --steps 3000
    python scripts/sim_policy_recipe.py average /tmp/policy/step_002000 /tmp/policy --out /tmp/policy_mean

``demos`` runs the scripted expert in the simulator without ROS (``ArmSim`` + ``ScriptedExpert``), rendering
the ``top`` and ``wrist`` cameras at the training size; it stores frames in memory-mapped arrays (uint8
images, ``observation.state`` = measured joint positions and ``action`` = the expert's joint targets, both in
lerobot units: degrees, gripper 0..100 % of the calibrated range), plus the privileged object poses (cube x,
y, z, sin/cos of 4 x yaw, tray x, y) used by the auxiliary loss. Failed expert episodes are left out.

``train`` trains every parameter of a SmolVLA-architecture policy (``smolvla_policy.model``, the project's
network and its flow-matching loss ``model.training.flow_matching_loss``) from random weights (``--config``,
an init file like ``models/smolvla_sim_pick_place/init_config.json``) or from a checkpoint (``--init``).
Additions to the plain loss, all training-only (the saved checkpoint is a plain SmolVLA in lerobot's layout):

* ``--aux W``: an auxiliary linear read-out of the object poses from the image tokens (the connector output),
  weight W -- a dense signal that teaches the randomly initialised vision tower where the cube and the tray
  are far faster than the action loss alone; the read-out layer is dropped when saving;
* ``--state-noise S``: Gaussian noise (lerobot units) on ``observation.state``, so that the start pose cannot
  identify a demonstration (the policy must look at the images);
* ``--task-variants``: the instruction drawn from a few phrasings (the launch files' default among them);
* ``--skip-tail N``: the last N frames of each episode (return home and hold) are not used as chunk starts;
* ``--shift-aug N``: each training image moved by up to N pixels (edges replicated), against overfitting the
  few hundred scenes.

Checkpoints (every ``--save-every`` steps and at the end) are written to ``--out`` with ``train_log.csv``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

TASK = "Pick up the red cube and place it in the blue box."
TASK_VARIANTS = (TASK, "pick up the red cube and put it in the blue box", "Put the red cube in the blue box.")
CAMERAS = ("top", "wrist")


# -- tokenizer ----------------------------------------------------------------------------------------------
def tokenizer(args: argparse.Namespace) -> int:
    """A byte-level BPE tokenizer (ids 0/1/2 = <|endoftext|>/<|im_start|>/<|im_end|>, 256 bytes, merges
    learned from the simulator's instructions), offline and deterministic; any text still tokenises."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = [
        t + "\n" for t in (TASK, "Put the red cube in the blue box and the green cube in the purple box.")
    ]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus * 50, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=8192,
        # SmolVLM's image tokens (after the learned ids; lerobot's processor needs them, the model does not
        # use them with add_image_special_tokens = false)
        extra_special_tokens={
            "fake_image_token": "<fake_token_around_image>",
            "image_token": "<image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )
    fast.save_pretrained(str(args.out))
    n = len(fast(TASK + "\n")["input_ids"])
    print(f"tokenizer with {len(fast)} ids in {args.out}; {TASK!r} -> {n} ids")
    return 0


# -- demonstrations ------------------------------------------------------------------------------------------
def demos(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from smolvla_sim.expert import ScriptedExpert
    from smolvla_sim.sim import ArmSim, SimConfig
    from so_arm_description.robot_model import default_limits
    from so_arm_description.units import JointUnits

    out: Path = args.out
    if (out / "info.json").exists():
        print(f"{out} already holds demonstrations (info.json); choose another --out", file=sys.stderr)
        return 1
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    units = JointUnits.lerobot(default_limits("so101"))
    sim = ArmSim(SimConfig(image_width=args.image_size, image_height=args.image_size))
    episodes: list[dict[str, np.ndarray]] = []
    seeds, failed = [], []
    for seed in tqdm(range(args.seed0, args.seed0 + args.episodes), desc="demos", unit="ep"):
        sim.reset(seed)
        expert = ScriptedExpert(sim)
        expert.reset()
        rec: dict[str, list] = {"top": [], "wrist": [], "state": [], "action": [], "labels": []}
        while not expert.done:
            for cam in CAMERAS:
                rec[cam].append(sim.render(cam))
            task = sim.task
            c, t, yaw = task.cube_position(), task.tray_position(), task.cube_yaw()
            rec["labels"].append([c[0], c[1], c[2], np.sin(4 * yaw), np.cos(4 * yaw), t[0], t[1]])
            rec["state"].append(sim.joint_positions)
            action = expert.act()
            rec["action"].append(action)
            sim.step(action)
        for _ in range(15):
            sim.step(expert.plan[-1])
        if not sim.task_success():
            failed.append(seed)
            continue
        seeds.append(seed)
        episodes.append({k: np.asarray(v) for k, v in rec.items()})
    n = sum(len(e["state"]) for e in episodes)
    s = args.image_size
    arrays = {
        cam: np.lib.format.open_memmap(tmp / f"{cam}.npy", "w+", np.uint8, (n, s, s, 3)) for cam in CAMERAS
    }
    state, action = np.zeros((n, 6), np.float32), np.zeros((n, 6), np.float32)
    labels, ep = np.zeros((n, 7), np.float32), np.zeros(n, np.int32)
    i = 0
    for k, e in enumerate(episodes):
        m = len(e["state"])
        for cam in CAMERAS:
            arrays[cam][i : i + m] = e[cam]
        state[i : i + m] = units.to_model(e["state"])
        action[i : i + m] = units.to_model(e["action"])
        labels[i : i + m] = e["labels"]
        ep[i : i + m] = k
        i += m
    for cam in CAMERAS:
        arrays[cam].flush()
    for name, arr in (("state", state), ("action", action), ("labels", labels), ("ep", ep)):
        np.save(tmp / f"{name}.npy", arr)
    info = {"episodes": len(seeds), "frames": n, "seeds": seeds, "failed_seeds": failed, "fps": 30}
    info["image_size"] = s
    info["units"] = "lerobot (degrees, gripper 0..100)"
    (tmp / "info.json").write_text(json.dumps(info))
    tmp.rename(out)
    print(f"{len(seeds)} demonstrations ({n} frames) in {out}; expert failures: {failed}")
    return 0


# -- training ------------------------------------------------------------------------------------------------
class Frames:
    """Packed demonstration directories (``demos`` output) seen as one frame table."""

    def __init__(self, dirs: list[Path]) -> None:
        self.images = {cam: [np.load(d / f"{cam}.npy", mmap_mode="r") for d in dirs] for cam in CAMERAS}
        self.offsets = np.cumsum([0] + [len(a) for a in self.images["top"]])
        self.state = np.concatenate([np.load(d / "state.npy") for d in dirs])
        self.action = np.concatenate([np.load(d / "action.npy") for d in dirs])
        self.labels = np.concatenate([np.load(d / "labels.npy") for d in dirs])
        eps, base = [], 0
        for d in dirs:
            e = np.load(d / "ep.npy")
            eps.append(e + base)
            base += int(e.max()) + 1
        self.ep = np.concatenate(eps)
        self.n_episodes = base
        last = {int(e): int(i) for i, e in enumerate(self.ep)}  # episode -> its last frame index
        self.ends = np.array([last[int(e)] for e in self.ep])

    def __len__(self) -> int:
        return len(self.state)

    def images_at(self, cam: str, idx: np.ndarray) -> np.ndarray:
        """idx sorted ascending -> uint8 [len(idx), H, W, 3]."""
        part = np.searchsorted(self.offsets, idx, side="right") - 1
        chunks = [
            np.asarray(self.images[cam][k][idx[part == k] - self.offsets[k]])
            for k in range(len(self.offsets) - 1)
            if np.any(part == k)
        ]
        return np.concatenate(chunks)


def build_policy(args: argparse.Namespace, frames: Frames):  # type: ignore[no-untyped-def]
    from smolvla_policy.model.checkpoint import load_policy
    from smolvla_policy.model.configuration import ACTION, OBS_STATE, STATE, VISUAL, SmolVLAConfig, VLMConfig
    from smolvla_policy.model.policy import SmolVLAPolicy
    from smolvla_policy.model.processor import Normalizer, load_tokenizer

    stats = {}
    for key, arr in ((OBS_STATE, frames.state), ("action", frames.action)):
        stats[key] = {"mean": arr.mean(0), "std": arr.std(0) + 1e-3, "min": arr.min(0), "max": arr.max(0)}
    if (
        args.init
    ):  # continue: the checkpoint's own normalisation stats stay (its weights were trained on them)
        return load_policy(args.init)
    init = json.loads(Path(args.config).read_text())
    vlm = VLMConfig.from_dict(init["vlm"], name_or_path="vlm")
    tokenizer = load_tokenizer(Path(init["tokenizer"]))
    size = int(init["vlm"]["vision_config"]["image_size"])
    inputs = {OBS_STATE: {"type": STATE, "shape": [6]}}
    for cam in CAMERAS:
        inputs[f"observation.images.{cam}"] = {"type": VISUAL, "shape": [3, size, size]}
    pol = {k: v for k, v in init["policy"].items() if not k.startswith("_")}
    pol.update(input_features=inputs, output_features={"action": {"type": ACTION, "shape": [6]}})
    pol["vlm_model_name"] = "vlm"
    config = SmolVLAConfig.from_dict(pol)
    return SmolVLAPolicy(config, vlm, tokenizer=tokenizer, normalizer=Normalizer.from_config(config, stats))


def shift(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Random-shift augmentation (each image moved by up to ``pad`` pixels, edges replicated); 0 = off."""
    if pad <= 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * pad + 1, (2, n))
    return np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def train(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from smolvla_policy.model.processor import tokenize
    from smolvla_policy.model.training import flow_matching_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    frames = Frames([Path(d) for d in args.data.split(",")])
    policy = build_policy(args, frames)
    model, config = policy.model, policy.config
    # every parameter trains (random VLM); default column-major storage is only an inference layout
    policy.train()
    model.requires_grad_(True)
    chunk = config.chunk_size
    pool = np.nonzero(np.arange(len(frames)) <= frames.ends - args.skip_tail)[0]
    print(f"{frames.n_episodes} episodes, {len(frames)} frames, {len(pool)} chunk starts; chunk {chunk}")
    params = [p for p in model.parameters() if p.requires_grad]
    aux_head = None
    if args.aux > 0:
        lab_mean, lab_std = frames.labels.mean(0), frames.labels.std(0) + 1e-4
        labels = ((frames.labels - lab_mean) / lab_std).astype(np.float32)
        n_tok = policy.vlm_config.image_seq_len
        aux_head = torch.nn.Linear(len(CAMERAS) * n_tok * policy.vlm_config.text_hidden_size, labels.shape[1])
        params += list(aux_head.parameters())
        embed = model.embed_images
        kept: dict[str, torch.Tensor] = {}

        def embed_and_keep(images: torch.Tensor) -> torch.Tensor:
            kept["img"] = embed(images)
            return kept["img"]

        model.embed_images = embed_and_keep  # type: ignore[method-assign]
    opt = torch.optim.AdamW(
        params, lr=args.lr, betas=tuple(config.optimizer_betas), eps=1e-8, weight_decay=1e-10
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        x = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * x)))

    variants = TASK_VARIANTS if args.task_variants else (TASK,)
    offsets = np.arange(chunk)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.csv"
    if not log_path.exists():
        log_path.write_text("step,loss,aux_loss,lr,elapsed_s\n")
    t0 = time.time()
    ema = None
    bar = tqdm(range(args.steps), desc="train", unit="step")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = np.sort(pool[rng.integers(0, len(pool), args.batch_size)])
        act_idx = idx[:, None] + offsets[None]
        is_pad = act_idx > frames.ends[idx][:, None]
        act_idx = np.minimum(act_idx, frames.ends[idx][:, None])
        state = frames.state[idx] + args.state_noise * rng.standard_normal((len(idx), 6))
        texts = [variants[i] for i in rng.integers(0, len(variants), len(idx))]
        tokens, mask = tokenize(policy.tokenizer, texts, config)
        batch = {
            f"observation.images.{cam}": torch.from_numpy(
                shift(frames.images_at(cam, idx), args.shift_aug, rng)
            )
            for cam in CAMERAS
        }
        batch.update(
            {
                "observation.state": torch.from_numpy(state.astype(np.float32)),
                "action": torch.from_numpy(frames.action[act_idx]),
                "action_is_pad": torch.from_numpy(is_pad),
                "observation.language.tokens": tokens,
                "observation.language.attention_mask": mask,
            }
        )
        loss = flow_matching_loss(policy, batch)
        aux = torch.zeros(())
        if aux_head is not None:
            emb = kept["img"]
            b = len(idx)
            feats = torch.cat([emb[k * b : (k + 1) * b].reshape(b, -1) for k in range(len(CAMERAS))], 1)
            aux = torch.nn.functional.mse_loss(aux_head(feats), torch.from_numpy(labels[idx]))
        total = loss + args.aux * aux
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optimizer_grad_clip_norm)
        opt.step()
        value = float(loss.detach())
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        bar.set_postfix(loss=f"{ema:.4f}", aux=f"{float(aux.detach()):.3f}")
        with open(log_path, "a") as fh:
            fh.write(
                f"{step},{value:.6f},{float(aux.detach()):.6f},{lr_at(step):.3e},{time.time() - t0:.1f}\n"
            )
        keep = args.keep_every > 0 and (step + 1) % args.keep_every == 0  # not tied to --save-every
        if keep or (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            policy.eval()
            policy.save_pretrained(out)
            if keep:
                policy.save_pretrained(out / f"step_{step + 1:06d}")
            policy.train()
    (out / "recipe_args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1))
    print(f"trained {args.steps} steps in {time.time() - t0:.0f} s -> {out}")
    return 0


# -- weight averaging ----------------------------------------------------------------------------------------
def average(args: argparse.Namespace) -> int:
    """The mean of several checkpoints' weights (of one run: same architecture and normalisation), written
    as a checkpoint with the other files of the last one; it smooths the step-to-step changes of the closed
    loop."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    dirs = [Path(d) for d in args.checkpoints]
    weights = [load_file(str(d / "model.safetensors")) for d in dirs]
    for d, w in zip(dirs[1:], weights[1:]):
        if w.keys() != weights[0].keys() or any(w[k].shape != weights[0][k].shape for k in w):
            raise SystemExit(f"{d}: not the architecture of {dirs[0]}")
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(dirs[-1], tmp, ignore=shutil.ignore_patterns("step_*", "*.csv", "recipe_args.json"))
    mean = {
        k: (sum(w[k].to(torch.float64) for w in weights) / len(weights)).to(weights[0][k].dtype).contiguous()
        for k in weights[0]
    }
    save_file(mean, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tmp.rename(args.out)
    print(f"mean of {len(dirs)} checkpoints -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    k = sub.add_parser("tokenizer", help="the small offline BPE tokenizer (vlm/ of the checkpoint)")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--vocab-size", type=int, default=317, help="<= the VLM vocabulary minus 3 image tokens")
    d = sub.add_parser("demos", help="scripted-expert demonstrations in-process")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--seed0", type=int, default=1000)
    d.add_argument("--episodes", type=int, default=300)
    d.add_argument("--image-size", type=int, default=128)
    t = sub.add_parser("train", help="train a small SmolVLA from random weights or a checkpoint")
    t.add_argument("--data", required=True, help="demos directories, comma separated")
    t.add_argument("--out", type=Path, required=True)
    group = t.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", type=Path, help="init file (policy + vlm + tokenizer), random weights")
    group.add_argument("--init", type=Path, help="checkpoint to continue from")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--aux", type=float, default=0.5, help="weight of the object-pose read-out loss (0 = off)")
    t.add_argument("--state-noise", type=float, default=2.0, help="state noise std [lerobot units]")
    t.add_argument("--task-variants", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--skip-tail", type=int, default=60)
    t.add_argument("--shift-aug", type=int, default=0, help="random image shift of up to N pixels (0 = off)")
    t.add_argument("--save-every", type=int, default=250)
    t.add_argument(
        "--keep-every", type=int, default=0, help="also keep OUT/step_NNNNNN every N steps (0 = no)"
    )
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    a = sub.add_parser(
        "average", help="the mean of several checkpoints' weights (e.g. a run's last kept steps)"
    )
    a.add_argument("checkpoints", nargs="+", help="checkpoint directories of one run")
    a.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.command == "average":
        if args.out.exists():
            ap.error(f"{args.out} exists")
        return average(args)
    if args.command == "tokenizer":
        return tokenizer(args)
    if args.command == "demos":
        if args.episodes < 1 or not 16 <= args.image_size <= 1024:
            ap.error("--episodes >= 1 and --image-size in 16..1024")
        return demos(args)
    if args.steps < 1 or args.batch_size < 1 or args.lr <= 0:
        ap.error("--steps, --batch-size must be >= 1 and --lr > 0")
    return train(args)


if __name__ == "__main__":
    raise SystemExit(main())
