"""Write a small LeRobot v3.0 dataset WITH lerobot 0.6.1 itself (runs in the REFERENCE venv only).

    /tmp/lerobot_ref_venv/bin/python tools/lerobot_reference/make_dataset.py OUT_DIR \
        [--episodes 12] [--frames 60] [--fps 30] [--height 96] [--width 128] [--seed 0] [--vcodec libsvtav1]

A reach task the network can learn: each episode has a goal pose; the joints move from a start pose to the
goal along a smooth ramp; ``action`` = the joint targets one frame ahead; the ``top`` camera shows a coloured
disc whose position encodes the goal (so the chunk depends on the image), the ``wrist`` camera a brightness
bar following the gripper. Features follow the project's contract C (``observation.state`` / ``action``
float32 [6] named after the SO-10x joints, ``observation.images.top`` / ``.wrist`` videos, lerobot units).

Used by smolvla_train's tests (a dataset lerobot itself wrote) until H12's converter writes real simulator
datasets; lerobot code is only imported here, never copied.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
TASKS = ["reach the red disc", "reach the red disc and close the gripper"]


def frames_for_episode(rng: np.random.Generator, n: int, h: int, w: int):
    goal = np.array([rng.uniform(-60, 60), rng.uniform(-40, 40), rng.uniform(-30, 60), rng.uniform(-40, 40),
                     rng.uniform(-90, 90), rng.uniform(0, 100)], dtype=np.float32)  # fmt: skip
    start = np.array([0.0, -20.0, 30.0, 0.0, 0.0, 50.0], dtype=np.float32) + rng.normal(0, 3, 6).astype(
        np.float32
    )
    s = np.clip(np.arange(n + 1) / (0.7 * n), 0, 1)
    ramp = s * s * (3 - 2 * s)
    states = start[None] + (goal - start)[None] * ramp[:, None].astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    cx = (goal[0] + 60) / 120 * (w - 1)
    cy = (goal[1] + 40) / 80 * (h - 1)
    top = np.zeros((h, w, 3), dtype=np.uint8)
    top[..., 1] = 40 + (yy * 80 // h).astype(np.uint8)  # static background gradient
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= (min(h, w) * 0.12) ** 2
    top[disc] = (230, 30, 30)
    out = []
    for k in range(n):
        wrist = np.zeros((h, w, 3), dtype=np.uint8)
        bar = int(np.clip(states[k, 5] / 100, 0, 1) * (w - 1))
        wrist[:, :bar] = (200, 200, 200)
        wrist[..., 2] = np.maximum(wrist[..., 2], 60)
        out.append((states[k], states[k + 1], top.copy(), wrist))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vcodec", default="libsvtav1", help="lerobot's default libsvtav1, or h264")
    ap.add_argument(
        "--record-samples",
        type=int,
        default=0,
        metavar="CHUNK",
        help="also reload the dataset with lerobot's LeRobotDataset (delta_timestamps action chunk of CHUNK "
        "steps) and write every sample to OUT/../<name>_lerobot_samples.npz",
    )
    args = ap.parse_args()

    from lerobot.configs.video import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if args.out.exists():
        shutil.rmtree(args.out)
    vec = {"dtype": "float32", "shape": (6,), "names": JOINTS}
    img = {"dtype": "video", "shape": (args.height, args.width, 3), "names": ["height", "width", "channels"]}
    features = {
        "observation.state": vec,
        "action": dict(vec),
        "observation.images.top": img,
        "observation.images.wrist": dict(img),
    }
    ds = LeRobotDataset.create(
        repo_id="local/reach_synthetic",
        fps=args.fps,
        features=features,
        root=args.out,
        robot_type="so101_follower",
        use_videos=True,
        rgb_encoder=RGBEncoderConfig(vcodec=args.vcodec),
    )
    rng = np.random.default_rng(args.seed)
    for ep in range(args.episodes):
        task = TASKS[ep % len(TASKS)]
        for state, action, top, wrist in frames_for_episode(rng, args.frames, args.height, args.width):
            ds.add_frame(
                {
                    "observation.state": state,
                    "action": action,
                    "observation.images.top": top,
                    "observation.images.wrist": wrist,
                    "task": task,
                }
            )
        ds.save_episode()
    ds.finalize()
    print(f"wrote {args.out}: {args.episodes} episodes x {args.frames} frames ({args.vcodec})")
    if args.record_samples:
        record_samples(args.out, args.fps, args.record_samples)


def record_samples(root: Path, fps: int, chunk: int) -> None:
    """What lerobot's own loader returns for every frame (the reference for smolvla_train's reader)."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(
        "local/reach_synthetic", root=root, delta_timestamps={"action": [k / fps for k in range(chunk)]}
    )
    keys = [
        "observation.state",
        "action",
        "action_is_pad",
        "observation.images.top",
        "observation.images.wrist",
    ]
    out: dict[str, list] = {k: [] for k in keys}
    out["task"], out["index"] = [], []
    for i in range(len(ds)):
        item = ds[i]
        for k in keys:
            v = item[k]
            if k.startswith("observation.images."):  # float CxHxW in [0, 1] -> uint8 HxWx3
                v = torch.round(v * 255).to(torch.uint8).permute(1, 2, 0)
            out[k].append(v.numpy())
        out["task"].append(item["task"])
        out["index"].append(int(item["index"]))
    arrays = {k.replace(".", "__"): np.stack(v) for k, v in out.items() if k != "task"}
    arrays["task"] = np.array(out["task"])
    path = root.parent / f"{root.name}_lerobot_samples.npz"
    np.savez_compressed(path, **arrays)
    print(f"wrote {path}: {len(ds)} samples, action chunk {chunk}")


if __name__ == "__main__":
    main()
