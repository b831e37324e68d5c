"""A checkpoint written by ``smolvla_train finetune`` loads in lerobot 0.6.1 and predicts the same chunk.

lerobot runs in its reference venv (``/tmp/lerobot_ref_venv``, see tools/lerobot_reference/README.md; never a
dependency): ``tools/lerobot_reference/lerobot_predict.py`` loads the checkpoint with
``SmolVLAPolicy.from_pretrained`` + ``make_pre_post_processors`` and predicts a chunk with a given noise. The
checkpoint is first copied to another directory (self-contained: nothing points back to where it was trained).
Skipped without the reference venv; the result of a run is committed in
``fixtures/lerobot_load_record.json`` (rewritten when SMOLVLA_UPDATE_RECORDS=1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
from train_testing import FIXTURES, run_tiny_finetune  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
LEROBOT_PYTHON = Path(os.environ.get("SMOLVLA_LEROBOT_PYTHON", "/tmp/lerobot_ref_venv/bin/python"))
RECORD = FIXTURES / "lerobot_load_record.json"
TOL_OF_STD = 1e-4


def test_committed_record_is_within_tolerance() -> None:
    record = json.loads(RECORD.read_text())
    assert record["lerobot"] == "0.6.1"
    assert record["max_abs_diff_over_action_std"] <= TOL_OF_STD
    assert record["lerobot_missing_keys"] == [] and record["lerobot_unexpected_keys"] == []


@pytest.mark.skipif(not LEROBOT_PYTHON.exists(), reason="lerobot reference venv absent")
def test_lerobot_loads_finetune_checkpoint_and_predicts_the_same_chunk(tmp_path: Path) -> None:
    from smolvla_policy.model import SmolVLAPolicy

    assert run_tiny_finetune(tmp_path, "run", "--steps", "3", "--save-every", "3") == 0
    ckpt = shutil.copytree(tmp_path / "run" / "checkpoints" / "last" / "pretrained_model", tmp_path / "moved")
    shutil.rmtree(tmp_path / "run")  # nothing may point back to the training directory
    rng = np.random.default_rng(5)
    inputs = {
        "camera_keys": np.array(["observation.images.top", "observation.images.wrist"]),
        "image_0": rng.integers(0, 256, (32, 48, 3), dtype=np.uint8),
        "image_1": rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
        "state": np.array([10.0, -20.0, 30.0, 5.0, -3.0, 60.0], dtype=np.float32),
        "task": np.array("reach the red disc"),
        "noise": rng.standard_normal((1, 10, 32)).astype(np.float32),
    }
    np.savez(tmp_path / "in.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [str(LEROBOT_PYTHON), str(REPO / "tools/lerobot_reference/lerobot_predict.py"), str(ckpt),
         str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "out.npz", allow_pickle=False) as f:
        ref = {k: f[k] for k in f.files}
    policy = SmolVLAPolicy.from_pretrained(ckpt)
    ours = policy.predict_chunk(
        {"observation.images.top": inputs["image_0"], "observation.images.wrist": inputs["image_1"]},
        inputs["state"],
        str(inputs["task"]),
        noise=inputs["noise"],
    )
    std = policy.normalizer.stats["action"]["std"].numpy()
    diff = np.abs(ours - ref["chunk"])
    rel = float((diff / std).max())
    print(f"max |ours - lerobot| = {diff.max():.3g} = {rel:.3g} of the action std")
    assert ref["missing_keys"].size == 0 and ref["unexpected_keys"].size == 0
    assert rel <= TOL_OF_STD
    if os.environ.get("SMOLVLA_UPDATE_RECORDS") == "1":
        versions = subprocess.run(
            [str(LEROBOT_PYTHON), "-c",
             "import lerobot, torch; print(lerobot.__version__, torch.__version__)"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        RECORD.write_text(
            json.dumps(
                {
                    "what": "tiny finetune checkpoint (3 steps on fixtures/reach_tiny), copied elsewhere, "
                    "loaded by lerobot SmolVLAPolicy.from_pretrained + make_pre_post_processors; same "
                    "inputs and noise",
                    "lerobot": versions[0],
                    "torch": versions[1],
                    "max_abs_diff": float(diff.max()),
                    "max_abs_diff_over_action_std": rel,
                    "tolerance_over_action_std": TOL_OF_STD,
                    "lerobot_missing_keys": ref["missing_keys"].tolist(),
                    "lerobot_unexpected_keys": ref["unexpected_keys"].tolist(),
                },
                indent=2,
            )
            + "\n"
        )
