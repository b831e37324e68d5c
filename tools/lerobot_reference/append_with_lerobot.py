"""Append one episode to an existing LeRobot v3.0 dataset with lerobot 0.6.1 itself
(``LeRobotDataset.resume``, ``add_frame``, ``save_episode``, ``finalize``), as ``lerobot-record --resume``
does, then print JSON with the dataset's episode and frame counts as lerobot sees them. Used to check that
lerobot can continue a dataset written by ``smolvla_train bag2lerobot`` (and that bag2lerobot can continue
it afterwards).

    env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u PYTHONPATH HF_HUB_OFFLINE=1 \\
        /tmp/lerobot_ref_venv/bin/python tools/lerobot_reference/append_with_lerobot.py ROOT --frames 5

The frames: state k, action -k (all joints), black images of each camera's size, task "appended by lerobot".
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
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset.resume("local/append", root=args.root)
    feats = ds.meta.features
    dim = feats["observation.state"]["shape"][0]
    for k in range(args.frames):
        frame = {
            "observation.state": np.full(dim, k, np.float32),
            "action": np.full(dim, -k, np.float32),
            "task": "appended by lerobot",
        }
        for key in ds.meta.video_keys:
            h, w, c = feats[key]["shape"]
            frame[key] = np.zeros((h, w, c), np.uint8)
        ds.add_frame(frame)
    ds.save_episode()
    ds.finalize()
    after = LeRobotDataset("local/append", root=args.root)
    last = after[after.num_frames - 1]
    json.dump(
        {"num_episodes": after.num_episodes, "num_frames": after.num_frames, "last_task": last["task"]},
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
