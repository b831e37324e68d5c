"""Compatibility with lerobot 0.6.1 and round trips.

* A dataset written by lerobot 0.6.1 itself (``fixtures/lerobot_v30_tiny``, made by
  ``tools/lerobot_reference/make_dataset_fixture.py``; the exact values and source images are in
  ``lerobot_v30_tiny_expected.npz``) is read exactly, converted to bags and back.
* A dataset made here from simulator bags (two runs: create + append) -> bags -> dataset keeps every frame
  and value (images within codec loss).
* A dataset made here loads in lerobot 0.6.1 (``LeRobotDataset(repo_id, root=...)``, items with decoded
  video, a delta_timestamps action chunk): run in the reference venv when it exists (skipped otherwise), and
  the committed record of such a run (``fixtures/lerobot_dataset_load_record.json``) is checked against
  what the converter produces now. Regenerate the record with ``SMOLVLA_WRITE_LEROBOT_RECORD=1``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the fixture helper (importlib mode)
from sim_bag_fixture import write_sim_bag  # noqa: E402

from smolvla_train import lerobot_format as lf  # noqa: E402
from smolvla_train.bag2lerobot import ConvertOptions, convert  # noqa: E402
from smolvla_train.bagio import open_bag  # noqa: E402
from smolvla_train.lerobot2bag import export  # noqa: E402
from smolvla_train.lerobot_dataset import DatasetReader  # noqa: E402

FIXTURE = HERE / "fixtures" / "lerobot_v30_tiny"
EXPECTED = HERE / "fixtures" / "lerobot_v30_tiny_expected.npz"
RECORD = HERE / "fixtures" / "lerobot_dataset_load_record.json"
REPO = HERE.parents[2]
REF_PYTHON = Path(os.environ.get("SMOLVLA_LEROBOT_PYTHON", "/tmp/lerobot_ref_venv/bin/python"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def all_frames(reader: DatasetReader, cam: str) -> list[np.ndarray]:
    out = []
    for e in reader.episode_indices():
        out.extend(reader.frames(reader.episode(e), lf.image_key(cam)))
    return out


def all_values(reader: DatasetReader, key: str) -> np.ndarray:
    return np.concatenate([getattr(reader.episode(e), key) for e in reader.episode_indices()])


def test_lerobot_written_dataset_is_read_exactly() -> None:
    exp = np.load(EXPECTED)
    r = DatasetReader(FIXTURE)
    assert [len(r.episode(e).state) for e in r.episode_indices()] == exp["episode_lengths"].tolist()
    np.testing.assert_array_equal(all_values(r, "state"), exp["state"])
    np.testing.assert_array_equal(all_values(r, "action"), exp["action"])
    assert [r.episode(e).task for e in r.episode_indices()] == ["pick the cube", "place the cube"]
    for cam in ("top", "wrist"):
        frames = all_frames(r, cam)
        src = exp[f"image_{cam}"]
        assert len(frames) == len(src)
        for k, img in enumerate(frames):
            scores = [psnr(img, s) for s in src]
            assert int(np.argmax(scores)) == k and scores[k] > 30, (cam, k, scores[k])


def test_lerobot_dataset_to_bags_and_back(tmp_path: Path) -> None:
    exp = np.load(EXPECTED)
    bags = export(FIXTURE, tmp_path / "bags", progress=False)
    assert [b.name for b in bags] == ["episode_000000", "episode_000001"]
    assert not list((tmp_path / "bags").glob("*.partial"))
    # the bag holds ROS units: degrees -> radians, gripper 0..100 -> the so101 gripper range
    with open_bag(bags[0]) as bag:
        _, _, raw = next(iter(bag.messages(["/joint_states"])))
        q = np.asarray(bag.deserialize("/joint_states", raw).position)
    lo, hi = -0.17453, 1.74533
    np.testing.assert_allclose(q[:5], np.radians(exp["state"][0, :5]), atol=1e-6)
    assert q[5] == pytest.approx(lo + exp["state"][0, 5] / 100 * (hi - lo), abs=1e-6)
    # and back (the bags carry the dataset's fps)
    report = convert([tmp_path / "bags"], tmp_path / "ds", ConvertOptions(progress=False))
    assert report["fps"] == 10 and report["total_frames"] == len(exp["state"])
    r = DatasetReader(tmp_path / "ds")
    assert [len(r.episode(e).state) for e in r.episode_indices()] == exp["episode_lengths"].tolist()
    np.testing.assert_allclose(all_values(r, "state"), exp["state"], atol=1e-4)
    np.testing.assert_allclose(all_values(r, "action"), exp["action"], atol=1e-4)
    assert [r.episode(e).task for e in r.episode_indices()] == ["pick the cube", "place the cube"]
    for cam in ("top", "wrist"):
        frames = all_frames(r, cam)
        src = exp[f"image_{cam}"]
        for k, img in enumerate(frames):
            scores = [psnr(img, s) for s in src]
            assert int(np.argmax(scores)) == k and scores[k] > 28, (cam, k, scores[k])


def _sim_dataset(root: Path) -> Path:
    """Two simulator bags -> one dataset (create, then append: two data files, two video files)."""
    write_sim_bag(root / "bag_a", seconds=2.0, camera_gap=(0.8, 1.1), marker=True)
    write_sim_bag(root / "bag_b", seconds=1.2, seed=5, task="put the cube back", marker=True)
    convert([root / "bag_a"], root / "ds", ConvertOptions(progress=False))
    convert([root / "bag_b"], root / "ds", ConvertOptions(progress=False, append=True))
    return root / "ds"


def test_dataset_to_bags_to_dataset_keeps_every_frame(tmp_path: Path) -> None:
    ds1 = _sim_dataset(tmp_path)
    export(ds1, tmp_path / "bags", progress=False)
    convert([tmp_path / "bags"], tmp_path / "ds2", ConvertOptions(progress=False))
    r1, r2 = DatasetReader(ds1), DatasetReader(tmp_path / "ds2")
    assert r1.episode_indices() == r2.episode_indices() == [0, 1]
    for e in r1.episode_indices():
        a, b = r1.episode(e), r2.episode(e)
        assert len(a.state) == len(b.state) and a.task == b.task
        np.testing.assert_allclose(b.state, a.state, atol=1e-4)
        np.testing.assert_allclose(b.action, a.action, atol=1e-4)
    info1 = json.loads((ds1 / lf.INFO_PATH).read_text())
    info2 = json.loads((tmp_path / "ds2" / lf.INFO_PATH).read_text())
    assert info2[lf.UNITS_KEY]["limits_rad"] == info1[lf.UNITS_KEY]["limits_rad"]
    for cam in ("top", "wrist"):
        f1, f2 = all_frames(r1, cam), all_frames(r2, cam)
        assert len(f1) == len(f2) == r1.info["total_frames"]
        worst = min(psnr(a, b) for a, b in zip(f1, f2))
        assert worst > 28, (cam, worst)  # one more AV1 generation


def _lerobot_check(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "PYTHONPATH")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        [
            str(REF_PYTHON),
            str(REPO / "tools/lerobot_reference/check_dataset_loads.py"),
            str(root),
            "--items",
            "8",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _compare_with_lerobot(result: dict, root: Path) -> None:
    r = DatasetReader(root)
    assert result["lerobot"] == "0.6.1"
    assert (
        result["num_frames"] == r.info["total_frames"] and result["num_episodes"] == r.info["total_episodes"]
    )
    assert result["camera_keys"] == ["observation.images.top", "observation.images.wrist"]
    assert result["delta_action_shape"] == [10, 6]
    state = all_values(r, "state")
    action = all_values(r, "action")
    frames = {cam: all_frames(r, cam) for cam in ("top", "wrist")}
    for item in result["items"]:
        i = item["index"]
        np.testing.assert_allclose(item["observation.state"], state[i], atol=1e-5)
        np.testing.assert_allclose(item["action"], action[i], atol=1e-5)
        for cam in ("top", "wrist"):
            mine = frames[cam][i].reshape(-1, 3).mean(axis=0) / 255.0
            np.testing.assert_allclose(item[f"observation.images.{cam}"]["mean_rgb"], mine, atol=2e-3)


@pytest.mark.skipif(not REF_PYTHON.exists(), reason="lerobot reference venv absent (tools/lerobot_reference)")
def test_dataset_made_here_loads_in_lerobot(tmp_path: Path) -> None:
    root = _sim_dataset(tmp_path)
    result = _lerobot_check(root)
    _compare_with_lerobot(result, root)
    if os.environ.get("SMOLVLA_WRITE_LEROBOT_RECORD") == "1":
        RECORD.write_text(json.dumps(result, indent=1) + "\n")


def test_committed_lerobot_load_record_matches_the_converter(tmp_path: Path) -> None:
    """The record of lerobot 0.6.1 loading a dataset made from the same (deterministic) simulator bags."""
    result = json.loads(RECORD.read_text())
    _compare_with_lerobot(result, _sim_dataset(tmp_path))


def test_training_loader_reads_a_converted_dataset(tmp_path: Path) -> None:
    """The project's training reader (smolvla_train.dataset, H13) returns our values, frames and chunks."""
    from smolvla_train.dataset import LeRobotV3Dataset

    root = _sim_dataset(tmp_path)
    r = DatasetReader(root)
    ds = LeRobotV3Dataset(root, chunk_size=10)
    assert len(ds) == r.info["total_frames"]
    state, action = all_values(r, "state"), all_values(r, "action")
    frames = {cam: all_frames(r, cam) for cam in ("top", "wrist")}
    ends = np.cumsum([len(r.episode(e).state) for e in r.episode_indices()])
    for i in (0, 5, int(ends[0]) - 1, int(ends[0]), len(ds) - 1):
        item = ds[i]
        np.testing.assert_array_equal(np.asarray(item["observation.state"]), state[i])
        end = int(ends[np.searchsorted(ends, i, side="right")])
        rows = np.minimum(np.arange(i, i + 10), end - 1)
        np.testing.assert_array_equal(np.asarray(item["action"]), action[rows])
        assert np.asarray(item["action_is_pad"]).tolist() == (np.arange(i, i + 10) >= end).tolist()
        for cam in ("top", "wrist"):
            np.testing.assert_array_equal(np.asarray(item[f"observation.images.{cam}"]), frames[cam][i])


@pytest.mark.skipif(not REF_PYTHON.exists(), reason="lerobot reference venv absent (tools/lerobot_reference)")
def test_lerobot_and_bag2lerobot_continue_each_others_dataset(tmp_path: Path) -> None:
    """ours -> lerobot resumes and appends (rewriting info.json without smolvla_units) -> we append again ->
    lerobot loads all three episodes and our reader agrees."""
    root = tmp_path / "ds"
    write_sim_bag(tmp_path / "a", seconds=1.0, seed=1)
    write_sim_bag(tmp_path / "b", seconds=1.0, seed=2, task="second")
    convert([tmp_path / "a"], root, ConvertOptions(progress=False))
    env = {k: v for k, v in os.environ.items() if k not in ("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "PYTHONPATH")}
    env["HF_HUB_OFFLINE"] = "1"
    script = REPO / "tools/lerobot_reference/append_with_lerobot.py"
    proc = subprocess.run(
        [str(REF_PYTHON), str(script), str(root), "--frames", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = DatasetReader(root)
    n0 = len(first.episode(0).state)
    assert json.loads(proc.stdout) == {
        "num_episodes": 2,
        "num_frames": n0 + 5,
        "last_task": "appended by lerobot",
    }
    convert([tmp_path / "b"], root, ConvertOptions(progress=False, append=True))
    result = _lerobot_check(root)
    r = DatasetReader(root)
    assert result["num_episodes"] == 3 and result["num_frames"] == r.info["total_frames"]
    assert [r.episode(e).task for e in r.episode_indices()][1:] == ["appended by lerobot", "second"]
    np.testing.assert_array_equal(r.episode(1).state[:, 0], np.arange(5))
    _compare_with_lerobot(result, root)
