"""The policy-backend interface behind the policy server (plain Python, no rclpy).

The policy server turns each PredictChunk goal into a :class:`ChunkRequest` (images as HxWx3 uint8 RGB,
joint state in radians in the request's joint order) and asks a backend for a chunk of joint positions in
radians, in the same joint order. Backends: ``smolvla`` (the model), ``replay``, ``scripted`` and plug-ins
named ``package.module:factory`` where ``factory(options: dict) -> PolicyBackend``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


class BadRequest(ValueError):
    """The request cannot be served (missing camera, wrong joints, NaN state, ...); the message says why."""


class InferenceCancelled(RuntimeError):
    """Raised inside a backend when the step callback asks to stop (goal cancelled or preempted)."""


#: Called after every denoising (or planning) step with (step, num_steps), 1-based. Returning False cancels.
StepCallback = Callable[[int, int], "bool | None"]


@dataclass(frozen=True)
class RTCRequest:
    """Real-time chunking asked for by a request (:mod:`smolvla_policy.model.rtc`; backends that cannot guide
    their chunks ignore it)."""

    prefix: np.ndarray  # (T, joints) radians, columns in joint_names order, rows from timestep on
    inference_delay: int  # prefix actions executed before the chunk is in use
    execution_horizon: int  # prefix actions that guide the chunk
    prefix_attention_schedule: str = "linear"
    max_guidance_weight: float = 10.0


@dataclass
class ChunkRequest:
    """One observation, converted to plain arrays."""

    images: dict[str, np.ndarray]  # camera name -> HxWx3 uint8 RGB
    joint_names: list[str]
    positions: np.ndarray  # radians, float64, parallel to joint_names
    task: str
    timestep: int = 0
    seed: int | None = None
    extras: dict[str, object] = field(default_factory=dict)
    rtc: RTCRequest | None = None


@runtime_checkable
class PolicyBackend(Protocol):
    """What the policy server needs from a policy."""

    #: Number of actions per chunk.
    chunk_size: int
    #: Number of steps reported through the step callback per chunk.
    num_steps: int

    def predict(self, request: ChunkRequest, step_callback: StepCallback | None = None) -> np.ndarray:
        """Return a (chunk_size, len(request.joint_names)) array of joint positions in radians."""
        ...

    def warmup(self) -> None:
        """Run one dummy inference so the first real request is not slow (may be a no-op)."""
        ...
