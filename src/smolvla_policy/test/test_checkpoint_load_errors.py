"""Issue 19, defect 6: a bad checkpoint is a clear error at load, not at the first prediction: an unknown or
misspelled config.json field (lerobot refuses it, naming it), missing or wrong-shaped normalisation stats,
``device="auto"`` outside the server, a missing local path that looks like a hub id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from smolvla_policy.model import CheckpointError
from smolvla_policy.model.checkpoint import load_policy
from smolvla_policy.model.processor import NORMALIZER_FILE, UNNORMALIZER_FILE
from smolvla_policy.model.testing import make_tiny_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_errors"))


def copy_of(tiny_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, out)
    return out


def edit_config(ckpt: Path, **fields: object) -> None:
    path = ckpt / "config.json"
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def test_misspelled_config_field_is_refused_at_load(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = copy_of(tiny_dir, tmp_path)
    edit_config(ckpt, chunk_sise=10)
    with pytest.raises(
        CheckpointError, match=r"unknown field\(s\) 'chunk_sise' \(did you mean 'chunk_size'\?\)"
    ):
        load_policy(ckpt)


def test_lerobot_fields_this_config_does_not_model_are_accepted(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = copy_of(tiny_dir, tmp_path)
    edit_config(ckpt, use_peft=False, pretrained_path=None)  # lerobot 0.6.1 SmolVLAConfig fields
    assert load_policy(ckpt).config.extra == {"use_peft": False, "pretrained_path": None}


def test_missing_normalisation_stats_fail_at_load(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = copy_of(tiny_dir, tmp_path)
    (ckpt / NORMALIZER_FILE).unlink()
    (ckpt / UNNORMALIZER_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"'observation.state.mean' missing"):
        load_policy(ckpt)


def test_wrong_shaped_normalisation_stats_fail_at_load(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = copy_of(tiny_dir, tmp_path)
    for name in (NORMALIZER_FILE, UNNORMALIZER_FILE):
        stats = load_file(str(ckpt / name))
        if "action.std" in stats:
            stats["action.std"] = stats["action.std"][:5].contiguous()
            save_file(stats, str(ckpt / name))
    with pytest.raises(CheckpointError, match=r"'action.std' has shape \[5\], the feature \[6\]"):
        load_policy(ckpt)


def test_non_finite_normalisation_stats_fail_at_load(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = copy_of(tiny_dir, tmp_path)
    for name in (NORMALIZER_FILE, UNNORMALIZER_FILE):
        stats = load_file(str(ckpt / name))
        if "observation.state.mean" in stats:
            stats["observation.state.mean"][0] = float("nan")
            save_file(stats, str(ckpt / name))
    with pytest.raises(CheckpointError, match=r"'observation.state.mean' is not finite"):
        load_policy(ckpt)


def test_device_auto_outside_the_server(tiny_dir: Path) -> None:
    policy = load_policy(tiny_dir, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(policy.parameters()).device.type == expected
    with pytest.raises(ValueError, match="unknown device 'gpu': use cpu, cuda, cuda:N, mps or auto"):
        load_policy(tiny_dir, device="gpu")


def test_missing_local_path_with_one_slash_is_not_a_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # it must not even try the hub
    with pytest.raises(CheckpointError, match=r"'outputs/ckpt' does not exist \(its parent 'outputs'"):
        load_policy("outputs/ckpt")
    with pytest.raises(CheckpointError, match=r"'my ckpt/last' does not exist"):
        load_policy("my ckpt/last")  # no hub id has a space
