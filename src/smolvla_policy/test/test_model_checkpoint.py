"""Tiny checkpoints: writing, strict loading, save/load round trip, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from smolvla_policy.model import CheckpointError, SmolVLAConfig, SmolVLAPolicy
from smolvla_policy.model.testing import make_tiny_checkpoint

torch.set_num_threads(1)

TASK = "pick up the red cube"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def policy(tiny_dir: Path) -> SmolVLAPolicy:
    return SmolVLAPolicy.from_pretrained(tiny_dir)


def _obs(policy: SmolVLAPolicy, seed: int = 1) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    images = {
        "observation.images.top": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
    }
    return images, rng.normal(0, 20, policy.state_dim).astype(np.float32)


def test_tiny_checkpoint_layout(tiny_dir: Path) -> None:
    names = {p.name for p in tiny_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "policy_preprocessor.json",
        "policy_postprocessor.json",
        "policy_preprocessor_step_5_normalizer_processor.safetensors",
        "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
        "vlm",
    } <= names
    assert (tiny_dir / "vlm" / "tokenizer.json").exists()
    assert (tiny_dir / "vlm" / "config.json").exists()
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert cfg["type"] == "smolvla"
    stats = load_file(str(tiny_dir / "policy_preprocessor_step_5_normalizer_processor.safetensors"))
    assert set(stats) == {"observation.state.mean", "observation.state.std", "action.mean", "action.std"}
    weights = load_file(str(tiny_dir / "model.safetensors"))
    assert all(k.startswith("model.") for k in weights)
    assert "model.vlm_with_expert.vlm.model.connector.modality_projection.proj.weight" in weights


def test_load_tiny_checkpoint(policy: SmolVLAPolicy) -> None:
    assert policy.camera_keys == ["observation.images.top", "observation.images.wrist"]
    assert (policy.state_dim, policy.action_dim, policy.chunk_size, policy.num_steps) == (6, 6, 50, 10)
    images, state = _obs(policy)
    chunk = policy.predict_chunk(images, state, TASK, seed=0)
    assert chunk.shape == (50, 6) and chunk.dtype == np.float32
    assert np.all(np.isfinite(chunk))
    assert policy.timings.vision_ms > 0 and policy.timings.denoise_ms > 0


def test_same_seed_same_chunk(policy: SmolVLAPolicy) -> None:
    images, state = _obs(policy)
    a = policy.predict_chunk(images, state, TASK, seed=3)
    b = policy.predict_chunk(images, state, TASK, seed=3)
    c = policy.predict_chunk(images, state, TASK, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_explicit_noise_equals_seeded_noise(policy: SmolVLAPolicy) -> None:
    images, state = _obs(policy)
    noise = torch.randn((1, 50, 32), generator=torch.Generator().manual_seed(5)).numpy()
    a = policy.predict_chunk(images, state, TASK, noise=noise)
    b = policy.predict_chunk(images, state, TASK, noise=noise[0])
    c = policy.predict_chunk(images, state, TASK, seed=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_save_load_round_trip_identical_chunks(policy: SmolVLAPolicy, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    policy.save_pretrained(out)
    again = SmolVLAPolicy.from_pretrained(out)
    images, state = _obs(policy)
    np.testing.assert_array_equal(
        policy.predict_chunk(images, state, TASK, seed=1), again.predict_chunk(images, state, TASK, seed=1)
    )
    a = dict(policy.state_dict().items())
    b = again.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert SmolVLAConfig.from_json(out / "config.json") == policy.config


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_strict_loading_rejects_renamed_tensor(tiny_dir: Path, tmp_path: Path) -> None:
    bad = _copy_checkpoint(tiny_dir, tmp_path / "bad")
    weights = load_file(str(bad / "model.safetensors"))
    old = "model.vlm_with_expert.lm_expert.layers.1.self_attn.k_proj.weight"
    new = "model.vlm_with_expert.lm_expert.layers.1.self_attn.key_proj.weight"
    weights[new] = weights.pop(old)
    save_file(weights, str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        SmolVLAPolicy.from_pretrained(bad)
    assert old in str(err.value) and new in str(err.value)


def test_strict_loading_rejects_wrong_shape(tiny_dir: Path, tmp_path: Path) -> None:
    bad = _copy_checkpoint(tiny_dir, tmp_path / "bad")
    weights = load_file(str(bad / "model.safetensors"))
    weights["model.state_proj.bias"] = torch.zeros(3)
    save_file(weights, str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model.state_proj.bias"):
        SmolVLAPolicy.from_pretrained(bad)


def test_lm_head_may_be_absent(tiny_dir: Path, tmp_path: Path) -> None:
    ok = _copy_checkpoint(tiny_dir, tmp_path / "ok")
    weights = load_file(str(ok / "model.safetensors"))
    del weights["model.vlm_with_expert.vlm.lm_head.weight"]
    save_file(weights, str(ok / "model.safetensors"))
    pol = SmolVLAPolicy.from_pretrained(ok)
    ref = SmolVLAPolicy.from_pretrained(tiny_dir)
    images, state = _obs(pol)
    np.testing.assert_array_equal(
        pol.predict_chunk(images, state, TASK, seed=2), ref.predict_chunk(images, state, TASK, seed=2)
    )


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        SmolVLAPolicy.from_pretrained(tmp_path / "nope")


def test_save_over_own_directory_keeps_mapped_lm_head_valid(tiny_dir: Path, tmp_path: Path) -> None:
    """lm_head is memory-mapped from model.safetensors; saving into the same directory must not corrupt it."""
    own = _copy_checkpoint(tiny_dir, tmp_path / "own")
    pol = SmolVLAPolicy.from_pretrained(own)
    key = "model.vlm_with_expert.vlm.lm_head.weight"
    before = pol.state_dict()[key].clone()
    pol.save_pretrained(own)
    torch.testing.assert_close(pol.state_dict()[key], before)
    torch.testing.assert_close(load_file(str(own / "model.safetensors"))[key], before)


def test_cpu_load_keeps_expert_weights_column_major(tiny_dir: Path) -> None:
    pol = SmolVLAPolicy.from_pretrained(tiny_dir)
    gate = pol.model.vlm_with_expert.lm_expert.layers[0].mlp.gate_proj.weight
    assert gate.stride() == (1, gate.shape[0])  # column-major: F.linear runs a non-transposed GEMM
    text_gate = pol.model.vlm_with_expert.vlm.model.text_model.layers[0].mlp.gate_proj.weight
    assert text_gate.is_contiguous()
    stored = load_file(str(tiny_dir / "model.safetensors"))
    for key, value in pol.state_dict().items():
        assert torch.equal(value, stored[key]), key
    images, state = _obs(pol)
    fast = pol.predict_chunk(images, state, TASK, seed=6)
    for m in pol.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight = torch.nn.Parameter(m.weight.detach().contiguous(), requires_grad=False)
    np.testing.assert_allclose(pol.predict_chunk(images, state, TASK, seed=6), fast, atol=1e-4, rtol=1e-5)
