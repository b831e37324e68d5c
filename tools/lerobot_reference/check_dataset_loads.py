"""Load a LeRobot v3.0 dataset with lerobot 0.6.1 itself and print a JSON summary (compatibility check).

Run with the reference venv (never a project dependency):

    env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u PYTHONPATH HF_HUB_OFFLINE=1 \
        /tmp/lerobot_ref_venv/bin/python tools/lerobot_reference/check_dataset_loads.py ROOT [--items N]

It builds ``LeRobotDataset("local/check", root=DATASET_ROOT)``, reads N items spread over all episodes (every
video frame decoded by lerobot's default backend, timestamps checked by lerobot's tolerance), and also a
``delta_timestamps`` action chunk like SmolVLA training uses. Output: one JSON object with the counts, the
item shapes, and per item the frame index, episode, state/action vectors and the mean RGB of each camera
image (so a caller can compare values with what it wrote).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root")
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument(
        "--video-backend", default=None, help="pyav or torchcodec (default: lerobot's choice)"
    )
    args = parser.parse_args()

    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/check", root=args.root, video_backend=args.video_backend)
    n = len(ds)
    picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(args.items, n))})
    items = []
    for i in picks:
        it = ds[i]
        rec = {
            "index": int(it["index"]),
            "episode_index": int(it["episode_index"]),
            "frame_index": int(it["frame_index"]),
            "timestamp": float(it["timestamp"]),
            "task": it["task"],
            "observation.state": [float(x) for x in it["observation.state"]],
            "action": [float(x) for x in it["action"]],
        }
        for key in ds.meta.video_keys:
            img = it[key]  # (C, H, W) float in [0, 1]
            rec[key] = {"shape": list(img.shape), "mean_rgb": [float(x) for x in img.mean(dim=(1, 2))]}
        items.append(rec)
    fps = ds.meta.fps
    chunk = LeRobotDataset(
        "local/check", root=args.root, delta_timestamps={"action": [k / fps for k in range(10)]}
    )
    last = chunk[len(chunk) - 1]
    out = {
        "lerobot": lerobot.__version__,
        "video_backend": ds._video_backend,
        "num_frames": ds.num_frames,
        "num_episodes": ds.num_episodes,
        "fps": fps,
        "features": sorted(ds.meta.features),
        "camera_keys": ds.meta.camera_keys,
        "stats_keys": sorted(ds.meta.stats or {}),
        "items": items,
        "delta_action_shape": list(last["action"].shape),
        "delta_action_is_pad_last": [bool(x) for x in last["action_is_pad"]],
    }
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
