"""Pre- and post-processing as lerobot's SmolVLA processor pipelines compute them.

- images: uint8 HxWx3 -> float [0, 1] -> resize-with-pad to 512x512 (bilinear, no antialias, zero padding
  on the left and top) -> [-1, 1];
- task: append "\\n" unless present, tokenize (max length 48, truncation, right padding with the
  tokenizer's pad id);
- state/action: MEAN_STD normalisation ``(x - mean) / (std + 1e-8)``, unnormalisation ``x * std + mean``;
- stats read from / written to lerobot's ``policy_preprocessor*.json`` +
  ``*_normalizer_processor.safetensors`` and ``policy_postprocessor*.json`` +
  ``*_unnormalizer_processor.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .configuration import ACTION, STATE, VISUAL, SmolVLAConfig

NORM_EPS = 1e-8
PREPROCESSOR_JSON = "policy_preprocessor.json"
POSTPROCESSOR_JSON = "policy_postprocessor.json"
NORMALIZER_FILE = "policy_preprocessor_step_5_normalizer_processor.safetensors"
UNNORMALIZER_FILE = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"


# ------------------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------------------
def image_to_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 HxWx3 (or float CxHxW in [0, 1]) -> float32 [1, 3, H, W] in [0, 1]."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
        t = torch.from_numpy(np.ascontiguousarray(image))
        t = t.to(torch.float32) / 255 if t.dtype == torch.uint8 else t.to(torch.float32)
        return t.permute(2, 0, 1)[None]
    t = image.to(torch.float32)
    return t[None] if t.ndim == 3 else t


def resize_with_pad(img: torch.Tensor, width: int, height: int, pad_value: float = 0.0) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, height, width]: keep aspect ratio, bilinear, pad on the left and top."""
    if img.ndim != 4:
        raise ValueError(f"expected [B, C, H, W], got {tuple(img.shape)}")
    cur_h, cur_w = img.shape[2:]
    ratio = max(cur_w / width, cur_h / height)
    new_h, new_w = int(cur_h / ratio), int(cur_w / ratio)
    resized = F.interpolate(img, size=(new_h, new_w), mode="bilinear", align_corners=False)
    pad_h = max(0, int(height - new_h))
    pad_w = max(0, int(width - new_w))
    return F.pad(resized, (pad_w, 0, pad_h, 0), value=pad_value)


def preprocess_image(image: np.ndarray | torch.Tensor, config: SmolVLAConfig) -> torch.Tensor:
    """One camera -> [1, 3, 512, 512] float32 in [-1, 1] (padding -> -1)."""
    img = image_to_tensor(image)
    if config.resize_imgs_with_padding is not None:
        img = resize_with_pad(img, *config.resize_imgs_with_padding, pad_value=0.0)
    return img * 2.0 - 1.0


# ------------------------------------------------------------------------------------------------------------
# language
# ------------------------------------------------------------------------------------------------------------
def prepare_task(task: str) -> str:
    return task if task.endswith("\n") else f"{task}\n"


def tokenize(
    tokenizer: Any, tasks: list[str] | str, config: SmolVLAConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (token ids int64 [B, L], attention mask bool [B, L]), right padding, max length 48."""
    if isinstance(tasks, str):
        tasks = [tasks]
    texts = [prepare_task(t) for t in tasks]
    enc = tokenizer(
        texts,
        max_length=config.tokenizer_max_length,
        truncation=True,
        padding=config.pad_language_to,
        padding_side="right",
        return_tensors="pt",
    )
    return enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.bool)


def load_tokenizer(path: str | Path, local_only: bool = True) -> Any:
    """A fast tokenizer from a local directory (tokenizer.json + tokenizer_config.json); never remote code."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=local_only, trust_remote_code=False)


# ------------------------------------------------------------------------------------------------------------
# normalisation
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Normalizer:
    """MEAN_STD / IDENTITY normalisation of state and action with lerobot's eps convention."""

    stats: dict[str, dict[str, torch.Tensor]] = field(
        default_factory=dict
    )  # key -> {"mean": ..., "std": ...}
    norm_map: dict[str, str] = field(default_factory=dict)  # feature type -> mode
    feature_types: dict[str, str] = field(default_factory=dict)  # key -> feature type
    eps: float = NORM_EPS

    def _mode(self, key: str) -> str:
        return self.norm_map.get(self.feature_types.get(key, ""), "IDENTITY")

    def _stat(self, key: str, name: str, like: torch.Tensor) -> torch.Tensor:
        try:
            value = self.stats[key][name]
        except KeyError as exc:
            raise KeyError(f"normalisation stats '{key}.{name}' missing from the checkpoint") from exc
        return value.to(device=like.device, dtype=torch.float32)

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        mode = self._mode(key)
        if mode == "IDENTITY":
            return x
        if mode == "MEAN_STD":
            return (x - self._stat(key, "mean", x)) / (self._stat(key, "std", x) + self.eps)
        raise NotImplementedError(f"normalisation mode {mode} is not supported (SmolVLA uses MEAN_STD)")

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        mode = self._mode(key)
        if mode == "IDENTITY":
            return x
        if mode == "MEAN_STD":
            return x * self._stat(key, "std", x) + self._stat(key, "mean", x)
        raise NotImplementedError(f"normalisation mode {mode} is not supported (SmolVLA uses MEAN_STD)")

    @classmethod
    def from_config(cls, config: SmolVLAConfig, stats: dict[str, dict[str, Any]] | None = None) -> Normalizer:
        types = {k: v["type"] for k, v in {**config.input_features, **config.output_features}.items()}
        tensors = {
            key: {name: torch.as_tensor(np.asarray(val), dtype=torch.float32) for name, val in d.items()}
            for key, d in (stats or {}).items()
        }
        return cls(stats=tensors, norm_map=dict(config.normalization_mapping), feature_types=types)

    def flat(self, keys: list[str] | None = None) -> dict[str, torch.Tensor]:
        out = {}
        for key, d in self.stats.items():
            if keys is not None and key not in keys:
                continue
            for name, value in d.items():
                out[f"{key}.{name}"] = value.detach().to(torch.float32).contiguous()
        return out


def _unflatten(flat: dict[str, torch.Tensor], keys: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in flat.items():
        for key in sorted(keys, key=len, reverse=True):
            if name.startswith(key + "."):
                out.setdefault(key, {})[name[len(key) + 1 :]] = value
                break
    return out


def _find_step(pipeline: dict[str, Any], registry_name: str) -> dict[str, Any] | None:
    for step in pipeline.get("steps", []):
        if step.get("registry_name") == registry_name:
            return step
    return None


def load_normalizer(directory: Path, config: SmolVLAConfig) -> tuple[Normalizer, dict[str, Any]]:
    """Read stats from lerobot's processor files; returns the normaliser and the tokenizer step config."""
    keys = list({**config.input_features, **config.output_features})
    stats: dict[str, dict[str, torch.Tensor]] = {}
    tokenizer_cfg: dict[str, Any] = {}
    eps = NORM_EPS
    norm_map = dict(config.normalization_mapping)
    for json_name, registry, default_file in (
        (POSTPROCESSOR_JSON, "unnormalizer_processor", UNNORMALIZER_FILE),
        (PREPROCESSOR_JSON, "normalizer_processor", NORMALIZER_FILE),
    ):
        state_file = directory / default_file
        json_path = directory / json_name
        if json_path.exists():
            pipeline = json.loads(json_path.read_text())
            step = _find_step(pipeline, registry)
            if step is not None:
                if step.get("state_file"):
                    state_file = directory / step["state_file"]
                cfg = step.get("config", {}) or {}
                eps = float(cfg.get("eps", eps))
                norm_map.update(cfg.get("norm_map", {}) or {})
            tok = _find_step(pipeline, "tokenizer_processor")
            if tok is not None:
                tokenizer_cfg = tok.get("config", {}) or {}
        if state_file.exists():
            for key, d in _unflatten(load_file(str(state_file)), keys).items():
                stats.setdefault(key, {}).update(d)
    types = {k: v["type"] for k, v in {**config.input_features, **config.output_features}.items()}
    return Normalizer(stats=stats, norm_map=norm_map, feature_types=types, eps=eps), tokenizer_cfg


def _features_json(features: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {k: {"type": v["type"], "shape": list(v["shape"])} for k, v in features.items()}


def save_processors(
    directory: Path, config: SmolVLAConfig, normalizer: Normalizer, tokenizer_name: str
) -> None:
    """Write lerobot's processor layout (json step lists + normaliser safetensors)."""
    all_features = {**config.input_features, **config.output_features}
    norm_map = dict(config.normalization_mapping)
    pre = {
        "name": "policy_preprocessor",
        "steps": [
            {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
            {"registry_name": "to_batch_processor", "config": {}},
            {"registry_name": "smolvla_new_line_processor", "config": {}},
            {
                "registry_name": "tokenizer_processor",
                "config": {
                    "max_length": config.tokenizer_max_length,
                    "task_key": "task",
                    "padding_side": "right",
                    "padding": config.pad_language_to,
                    "truncation": True,
                    "tokenizer_name": tokenizer_name,
                },
            },
            {
                "registry_name": "device_processor",
                "config": {"device": config.device or "cpu", "float_dtype": None},
            },
            {
                "registry_name": "normalizer_processor",
                "config": {
                    "eps": normalizer.eps,
                    "features": _features_json(all_features),
                    "norm_map": norm_map,
                },
                "state_file": NORMALIZER_FILE,
            },
        ],
    }
    post = {
        "name": "policy_postprocessor",
        "steps": [
            {
                "registry_name": "unnormalizer_processor",
                "config": {
                    "eps": normalizer.eps,
                    "features": _features_json(config.output_features),
                    "norm_map": norm_map,
                },
                "state_file": UNNORMALIZER_FILE,
            },
            {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}},
        ],
    }
    (directory / PREPROCESSOR_JSON).write_text(json.dumps(pre, indent=4) + "\n")
    (directory / POSTPROCESSOR_JSON).write_text(json.dumps(post, indent=4) + "\n")
    norm_keys = [k for k, v in all_features.items() if v["type"] in (STATE, ACTION)]
    save_file(normalizer.flat(norm_keys), str(directory / NORMALIZER_FILE))
    save_file(normalizer.flat(list(config.output_features)), str(directory / UNNORMALIZER_FILE))


__all__ = [
    "VISUAL",
    "Normalizer",
    "image_to_tensor",
    "load_normalizer",
    "load_tokenizer",
    "preprocess_image",
    "prepare_task",
    "resize_with_pad",
    "save_processors",
    "tokenize",
]
