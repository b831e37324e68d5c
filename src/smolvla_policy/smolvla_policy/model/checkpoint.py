"""Loading and saving checkpoints in lerobot's layout (safetensors + JSON only; no pickle, no remote code).

Layout (as lerobot's ``SmolVLAPolicy.save_pretrained`` plus its processors write it)::

    config.json                      SmolVLAConfig (type "smolvla")
    model.safetensors                all tensors, names "model.vlm_with_expert...."
    policy_preprocessor.json         + policy_preprocessor_step_5_normalizer_processor.safetensors
    policy_postprocessor.json        + policy_postprocessor_step_0_unnormalizer_processor.safetensors
    vlm/                             (this project) the VLM's config.json + tokenizer files, for offline use

Loading is strict: a missing or unexpected tensor, or a shape mismatch, raises :class:`CheckpointError`
naming it; only ``model.vlm_with_expert.vlm.lm_head.weight`` (never used) may be absent.

VLM config + tokenizer resolution order: explicit arguments -> ``<checkpoint>/vlm/`` -> ``vlm_model_name`` as
a local directory -> built-in SmolVLM2-500M constants (config) and the Hugging Face cache/hub (tokenizer)
-> error.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .configuration import SMOLVLM2_500M, SmolVLAConfig, VLMConfig
from .processor import load_normalizer, load_tokenizer, save_processors

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VLM_DIR = "vlm"
OPTIONAL_KEYS = ("model.vlm_with_expert.vlm.lm_head.weight",)
#: Fields of lerobot 0.6.1's SmolVLAConfig that SmolVLAConfig does not model (kept in ``extra``); any other
#: key of config.json that SmolVLAConfig does not know is refused at load, naming it, as lerobot does.
LEROBOT_ONLY_FIELDS = ("pretrained_path", "pretrained_revision", "use_peft")
#: What the Hugging Face hub accepts as a repo id (``user/name``); anything else is a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, malformed or does not match the network (message names the culprit)."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def resolve_checkpoint_dir(path_or_hub_id: str | os.PathLike[str]) -> Path:
    """A local directory, or a hub id downloaded with ``snapshot_download`` (safetensors/JSON files only)."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).exists():
            raise CheckpointError(f"{path} has no {CONFIG_NAME}: not a SmolVLA checkpoint directory")
        return path
    text = str(path_or_hub_id)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1 or not _HUB_ID.match(text):
        raise CheckpointError(f"checkpoint directory {text!r} does not exist")
    if (
        path.parent.is_dir()
    ):  # 'outputs/ckpt' with a local 'outputs/': a mistyped path, not a hub id (issue 19)
        raise CheckpointError(
            f"checkpoint directory {text!r} does not exist (its parent {str(path.parent)!r} is a local "
            "directory, so this is not taken for a Hugging Face hub id)"
        )
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            repo_id=text,
            allow_patterns=["*.json", "*.safetensors", "vlm/*"],
            local_files_only=_offline(),
        )
    except Exception as exc:  # noqa: BLE001 - network/cache errors come in many types
        raise CheckpointError(
            f"could not fetch {text!r} from the Hugging Face hub or its cache ({type(exc).__name__}: {exc}); "
            "pass a local checkpoint directory when offline"
        ) from exc
    return Path(local)


def resolve_vlm(
    config: SmolVLAConfig,
    checkpoint_dir: Path | None,
    vlm_config: VLMConfig | None = None,
    tokenizer: Any = None,
    tokenizer_name: str | None = None,
    need_tokenizer: bool = True,
) -> tuple[VLMConfig, Any]:
    """Find the VLM config and tokenizer (see the module docstring for the order)."""
    candidates: list[Path] = []
    if checkpoint_dir is not None:
        candidates.append(checkpoint_dir / VLM_DIR)
    for name in (config.vlm_model_name, tokenizer_name):
        if name and Path(name).expanduser().is_dir():
            candidates.append(Path(name).expanduser())
    for cand in candidates:
        if vlm_config is None and (cand / "config.json").exists():
            vlm_config = VLMConfig.from_json(cand)
        if tokenizer is None and need_tokenizer and (cand / "tokenizer.json").exists():
            tokenizer = load_tokenizer(cand)
    if vlm_config is None:
        if config.vlm_model_name == SMOLVLM2_500M:
            vlm_config = VLMConfig.smolvlm2_500m()
        else:
            raise CheckpointError(
                f"no VLM config for {config.vlm_model_name!r}: put its config.json into "
                f"<checkpoint>/{VLM_DIR}/, set vlm_model_name to a local directory, or pass vlm_config"
            )
    if tokenizer is None and need_tokenizer:
        try:
            tokenizer = load_tokenizer(config.vlm_model_name, local_only=_offline())
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"no tokenizer for {config.vlm_model_name!r}: none in <checkpoint>/{VLM_DIR}/, not a local "
                f"directory, and not in the Hugging Face cache/hub ({type(exc).__name__}). "
                f"Pass tokenizer=..., or copy the tokenizer files into <checkpoint>/{VLM_DIR}/"
            ) from exc
    return vlm_config, tokenizer


_ST_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def _header(path: Path) -> tuple[int, dict[str, Any]]:
    import json as _json

    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return n, _json.loads(fh.read(n))


def _mapped_tensor(path: Path, key: str, header: tuple[int, dict[str, Any]]) -> torch.Tensor | None:
    """``key`` of a safetensors file as its own copy-on-write memory map (no RSS until pages are touched,
    unmapped when the tensor is freed); None if the layout is unexpected."""
    import numpy as np

    n, entries = header
    info = entries.get(key)
    if not info or info.get("dtype") not in _ST_DTYPES:
        return None
    start, end = info["data_offsets"]
    if end <= start:
        return None
    raw = np.memmap(path, dtype=np.uint8, mode="c", offset=8 + n + start, shape=(end - start,))
    return torch.from_numpy(raw).view(_ST_DTYPES[info["dtype"]]).reshape(info["shape"])


def column_major_key(key: str) -> bool:
    """Weights the CPU path keeps column-major (see ``SmolVLAModel.use_column_major_small_gemms``)."""
    if not key.endswith(".weight"):
        return False
    if key.startswith("model.vlm_with_expert.lm_expert.layers.") and "layernorm" not in key:
        return True
    return key.split(".")[1] in (
        "action_in_proj",
        "action_out_proj",
        "action_time_mlp_in",
        "action_time_mlp_out",
    )


def read_state_dict(
    path: Path, lazy: tuple[str, ...] = OPTIONAL_KEYS, column_major: bool = False
) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file. ``lazy`` keys stay memory-mapped (lm_head: never touched);
    with ``column_major`` the expert/projection weights are read straight into column-major memory (their
    own short-lived map), so no second, row-major copy stays resident."""
    if not path.exists():
        raise CheckpointError(f"{path} not found (only safetensors checkpoints are supported)")
    header = _header(path)
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            tensor = None
            if key in lazy:
                tensor = _mapped_tensor(path, key, header)
            elif column_major and column_major_key(key):
                mapped = _mapped_tensor(path, key, header)
                if mapped is not None and mapped.ndim == 2:
                    tensor = torch.empty((mapped.shape[1], mapped.shape[0]), dtype=mapped.dtype).t()
                    tensor.copy_(mapped)
                    del mapped
            out[key] = tensor if tensor is not None else f.get_tensor(key)
    return out


def check_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Strict comparison; returns the absent optional keys. Raises CheckpointError naming problems."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in expected if k not in state and k not in OPTIONAL_KEYS]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(
            f"missing tensor(s): {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else "")
        )
    if unexpected:
        problems.append(
            f"unexpected tensor(s): {', '.join(unexpected[:10])}" + (" ..." if len(unexpected) > 10 else "")
        )
    if mismatched:
        problems.append(f"shape mismatch: {'; '.join(mismatched[:10])}")
    if problems:
        raise CheckpointError("checkpoint does not match the SmolVLA network: " + " | ".join(problems))
    return [k for k in OPTIONAL_KEYS if k in expected and k not in state]


def check_config_fields(config: SmolVLAConfig, path: Path | str) -> None:
    """Refuse config.json keys that neither SmolVLAConfig nor lerobot's SmolVLAConfig knows (a misspelled
    field would otherwise silently keep its default), naming them and the closest known field."""
    unknown = sorted(k for k in config.extra if k not in LEROBOT_ONLY_FIELDS)
    if not unknown:
        return
    known = [f.name for f in dataclasses.fields(config) if f.name != "extra"]
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise CheckpointError(f"{path}: unknown field(s) {', '.join(hints)}; lerobot refuses them too")


def check_normalizer(normalizer: Any, config: SmolVLAConfig) -> list[str]:
    """Every normalised feature has finite stats of the feature's shape (else the first prediction fails)."""
    problems = []
    features = {**config.input_features, **config.output_features}
    for key, feature in features.items():
        mode = normalizer._mode(key)
        if mode == "IDENTITY":
            continue
        if mode != "MEAN_STD":
            problems.append(f"'{key}': normalisation mode {mode} is not supported (SmolVLA uses MEAN_STD)")
            continue
        size = math.prod(int(d) for d in feature.get("shape", ()))
        for name in ("mean", "std"):
            value = normalizer.stats.get(key, {}).get(name)
            if value is None:
                problems.append(f"'{key}.{name}' missing")
            elif value.numel() != size:
                problems.append(
                    f"'{key}.{name}' has shape {list(value.shape)}, the feature {list(feature['shape'])}"
                )
            elif not bool(torch.isfinite(torch.as_tensor(value)).all()):
                problems.append(f"'{key}.{name}' is not finite")
    return problems


def load_policy(
    path_or_hub_id: str | os.PathLike[str],
    tokenizer: Any = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    vlm_config: VLMConfig | None = None,
) -> Any:
    from .policy import SmolVLAPolicy, resolve_device

    device = resolve_device(device)  # "auto" and unknown names: a clear error before anything is read
    directory = resolve_checkpoint_dir(path_or_hub_id)
    try:
        config = SmolVLAConfig.from_json(directory / CONFIG_NAME)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {exc}") from exc
    check_config_fields(config, directory / CONFIG_NAME)
    normalizer, tok_cfg = load_normalizer(directory, config)
    problems = check_normalizer(normalizer, config)
    if problems:
        raise CheckpointError(
            f"{directory}: normalisation stats (policy_preprocessor/postprocessor safetensors): "
            + "; ".join(problems)
        )
    vlm, tok = resolve_vlm(config, directory, vlm_config, tokenizer, tok_cfg.get("tokenizer_name"))
    cpu = torch.device(device).type == "cpu"
    state = read_state_dict(directory / WEIGHTS_NAME, column_major=cpu)
    policy = SmolVLAPolicy(config, vlm, tokenizer=tok, normalizer=normalizer, device="meta", dtype=None)
    absent = check_state_dict(policy, state)
    policy.load_state_dict(state, strict=False, assign=True)
    for key in absent:  # lm_head: never used; materialise as zeros so the module is complete
        module_name, _, attr = key.rpartition(".")
        mod = policy.get_submodule(module_name)
        setattr(mod, attr, torch.nn.Parameter(torch.zeros(mod.weight.shape), requires_grad=False))
    policy.source = str(directory)
    policy.finalize(device=device, dtype=dtype)
    return policy


def save_policy(policy: Any, directory: str | os.PathLike[str]) -> Path:
    if getattr(policy, "quantized", ()):
        raise CheckpointError("a dynamically quantised policy cannot be saved; save the float32 policy")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policy.config.to_json(directory / CONFIG_NAME)
    state = {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()}
    # write-then-rename: a policy loaded from this directory may still memory-map the old file (lm_head)
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / WEIGHTS_NAME)
    save_processors(directory, policy.config, policy.normalizer, policy.config.vlm_model_name)
    vlm_dir = directory / VLM_DIR
    vlm_dir.mkdir(exist_ok=True)
    policy.vlm_config.to_json(vlm_dir / "config.json")
    if policy.tokenizer is not None and hasattr(policy.tokenizer, "save_pretrained"):
        policy.tokenizer.save_pretrained(str(vlm_dir))
    return directory
