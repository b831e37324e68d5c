"""Real-time chunking on the server side (plain Python, no rclpy, no torch): the PredictChunk goal's RTC
fields -> :class:`smolvla_policy.backend.RTCRequest`, with the server's settings.

The goal carries the previous chunk's actions still to be executed (``rtc_prefix``, row-major, columns in the
observation's joint order, radians), the expected inference delay in control ticks and optionally the
execution horizon; the server adds the prefix attention schedule and the maximum guidance weight from its
parameters (``rtc_*``, switchable with ``ros2 param set``). An empty prefix, or ``rtc_enabled = false``,
means no RTC. The smolvla backend applies it (:mod:`smolvla_policy.model.rtc`); other backends ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smolvla_policy.backend import BadRequest, ChunkRequest, RTCRequest

#: Prefix attention schedules (the same names as :data:`smolvla_policy.model.rtc.SCHEDULES`; here without
#: importing torch).
RTC_SCHEDULES: tuple[str, ...] = ("zeros", "ones", "linear", "exp")


@dataclass(frozen=True)
class RTCSettings:
    enabled: bool = True  # honour goals that ask for RTC
    prefix_attention_schedule: str = "linear"
    max_guidance_weight: float = 10.0
    execution_horizon: int = 10  # used when the goal's is 0


def rtc_from_goal(goal: Any, request: ChunkRequest, settings: RTCSettings) -> RTCRequest | None:
    """The goal's RTC request, or None (no prefix, or RTC disabled); BadRequest when a field is invalid."""
    flat = np.asarray(getattr(goal, "rtc_prefix", ()), dtype=np.float64).reshape(-1)
    if flat.size == 0 or not settings.enabled:
        return None
    joints = len(request.joint_names)
    if flat.size % joints:
        raise BadRequest(
            f"rtc_prefix has {flat.size} values, not a multiple of the observation's {joints} joints"
        )
    if not np.all(np.isfinite(flat)):
        raise BadRequest("rtc_prefix contains non-finite values")
    prefix = flat.reshape(-1, joints)
    delay = int(getattr(goal, "rtc_inference_delay", 0))
    horizon = int(getattr(goal, "rtc_execution_horizon", 0)) or int(settings.execution_horizon)
    if delay > len(prefix):
        raise BadRequest(f"rtc_inference_delay {delay} exceeds the {len(prefix)} prefix actions")
    return RTCRequest(
        prefix=prefix,
        inference_delay=delay,
        execution_horizon=horizon,
        prefix_attention_schedule=settings.prefix_attention_schedule,
        max_guidance_weight=float(settings.max_guidance_weight),
    )


def guided_prefix_length(rtc: RTCRequest | None) -> int:
    """Prefix actions that guide the chunk (the execution horizon, clipped to the prefix; 0 = no RTC)."""
    if rtc is None:
        return 0
    return int(min(rtc.execution_horizon, len(rtc.prefix)))


__all__ = ["RTC_SCHEDULES", "RTCSettings", "guided_prefix_length", "rtc_from_goal"]
