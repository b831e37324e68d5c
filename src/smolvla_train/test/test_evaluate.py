"""smolvla_train evaluate: per-joint action MSE on held-out episodes, hand-checked on two frames."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
from train_testing import DATASET, run_tiny_finetune  # noqa: E402


def test_evaluate_mse_per_joint_matches_a_hand_computation(tmp_path: Path) -> None:
    from smolvla_policy.model import SmolVLAPolicy
    from smolvla_train.dataset import LeRobotV3Dataset
    from smolvla_train.evaluate import main

    assert run_tiny_finetune(tmp_path, "run", "--steps", "2", "--save-every", "2") == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last" / "pretrained_model"
    out = tmp_path / "eval.json"
    # episode 3 (frames 0 and 13 with stride 13) is the held-out episode recorded in train_config.json
    assert main(["--checkpoint", str(ckpt), "--dataset", str(DATASET), "--stride", "13", "--seed", "4",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["episodes"] == [3] and result["episodes_from"] == "train_config val_episodes"
    assert result["frames"] == 2

    policy = SmolVLAPolicy.from_pretrained(ckpt)
    ds = LeRobotV3Dataset(DATASET, policy.chunk_size, [3])
    sq, n = np.zeros(6), 0
    for k, row in enumerate((0, 13)):
        s = ds[row]
        imgs = {key: s[key].numpy() for key in ("observation.images.top", "observation.images.wrist")}
        pred = policy.predict_chunk(imgs, s["observation.state"].numpy(), s["task"], seed=4 + k)
        valid = ~s["action_is_pad"].numpy()
        sq += ((pred - s["action"].numpy()) ** 2)[valid].sum(axis=0)
        n += int(valid.sum())
    assert n == 10 + 3 == result["valid_steps"]  # frame 13 of 16: 3 real steps, 7 padded
    np.testing.assert_allclose(list(result["mse_per_joint"].values()), sq / n, rtol=1e-5)
