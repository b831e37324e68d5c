"""The SmolVLA network: shapes, masks, RoPE, attention, KV cache, cancellation, full-size build."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from smolvla_policy.backend import BadRequest, InferenceCancelled
from smolvla_policy.model import SmolVLAPolicy, full_size_config
from smolvla_policy.model.modeling import (
    additive_mask,
    apply_rope,
    attention,
    make_att_2d_masks,
    rope_cos_sin,
)
from smolvla_policy.model.testing import make_tiny_checkpoint

torch.set_num_threads(1)
TASK = "stack the blocks"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), seed=7)


@pytest.fixture(scope="module")
def policy(tiny_dir: Path) -> SmolVLAPolicy:
    return SmolVLAPolicy.from_pretrained(tiny_dir)


def _obs(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    images = {
        "observation.images.top": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
    }
    return images, rng.normal(0, 10, 6).astype(np.float32)


def _eager_attention(q, k, v, allowed, groups):
    """lerobot's eager attention, written out: GQA expand, fp32 scores * D^-0.5, finfo.min fill, softmax."""
    b, lk, hkv, d = k.shape
    k = k[:, :, :, None, :].expand(b, lk, hkv, groups, d).reshape(b, lk, hkv * groups, d)
    v = v[:, :, :, None, :].expand(b, lk, hkv, groups, d).reshape(b, lk, hkv * groups, d)
    scores = torch.matmul(q.transpose(1, 2).float(), k.transpose(1, 2).float().transpose(2, 3)) * d**-0.5
    scores = torch.where(allowed[:, None], scores, torch.finfo(torch.float32).min)
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs, v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
    return out.reshape(b, -1, hkv * groups * d)


def test_rope_matches_formula_and_base_10000() -> None:
    x = torch.randn(1, 3, 2, 64)
    pos = torch.tensor([[0, 5, 1000]])
    out = apply_rope(x, *rope_cos_sin(pos, 64))
    torch.testing.assert_close(out[:, 0], x[:, 0])  # position 0: identity
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # a rotation
    for k in (0, 7, 31):
        angle = 5 / (10000 ** (2 * k / 64))
        c, s = math.cos(angle), math.sin(angle)
        x1, x2 = x[0, 1, :, k], x[0, 1, :, 32 + k]
        torch.testing.assert_close(out[0, 1, :, k], x1 * c - x2 * s, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[0, 1, :, 32 + k], x2 * c + x1 * s, atol=1e-5, rtol=1e-5)
    assert apply_rope(x.to(torch.bfloat16), *rope_cos_sin(pos, 64)).dtype == torch.bfloat16


def test_prefix_mask_blocks() -> None:
    # 2 image tokens, 2 language tokens (second one padding), 1 state token
    pad = torch.tensor([[True, True, True, False, True]])
    flags = torch.tensor([[0, 0, 0, 0, 1]])
    allowed = make_att_2d_masks(pad, flags)[0]
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
            [1, 1, 1, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)
    # suffix flags all 1 -> causal among action tokens
    causal = make_att_2d_masks(torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 4))[0]
    assert torch.equal(causal, torch.tril(torch.ones(4, 4, dtype=torch.bool)))


def test_attention_equals_lerobot_eager_including_padded_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 7, 6, 16, generator=gen)
    k = torch.randn(2, 9, 2, 16, generator=gen)
    v = torch.randn(2, 9, 2, 16, generator=gen)
    allowed = torch.rand(2, 7, 9, generator=gen) > 0.3
    allowed[:, :, 0] = True
    allowed[1, 3] = False  # a fully masked (padding) row must not produce NaN
    ours = attention(q, k, v, additive_mask(allowed), groups := 3)
    ref = _eager_attention(q, k, v, allowed, groups)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_prefix_shapes_and_cache(policy: SmolVLAPolicy) -> None:
    model = policy.model
    images, state = _obs()
    pixels, masks = policy._images(images)
    assert pixels.shape == (2, 3, 512, 512)
    embs = model.embed_images(pixels)
    assert embs.shape == (2, 64, 64)
    tokens = torch.tensor([[10, 11, 12, 13, 14]])
    lang_mask = torch.ones(1, 5, dtype=torch.bool)
    st = policy._state(state)
    assert st.shape == (1, 32)
    prefix, pad, att = model.embed_prefix([embs[:1], embs[1:]], masks, tokens, lang_mask, st)
    assert prefix.shape == (1, 2 * 64 + 5 + 1, 64)
    assert att[0].tolist() == [False] * 133 + [True]
    cache = model.run_prefix(prefix, pad, att)
    assert len(cache.keys) == 4 and cache.keys[0].shape == (1, 134, 2, 16)
    cache = model.prepare_denoising(cache)
    assert set(cache.cross_kv) == {1, 3}  # odd expert layers cross-attend
    assert cache.cross_kv[1][0].shape == (1, 134, 2, 16)
    x = torch.randn(1, 50, 32)
    v = model.denoise_step(cache, x, torch.tensor([0.7]))
    assert v.shape == (1, 50, 32) and v.dtype == torch.float32


def test_cached_denoise_step_equals_joint_training_pass(policy: SmolVLAPolicy) -> None:
    """Two code paths: KV-cached inference (cross K/V cached per chunk) vs lerobot's joint pass."""
    model = policy.model
    images, state = _obs(1)
    pixels, masks = policy._images(images)
    embs = model.embed_images(pixels)
    tokens = torch.tensor([[20, 21, 22, 2, 2]])
    lang_mask = torch.tensor([[True, True, True, False, False]])  # padded language
    prefix, pad, att = model.embed_prefix(
        [embs[:1], embs[1:]], masks, tokens, lang_mask, policy._state(state)
    )
    x = torch.randn(1, 50, 32, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.45])
    with torch.no_grad():
        cache = model.prepare_denoising(model.run_prefix(prefix, pad, att))
        cached = model.denoise_step(cache, x, t)
        joint = model.forward_velocity(prefix, pad, att, x, t)
    torch.testing.assert_close(cached, joint, atol=1e-5, rtol=1e-5)


def test_step_callback_and_cancellation(policy: SmolVLAPolicy) -> None:
    images, state = _obs()
    seen: list[tuple[int, int]] = []
    policy.predict_chunk(
        images, state, TASK, seed=0, num_steps=4, step_callback=lambda s, n: seen.append((s, n))
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    calls: list[int] = []

    def stop_at_3(step: int, total: int) -> bool:
        calls.append(step)
        return step < 3

    with pytest.raises(InferenceCancelled):
        policy.predict_chunk(images, state, TASK, seed=0, step_callback=stop_at_3)
    assert calls == [1, 2, 3]


def test_num_steps_changes_result(policy: SmolVLAPolicy) -> None:
    images, state = _obs()
    a = policy.predict_chunk(images, state, TASK, seed=0, num_steps=10)
    policy.num_steps = 5
    try:
        b = policy.predict_chunk(images, state, TASK, seed=0)
        c = policy.predict_chunk(images, state, TASK, seed=0, num_steps=5)
    finally:
        policy.num_steps = 10
    np.testing.assert_array_equal(b, c)
    assert not np.allclose(a, b)


def test_bad_requests_name_the_problem(policy: SmolVLAPolicy) -> None:
    images, state = _obs()
    with pytest.raises(BadRequest, match="observation.images.wrist"):
        policy.predict_chunk({"observation.images.top": images["observation.images.top"]}, state, TASK)
    with pytest.raises(BadRequest, match="state has 5 values"):
        policy.predict_chunk(images, state[:5], TASK)
    with pytest.raises(BadRequest, match="NaN"):
        policy.predict_chunk(images, np.full(6, np.nan), TASK)
    with pytest.raises(BadRequest, match="uint8 HxWx3"):
        policy.predict_chunk({**images, "observation.images.top": np.zeros((4, 4), np.uint8)}, state, TASK)
    with pytest.raises(BadRequest, match="noise must have shape"):
        policy.predict_chunk(images, state, TASK, noise=np.zeros((50, 6)))


def test_empty_cameras_allow_a_missing_camera(tmp_path: Path) -> None:
    ckpt = make_tiny_checkpoint(tmp_path / "c", camera_keys=("observation.images.top",), empty_cameras=1)
    pol = SmolVLAPolicy.from_pretrained(ckpt)
    assert pol.camera_keys == ["observation.images.top", "observation.images.empty_camera_0"]
    images, state = _obs()
    chunk = pol.predict_chunk(
        {"observation.images.top": images["observation.images.top"]}, state, TASK, seed=0
    )
    assert chunk.shape == (50, 6) and np.isfinite(chunk).all()


def test_small_chunk_and_dims(tmp_path: Path) -> None:
    ckpt = make_tiny_checkpoint(tmp_path / "c", state_dim=4, action_dim=3, chunk_size=8)
    pol = SmolVLAPolicy.from_pretrained(ckpt)
    images, _ = _obs()
    chunk = pol.predict_chunk(images, np.zeros(4), TASK, seed=0)
    assert chunk.shape == (8, 3)


def test_bfloat16_mode_is_close_to_float32(tiny_dir: Path, policy: SmolVLAPolicy) -> None:
    bf16 = SmolVLAPolicy.from_pretrained(tiny_dir, dtype="bfloat16")
    assert bf16.model.vlm_dtype == torch.bfloat16
    assert bf16.model.action_out_proj.weight.dtype == torch.float32
    images, state = _obs()
    a = policy.predict_chunk(images, state, TASK, seed=0)
    b = bf16.predict_chunk(images, state, TASK, seed=0)
    assert np.isfinite(b).all()
    scale = np.abs(a).max()
    assert np.abs(a - b).max() < 0.2 * scale


def test_full_size_structure_from_config_offline() -> None:
    """Meta-device build: names, count and shapes of lerobot's full 450M SmolVLA state dict."""
    pol = SmolVLAPolicy(full_size_config(), device="meta")
    sd = pol.state_dict()
    assert len(sd) == 500
    assert sum(v.numel() for v in sd.values()) == 450_046_176
    prefix = "model.vlm_with_expert."
    shapes = {
        prefix + "vlm.model.vision_model.embeddings.patch_embedding.weight": (768, 3, 16, 16),
        prefix + "vlm.model.vision_model.embeddings.position_embedding.weight": (1024, 768),
        prefix + "vlm.model.connector.modality_projection.proj.weight": (960, 12288),
        prefix + "vlm.model.text_model.embed_tokens.weight": (49280, 960),
        prefix + "vlm.model.text_model.layers.15.self_attn.k_proj.weight": (320, 960),
        prefix + "vlm.lm_head.weight": (49280, 960),
        prefix + "lm_expert.layers.0.self_attn.k_proj.weight": (320, 720),
        prefix + "lm_expert.layers.1.self_attn.k_proj.weight": (320, 320),
        prefix + "lm_expert.layers.15.self_attn.v_proj.weight": (320, 320),
        prefix + "lm_expert.layers.2.self_attn.q_proj.weight": (960, 720),
        prefix + "lm_expert.layers.2.self_attn.o_proj.weight": (720, 960),
        prefix + "lm_expert.layers.2.mlp.gate_proj.weight": (2048, 720),
        "model.state_proj.weight": (960, 32),
        "model.action_time_mlp_in.weight": (720, 1440),
        "model.action_out_proj.weight": (32, 720),
    }
    for name, shape in shapes.items():
        assert tuple(sd[name].shape) == shape, name
    assert not any(".text_model.layers.16." in k for k in sd)
    trainable = sum(v.numel() for k, v in sd.items() if ".vlm." not in k)
    assert trainable == 99_880_992


@pytest.mark.slow
def test_full_size_random_weights_predict(tmp_path: Path) -> None:
    from smolvla_policy.model.processor import Normalizer
    from smolvla_policy.model.testing import make_test_tokenizer, random_stats

    cfg = full_size_config()
    torch.manual_seed(0)
    pol = SmolVLAPolicy(
        cfg, tokenizer=make_test_tokenizer(), normalizer=Normalizer.from_config(cfg, random_stats(cfg))
    )
    images, state = _obs()
    chunk = pol.predict_chunk(images, state, TASK, seed=0, num_steps=2)
    assert chunk.shape == (50, 6) and np.isfinite(chunk).all()


def test_fused_rms_norm_equals_llama_rms_norm() -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from smolvla_policy.model.modeling import rms_norm

    norm = LlamaRMSNorm(48, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(48))
    x = torch.randn(2, 7, 48) * 3
    torch.testing.assert_close(rms_norm(norm, x), norm(x), atol=1e-6, rtol=1e-6)


def test_int8_dynamic_mode_runs_and_refuses_to_save(tiny_dir: Path, tmp_path: Path) -> None:
    from smolvla_policy.model import CheckpointError

    q = SmolVLAPolicy.from_pretrained(tiny_dir, dtype="int8_dynamic")
    assert q.quantized == ("connector", "vision")
    q.quantize_dynamic_int8(("text", "expert"))
    assert q.quantized == ("connector", "expert", "text", "vision")
    images, state = _obs()
    chunk = q.predict_chunk(images, state, TASK, seed=0)
    assert chunk.shape == (50, 6) and np.isfinite(chunk).all()
    with pytest.raises(CheckpointError, match="quantised"):
        q.save_pretrained(tmp_path / "q")


def test_image_special_tokens_extend_the_prefix(tmp_path: Path) -> None:
    ckpt = make_tiny_checkpoint(tmp_path / "c", add_image_special_tokens=True)
    pol = SmolVLAPolicy.from_pretrained(ckpt)
    model = pol.model
    images, state = _obs()
    pixels, masks = pol._images(images)
    embs = model.embed_images(pixels)
    tokens = torch.tensor([[10, 11, 12]])
    prefix, pad, att = model.embed_prefix(
        [embs[:1], embs[1:]], masks, tokens, torch.ones(1, 3, dtype=torch.bool), pol._state(state)
    )
    assert prefix.shape[1] == 2 * (2 + 64 + 1) + 3 + 1
    assert bool(pad.all())
    assert np.isfinite(pol.predict_chunk(images, state, TASK, seed=0)).all()
