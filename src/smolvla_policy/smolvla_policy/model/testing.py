"""Offline test helpers: a tiny but complete SmolVLA checkpoint and a small tokenizer built locally.

``make_tiny_checkpoint`` writes lerobot's layout (config.json, model.safetensors, processor JSON + normaliser
safetensors) plus ``vlm/`` holding a tiny SmolVLM config and a byte-level tokenizer made with the
``tokenizers`` library (ids 0/1/2 = ``<|endoftext|>``/``<|im_start|>``/``<|im_end|>``; pad id 2 as in
SmolVLM2). Nothing is
downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .configuration import (
    ACTION,
    OBS_STATE,
    STATE,
    VISUAL,
    SmolVLAConfig,
    VLMConfig,
    full_size_config,
)
from .processor import Normalizer

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

__all__ = [
    "full_size_config",
    "make_test_tokenizer",
    "make_tiny_checkpoint",
    "random_stats",
    "tiny_config",
    "tiny_vlm_config",
]


def make_test_tokenizer(directory: str | Path | None = None) -> Any:
    """A byte-level tokenizer (259 ids: 3 specials + 256 bytes, no merges), deterministic and offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=8192,
    )
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(directory))
    return fast


def tiny_vlm_config(vocab_size: int = 320) -> VLMConfig:
    """Text hidden 64 (4 layers, 4 heads, 2 KV heads, head_dim 16); vision hidden 32 (2 layers), 512 px."""
    return VLMConfig(
        text_hidden_size=64,
        text_num_hidden_layers=4,
        text_num_attention_heads=4,
        text_num_key_value_heads=2,
        text_head_dim=16,
        text_intermediate_size=128,
        vocab_size=vocab_size,
        pad_token_id=2,
        vision_hidden_size=32,
        vision_num_hidden_layers=2,
        vision_num_attention_heads=2,
        vision_intermediate_size=64,
        vision_image_size=512,
        vision_patch_size=16,
        scale_factor=4,
        image_token_id=vocab_size - 1,
        fake_image_token_id=vocab_size - 2,
        global_image_token_id=vocab_size - 3,
        name_or_path="tiny-smolvlm",
    )


def tiny_config(
    camera_keys: Sequence[str] = ("observation.images.top", "observation.images.wrist"),
    state_dim: int = 6,
    action_dim: int = 6,
    chunk_size: int = 50,
    image_shape: tuple[int, int, int] = (3, 480, 640),
    **overrides: Any,
) -> SmolVLAConfig:
    inputs: dict[str, dict[str, Any]] = {OBS_STATE: {"type": STATE, "shape": [state_dim]}}
    for key in camera_keys:
        inputs[key] = {"type": VISUAL, "shape": list(image_shape)}
    params: dict[str, Any] = {
        "input_features": inputs,
        "output_features": {"action": {"type": ACTION, "shape": [action_dim]}},
        "chunk_size": chunk_size,
        "n_action_steps": min(50, chunk_size),
        "num_vlm_layers": 4,
    }
    params.update(overrides)
    return SmolVLAConfig(**params)


def random_stats(config: SmolVLAConfig, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Plausible MEAN_STD stats (degree-like ranges) for state and action."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, dim in ((config.state_key, config.state_dim), (config.action_key, config.action_dim)):
        if key is None:
            continue
        out[key] = {
            "mean": rng.normal(0.0, 20.0, dim).astype(np.float32),
            "std": rng.uniform(5.0, 30.0, dim).astype(np.float32),
        }
    return out


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Deterministic random weights with sane scales (also norms and biases, so parity tests see them)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if p.ndim >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                std = 1.0 / np.sqrt(fan_in)
                if name.endswith("embed_tokens.weight") or name.endswith("position_embedding.weight"):
                    std = 1.0 / np.sqrt(p.shape[1])
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))


def make_tiny_checkpoint(
    directory: str | Path,
    camera_keys: Sequence[str] = ("observation.images.top", "observation.images.wrist"),
    state_dim: int = 6,
    action_dim: int = 6,
    chunk_size: int = 50,
    seed: int = 0,
    **config_overrides: Any,
) -> Path:
    """Write a complete, loadable tiny checkpoint (random weights) into ``directory``; returns it."""
    from .policy import SmolVLAPolicy

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vlm_dir = (directory / "vlm").resolve()
    tokenizer = make_test_tokenizer()
    config = tiny_config(
        camera_keys,
        state_dim,
        action_dim,
        chunk_size,
        vlm_model_name=str(vlm_dir),
        **config_overrides,
    )
    vlm = tiny_vlm_config()
    torch.manual_seed(seed)
    policy = SmolVLAPolicy(
        config,
        vlm,
        tokenizer=tokenizer,
        normalizer=Normalizer.from_config(config, random_stats(config, seed)),
    )
    randomize_(policy, seed)
    policy.save_pretrained(directory)
    return directory
