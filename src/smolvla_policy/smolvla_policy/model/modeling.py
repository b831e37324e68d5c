"""The SmolVLA network: SmolVLM2 backbone (truncated) + flow-matching action expert.

Module and parameter names equal lerobot 0.6.1's ``model.safetensors`` (``model.vlm_with_expert....``), so its
checkpoints load strictly. Numerics follow lerobot (see ``SMOLVLA_SPEC.md``): lerobot's own RoPE (base 10000,
split-half, fp32), eager-equivalent attention (scores and softmax in fp32, masked with
``finfo(float32).min``), prefix computed once per chunk (KV cache), Euler integration from t = 1 (noise) to t
= 0.

Differences that change speed, not results:
- all cameras go through the vision tower in one batch;
- attention uses ``scaled_dot_product_attention`` with an additive fp32 mask (same maths as the eager path);
- the cross-attention layers' K/V projections of the cached prefix are computed once per chunk instead of at
  every denoising step (they depend on neither x_t nor t);
- RoPE tables, masks and position ids are built once per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.configuration_llama import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm
from transformers.models.smolvlm.configuration_smolvlm import SmolVLMConfig, SmolVLMVisionConfig
from transformers.models.smolvlm.modeling_smolvlm import SmolVLMConnector, SmolVLMVisionTransformer

from .configuration import SmolVLAConfig, VLMConfig, expert_dims

ROPE_MAX_WAVELENGTH = 10_000.0


# ------------------------------------------------------------------------------------------------------------
# numerics helpers
# ------------------------------------------------------------------------------------------------------------
def rope_cos_sin(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE tables [B, L, 1, head_dim] in fp32 for lerobot's RoPE (angle_k = pos / 10000^(2k/d)):
    ``[cos | cos]`` and ``[-sin | sin]``, so that rotation is ``x * c + [x2 | x1] * s`` (same bits as
    ``[x1 cos - x2 sin | x2 cos + x1 sin]``)."""
    d_half = head_dim // 2
    freq_exponents = (2.0 / head_dim) * torch.arange(d_half, dtype=torch.float32, device=positions.device)
    timescale = ROPE_MAX_WAVELENGTH**freq_exponents
    radians = positions[..., None].to(torch.float32) / timescale[None, None, :]
    radians = radians[..., None, :]
    cos, sin = torch.cos(radians), torch.sin(radians)
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Split-half rotation of x [B, L, H, D] in fp32, cast back to x's dtype."""
    dtype = x.dtype
    x = x.to(torch.float32)
    d_half = x.shape[-1] // 2
    rotated = torch.cat([x[..., d_half:], x[..., :d_half]], dim=-1)
    return (x * cos + rotated * sin).to(dtype)


def make_att_2d_masks(pad_masks: torch.Tensor, att_masks: torch.Tensor) -> torch.Tensor:
    """allowed[b, i, j] = cumsum(flags)[j] <= cumsum(flags)[i] and pad[i] and pad[j]."""
    cumsum = torch.cumsum(att_masks.to(torch.int64), dim=1)
    att_2d = cumsum[:, None, :] <= cumsum[:, :, None]
    pad_2d = pad_masks[:, None, :] & pad_masks[:, :, None]
    return att_2d & pad_2d


def additive_mask(allowed: torch.Tensor) -> torch.Tensor:
    """Boolean [B, Q, K] -> additive fp32 [B, 1, Q, K] mask (0 or finfo(float32).min), as lerobot's eager."""
    neg = torch.finfo(torch.float32).min
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
    mask.masked_fill_(~allowed, neg)
    return mask[:, None]


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, num_kv_groups: int
) -> torch.Tensor:
    """q [B, Lq, H, D], k/v [B, Lk, Hkv, D], additive fp32 mask [B, 1, Lq, Lk] -> [B, Lq, H*D] in v's dtype.

    Scores and softmax in fp32 (q, k, v upcast), scale D^-0.5; equal to lerobot's eager attention.
    """
    out_dtype = v.dtype
    q = q.transpose(1, 2).to(torch.float32)
    k = k.transpose(1, 2).to(torch.float32)
    v = v.transpose(1, 2).to(torch.float32)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=q.shape[-1] ** -0.5, enable_gqa=num_kv_groups > 1
    )
    b, h, lq, d = out.shape
    return out.transpose(1, 2).reshape(b, lq, h * d).to(out_dtype)


def sinusoidal_time_embedding(
    time: torch.Tensor, dimension: int, min_period: float, max_period: float
) -> torch.Tensor:
    """[B] -> [B, dimension]: [sin(2 pi t / period), cos(...)], log-spaced periods, computed in float64."""
    if dimension % 2:
        raise ValueError(f"time embedding dimension must be even, got {dimension}")
    dtype = torch.float64 if time.device.type not in ("mps",) else torch.float32
    fraction = torch.linspace(0.0, 1.0, dimension // 2, dtype=dtype, device=time.device)
    period = min_period * (max_period / min_period) ** fraction
    scaling = 1.0 / period * 2 * math.pi
    sin_input = scaling[None, :] * time[:, None]
    return torch.cat([torch.sin(sin_input), torch.cos(sin_input)], dim=1)


def rms_norm(norm: LlamaRMSNorm, x: torch.Tensor) -> torch.Tensor:
    """LlamaRMSNorm's maths (fp32 statistics, cast back, times weight) with the fused kernel."""
    dtype = x.dtype
    h = F.rms_norm(x.to(torch.float32), (x.shape[-1],), eps=norm.variance_epsilon)
    return norm.weight * h.to(dtype)


def pad_vector(x: torch.Tensor, new_dim: int) -> torch.Tensor:
    if x.shape[-1] >= new_dim:
        return x
    return F.pad(x, (0, new_dim - x.shape[-1]))


# ------------------------------------------------------------------------------------------------------------
# modules (names as in lerobot / transformers)
# ------------------------------------------------------------------------------------------------------------
class AttentionProjections(nn.Module):
    """q/k/v/o projections of a Llama attention block (lerobot computes the attention itself)."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, kv_in: int | None = None):
        super().__init__()
        self.head_dim = head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(kv_in or hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(kv_in or hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig, kv_in: int | None = None):
        super().__init__()
        self.self_attn = AttentionProjections(
            cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, kv_in
        )
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)

    def finish(self, hidden: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """o_proj + residual, post-attention norm, MLP + residual."""
        att = att.to(self.dtype)
        out = self.self_attn.o_proj(att) + hidden
        return self.mlp(rms_norm(self.post_attention_layernorm, out)) + out

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the layer (its norm weights; Linear layers may be quantised)."""
        return self.input_layernorm.weight.dtype


class TextModel(nn.Module):
    def __init__(self, cfg: LlamaConfig, num_layers: int, pad_token_id: int | None):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=pad_token_id)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(num_layers)])
        self.norm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)


class SmolVLMBackbone(nn.Module):
    """``vlm.model``: vision_model, connector, text_model."""

    def __init__(self, hf_config: SmolVLMConfig, text_cfg: LlamaConfig, num_layers: int, pad_token_id: int):
        super().__init__()
        self.vision_model = SmolVLMVisionTransformer(hf_config.vision_config)
        self.connector = SmolVLMConnector(hf_config)
        self.text_model = TextModel(text_cfg, num_layers, pad_token_id)


class SmolVLM(nn.Module):
    def __init__(self, hf_config: SmolVLMConfig, text_cfg: LlamaConfig, num_layers: int, pad_token_id: int):
        super().__init__()
        self.model = SmolVLMBackbone(hf_config, text_cfg, num_layers, pad_token_id)
        self.lm_head = nn.Linear(text_cfg.hidden_size, text_cfg.vocab_size, bias=False)


class ActionExpert(nn.Module):
    def __init__(self, cfg: LlamaConfig, kv_inputs: list[int | None]):
        super().__init__()
        self.layers = nn.ModuleList([DecoderLayer(cfg, kv_in) for kv_in in kv_inputs])
        self.norm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)


class VLMWithExpert(nn.Module):
    def __init__(self, config: SmolVLAConfig, vlm: VLMConfig):
        super().__init__()
        vision_cfg = SmolVLMVisionConfig(
            hidden_size=vlm.vision_hidden_size,
            intermediate_size=vlm.vision_intermediate_size,
            num_hidden_layers=vlm.vision_num_hidden_layers,
            num_attention_heads=vlm.vision_num_attention_heads,
            num_channels=vlm.num_channels,
            image_size=vlm.vision_image_size,
            patch_size=vlm.vision_patch_size,
            hidden_act=vlm.vision_hidden_act,
            layer_norm_eps=vlm.vision_layer_norm_eps,
        )
        vision_cfg._attn_implementation = "sdpa"
        text_cfg = LlamaConfig(
            vocab_size=vlm.vocab_size,
            hidden_size=vlm.text_hidden_size,
            intermediate_size=vlm.text_intermediate_size,
            num_hidden_layers=vlm.text_num_hidden_layers,
            num_attention_heads=vlm.text_num_attention_heads,
            num_key_value_heads=vlm.text_num_key_value_heads,
            head_dim=vlm.text_head_dim,
            rms_norm_eps=vlm.text_rms_norm_eps,
            hidden_act=vlm.text_hidden_act,
            mlp_bias=False,
            attention_bias=False,
        )
        hf_config = SmolVLMConfig(
            vision_config=vision_cfg.to_dict(), text_config=text_cfg.to_dict(), scale_factor=vlm.scale_factor
        )
        hf_config.vision_config._attn_implementation = "sdpa"
        n_vlm = config.num_vlm_layers if config.num_vlm_layers > 0 else vlm.text_num_hidden_layers
        n_vlm = min(n_vlm, vlm.text_num_hidden_layers)
        self.num_vlm_layers = n_vlm
        self.vlm = SmolVLM(hf_config, text_cfg, n_vlm, vlm.pad_token_id)

        hidden, intermediate = expert_dims(config, vlm)
        expert_cfg = LlamaConfig(
            **{**text_cfg.to_dict(), "hidden_size": hidden, "intermediate_size": intermediate}
        )
        expert_cfg.head_dim = vlm.text_head_dim
        n_expert = config.expert_layer_count(vlm)
        if n_vlm % n_expert:
            raise ValueError(f"num_vlm_layers {n_vlm} is not a multiple of num_expert_layers {n_expert}")
        every = config.self_attn_every_n_layers
        kv_width = vlm.text_num_key_value_heads * vlm.text_head_dim
        kv_inputs = [None if (every > 0 and i % every == 0) else kv_width for i in range(n_expert)]
        self.lm_expert = ActionExpert(expert_cfg, kv_inputs)
        self.expert_hidden_size = hidden
        self.num_heads = vlm.text_num_attention_heads
        self.num_kv_heads = vlm.text_num_key_value_heads
        self.head_dim = vlm.text_head_dim

        # layer plan: VLM layer i -> (expert layer or None, "self" | "cross")
        multiple = n_vlm // n_expert
        self.plan: list[tuple[int | None, str]] = []
        for i in range(n_vlm):
            expert_idx = None if (multiple > 0 and i > 0 and i % multiple != 0) else (i // multiple)
            kind = "self" if (every > 0 and i % every == 0) else "cross"
            if expert_idx is not None:
                is_cross_expert = kv_inputs[expert_idx] is not None
                if is_cross_expert != (kind == "cross"):
                    raise NotImplementedError(
                        f"layer plan not supported: VLM layer {i} is {kind}-attention but expert layer "
                        f"{expert_idx} has {'cross' if is_cross_expert else 'self'}-attention K/V shapes"
                    )
            self.plan.append((expert_idx, kind))

    @property
    def text_model(self) -> TextModel:
        return self.vlm.model.text_model


@dataclass
class PrefixCache:
    """Everything the denoising steps need from the prefix, computed once per chunk."""

    pad_masks: torch.Tensor  # [B, P] bool
    keys: list[torch.Tensor]  # per VLM layer, post-RoPE K [B, P, Hkv, D]
    values: list[torch.Tensor]
    cross_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict
    )  # expert layer -> K, V
    self_mask: torch.Tensor | None = None  # additive [B, 1, S, P+S]
    cross_mask: torch.Tensor | None = None  # additive [B, 1, S, P]
    self_rope: tuple[torch.Tensor, torch.Tensor] | None = None
    cross_rope: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class Timings:
    vision_ms: float = 0.0
    prefix_ms: float = 0.0
    denoise_ms: float = 0.0
    preprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.vision_ms + self.prefix_ms + self.denoise_ms + self.preprocess_ms


class SmolVLAModel(nn.Module):
    """lerobot's ``VLAFlowMatching`` (the ``model.`` prefix of the state dict)."""

    def __init__(self, config: SmolVLAConfig, vlm: VLMConfig):
        super().__init__()
        self.config = config
        self.vlm_config = vlm
        self.vlm_with_expert = VLMWithExpert(config, vlm)
        text_hidden = vlm.text_hidden_size
        expert_hidden = self.vlm_with_expert.expert_hidden_size
        self.state_proj = nn.Linear(config.max_state_dim, text_hidden)
        self.action_in_proj = nn.Linear(config.max_action_dim, expert_hidden)
        self.action_out_proj = nn.Linear(expert_hidden, config.max_action_dim)
        self.action_time_mlp_in = nn.Linear(expert_hidden * 2, expert_hidden)
        self.action_time_mlp_out = nn.Linear(expert_hidden, expert_hidden)
        self.image_token_ids = (vlm.fake_image_token_id, vlm.global_image_token_id)

    # ---- dtype handling ------------------------------------------------------------------------------------
    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """VLM + expert weights in ``dtype``; projections stay fp32 (lerobot's bf16 layout)."""
        self.vlm_with_expert.to(dtype)
        for m in (
            self.state_proj,
            self.action_in_proj,
            self.action_out_proj,
            self.action_time_mlp_in,
            self.action_time_mlp_out,
        ):
            m.to(torch.float32)

    def use_column_major_small_gemms(self) -> None:
        """Store the weights of the action expert and the action/time projections column-major.

        Same values, names and shapes; only the memory layout changes, so ``F.linear`` runs a non-transposed
        GEMM. For the 50-row activations of the denoising steps this is 2-2.5x faster with MKL on this CPU
        (measured: ~75 -> ~190 GFLOPS with 2 threads) and gives identical results for these shapes."""
        modules: list[nn.Module] = [
            self.vlm_with_expert.lm_expert,
            self.action_in_proj,
            self.action_out_proj,
            self.action_time_mlp_in,
            self.action_time_mlp_out,
        ]
        for root in modules:
            for lin in [m for m in root.modules() if isinstance(m, nn.Linear)]:
                w = lin.weight
                if w.ndim == 2 and w.is_contiguous() and w.device.type != "meta":
                    lin.weight = nn.Parameter(w.detach().t().contiguous().t(), requires_grad=w.requires_grad)

    @property
    def vlm_dtype(self) -> torch.dtype:
        return self.vlm_with_expert.text_model.embed_tokens.weight.dtype

    # ---- prefix --------------------------------------------------------------------------------------------
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, image_seq_len, text_hidden]; all images in one vision batch."""
        backbone = self.vlm_with_expert.vlm.model
        dtype = backbone.vision_model.embeddings.patch_embedding.weight.dtype
        hidden = backbone.vision_model(pixel_values=images.to(dtype)).last_hidden_state
        return backbone.connector(hidden)

    def embed_prefix(
        self,
        image_embs: list[torch.Tensor],
        img_masks: list[torch.Tensor],
        lang_tokens: torch.Tensor,
        lang_masks: torch.Tensor,
        state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenate [cameras (64 tok each), language, state] -> embeddings, pad mask, attention flags."""
        text = self.vlm_with_expert.text_model
        embs: list[torch.Tensor] = []
        pads: list[torch.Tensor] = []
        flags: list[int] = []
        bsize = state.shape[0]
        device = state.device
        for img_emb, img_mask in zip(image_embs, img_masks):
            if self.config.add_image_special_tokens:
                ids = torch.tensor([self.image_token_ids], device=device).expand(bsize, 2)
                embs.append(text.embed_tokens(ids))  # not scaled, always valid (as lerobot)
                pads.append(torch.ones(bsize, 2, dtype=torch.bool, device=device))
                flags += [0, 0]
            scale = torch.tensor(img_emb.shape[-1] ** 0.5, dtype=img_emb.dtype, device=img_emb.device)
            img_emb = img_emb * scale
            embs.append(img_emb)
            pads.append(img_mask[:, None].expand(bsize, img_emb.shape[1]))
            flags += [0] * img_emb.shape[1]
            if self.config.add_image_special_tokens:
                ids = torch.tensor([[self.image_token_ids[0]]], device=device).expand(bsize, 1)
                embs.append(text.embed_tokens(ids))
                pads.append(torch.ones(bsize, 1, dtype=torch.bool, device=device))
                flags += [0]
        lang_emb = text.embed_tokens(lang_tokens)
        lang_emb = lang_emb * math.sqrt(lang_emb.shape[-1])
        embs.append(lang_emb)
        pads.append(lang_masks)
        flags += [0] * lang_emb.shape[1]
        state_emb = self.state_proj(state.to(self.state_proj.weight.dtype))
        state_emb = state_emb[:, None, :] if state_emb.ndim == 2 else state_emb
        embs.append(state_emb.to(lang_emb.dtype))
        pads.append(torch.ones(bsize, state_emb.shape[1], dtype=torch.bool, device=device))
        flags += [1] * state_emb.shape[1]
        emb = torch.cat(embs, dim=1)
        pad = torch.cat(pads, dim=1)
        att = torch.tensor(flags, dtype=torch.bool, device=device)[None, :].expand(bsize, len(flags))
        if emb.shape[1] < self.config.prefix_length:
            extra = self.config.prefix_length - emb.shape[1]
            emb = F.pad(emb, (0, 0, 0, extra))
            pad = F.pad(pad, (0, extra), value=False)
            att = F.pad(att, (0, extra), value=False)
        return emb, pad, att

    def _qkv(self, layer: DecoderLayer, hidden: torch.Tensor):
        normed = rms_norm(layer.input_layernorm, hidden).to(layer.dtype)
        shape = (*normed.shape[:-1], -1, layer.self_attn.head_dim)
        q = layer.self_attn.q_proj(normed).view(shape)
        k = layer.self_attn.k_proj(normed).view(shape)
        v = layer.self_attn.v_proj(normed).view(shape)
        return q, k, v

    def run_prefix(
        self, prefix_embs: torch.Tensor, pad_masks: torch.Tensor, att_masks: torch.Tensor
    ) -> PrefixCache:
        """The 16 VLM layers over the prefix; returns the post-RoPE K/V of every layer (the KV cache)."""
        vwe = self.vlm_with_expert
        allowed = make_att_2d_masks(pad_masks, att_masks)
        mask = additive_mask(allowed)
        position_ids = torch.cumsum(pad_masks.to(torch.int64), dim=1) - 1
        cos, sin = rope_cos_sin(position_ids, vwe.head_dim)
        groups = vwe.num_heads // vwe.num_kv_heads
        hidden = prefix_embs.to(self.vlm_dtype)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        layers = vwe.text_model.layers
        for i, layer in enumerate(layers):
            q, k, v = self._qkv(layer, hidden)
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
            keys.append(k)
            values.append(v)
            if i == len(layers) - 1 and not torch.is_grad_enabled():
                break  # the last layer's output is never used (only its K/V)
            hidden = layer.finish(hidden, attention(q, k, v, mask, groups))
        return PrefixCache(pad_masks=pad_masks, keys=keys, values=values)

    def prepare_denoising(self, cache: PrefixCache) -> PrefixCache:
        """Per-chunk constants: cross-attention K/V of the prefix, masks and RoPE tables of the suffix."""
        vwe = self.vlm_with_expert
        pad = cache.pad_masks
        bsize, plen = pad.shape
        s = self.config.chunk_size
        device = pad.device
        causal = torch.tril(torch.ones(s, s, dtype=torch.bool, device=device))[None].expand(bsize, s, s)
        prefix_cols = pad[:, None, :].expand(bsize, s, plen)
        cache.self_mask = additive_mask(torch.cat([prefix_cols, causal], dim=2))
        cache.cross_mask = additive_mask(prefix_cols)
        offsets = pad.to(torch.int64).sum(dim=-1, keepdim=True)
        arange = torch.arange(s, device=device)[None, :]
        cache.self_rope = rope_cos_sin(offsets + arange, vwe.head_dim)
        cache.cross_rope = rope_cos_sin(arange.expand(bsize, s), vwe.head_dim)
        cache.cross_kv = {}
        for i, (expert_idx, kind) in enumerate(vwe.plan):
            if expert_idx is None or kind != "cross":
                continue
            cache.cross_kv[expert_idx] = self._cross_kv(expert_idx, cache.keys[i], cache.values[i])
        return cache

    def _cross_kv(
        self, expert_idx: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.vlm_with_expert.lm_expert.layers[expert_idx]
        attn = layer.self_attn
        kk = attn.k_proj(k.to(layer.dtype).reshape(*k.shape[:2], -1))
        vv = attn.v_proj(v.to(layer.dtype).reshape(*v.shape[:2], -1))
        return kk.view(*k.shape[:2], -1, attn.head_dim), vv.view(*v.shape[:2], -1, attn.head_dim)

    # ---- suffix --------------------------------------------------------------------------------------------
    def embed_suffix(self, x_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        action_emb = self.action_in_proj(x_t)
        time_emb = sinusoidal_time_embedding(
            time, self.vlm_with_expert.expert_hidden_size, self.config.min_period, self.config.max_period
        ).to(action_emb.dtype)
        time_emb = time_emb[:, None, :].expand_as(action_emb)
        h = self.action_time_mlp_in(torch.cat([action_emb, time_emb], dim=2))
        return self.action_time_mlp_out(F.silu(h))

    def denoise_step(self, cache: PrefixCache, x_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """Velocity v_t [B, S, max_action_dim] (fp32) for the noisy actions x_t at time t [B]."""
        vwe = self.vlm_with_expert
        groups = vwe.num_heads // vwe.num_kv_heads
        expert_layers = vwe.lm_expert.layers
        h = self.embed_suffix(x_t, time).to(expert_layers[0].dtype)
        assert cache.self_rope is not None and cache.cross_rope is not None
        for i, (expert_idx, kind) in enumerate(vwe.plan):
            if expert_idx is None:
                continue
            layer = expert_layers[expert_idx]
            if kind == "self":
                q, k, v = self._qkv(layer, h)
                q = apply_rope(q, *cache.self_rope)
                k = apply_rope(k, *cache.self_rope)
                pk, pv = cache.keys[i], cache.values[i]
                k = torch.cat([pk, k.to(pk.dtype)], dim=1)
                v = torch.cat([pv, v.to(pv.dtype)], dim=1)
                att = attention(q, k, v, cache.self_mask, groups)
            else:
                normed = rms_norm(layer.input_layernorm, h).to(layer.dtype)
                q = layer.self_attn.q_proj(normed).view(*normed.shape[:-1], -1, layer.self_attn.head_dim)
                q = apply_rope(q, *cache.cross_rope)
                k, v = cache.cross_kv[expert_idx]
                att = attention(q, k, v, cache.cross_mask, groups)
            h = layer.finish(h, att)
        out = rms_norm(vwe.lm_expert.norm, h)[:, -self.config.chunk_size :]
        return self.action_out_proj(out.to(torch.float32))

    def sample_actions(
        self,
        cache: PrefixCache,
        noise: torch.Tensor,
        num_steps: int,
        step_callback: Callable[[int, int], bool | None] | None = None,
        guidance: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Euler integration from t = 1 (noise) to t = 0; returns x_0 [B, S, max_action_dim] fp32.

        ``guidance(x_t, v_t, t)``, when given, replaces each velocity before the step (real-time chunking,
        :class:`smolvla_policy.model.rtc.RTCGuidance`)."""
        cache = self.prepare_denoising(cache)
        dt = -1.0 / num_steps
        x_t = noise.to(torch.float32)
        bsize = x_t.shape[0]
        dt_t = torch.tensor(dt, dtype=torch.float32, device=x_t.device)
        for step in range(num_steps):
            t = 1.0 + step * dt
            time = torch.tensor(t, dtype=torch.float32, device=x_t.device).expand(bsize)
            v_t = self.denoise_step(cache, x_t, time)
            if guidance is not None:
                v_t = guidance(x_t, v_t, t)
            x_t = x_t + dt_t * v_t
            if step_callback is not None and step_callback(step + 1, num_steps) is False:
                from ..backend import InferenceCancelled

                raise InferenceCancelled(f"cancelled after denoising step {step + 1}/{num_steps}")
        return x_t

    # ---- training pass (no cache; prefix and suffix in one pass) -------------------------------------------
    def forward_velocity(
        self,
        prefix_embs: torch.Tensor,
        prefix_pad: torch.Tensor,
        prefix_att: torch.Tensor,
        x_t: torch.Tensor,
        time: torch.Tensor,
    ) -> torch.Tensor:
        """v_t for training: the VLM runs on the prefix (masks and positions from [prefix; suffix]) while the
        expert runs on the suffix, layer by layer, exactly as lerobot's joint forward."""
        vwe = self.vlm_with_expert
        groups = vwe.num_heads // vwe.num_kv_heads
        bsize, plen = prefix_pad.shape
        s = x_t.shape[1]
        suffix = self.embed_suffix(x_t, time)
        pad = torch.cat([prefix_pad, torch.ones(bsize, s, dtype=torch.bool, device=x_t.device)], dim=1)
        att = torch.cat([prefix_att, torch.ones(bsize, s, dtype=torch.bool, device=x_t.device)], dim=1)
        allowed = make_att_2d_masks(pad, att)
        full_mask = additive_mask(allowed)
        prefix_mask = full_mask[:, :, :plen, :plen]
        suffix_self_mask = full_mask[:, :, plen:, :]
        suffix_cross_mask = full_mask[:, :, plen:, :plen]
        pos = torch.cumsum(pad.to(torch.int64), dim=1) - 1
        p_cos, p_sin = rope_cos_sin(pos[:, :plen], vwe.head_dim)
        s_rope = rope_cos_sin(pos[:, plen:], vwe.head_dim)
        c_pos = pos[:, plen:] - pos[:, plen:].min(dim=1, keepdim=True).values
        c_rope = rope_cos_sin(c_pos, vwe.head_dim)
        hp = prefix_embs.to(self.vlm_dtype)
        hs = suffix.to(vwe.lm_expert.layers[0].dtype)
        vlm_layers = vwe.text_model.layers
        for i, (expert_idx, kind) in enumerate(vwe.plan):
            vlayer = vlm_layers[i]
            q, k, v = self._qkv(vlayer, hp)
            q = apply_rope(q, p_cos, p_sin)
            k = apply_rope(k, p_cos, p_sin)
            if expert_idx is None:
                hp = vlayer.finish(hp, attention(q, k, v, prefix_mask, groups))
                continue
            elayer = vwe.lm_expert.layers[expert_idx]
            if kind == "self":
                eq, ek, ev = self._qkv(elayer, hs)
                eq = apply_rope(eq, *s_rope)
                ek = apply_rope(ek, *s_rope)
                kk = torch.cat([k, ek.to(k.dtype)], dim=1)
                vv = torch.cat([v, ev.to(v.dtype)], dim=1)
                att_s = attention(eq, kk, vv, suffix_self_mask, groups)
            else:
                normed = rms_norm(elayer.input_layernorm, hs).to(elayer.dtype)
                eq = elayer.self_attn.q_proj(normed).view(*normed.shape[:-1], -1, elayer.self_attn.head_dim)
                eq = apply_rope(eq, *c_rope)
                ck, cv = self._cross_kv(expert_idx, k, v)
                att_s = attention(eq, ck, cv, suffix_cross_mask, groups)
            hp = vlayer.finish(hp, attention(q, k, v, prefix_mask, groups))
            hs = elayer.finish(hs, att_s)
        out = rms_norm(vwe.lm_expert.norm, hs)[:, -self.config.chunk_size :]
        return self.action_out_proj(out.to(torch.float32))
