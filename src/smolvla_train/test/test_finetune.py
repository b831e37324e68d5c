"""smolvla_train finetune: the v3 reader against lerobot's own loader, stats binding, a short training run
whose checkpoint the policy loader takes as is, resume = the same losses.

The fixture ``fixtures/reach_tiny`` (4 episodes x 16 frames, two AV1 cameras 32x48) was written by lerobot
0.6.1 itself and ``reach_tiny_lerobot_samples.npz`` holds what lerobot's ``LeRobotDataset`` returns for every
frame with an action chunk of 10 (``tools/lerobot_reference/make_dataset.py --record-samples 10``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (importlib mode)
from train_testing import DATASET, FIXTURES, run_tiny_finetune  # noqa: E402

from smolvla_train.dataset import DatasetMeta, LeRobotV3Dataset, split_episodes
from smolvla_train.policy_init import FeatureMismatchError, bind_stats, parse_camera_map
from smolvla_train.trainer import StreamSampler, cosine_decay_with_warmup

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lerobot_samples() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reach_tiny_lerobot_samples.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_reader_matches_lerobot_loader(lerobot_samples: dict[str, np.ndarray]) -> None:
    ds = LeRobotV3Dataset(DATASET, chunk_size=10)
    assert len(ds) == len(lerobot_samples["index"]) == 64
    for i in range(len(ds)):
        s = ds[i]
        assert s["index"] == lerobot_samples["index"][i]
        assert s["task"] == str(lerobot_samples["task"][i])
        np.testing.assert_array_equal(
            s["observation.state"].numpy(), lerobot_samples["observation__state"][i]
        )
        np.testing.assert_array_equal(s["action"].numpy(), lerobot_samples["action"][i])
        np.testing.assert_array_equal(s["action_is_pad"].numpy(), lerobot_samples["action_is_pad"][i])
        for cam in ("top", "wrist"):
            ours = s[f"observation.images.{cam}"].numpy()
            ref = lerobot_samples[f"observation__images__{cam}"][i]
            # lerobot decodes with PyAV too (float/255, rounded back here): the same decoded frame
            assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1, (i, cam)


def test_padding_at_episode_end() -> None:
    ds = LeRobotV3Dataset(DATASET, chunk_size=10)
    s = ds[13]  # episode 0 (16 frames), frame 13: rows 13, 14, 15 real, 7 padded
    assert s["frame_index"] == 13
    assert s["action_is_pad"].tolist() == [False] * 3 + [True] * 7
    assert torch.equal(s["action"][3:], s["action"][2:3].expand(7, 6))  # clamped to the last row


def test_split_and_camera_map() -> None:
    assert split_episodes([0, 1, 2, 3], None, 0.1) == ([0, 1, 2], [3])
    assert split_episodes([0, 1, 2, 3], [0, 2]) == ([1, 3], [0, 2])
    with pytest.raises(ValueError, match="not in the dataset"):
        split_episodes([0, 1], [5])
    assert parse_camera_map("top=camera1, wrist=") == {
        "observation.images.top": "observation.images.camera1",
        "observation.images.wrist": None,
    }
    with pytest.raises(ValueError):
        parse_camera_map("top")


def test_stats_bound_to_checkpoint_names_and_mismatch_is_an_error(tmp_path: Path) -> None:
    """lerobot issue #1763: normalisation must never silently become the identity."""
    from smolvla_policy.model.testing import tiny_config

    meta = DatasetMeta.load(DATASET)
    config = tiny_config()
    norm = bind_stats(config, meta)
    x = torch.tensor(meta.stats["action"]["mean"], dtype=torch.float32)[None]
    assert torch.allclose(norm.normalize("action", x), torch.zeros(1, 6), atol=1e-5)
    broken = shutil.copytree(DATASET, tmp_path / "ds")
    stats = json.loads((broken / "meta/stats.json").read_text())
    del stats["observation.state"]
    (broken / "meta/stats.json").write_text(json.dumps(stats))
    with pytest.raises(FeatureMismatchError, match="observation.state"):
        bind_stats(config, DatasetMeta.load(broken))


def test_lr_schedule_is_lerobots() -> None:
    """lerobot's CosineDecayWithWarmup (hand-computed values; auto-scaled for short runs)."""
    lam, warm, decay = cosine_decay_with_warmup(1e-4, 2.5e-6, 1000, 30000, 30000)
    assert (warm, decay) == (1000, 30000)
    assert lam(0) == pytest.approx(1 / 1001)
    assert lam(500) == pytest.approx((1 / 1001 - 1) * 0.5 + 1)
    # lerobot's cosine phase counts from step 0, not from the end of the warmup
    assert lam(1000) == pytest.approx(0.975 * 0.5 * (1 + np.cos(np.pi * 1000 / 30000)) + 0.025)
    assert lam(30000) == pytest.approx(0.025)
    _, warm, decay = cosine_decay_with_warmup(1e-4, 2.5e-6, 1000, 30000, 3000)
    assert (warm, decay) == (100, 3000)


def test_sampler_streams_are_disjoint_and_resumable() -> None:
    a = StreamSampler(10, 3, seed=1, rank=0, world=2)
    b = StreamSampler(10, 3, seed=1, rank=1, world=2)
    ia, ib = iter(a), iter(b)
    first = [next(ia) for _ in range(3)] + [next(ib) for _ in range(3)]
    first += [next(ia) for _ in range(2)]  # positions 6, 7 of epoch 0 are rank 0's next batch
    assert len(set(first[:6])) == 6
    resumed = iter(StreamSampler(10, 3, seed=1, rank=0, world=2, start=1))
    it = iter(StreamSampler(10, 3, seed=1, rank=0, world=2))
    _ = [next(it) for _ in range(3)]
    assert [next(resumed) for _ in range(9)] == [next(it) for _ in range(9)]


def _finetune(tmp_path: Path, out: str, *extra: str) -> int:
    return run_tiny_finetune(tmp_path, out, *extra)


def _losses(path: Path) -> dict[int, tuple[str, str]]:
    with open(path / "train_log.csv", newline="") as fh:
        return {int(r["step"]): (r["loss"], r["val_loss"]) for r in csv.DictReader(fh)}


def test_finetune_writes_loadable_checkpoints_and_resume_gives_the_same_losses(tmp_path: Path) -> None:
    from smolvla_policy.model import SmolVLAPolicy

    assert _finetune(tmp_path, "full", "--steps", "6", "--save-every", "3") == 0
    root = tmp_path / "full" / "checkpoints"
    assert os.readlink(root / "last") == "000006"
    assert (root / "best").is_symlink()
    assert (tmp_path / "full" / "loss_curve.png").stat().st_size > 1000
    pretrained = root / "last" / "pretrained_model"
    for name in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
                 "policy_preprocessor_step_5_normalizer_processor.safetensors",
                 "policy_postprocessor_step_0_unnormalizer_processor.safetensors", "train_config.json",
                 "vlm/config.json", "vlm/tokenizer.json"):  # fmt: skip
        assert (pretrained / name).exists(), name
    for f in pretrained.rglob("*.json"):  # self-contained: no path of this machine
        assert str(tmp_path) not in f.read_text() and str(FIXTURES) not in f.read_text(), f
    moved = shutil.copytree(pretrained, tmp_path / "moved", symlinks=False)
    policy = SmolVLAPolicy.from_pretrained(moved)
    assert policy.camera_keys == ["observation.images.top", "observation.images.wrist"]
    img = np.zeros((32, 48, 3), np.uint8)
    chunk = policy.predict_chunk(
        {"observation.images.top": img, "observation.images.wrist": img}, np.zeros(6), "reach", seed=0
    )
    assert chunk.shape == (10, 6) and np.all(np.isfinite(chunk))

    # an interrupted run (stopped after step 3) resumed to step 6 logs the same losses
    assert _finetune(tmp_path, "part", "--steps", "6", "--save-every", "3", "--keep-all") == 0
    part = tmp_path / "part"
    shutil.rmtree(part / "checkpoints" / "000006")
    (part / "checkpoints" / "last").unlink()
    (part / "checkpoints" / "last").symlink_to("000003")
    assert _finetune(tmp_path, "part", "--steps", "6", "--save-every", "3", "--resume") == 0
    assert _losses(part) == _losses(tmp_path / "full")
    assert sorted(_losses(part)) == list(range(7))  # step 0: the validation loss before training


def test_data_loader_workers_give_the_losses_of_the_main_process(tmp_path: Path) -> None:
    """``--num-workers 2`` (the CLI in a process of its own, as users run it: no DDS or decoder threads of a
    test process are forked) trains on the same batches as loading in the main process: the sampler and the
    noise live in the main process, the workers only decode. Losses equal to the printed digits."""
    import subprocess

    assert _finetune(tmp_path, "main", "--steps", "3") == 0
    init = tmp_path / "tiny_init.json"  # written by run_tiny_finetune
    args = ["--dataset", str(DATASET), "--init", str(init), "--out", str(tmp_path / "workers"), "--train-all",
            "--batch-size", "4", "--num-workers", "2", "--log-every", "1", "--val-samples", "8",
            "--no-progress", "--seed", "3", "--steps", "3"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "smolvla_train.finetune", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _losses(tmp_path / "workers") == _losses(tmp_path / "main")
    assert sorted(_losses(tmp_path / "workers")) == [0, 1, 2, 3]


def test_finetune_refuses_existing_output_and_wrong_camera_map(tmp_path: Path) -> None:
    assert _finetune(tmp_path, "a", "--steps", "1") == 0
    assert _finetune(tmp_path, "a", "--steps", "1") == 2  # checkpoints exist, no --resume
    assert _finetune(tmp_path, "b", "--steps", "1", "--camera-map", "front=camera1") == 2


def test_finetune_from_a_checkpoint_trains_only_the_expert_by_default(tmp_path: Path) -> None:
    """lerobot's recipe: --init CKPT (strict load) -> the VLM stays bit-identical, the expert moves."""
    from safetensors.torch import load_file

    assert _finetune(tmp_path, "base", "--steps", "1") == 0
    base = tmp_path / "base" / "checkpoints" / "last" / "pretrained_model"
    from smolvla_train.finetune import main

    # no DataLoader worker: a worker forked from this test process (its DDS, torch and decoder threads) once
    # died of a segmentation fault in CI (session 5, ci17); the CLI runs in a process of its own
    args = ["--dataset", str(DATASET), "--init", str(base), "--out", str(tmp_path / "ft"), "--steps", "2",
            "--batch-size", "2", "--grad-accum", "2", "--num-workers", "0", "--no-progress",
            "--lr", "1e-3"]  # fmt: skip
    assert main(args) == 0
    before = load_file(str(base / "model.safetensors"))
    after = load_file(
        str(tmp_path / "ft" / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    )
    assert before.keys() == after.keys()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(".vlm." not in k for k in moved)
    assert any(".lm_expert." in k for k in moved) and "model.action_out_proj.weight" in moved
    cfg = json.loads((tmp_path / "ft" / "train_config.json").read_text())
    assert cfg["policy"]["trainable"] == "expert" and cfg["effective_batch_size"] == 4


def test_camera_map_to_full_keys_and_empty_cameras(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Full checkpoint keys in --camera-map (smolvla_base's cameras: observation.image, image2, image3);
    a checkpoint camera the dataset cannot serve is refused with a message naming it; --empty-cameras adds
    lerobot's empty camera slots (fed as -1 images)."""
    from smolvla_policy.model.testing import make_tiny_checkpoint
    from smolvla_train.finetune import main

    keys = ("observation.image", "observation.image2", "observation.image3")
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", camera_keys=keys, chunk_size=10)
    common = ["--dataset", str(DATASET), "--steps", "1", "--batch-size", "2", "--num-workers", "0",
              "--no-progress"]  # fmt: skip
    cam_map = ["--camera-map", "top=observation.image,wrist=observation.image2"]
    assert main([*common, "--init", str(ckpt), *cam_map, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "['observation.image3'] have no dataset camera" in err, err
    assert run_tiny_finetune(tmp_path, "b", "--steps", "1", "--empty-cameras", "1") == 0
    conf = json.loads((tmp_path / "b/checkpoints/last/pretrained_model/config.json").read_text())
    assert conf["empty_cameras"] == 1
