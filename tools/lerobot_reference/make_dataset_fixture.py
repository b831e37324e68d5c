"""Write a tiny LeRobot v3.0 dataset with lerobot 0.6.1 itself (the converter's compatibility fixture).

Run with the reference venv (never a project dependency; see README.md in this directory):

    env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u PYTHONPATH HF_HUB_OFFLINE=1 \
        /tmp/lerobot_ref_venv/bin/python tools/lerobot_reference/make_dataset_fixture.py \
        --out src/smolvla_train/test/fixtures/lerobot_v30_tiny

Content (deterministic): 2 episodes (9 and 6 frames) at 10 fps, SO-10x features in lerobot units
(degrees / gripper 0..100), two cameras ``top`` (64x64) and ``wrist`` (96x64) with a frame-specific pattern
(flat colour blocks that survive AV1 compression), tasks "pick the cube" and "place the cube". lerobot's
default encoder (libsvtav1) is used. The script also writes ``expected.npz`` next to the dataset with the
exact state/action values and the source images, so tests can compare by content.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
FPS = 10
EPISODES = [(9, "pick the cube"), (6, "place the cube")]
CAMS = {"top": (64, 64), "wrist": (64, 96)}  # (H, W)


def pattern(h: int, w: int, ep: int, k: int, cam_index: int) -> np.ndarray:
    """4 flat quadrants whose colours depend on (episode, frame, camera)."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    base = np.array([40 + 20 * k, 200 - 15 * k, 60 + 50 * ep + 30 * cam_index]) % 256
    for qi, (ys, xs) in enumerate(
        [
            (slice(0, h // 2), slice(0, w // 2)),
            (slice(0, h // 2), slice(w // 2, w)),
            (slice(h // 2, h), slice(0, w // 2)),
            (slice(h // 2, h), slice(w // 2, w)),
        ]
    ):
        img[ys, xs] = (base + np.array([0, 60, 120]) * qi) % 256
    return img


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": JOINTS},
        "action": {"dtype": "float32", "shape": (6,), "names": JOINTS},
    }
    for cam, (h, w) in CAMS.items():
        features[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": (h, w, 3),
            "names": ["height", "width", "channels"],
        }
    ds = LeRobotDataset.create(
        repo_id="local/lerobot_v30_tiny",
        fps=FPS,
        features=features,
        root=out,
        robot_type="so101_follower",
        use_videos=True,
    )
    expected: dict[str, np.ndarray] = {}
    states, actions = [], []
    for ep, (n, task) in enumerate(EPISODES):
        for k in range(n):
            t = ep * 100 + k
            state = np.array(
                [10 * np.sin(0.3 * t), -45 + k, 30 - 2 * k, 5.5 * ep, -90 + 7 * k, 20 + 5 * k],
                dtype=np.float32,
            )
            action = state + np.float32(1.5)
            frame = {"observation.state": state, "action": action, "task": task}
            for ci, (cam, (h, w)) in enumerate(CAMS.items()):
                img = pattern(h, w, ep, k, ci)
                frame[f"observation.images.{cam}"] = img
                expected.setdefault(f"{cam}", []).append(img)  # type: ignore[attr-defined]
            ds.add_frame(frame)
            states.append(state)
            actions.append(action)
        ds.save_episode()
    ds.finalize()
    np.savez_compressed(
        out.parent / f"{out.name}_expected.npz",
        state=np.stack(states),
        action=np.stack(actions),
        episode_lengths=np.array([n for n, _ in EPISODES]),
        **{f"image_{cam}": np.stack(v) for cam, v in expected.items()},
    )
    (out.parent / f"{out.name}_versions.json").write_text(
        json.dumps(
            {"lerobot": lerobot.__version__, "generator": "tools/lerobot_reference/make_dataset_fixture.py"},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
