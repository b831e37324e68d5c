"""``smolvla_train evaluate``: offline evaluation of a checkpoint on held-out episodes of a v3 dataset.

For every evaluated frame the policy predicts a chunk from the frame's cameras, state and task (fixed noise
per frame, so results are reproducible) and is compared with the dataset's action chunk at that frame
(padded steps past the episode end excluded). Reported in the DATASET's units (degrees / gripper 0..100):
mean squared error per joint over all valid steps, the same for the first action of each chunk, and the
RMSE. Episodes: ``--episodes``, else the held-out ``val_episodes`` recorded in the checkpoint's
``train_config.json``, else all.

    smolvla_train evaluate --checkpoint RUN/checkpoints/best/pretrained_model --dataset DATASET_DIR \\
        [--episodes 14,15] [--stride 10] [--max-frames 200] [--camera-map top=camera1] [--out eval.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from smolvla_train.dataset import DatasetMeta, LeRobotV3Dataset, resolve_dataset_root
from smolvla_train.lerobot_format import ACTION
from smolvla_train.policy_init import check_features, mapped_cameras, parse_camera_map


def _episodes_from_checkpoint(checkpoint: Path) -> list[int] | None:
    cfg = checkpoint / "train_config.json"
    if not cfg.exists():
        return None
    data = json.loads(cfg.read_text())
    eps = (data.get("dataset") or {}).get("val_episodes")
    return [int(e) for e in eps] if eps else None


def evaluate(
    checkpoint: str,
    dataset: str,
    episodes: list[int] | None = None,
    camera_map: str | None = None,
    stride: int = 10,
    max_frames: int = 200,
    num_steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    from smolvla_policy.model import SmolVLAPolicy

    if stride < 1 or max_frames < 1:
        raise ValueError("--stride and --max-frames must be >= 1")
    policy = SmolVLAPolicy.from_pretrained(checkpoint, device=device)
    meta = DatasetMeta.load(resolve_dataset_root(dataset))
    cameras = mapped_cameras(meta, parse_camera_map(camera_map))
    check_features(policy.config, meta, cameras)
    ckpt_dir = Path(checkpoint)
    eps = episodes or (_episodes_from_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None)
    eps = sorted(eps) if eps else sorted(meta.episodes)
    source = (
        "--episodes" if episodes else ("train_config val_episodes" if eps != sorted(meta.episodes) else "all")
    )
    ds = LeRobotV3Dataset(
        meta, policy.chunk_size, eps, camera_map={k: cameras.get(k) for k in meta.camera_keys}
    )
    rows = np.arange(0, len(ds), stride)[:max_frames]
    names = meta.names(ACTION) or [f"dim{i}" for i in range(meta.shape(ACTION)[0])]
    sq_sum = np.zeros(len(names))
    first_sq = np.zeros(len(names))
    n_valid = 0
    for k, row in enumerate(tqdm(rows, desc="evaluate", unit="frame", disable=not progress)):
        s = ds[int(row)]
        images = {out: s[out].numpy() for out in cameras.values()}
        pred = policy.predict_chunk(images, s["observation.state"].numpy(), s["task"], seed=seed + k,
                                    num_steps=num_steps)  # fmt: skip
        truth = s[ACTION].numpy()
        valid = ~s["action_is_pad"].numpy()
        err = (pred - truth) ** 2
        sq_sum += err[valid].sum(axis=0)
        n_valid += int(valid.sum())
        first_sq += err[0]
    mse = sq_sum / max(n_valid, 1)
    first = first_sq / max(len(rows), 1)
    return {
        "checkpoint": str(checkpoint),
        "episodes": eps,
        "episodes_from": source,
        "frames": len(rows),
        "valid_steps": n_valid,
        "units": "dataset units (lerobot: degrees, gripper 0..100)",
        "mse_per_joint": dict(zip(names, mse.round(6).tolist())),
        "mse_first_action_per_joint": dict(zip(names, first.round(6).tolist())),
        "rmse_per_joint": dict(zip(names, np.sqrt(mse).round(6).tolist())),
        "mse_mean": float(mse.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="smolvla_train evaluate",
        description="Action MSE per joint of a checkpoint on held-out episodes of a LeRobot v3 dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--checkpoint", required=True, help="checkpoint directory (pretrained_model) or hub id")
    ap.add_argument("--dataset", required=True, help="LeRobot v3.0 dataset directory or hub dataset id")
    ap.add_argument(
        "--episodes",
        default=None,
        help="episodes, e.g. 14,15 or 10-15 (default: the checkpoint's held-out episodes, else all)",
    )
    ap.add_argument(
        "--camera-map", default=None, help="dataset camera -> checkpoint camera, e.g. top=camera1"
    )
    ap.add_argument("--stride", type=int, default=10, help="evaluate every N-th frame")
    ap.add_argument("--max-frames", type=int, default=200, help="at most this many frames")
    ap.add_argument("--num-steps", type=int, default=None, help="denoising steps (default: the config's)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed of the first frame (+1 per frame)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    from smolvla_train.finetune import _int_list

    try:
        result = evaluate(
            args.checkpoint,
            args.dataset,
            _int_list(args.episodes) if args.episodes else None,
            args.camera_map,
            args.stride,
            args.max_frames,
            args.num_steps,
            args.seed,
            args.device,
            not args.no_progress,
        )
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        print(f"smolvla_train evaluate: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
