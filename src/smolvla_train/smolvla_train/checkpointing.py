"""Training checkpoints in lerobot's layout, resumable, safetensors + JSON only (never pickle).

::

    OUT/checkpoints/000500/pretrained_model/   loadable as is (policy server checkpoint:=...;
        config.json  model.safetensors          lerobot: SmolVLAPolicy.from_pretrained + processors)
        policy_preprocessor.json  policy_preprocessor_step_5_normalizer_processor.safetensors
        policy_postprocessor.json policy_postprocessor_step_0_unnormalizer_processor.safetensors
        train_config.json                       the run's settings (no absolute paths)
        vlm/                                    VLM config + tokenizer (+ processor files lerobot reads)
    OUT/checkpoints/000500/training_state/
        optimizer_param_groups.json  optimizer_state.safetensors  scheduler_state.json
        rng_state.safetensors  training_step.json
    OUT/checkpoints/last -> 000500   OUT/checkpoints/best -> 000300   (relative symlinks)

A checkpoint is written into ``.<step>.partial`` and renamed when complete, so a directory named after a
step is always whole; older step directories that are neither ``last`` nor ``best`` are removed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS_DIR = "checkpoints"
PRETRAINED_DIR = "pretrained_model"
STATE_DIR = "training_state"
LAST, BEST = "last", "best"
TRAIN_CONFIG = "train_config.json"


def step_name(step: int) -> str:
    return f"{step:06d}"


# ------------------------------------------------------------------------------------------------------------
# the policy folder
# ------------------------------------------------------------------------------------------------------------
def processor_config(image_size: int, image_seq_len: int) -> dict[str, Any]:
    """transformers' SmolVLMProcessor files, enough for lerobot's ``AutoProcessor.from_pretrained``."""
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "resample": 1,
        "rescale_factor": 1 / 255,
        "size": {"longest_edge": 1456},
    }
    return {
        "image_processor": {
            **common,
            "do_image_splitting": False,
            "image_processor_type": "SmolVLMImageProcessor",
            "max_image_size": {"longest_edge": image_size},
        },
        "image_seq_len": image_seq_len,
        "processor_class": "SmolVLMProcessor",
        "video_processor": {
            **common,
            "do_sample_frames": False,
            "max_image_size": {"longest_edge": 364},
            "return_metadata": False,
            "video_processor_type": "SmolVLMVideoProcessor",
        },
    }


def save_policy_dir(policy: Any, directory: Path, train_config: dict[str, Any]) -> None:
    """The policy folder: lerobot's files + vlm/ + train_config.json (all relative, self-contained)."""
    policy.config.vlm_model_name = "vlm"
    policy.save_pretrained(directory)  # config, weights, processors, vlm/config.json + tokenizer files
    vlm = policy.vlm_config
    proc = processor_config(vlm.vision_image_size, vlm.image_seq_len)
    (directory / "vlm" / "processor_config.json").write_text(json.dumps(proc, indent=2) + "\n")
    (directory / TRAIN_CONFIG).write_text(json.dumps(train_config, indent=4) + "\n")


# ------------------------------------------------------------------------------------------------------------
# training state
# ------------------------------------------------------------------------------------------------------------
def optimizer_to_files(optimizer: torch.optim.Optimizer, directory: Path, param_names: list[str]) -> None:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{idx}.{name}"] = t.detach().to("cpu").contiguous()
    save_file(tensors, str(directory / "optimizer_state.safetensors"))
    groups = [dict(g.items()) for g in sd["param_groups"]]
    (directory / "optimizer_param_groups.json").write_text(
        json.dumps({"param_groups": groups, "param_names": param_names}, indent=2) + "\n"
    )


def optimizer_from_files(optimizer: torch.optim.Optimizer, directory: Path, param_names: list[str]) -> None:
    meta = json.loads((directory / "optimizer_param_groups.json").read_text())
    if meta.get("param_names") != param_names:
        saved = meta.get("param_names") or []
        raise ValueError(
            f"the checkpoint's optimizer trained {len(saved)} tensors, this run trains {len(param_names)}: "
            "the trainable set (--train-vision/--train-all) must be the same to resume"
        )
    flat = load_file(str(directory / "optimizer_state.safetensors"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_to_file(path: Path, generators: Mapping[str, torch.Generator | torch.Tensor]) -> None:
    """Generator states (a generator, or its state gathered from another process) + torch's own."""
    tensors = {
        f"generator.{k}": (g if torch.is_tensor(g) else g.get_state()).contiguous()
        for k, g in generators.items()
    }
    tensors["torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = s
    save_file(tensors, str(path))


def rng_from_file(path: Path, generators: dict[str, torch.Generator]) -> None:
    tensors = load_file(str(path))
    for k, g in generators.items():
        key = f"generator.{k}"
        if key not in tensors:
            raise ValueError(f"{path}: no state for generator {k!r} (saved: {sorted(tensors)})")
        g.set_state(tensors[key])
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda.")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def save_training_state(
    directory: Path,
    step_info: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generators: Mapping[str, torch.Generator | torch.Tensor],
    param_names: list[str],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "training_step.json").write_text(json.dumps(step_info, indent=2) + "\n")
    optimizer_to_files(optimizer, directory, param_names)
    (directory / "scheduler_state.json").write_text(json.dumps(scheduler.state_dict(), indent=2) + "\n")
    rng_to_file(directory / "rng_state.safetensors", generators)


def load_training_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generators: dict[str, torch.Generator],
    param_names: list[str],
) -> dict[str, Any]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} does not exist: nothing to resume from")
    optimizer_from_files(optimizer, directory, param_names)
    scheduler.load_state_dict(json.loads((directory / "scheduler_state.json").read_text()))
    rng_from_file(directory / "rng_state.safetensors", generators)
    return json.loads((directory / "training_step.json").read_text())


# ------------------------------------------------------------------------------------------------------------
# step directories, last/best links
# ------------------------------------------------------------------------------------------------------------
def _link(root: Path, name: str, target: str) -> None:
    tmp = root / f".{name}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, root / name)


def link_target(root: Path, name: str) -> str | None:
    link = root / name
    return os.readlink(link) if link.is_symlink() else None


def write_checkpoint(
    out_dir: Path,
    step: int,
    policy: Any,
    train_config: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generators: Mapping[str, torch.Generator | torch.Tensor],
    param_names: list[str],
    step_info: dict[str, Any],
    is_best: bool,
    keep_all: bool = False,
) -> Path:
    """Write checkpoints/<step>/ (via a .partial directory), point ``last`` (and ``best``) at it, prune."""
    root = out_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = step_name(step)
    partial = root / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    save_policy_dir(policy, partial / PRETRAINED_DIR, train_config)
    save_training_state(partial / STATE_DIR, step_info, optimizer, scheduler, generators, param_names)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    _link(root, LAST, name)
    if is_best or link_target(root, BEST) is None:
        _link(root, BEST, name)
    if not keep_all:
        keep = {link_target(root, LAST), link_target(root, BEST)}
        for d in root.iterdir():
            if d.is_dir() and not d.is_symlink() and d.name.isdigit() and d.name not in keep:
                shutil.rmtree(d)
    return final
