"""Build the policy a training run starts from, bound to a dataset's features and statistics.

``--init`` is one of:

- a checkpoint directory or hub id (lerobot layout): its weights are loaded strictly; its features must
  match the dataset's (after ``--camera-map``) -- a mismatch is an error, never a silent identity;
- a JSON file with random weights: either a lerobot ``config.json`` (``"type": "smolvla"``), or this
  project's init file ``{"policy": {...}, "vlm": {...}, "tokenizer": "byte_level" | DIR}`` (see
  ``configs/small.json``); a bare preset name (``small``) names a packaged init file. Input and output
  features are taken from the dataset.

Normalisation (lerobot issue #1763 is the failure to avoid): the checkpoint's normaliser gets the DATASET's
statistics, keyed by the checkpoint's feature names. Every feature the config normalises (MEAN_STD /
MIN_MAX) must have statistics of the right shape in the dataset's ``meta/stats.json``; otherwise
:class:`FeatureMismatchError` says which.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smolvla_policy.model.configuration import ACTION, STATE, VISUAL, SmolVLAConfig, VLMConfig
from smolvla_policy.model.processor import Normalizer, load_tokenizer
from smolvla_train.dataset import DatasetMeta
from smolvla_train.lerobot_format import ACTION as ACTION_KEY
from smolvla_train.lerobot_format import IMAGE_PREFIX
from smolvla_train.lerobot_format import STATE as STATE_KEY

log = logging.getLogger(__name__)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
#: the VLM directory inside every checkpoint this package writes (config.json's vlm_model_name)
VLM_DIR_NAME = "vlm"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SMOLVLM_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}


class FeatureMismatchError(ValueError):
    """Dataset features / statistics do not fit the checkpoint's (the message names the feature)."""


# ------------------------------------------------------------------------------------------------------------
# camera mapping
# ------------------------------------------------------------------------------------------------------------
def parse_camera_map(text: str | None) -> dict[str, str | None]:
    """``top=camera1,wrist=camera2`` (short or full keys) -> {dataset key: checkpoint key}; ``cam=`` drops."""
    out: dict[str, str | None] = {}
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"--camera-map entry {item!r} is not DATASET_CAM=CHECKPOINT_CAM")
        src, dst = (s.strip() for s in item.split("=", 1))
        if not src:
            raise ValueError(f"--camera-map entry {item!r} has no dataset camera")
        full = lambda k: k if "." in k else IMAGE_PREFIX + k  # noqa: E731  (short names get the prefix)
        out[full(src)] = full(dst) if dst else None
    return out


def mapped_cameras(meta: DatasetMeta, camera_map: Mapping[str, str | None]) -> dict[str, str]:
    unknown = [k for k in camera_map if k not in meta.camera_keys]
    if unknown:
        raise FeatureMismatchError(
            f"--camera-map names camera(s) {unknown} the dataset does not have (it has {meta.camera_keys})"
        )
    out = {}
    for key in meta.camera_keys:
        dst = camera_map.get(key, key)
        if dst is not None:
            out[key] = dst
    if len(set(out.values())) != len(out):
        raise FeatureMismatchError(f"--camera-map maps two dataset cameras to the same key: {out}")
    return out


# ------------------------------------------------------------------------------------------------------------
# features and statistics
# ------------------------------------------------------------------------------------------------------------
def dataset_features(
    meta: DatasetMeta, cameras: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(input_features, output_features) as SmolVLAConfig holds them, from the dataset (cameras mapped)."""
    inputs: dict[str, dict[str, Any]] = {STATE_KEY: {"type": STATE, "shape": list(meta.shape(STATE_KEY))}}
    for key, out in cameras.items():
        h, w, c = meta.shape(key)
        inputs[out] = {"type": VISUAL, "shape": [c, h, w]}
    outputs = {ACTION_KEY: {"type": ACTION, "shape": list(meta.shape(ACTION_KEY))}}
    return inputs, outputs


def check_features(config: SmolVLAConfig, meta: DatasetMeta, cameras: Mapping[str, str]) -> None:
    """The checkpoint's features must be served by the dataset (state/action dims, every camera)."""
    inputs, outputs = dataset_features(meta, cameras)
    problems = []
    for key, feat in {**config.input_features, **config.output_features}.items():
        ftype = feat.get("type")
        if ftype == VISUAL:
            continue
        if ftype not in (STATE, ACTION):
            continue
        have = inputs.get(key) or outputs.get(key)
        if have is None:
            problems.append(f"checkpoint feature '{key}' is not in the dataset")
        elif list(have["shape"]) != list(feat["shape"]):
            problems.append(f"'{key}': checkpoint shape {feat['shape']} vs dataset shape {have['shape']}")
    extra = [v for v in cameras.values() if v not in config.input_features]
    if extra:
        problems.append(
            f"dataset camera(s) {extra} are not checkpoint cameras ({config.image_features}); map them with "
            "--camera-map or drop them with --camera-map CAM="
        )
    served = set(cameras.values())
    missing_cams = [k for k in config.image_features if k not in served]
    if not any(k in served for k in config.image_features):
        problems.append(f"no checkpoint camera {config.image_features} has a dataset camera")
    elif len(missing_cams) > config.empty_cameras:
        real = [k for k in missing_cams if ".empty_camera_" not in k]
        problems.append(
            f"checkpoint camera(s) {real} have no dataset camera (dataset cameras after mapping: "
            f"{sorted(served)}); use --camera-map DATASET_CAM=CHECKPOINT_CAM, or --empty-cameras N to feed "
            f"up to N missing cameras as empty images ({len(missing_cams)} slots missing, empty_cameras = "
            f"{config.empty_cameras})"
        )
    if problems:
        raise FeatureMismatchError("dataset does not fit the checkpoint: " + "; ".join(problems))


def bind_stats(config: SmolVLAConfig, meta: DatasetMeta) -> Normalizer:
    """The dataset's statistics under the checkpoint's feature names; errors on anything missing."""
    feats = {**config.input_features, **config.output_features}
    stats: dict[str, dict[str, np.ndarray]] = {}
    for key, feat in feats.items():
        mode = config.normalization_mapping.get(feat.get("type", ""), "IDENTITY")
        if mode == "IDENTITY":
            continue
        need = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max")}.get(mode)
        if need is None:
            raise FeatureMismatchError(f"'{key}': normalisation mode {mode} is not supported")
        if key not in meta.stats:
            raise FeatureMismatchError(
                f"'{key}' is normalised ({mode}) but the dataset's meta/stats.json has no statistics for it "
                f"(it has: {sorted(meta.stats)})"
            )
        entry = {}
        for name in need:
            if name not in meta.stats[key]:
                raise FeatureMismatchError(f"meta/stats.json: '{key}' has no '{name}' ({mode} needs it)")
            value = np.asarray(meta.stats[key][name], dtype=np.float32).reshape(-1)
            if list(value.shape) != [int(np.prod(feat["shape"]))]:
                raise FeatureMismatchError(
                    f"meta/stats.json: '{key}.{name}' has {value.shape[0]} values, the feature has shape "
                    f"{feat['shape']}"
                )
            if not np.all(np.isfinite(value)):
                raise FeatureMismatchError(f"meta/stats.json: '{key}.{name}' is not finite")
            entry[name] = value
        for name in ("min", "max", "mean", "std"):
            if name not in entry and name in meta.stats[key]:
                value = np.asarray(meta.stats[key][name], dtype=np.float32).reshape(-1)
                if value.shape == entry[need[0]].shape:
                    entry[name] = value
        if "std" in entry and np.any(entry["std"] < 1e-6):
            dims = np.flatnonzero(entry["std"] < 1e-6).tolist()
            log.warning(
                "'%s' has (near) zero std in dims %s: normalised values there are ~noise/1e-8", key, dims
            )
        stats[key] = entry
    return Normalizer.from_config(config, stats)


# ------------------------------------------------------------------------------------------------------------
# tokenizer
# ------------------------------------------------------------------------------------------------------------
def byte_level_tokenizer() -> Any:
    """An offline byte-level tokenizer (ids 0/1/2 = <|endoftext|>/<|im_start|>/<|im_end|>, 256 bytes, then
    SmolVLM's image tokens): for models trained from scratch, where SmolVLM2's tokenizer is not needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=8192,
        extra_special_tokens=dict(SMOLVLM_TOKENS),
    )


def token_id(tokenizer: Any, token: str) -> int | None:
    i = tokenizer.convert_tokens_to_ids(token)
    return int(i) if isinstance(i, int) and i != getattr(tokenizer, "unk_token_id", None) else None


# ------------------------------------------------------------------------------------------------------------
# init
# ------------------------------------------------------------------------------------------------------------
@dataclass
class InitSpec:
    kind: str  # "checkpoint" | "config"
    source: str
    config: SmolVLAConfig | None = None
    vlm: VLMConfig | None = None
    tokenizer: Any = None


def resolve_init_file(init: str) -> Path | None:
    path = Path(init).expanduser()
    if path.is_file():
        return path
    preset = CONFIGS_DIR / f"{init}.json"
    if "/" not in init and preset.is_file():
        return preset
    return None


def read_init_config(path: Path, tokenizer_dir: str | None = None) -> InitSpec:
    data = json.loads(path.read_text())
    if "policy" in data:
        policy = dict(data["policy"])
        vlm_data = data.get("vlm")
        tok_src = tokenizer_dir or data.get("tokenizer", "byte_level")
    elif data.get("type") == "smolvla":
        policy, vlm_data, tok_src = dict(data), None, tokenizer_dir
    else:
        raise ValueError(
            f"{path}: neither a SmolVLA config.json ('type': 'smolvla') nor an init file ('policy')"
        )
    policy.pop("_comment", None)
    config = SmolVLAConfig.from_dict(policy)
    vlm = VLMConfig.from_dict(vlm_data, name_or_path=str(path)) if vlm_data else None
    tokenizer = None
    if tok_src == "byte_level":
        tokenizer = byte_level_tokenizer()
    elif tok_src:
        tokenizer = load_tokenizer(Path(tok_src).expanduser())
    if vlm is None or tokenizer is None:
        from smolvla_policy.model.checkpoint import resolve_vlm

        base = path.parent / VLM_DIR_NAME if (path.parent / VLM_DIR_NAME).is_dir() else None
        vlm, tokenizer = resolve_vlm(config, base, vlm, tokenizer)
    return InitSpec(kind="config", source=str(path), config=config, vlm=vlm, tokenizer=tokenizer)


def build_policy(
    init: str,
    meta: DatasetMeta,
    camera_map: Mapping[str, str | None] | None = None,
    tokenizer_dir: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    empty_cameras: int | None = None,
) -> tuple[Any, dict[str, str]]:
    """-> (SmolVLAPolicy in float32 on ``device``, {dataset camera key: checkpoint camera key})."""
    from smolvla_policy.model.policy import SmolVLAPolicy

    cameras = mapped_cameras(meta, camera_map or {})
    init_file = resolve_init_file(init)
    if init_file is None:  # checkpoint directory or hub id
        tok = load_tokenizer(Path(tokenizer_dir).expanduser()) if tokenizer_dir else None
        policy = SmolVLAPolicy.from_pretrained(init, tokenizer=tok, device=device, dtype="float32")
        if policy.tokenizer is None:
            raise ValueError(f"checkpoint {init} has no tokenizer; pass --tokenizer DIR")
        if empty_cameras is not None:
            policy.config.empty_cameras = int(empty_cameras)
        check_features(policy.config, meta, cameras)
        policy.normalizer = bind_stats(policy.config, meta)
    else:
        spec = read_init_config(init_file, tokenizer_dir)
        config = copy.deepcopy(spec.config)
        assert config is not None and spec.vlm is not None
        config.input_features, config.output_features = dataset_features(meta, cameras)
        if empty_cameras is not None:
            config.empty_cameras = int(empty_cameras)
        config.validate()
        vlm = copy.deepcopy(spec.vlm)
        if spec.tokenizer is not None:
            size = len(spec.tokenizer)
            if size > vlm.vocab_size:
                raise ValueError(f"tokenizer has {size} tokens, the VLM's vocab_size is {vlm.vocab_size}")
            for attr, tok in (
                ("image_token_id", "<image>"),
                ("fake_image_token_id", "<fake_token_around_image>"),
                ("global_image_token_id", "<global-img>"),
            ):
                tid = token_id(spec.tokenizer, tok)
                if tid is not None:
                    setattr(vlm, attr, tid)
        if config.resize_imgs_with_padding is not None:
            w, h = config.resize_imgs_with_padding
            if (w, h) != (vlm.vision_image_size, vlm.vision_image_size):
                raise ValueError(
                    f"resize_imgs_with_padding {config.resize_imgs_with_padding} must equal the vision's "
                    f"image_size {vlm.vision_image_size}"
                )
        torch.manual_seed(seed)
        policy = SmolVLAPolicy(
            config,
            vlm,
            tokenizer=spec.tokenizer,
            normalizer=bind_stats(config, meta),
            device=device,
            dtype="float32",
        )
    # checkpoints written by this package carry their VLM config + tokenizer in <checkpoint>/vlm/
    policy.config.vlm_model_name = VLM_DIR_NAME
    return policy, cameras
