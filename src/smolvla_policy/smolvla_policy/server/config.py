"""Parameters of the policy server: one table (name, default, description, range) and their validation.

Plain Python (no rclpy). The entries are :class:`smolvla_common.parameters.Param`s (the scheme every node
uses): the node declares :data:`TABLE` through ``smolvla_common.node_parameters`` (descriptors with ranges,
integers accepted for doubles, named errors), the checks of :func:`validate_parameter` run with it, and a
:class:`ServerConfig` is built from the validated values. ``config/policy_server.yaml`` is checked against the
table by a test.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from smolvla_common.parameters import Param, ParameterTable
from smolvla_policy.server.rtc import RTC_SCHEDULES, RTCSettings

BUILTIN_BACKENDS = ("smolvla", "replay", "scripted")
DEVICES = ("cpu", "cuda", "mps", "auto")
DTYPES = ("float32", "bfloat16", "int8_dynamic")  # int8_dynamic: the model's dynamic int8 CPU mode
ROBOTS = ("so101", "so100")
JOINT_UNIT_KINDS = ("degrees", "radians", "range_0_100")


@dataclass(frozen=True)
class ParamSpec(Param):
    """A parameter of the shared scheme (name, default, description, kind, low, high, ...) plus ``reload``."""

    #: True when a change needs a new backend (reloaded on a background thread).
    reload: bool = False


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "action_name",
        "/smolvla/predict_chunk",
        "Name of the PredictChunk action server.",
        "string",
        read_only=True,
    ),
    ParamSpec(
        "backend",
        "smolvla",
        "Policy backend: smolvla | replay | scripted | 'package.module:factory' (factory(options) -> "
        "PolicyBackend).",
        "string",
        reload=True,
    ),
    ParamSpec(
        "backend_options",
        "{}",
        "JSON object of backend options (replay: path, episode, ...; scripted: mode, target, ...). Built-in "
        "backends get them merged over the server-level settings; a plug-in factory gets them alone.",
        "string",
        reload=True,
    ),
    ParamSpec(
        "checkpoint",
        "lerobot/smolvla_base",
        "SmolVLA checkpoint: local directory or Hugging Face hub id.",
        "string",
        reload=True,
    ),
    ParamSpec(
        "tokenizer",
        "",
        "Tokenizer directory or hub id overriding the checkpoint's (empty = default).",
        "string",
        reload=True,
    ),
    ParamSpec("device", "auto", "Torch device: cpu | cuda | mps | auto.", "string", reload=True),
    ParamSpec(
        "dtype",
        "float32",
        "Model dtype: float32 | bfloat16 | int8_dynamic (CPU, dynamic int8 quantisation).",
        "string",
        reload=True,
    ),
    ParamSpec(
        "num_steps",
        0,
        "Denoising steps per chunk (feedback count); 0 = the checkpoint's / backend's default.",
        "int",
        0,
        1000,
    ),
    ParamSpec(
        "fps",
        30.0,
        "Control rate of the chunk: period = 1/fps between consecutive actions [Hz].",
        "double",
        0.1,
        1000.0,
    ),
    ParamSpec(
        "camera_map",
        [],
        "List of 'obs_camera=feature_key' (e.g. top=observation.images.top); empty = match by name, "
        "then by order.",
        "string_array",
        reload=True,
    ),
    ParamSpec(
        "joint_units",
        [],
        "List of 'joint=degrees|radians|range_0_100': the checkpoint's unit per joint; empty = lerobot "
        "SO-10x (degrees, gripper 0..100).",
        "string_array",
        reload=True,
    ),
    ParamSpec(
        "default_task",
        "",
        "Task used when a goal's task is empty (empty = such goals are rejected).",
        "string",
    ),
    ParamSpec(
        "warmup", True, "Run one dummy inference after loading so the first real goal is not slow.", "bool"
    ),
    ParamSpec(
        "max_observation_age",
        0.0,
        "Reject observations whose stamp is older than this many seconds by the node clock (0 = off; "
        "set use_sim_time when the stamps come from a simulator).",
        "double",
        0.0,
        3600.0,
    ),
    ParamSpec(
        "max_image_pixels", 4194304, "Largest accepted image (width*height) per camera.", "int", 1, 1 << 30
    ),
    ParamSpec(
        "seed",
        -1,
        "Noise seed per inference (same observation + same seed -> same chunk); -1 = random.",
        "int",
        -1,
        2**31 - 1,
    ),
    ParamSpec(
        "latency_ms",
        0.0,
        "Artificial latency added to every chunk, spread over its steps (testing the queue / simulator "
        "with a slow policy); cancellable.",
        "double",
        0.0,
        600000.0,
    ),
    ParamSpec(
        "robot", "so101", "Arm model for the chunk markers' forward kinematics: so101 | so100.", "string"
    ),
    ParamSpec("base_frame", "base_link", "Frame of the chunk markers (the arm's base frame).", "string"),
    ParamSpec("publish_markers", True, "Publish /smolvla/chunk_markers (gripper path) for rviz.", "bool"),
    ParamSpec(
        "rtc_enabled",
        True,
        "Real-time chunking: guide a chunk towards the goal's rtc_prefix when the goal carries one (smolvla "
        "backend; false = ignore the prefix).",
        "bool",
    ),
    ParamSpec(
        "rtc_prefix_attention_schedule",
        "linear",
        "RTC prefix weights over the prefix: zeros | ones | linear | exp (lerobot's schedules).",
        "string",
    ),
    ParamSpec(
        "rtc_max_guidance_weight",
        10.0,
        "RTC: cap of the guidance weight (lerobot's default 10).",
        "double",
        1e-6,
        1e6,
    ),
    ParamSpec(
        "rtc_execution_horizon",
        10,
        "RTC: prefix actions that guide the new chunk when the goal's rtc_execution_horizon is 0.",
        "int",
        1,
        100000,
    ),
)

SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def _check_all(values: dict[str, Any]) -> str | None:
    """The checks beyond kind and range (backend names, JSON, devices, pairs, ...) on the coerced values."""
    for name, value in values.items():
        if (reason := validate_parameter(name, value)) is not None:
            return reason
    return None


#: The policy server's parameters in the shared scheme (declared by the node, checked against the YAML).
TABLE = ParameterTable(
    "policy_server", PARAMETERS, check=_check_all, source="smolvla_policy.server.config:TABLE"
)


@dataclass
class ServerConfig:
    action_name: str = "/smolvla/predict_chunk"
    backend: str = "smolvla"
    backend_options: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = "lerobot/smolvla_base"
    tokenizer: str = ""
    device: str = "auto"
    dtype: str = "float32"
    num_steps: int = 0
    fps: float = 30.0
    camera_map: dict[str, str] = field(default_factory=dict)
    joint_units: dict[str, str] = field(default_factory=dict)
    default_task: str = ""
    warmup: bool = True
    max_observation_age: float = 0.0
    max_image_pixels: int = 4194304
    seed: int = -1
    latency_ms: float = 0.0
    robot: str = "so101"
    base_frame: str = "base_link"
    publish_markers: bool = True
    rtc_enabled: bool = True
    rtc_prefix_attention_schedule: str = "linear"
    rtc_max_guidance_weight: float = 10.0
    rtc_execution_horizon: int = 10

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> ServerConfig:
        """Build from raw parameter values (missing ones take their defaults); raises ValueError."""
        raw = {p.name: p.default for p in PARAMETERS}
        raw.update({k: v for k, v in values.items() if k in SPECS and v is not None})
        for name, value in raw.items():
            reason = validate_parameter(name, value)
            if reason:
                raise ValueError(reason)
        kwargs = dict(raw)
        kwargs["backend_options"] = json.loads(raw["backend_options"] or "{}")
        kwargs["camera_map"] = parse_pairs(raw["camera_map"], "camera_map")
        kwargs["joint_units"] = parse_pairs(raw["joint_units"], "joint_units")
        kwargs["num_steps"] = int(raw["num_steps"])
        kwargs["max_image_pixels"] = int(raw["max_image_pixels"])
        kwargs["seed"] = int(raw["seed"])
        kwargs["fps"] = float(raw["fps"])
        kwargs["max_observation_age"] = float(raw["max_observation_age"])
        kwargs["latency_ms"] = float(raw["latency_ms"])
        kwargs["rtc_prefix_attention_schedule"] = str(raw["rtc_prefix_attention_schedule"]).strip().lower()
        kwargs["rtc_max_guidance_weight"] = float(raw["rtc_max_guidance_weight"])
        kwargs["rtc_execution_horizon"] = int(raw["rtc_execution_horizon"])
        return cls(**kwargs)

    def rtc_settings(self) -> RTCSettings:
        return RTCSettings(
            enabled=bool(self.rtc_enabled),
            prefix_attention_schedule=self.rtc_prefix_attention_schedule,
            max_guidance_weight=self.rtc_max_guidance_weight,
            execution_horizon=self.rtc_execution_horizon,
        )

    def factory_options(self) -> dict[str, Any]:
        """Options handed to the backend factory. Built-in backends get the server-level settings (checkpoint,
        device, fps, ...) overridden by ``backend_options``; a plug-in gets ``backend_options`` alone."""
        if self.backend not in BUILTIN_BACKENDS:
            return dict(self.backend_options)
        opts: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "tokenizer": self.tokenizer or None,
            "device": self.device,
            "dtype": self.dtype,
            "num_steps": self.num_steps or None,
            "fps": self.fps,
            "camera_map": dict(self.camera_map),
            "joint_units": dict(self.joint_units),
            "seed": None if self.seed < 0 else self.seed,
        }
        opts.update(self.backend_options)
        return opts


def parse_pairs(items: list[str] | tuple[str, ...] | None, what: str) -> dict[str, str]:
    """Parse ``["a=b", ...]`` into a dict; raises ValueError with a reason."""
    out: dict[str, str] = {}
    for item in items or []:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"{what}: '{item}' is not of the form 'name=value'")
        if key in out:
            raise ValueError(f"{what}: '{key}' is given twice")
        out[key] = value
    return out


def validate_parameter(name: str, value: Any) -> str | None:
    """Return None when ``value`` is acceptable for parameter ``name``, else the reason."""
    spec = SPECS.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time)
    if spec.kind in ("int", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number"
        if spec.kind == "double" and not math.isfinite(float(value)):
            return f"{name} must be finite"
        if spec.low is not None and value < spec.low:
            return f"{name} must be >= {spec.low:g} (got {value})"
        if spec.high is not None and value > spec.high:
            return f"{name} must be <= {spec.high:g} (got {value})"
    if name == "backend":
        if value not in BUILTIN_BACKENDS and (":" not in value or not all(value.split(":", 1))):
            choices = ", ".join(BUILTIN_BACKENDS)
            return f"backend must be one of {choices} or 'package.module:factory' (got '{value}')"
    elif name == "backend_options":
        try:
            parsed = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            return f"backend_options is not valid JSON: {exc}"
        if not isinstance(parsed, dict):
            return "backend_options must be a JSON object"
    elif name == "device":
        if value not in DEVICES and not str(value).startswith(("cuda:",)):
            return f"device must be one of {', '.join(DEVICES)} (got '{value}')"
    elif name == "dtype":
        if value not in DTYPES:
            return f"dtype must be one of {', '.join(DTYPES)} (got '{value}')"
    elif name == "rtc_prefix_attention_schedule":
        if str(value).strip().lower() not in RTC_SCHEDULES:
            return f"rtc_prefix_attention_schedule must be one of {', '.join(RTC_SCHEDULES)} (got '{value}')"
    elif name == "robot":
        if value not in ROBOTS:
            return f"robot must be one of {', '.join(ROBOTS)} (got '{value}')"
    elif name == "checkpoint":
        if not str(value).strip():
            return "checkpoint must not be empty"
    elif name == "action_name":
        if not str(value).strip():
            return "action_name must not be empty"
    elif name == "camera_map":
        try:
            parse_pairs(value, name)
        except ValueError as exc:
            return str(exc)
    elif name == "joint_units":
        try:
            units = parse_pairs(value, name)
        except ValueError as exc:
            return str(exc)
        bad = {j: u for j, u in units.items() if u not in JOINT_UNIT_KINDS}
        if bad:
            joint, unit = next(iter(bad.items()))
            return f"joint_units: unit '{unit}' of '{joint}' is not one of {', '.join(JOINT_UNIT_KINDS)}"
    return None
