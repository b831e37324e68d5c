"""Configuration of the SmolVLA policy and of its SmolVLM2 backbone (plain Python, offline).

``SmolVLAConfig`` mirrors the ``config.json`` that lerobot's ``SmolVLAPolicy.save_pretrained`` writes (a
draccus dump with ``"type": "smolvla"``). Keys this project does not interpret are kept in ``extra`` and
written back
unchanged, so a file saved here stays loadable by lerobot.

``VLMConfig`` holds the SmolVLM2 dimensions the network needs (text model, vision tower, connector). The
values of ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct`` are built in, so the full-size network can be
constructed without the network; any other VLM is read from a local ``config.json`` (transformers' SmolVLM
format).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMOLVLM2_500M = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"

# Feature types as lerobot writes them into config.json.
VISUAL, STATE, ACTION = "VISUAL", "STATE", "ACTION"
OBS_STATE = "observation.state"
OBS_IMAGES = "observation.images"
ACTION_KEY = "action"


def _default_normalization_mapping() -> dict[str, str]:
    return {VISUAL: "IDENTITY", STATE: "MEAN_STD", ACTION: "MEAN_STD"}


@dataclass
class SmolVLAConfig:
    """lerobot 0.6.1's SmolVLAConfig (field names, defaults and meaning as in its config.json)."""

    type: str = "smolvla"
    n_obs_steps: int = 1
    input_features: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_features: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str | None = "cpu"
    use_amp: bool = False
    push_to_hub: bool = False
    repo_id: str | None = None
    private: bool | None = None
    tags: list[str] | None = None
    license: str | None = None
    chunk_size: int = 50
    n_action_steps: int = 50
    normalization_mapping: dict[str, str] = field(default_factory=_default_normalization_mapping)
    max_state_dim: int = 32
    max_action_dim: int = 32
    resize_imgs_with_padding: tuple[int, int] | None = (512, 512)  # (width, height)
    empty_cameras: int = 0
    adapt_to_pi_aloha: bool = False
    use_delta_joint_actions_aloha: bool = False
    tokenizer_max_length: int = 48
    num_steps: int = 10
    use_cache: bool = True
    freeze_vision_encoder: bool = True
    train_expert_only: bool = True
    train_state_proj: bool = True
    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.95)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 1e-10
    optimizer_grad_clip_norm: float = 10.0
    scheduler_warmup_steps: int = 1000
    scheduler_decay_steps: int = 30000
    scheduler_decay_lr: float = 2.5e-6
    vlm_model_name: str = SMOLVLM2_500M
    load_vlm_weights: bool = False
    add_image_special_tokens: bool = False
    attention_mode: str = "cross_attn"
    prefix_length: int = -1
    pad_language_to: str = "longest"
    num_expert_layers: int = -1
    num_vlm_layers: int = 16
    self_attn_every_n_layers: int = 2
    expert_width_multiplier: float = 0.75
    min_period: float = 4e-3
    max_period: float = 4.0
    rtc_config: dict[str, Any] | None = None
    compile_model: bool = False
    compile_mode: str = "max-autotune"
    #: Keys of config.json this class does not model; written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.resize_imgs_with_padding is not None:
            self.resize_imgs_with_padding = tuple(int(v) for v in self.resize_imgs_with_padding)  # type: ignore[assignment]
        self.optimizer_betas = tuple(float(v) for v in self.optimizer_betas)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        if self.type != "smolvla":
            raise ValueError(f"config type is {self.type!r}, expected 'smolvla'")
        if self.n_action_steps > self.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be <= chunk_size ({self.chunk_size})"
            )
        if self.use_delta_joint_actions_aloha:
            raise NotImplementedError("use_delta_joint_actions_aloha is not supported (nor by lerobot)")
        if self.adapt_to_pi_aloha:
            raise NotImplementedError("adapt_to_pi_aloha (Aloha joint flips) is not supported")
        if self.attention_mode != "cross_attn":
            raise NotImplementedError(
                f"attention_mode {self.attention_mode!r} is not supported (only cross_attn)"
            )
        if self.pad_language_to not in ("longest", "max_length"):
            raise ValueError(
                f"pad_language_to must be 'longest' or 'max_length', not {self.pad_language_to!r}"
            )
        if self.num_steps < 1:
            raise ValueError("num_steps must be >= 1")
        if self.state_dim > self.max_state_dim:
            raise ValueError(f"state dim {self.state_dim} exceeds max_state_dim {self.max_state_dim}")
        if self.action_dim > self.max_action_dim:
            raise ValueError(f"action dim {self.action_dim} exceeds max_action_dim {self.max_action_dim}")

    # ---- features ------------------------------------------------------------------------------------------
    @property
    def image_features(self) -> list[str]:
        """Image feature keys in config order (camera order matters), empty cameras included."""
        keys = [k for k, v in self.input_features.items() if v.get("type") == VISUAL]
        for i in range(self.empty_cameras):
            key = f"{OBS_IMAGES}.empty_camera_{i}"
            if key not in keys:
                keys.append(key)
        return keys

    @property
    def state_key(self) -> str | None:
        keys = [k for k, v in self.input_features.items() if v.get("type") == STATE]
        return OBS_STATE if OBS_STATE in keys else (keys[0] if keys else None)

    @property
    def action_key(self) -> str:
        keys = [k for k, v in self.output_features.items() if v.get("type") == ACTION]
        return ACTION_KEY if ACTION_KEY in keys else (keys[0] if keys else ACTION_KEY)

    @property
    def state_dim(self) -> int:
        key = self.state_key
        return int(self.input_features[key]["shape"][0]) if key else 0

    @property
    def action_dim(self) -> int:
        feat = self.output_features.get(self.action_key)
        return int(feat["shape"][0]) if feat else 0

    # ---- JSON ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = copy.deepcopy(getattr(self, f.name))
            if isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        for key, value in self.extra.items():
            out.setdefault(key, copy.deepcopy(value))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SmolVLAConfig:
        data = dict(data)
        if data.get("type", "smolvla") != "smolvla":
            raise ValueError(f"config.json has type {data.get('type')!r}, expected 'smolvla'")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=4)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> SmolVLAConfig:
        p = Path(path_or_text) if not str(path_or_text).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(path_or_text)
        return cls.from_dict(json.loads(text))

    # ---- derived model dims --------------------------------------------------------------------------------
    def expert_layer_count(self, vlm: VLMConfig) -> int:
        n_vlm = self.num_vlm_layers if self.num_vlm_layers > 0 else vlm.text_num_hidden_layers
        return self.num_expert_layers if self.num_expert_layers > 0 else n_vlm


@dataclass
class VLMConfig:
    """The SmolVLM2 dimensions SmolVLA needs (text model, vision tower, connector)."""

    # text (Llama / SmolLM2)
    text_hidden_size: int = 960
    text_num_hidden_layers: int = 32
    text_num_attention_heads: int = 15
    text_num_key_value_heads: int = 5
    text_head_dim: int = 64
    text_intermediate_size: int = 2560
    text_rms_norm_eps: float = 1e-5
    text_hidden_act: str = "silu"
    vocab_size: int = 49280
    pad_token_id: int = 2
    # vision (SigLIP)
    vision_hidden_size: int = 768
    vision_num_hidden_layers: int = 12
    vision_num_attention_heads: int = 12
    vision_intermediate_size: int = 3072
    vision_image_size: int = 512
    vision_patch_size: int = 16
    vision_hidden_act: str = "gelu_pytorch_tanh"
    vision_layer_norm_eps: float = 1e-6
    num_channels: int = 3
    # connector / special tokens
    scale_factor: int = 4
    image_token_id: int = 49190
    fake_image_token_id: int = 49189
    global_image_token_id: int = 49152
    tie_word_embeddings: bool = False
    name_or_path: str = SMOLVLM2_500M

    @property
    def image_seq_len(self) -> int:
        patches = (self.vision_image_size // self.vision_patch_size) ** 2
        return patches // (self.scale_factor**2)

    @classmethod
    def smolvlm2_500m(cls) -> VLMConfig:
        """Built-in constants of HuggingFaceTB/SmolVLM2-500M-Video-Instruct (no network)."""
        return cls()

    @classmethod
    def from_dict(cls, data: dict[str, Any], name_or_path: str = "") -> VLMConfig:
        """Read transformers' SmolVLM config.json layout (top level + text_config + vision_config)."""
        text = data.get("text_config", {}) or {}
        vision = data.get("vision_config", {}) or {}
        d = cls()
        t_hidden = int(text.get("hidden_size", d.text_hidden_size))
        t_heads = int(text.get("num_attention_heads", d.text_num_attention_heads))
        head_dim = text.get("head_dim") or t_hidden // t_heads
        return cls(
            text_hidden_size=t_hidden,
            text_num_hidden_layers=int(text.get("num_hidden_layers", d.text_num_hidden_layers)),
            text_num_attention_heads=t_heads,
            text_num_key_value_heads=int(text.get("num_key_value_heads", t_heads)),
            text_head_dim=int(head_dim),
            text_intermediate_size=int(text.get("intermediate_size", d.text_intermediate_size)),
            text_rms_norm_eps=float(text.get("rms_norm_eps", d.text_rms_norm_eps)),
            text_hidden_act=str(text.get("hidden_act", d.text_hidden_act)),
            vocab_size=int(text.get("vocab_size", data.get("vocab_size", d.vocab_size))),
            pad_token_id=int(text.get("pad_token_id", data.get("pad_token_id", d.pad_token_id)) or 0),
            vision_hidden_size=int(vision.get("hidden_size", d.vision_hidden_size)),
            vision_num_hidden_layers=int(vision.get("num_hidden_layers", d.vision_num_hidden_layers)),
            vision_num_attention_heads=int(vision.get("num_attention_heads", d.vision_num_attention_heads)),
            vision_intermediate_size=int(vision.get("intermediate_size", d.vision_intermediate_size)),
            vision_image_size=int(vision.get("image_size", d.vision_image_size)),
            vision_patch_size=int(vision.get("patch_size", d.vision_patch_size)),
            vision_hidden_act=str(vision.get("hidden_act", d.vision_hidden_act)),
            vision_layer_norm_eps=float(vision.get("layer_norm_eps", d.vision_layer_norm_eps)),
            num_channels=int(vision.get("num_channels", d.num_channels)),
            scale_factor=int(data.get("scale_factor", d.scale_factor)),
            image_token_id=int(data.get("image_token_id", d.image_token_id)),
            fake_image_token_id=int(data.get("fake_image_token_id", d.fake_image_token_id)),
            global_image_token_id=int(data.get("global_image_token_id", d.global_image_token_id)),
            tie_word_embeddings=bool(data.get("tie_word_embeddings", d.tie_word_embeddings)),
            name_or_path=name_or_path or str(data.get("_name_or_path", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        """transformers' SmolVLM config.json layout (enough for AutoConfig and for lerobot)."""
        return {
            "architectures": ["SmolVLMForConditionalGeneration"],
            "model_type": "smolvlm",
            "scale_factor": self.scale_factor,
            "image_token_id": self.image_token_id,
            "fake_image_token_id": self.fake_image_token_id,
            "global_image_token_id": self.global_image_token_id,
            "vocab_size": self.vocab_size,
            "pad_token_id": self.pad_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
            "text_config": {
                "model_type": "llama",
                "hidden_size": self.text_hidden_size,
                "num_hidden_layers": self.text_num_hidden_layers,
                "num_attention_heads": self.text_num_attention_heads,
                "num_key_value_heads": self.text_num_key_value_heads,
                "head_dim": self.text_head_dim,
                "intermediate_size": self.text_intermediate_size,
                "rms_norm_eps": self.text_rms_norm_eps,
                "hidden_act": self.text_hidden_act,
                "vocab_size": self.vocab_size,
                "pad_token_id": self.pad_token_id,
                "rope_theta": 100000.0,
                "max_position_embeddings": 8192,
                "tie_word_embeddings": self.tie_word_embeddings,
            },
            "vision_config": {
                "model_type": "smolvlm_vision",
                "hidden_size": self.vision_hidden_size,
                "num_hidden_layers": self.vision_num_hidden_layers,
                "num_attention_heads": self.vision_num_attention_heads,
                "intermediate_size": self.vision_intermediate_size,
                "image_size": self.vision_image_size,
                "patch_size": self.vision_patch_size,
                "hidden_act": self.vision_hidden_act,
                "layer_norm_eps": self.vision_layer_norm_eps,
                "num_channels": self.num_channels,
            },
        }

    @classmethod
    def from_json(cls, path: str | Path) -> VLMConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        return cls.from_dict(json.loads(path.read_text()), name_or_path=str(path.parent))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def expert_dims(config: SmolVLAConfig, vlm: VLMConfig) -> tuple[int, int]:
    """(hidden, intermediate) of the action expert: int(width * multiplier), Llama's 256-rounded MLP width."""
    hidden = int(vlm.text_hidden_size * config.expert_width_multiplier)
    multiple_of = 256
    ffn_dim_multiplier = 1.0
    intermediate = int(2 * hidden / 3)
    intermediate = int(ffn_dim_multiplier * intermediate)
    intermediate = multiple_of * math.ceil(4 * intermediate / multiple_of)
    return hidden, intermediate


def full_size_config(
    camera_keys: tuple[str, ...] = ("observation.images.top", "observation.images.wrist"),
    state_dim: int = 6,
    action_dim: int = 6,
    image_shape: tuple[int, int, int] = (3, 480, 640),
    **overrides: Any,
) -> SmolVLAConfig:
    """A SmolVLAConfig with lerobot's defaults (full SmolVLM2-500M-based model) for the given features."""
    inputs: dict[str, dict[str, Any]] = {
        OBS_STATE: {"type": STATE, "shape": [state_dim]},
    }
    for key in camera_keys:
        inputs[key] = {"type": VISUAL, "shape": list(image_shape)}
    outputs = {ACTION_KEY: {"type": ACTION, "shape": [action_dim]}}
    return SmolVLAConfig(input_features=inputs, output_features=outputs, **overrides)
