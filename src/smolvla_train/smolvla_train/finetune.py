"""``smolvla_train finetune``: train SmolVLA on a LeRobot v3.0 dataset, writing lerobot-layout checkpoints.

Examples::

    # a small model from random weights (all parameters train), e.g. on simulator demonstrations
    smolvla_train finetune --dataset /data/sim_pick --init small --train-all --out /tmp/run1 --steps 2000 \\
        --batch-size 16 --save-every 250
    # finetune a checkpoint (lerobot's recipe: VLM frozen, expert + projections train)
    smolvla_train finetune --dataset /data/so101_pick --init lerobot/smolvla_base --out /tmp/run2 \\
        --camera-map top=camera1,wrist=camera2
    # continue an interrupted run from its last checkpoint, with the same options (same losses as an
    # uninterrupted run; --steps is part of the lr schedule)
    smolvla_train finetune --dataset /data/sim_pick --init small --train-all --out /tmp/run1 --steps 2000 \\
        --batch-size 16 --save-every 250 --resume
    # several processes (CPU or GPUs)
    accelerate launch --num_processes 2 -m smolvla_train.finetune --dataset ... --out ...

The policy server loads ``OUT/checkpoints/last/pretrained_model`` (or ``best``) as is:
``backend:=smolvla checkpoint:=OUT/checkpoints/last/pretrained_model``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from smolvla_train.trainer import TrainSettings


def _int_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def build_parser(prog: str = "smolvla_train finetune") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Train SmolVLA on a LeRobot v3.0 dataset (lerobot's recipe by default); writes resumable "
        "checkpoints in lerobot's layout that the policy server and lerobot load as is.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = ap.add_argument_group("data and model")
    g.add_argument("--dataset", required=True, help="LeRobot v3.0 dataset directory or hub dataset id")
    g.add_argument(
        "--init",
        required=True,
        help="checkpoint directory / hub id to finetune, or a config JSON (lerobot config.json or an init "
        "file, see smolvla_train/configs/) or preset name ('small') for random weights",
    )
    g.add_argument(
        "--out", required=True, help="output directory (checkpoints/, train_log.csv, loss_curve.png)"
    )
    g.add_argument(
        "--camera-map",
        default=None,
        help="dataset camera -> checkpoint camera, e.g. top=camera1,wrist=camera2 ('cam=' drops a camera)",
    )
    g.add_argument("--tokenizer", default=None, help="tokenizer directory (overrides the init's)")
    g.add_argument(
        "--empty-cameras",
        type=int,
        default=None,
        help="config empty_cameras: checkpoint cameras the dataset lacks are fed as empty images (lerobot's "
        "option, e.g. smolvla_base's 3 cameras from a 2-camera dataset)",
    )
    g.add_argument("--episodes", type=_int_list, default=None, help="use only these episodes, e.g. 0-9,12")
    g.add_argument(
        "--val-episodes", type=_int_list, default=None, help="held-out episodes (default: last 10%%)"
    )
    g.add_argument(
        "--val-fraction", type=float, default=0.1, help="held-out share when --val-episodes is unset"
    )
    g = ap.add_argument_group("recipe (defaults from the policy config = lerobot's SmolVLA presets)")
    g.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    g.add_argument("--batch-size", type=int, default=64, help="samples per process per micro-batch")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (config: optimizer_lr, 1e-4)")
    g.add_argument("--warmup-steps", type=int, default=None, help="config: scheduler_warmup_steps (1000)")
    g.add_argument("--decay-steps", type=int, default=None, help="config: scheduler_decay_steps (30000)")
    g.add_argument("--decay-lr", type=float, default=None, help="config: scheduler_decay_lr (2.5e-6)")
    g.add_argument("--weight-decay", type=float, default=None, help="config: optimizer_weight_decay (1e-10)")
    g.add_argument("--grad-clip", type=float, default=None, help="config: optimizer_grad_clip_norm (10)")
    g.add_argument("--train-vision", action="store_true", help="also train the vision encoder + connector")
    g.add_argument(
        "--train-all", action="store_true", help="train every parameter (e.g. from random weights)"
    )
    g.add_argument("--seed", type=int, default=1000)
    g = ap.add_argument_group("run")
    g.add_argument("--device", default="cpu", help="cpu or cuda[:N] (under accelerate launch: cpu or cuda)")
    g.add_argument(
        "--amp", default="auto", choices=["auto", "bf16", "no"], help="auto = bf16 autocast on cuda"
    )
    g.add_argument("--num-workers", type=int, default=2, help="data-loader worker processes")
    g.add_argument("--num-threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    g.add_argument("--frame-cache-mb", type=float, default=256.0, help="decoded-frame cache per process")
    g.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps (and at the end)")
    g.add_argument(
        "--val-every", type=int, default=None, help="validation every N steps (default: --save-every)"
    )
    g.add_argument("--val-samples", type=int, default=256, help="validation frames (evenly spread)")
    g.add_argument("--log-every", type=int, default=10, help="CSV row every N steps")
    g.add_argument("--keep-all", action="store_true", help="keep every checkpoint, not only last and best")
    g.add_argument("--resume", action="store_true", help="continue OUT/checkpoints/last (same settings)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(
        dataset=args.dataset,
        init=args.init,
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        decay_steps=args.decay_steps,
        decay_lr=args.decay_lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        num_workers=args.num_workers,
        train_vision=args.train_vision,
        train_all=args.train_all,
        camera_map=args.camera_map,
        tokenizer=args.tokenizer,
        empty_cameras=args.empty_cameras,
        episodes=args.episodes,
        val_episodes=args.val_episodes,
        val_fraction=args.val_fraction,
        val_samples=args.val_samples,
        val_every=args.val_every,
        save_every=args.save_every,
        log_every=args.log_every,
        keep_all=args.keep_all,
        resume=args.resume,
        frame_cache_mb=args.frame_cache_mb,
        num_threads=args.num_threads,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from smolvla_policy.model.checkpoint import CheckpointError
    from smolvla_train.dataset import VideoDecodeError
    from smolvla_train.trainer import Trainer

    try:
        settings = settings_from_args(args)
        result = Trainer(settings).run()
    except KeyboardInterrupt:
        print(
            "smolvla_train finetune: interrupted; --resume continues from the last checkpoint",
            file=sys.stderr,
        )
        return 130
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        KeyError,
        CheckpointError,
        VideoDecodeError,
        FloatingPointError,
    ) as exc:
        print(f"smolvla_train finetune: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
