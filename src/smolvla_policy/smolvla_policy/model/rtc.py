"""Real-time chunking (RTC; Black et al. 2025, "Real-Time Execution of Action Chunking Flow Policies").

A new chunk is predicted while the robot still executes the previous one. RTC treats the new chunk as
inpainting: during the Euler denoising loop every velocity is corrected so that the denoiser's estimate of
the clean chunk is pulled towards the previous chunk's actions that are still to be executed (the *prefix*).
The first ``inference_delay`` actions (executed from the old chunk while the model thinks) get full weight,
the weight then decays to zero at ``execution_horizon`` (the *prefix attention schedule*).

Semantics are lerobot 0.6.1's (``lerobot/policies/rtc``), so the same inputs, settings and noise give the same
chunk (``test_rtc_parity.py``). In the model's normalised action space, with lerobot's time convention
(``t = 1`` noise, ``t = 0`` actions; Euler step ``x <- x + dt * v``, ``dt = -1 / num_steps``):

* clean-action estimate ``x1 = x_t - t * v_t`` (the denoiser's own estimate; no backward pass through the
  network: lerobot's correction ``d x1 / d x_t`` is taken with ``v_t`` detached, i.e. the identity);
* error ``e = (prefix - x1) * w`` with the per-action weights ``w`` of the schedule;
* guidance weight, with ``tau = 1 - t``: ``min(beta, (1 - tau) / tau * ((1 - tau)^2 + tau^2) / (1 - tau)^2)``
  where a division by zero counts as ``beta = max_guidance_weight`` (at ``t = 1``);
* guided velocity ``v_t - weight * e``.

The prefix is zero-padded to the chunk length and to ``max_action_dim`` (padded entries are guided towards
0 like lerobot's); ``execution_horizon`` is clipped to the prefix length. Schedules (for ``start =
min(inference_delay, execution_horizon)``, ``end = execution_horizon``, ``total = chunk_size``):

* ``zeros``: 1 for the first ``start`` actions, 0 after;
* ``ones``: 1 up to ``end``, 0 after;
* ``linear``: 1 up to ``start``, then ``linspace(1, 0, end - start + 2)[1:-1]`` up to ``end``, 0 after;
* ``exp``: like ``linear`` with each ramp value ``u`` replaced by ``u * (e^u - 1) / (e - 1)``.

Plain PyTorch, no rclpy. The policy wires it in through :meth:`SmolVLAPolicy.predict_chunk` (``prev_chunk``,
``inference_delay``) and ``SmolVLAModel.sample_actions`` (``guidance``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Prefix attention schedules (lerobot's RTCAttentionSchedule values, lower case here; either case accepted).
SCHEDULES: tuple[str, ...] = ("zeros", "ones", "linear", "exp")


def normalize_schedule(name: str) -> str:
    """``"LINEAR"`` / ``"linear"`` -> ``"linear"``; ValueError for an unknown schedule."""
    key = str(name).strip().lower()
    if key not in SCHEDULES:
        raise ValueError(
            f"unknown RTC prefix attention schedule '{name}' (expected one of {', '.join(SCHEDULES)})"
        )
    return key


@dataclass(frozen=True)
class RTCConfig:
    """RTC settings (lerobot's ``RTCConfig`` fields). ``enabled`` is False by default: no guidance."""

    enabled: bool = False
    prefix_attention_schedule: str = "linear"
    max_guidance_weight: float = 10.0
    execution_horizon: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "prefix_attention_schedule", normalize_schedule(self.prefix_attention_schedule)
        )
        if not (math.isfinite(self.max_guidance_weight) and self.max_guidance_weight > 0):
            raise ValueError(f"max_guidance_weight must be a positive number, got {self.max_guidance_weight}")
        if int(self.execution_horizon) < 1:
            raise ValueError(f"execution_horizon must be >= 1, got {self.execution_horizon}")


def _ramp(start: int, end: int, total: int) -> torch.Tensor:
    """The decaying part between ``start`` and ``min(end, total)``, endpoints 1 and 0 excluded."""
    n = min(end, total) - start
    if end <= start or n <= 0:
        return torch.zeros(0)
    return torch.linspace(1, 0, n + 2)[1:-1]


def prefix_weights(inference_delay: int, execution_horizon: int, total: int, schedule: str) -> torch.Tensor:
    """Per-action guidance weights (float32, length ``total``) of the prefix attention ``schedule``."""
    schedule = normalize_schedule(schedule)
    end = int(execution_horizon)
    start = min(int(inference_delay), end)
    if schedule == "zeros":
        w = torch.zeros(total)
        w[:start] = 1.0
        return w
    if schedule == "ones":
        w = torch.ones(total)
        w[end:] = 0.0
        return w
    ramp = _ramp(start, end, total)
    if schedule == "exp":
        ramp = ramp * torch.expm1(ramp).div(math.e - 1)
    parts = [torch.ones(min(start, total)), ramp, torch.zeros(max(total - end, 0))]
    return torch.cat(parts)


def guidance_weight(time: float, max_guidance_weight: float) -> torch.Tensor:
    """The scalar guidance weight at flow time ``time`` (1 = noise), float32, capped at the maximum."""
    beta = torch.as_tensor(max_guidance_weight)
    tau = torch.as_tensor(1 - time)
    one_minus_tau_sq = (1 - tau) ** 2
    inv_r2 = (one_minus_tau_sq + tau**2) / one_minus_tau_sq
    c = torch.nan_to_num((1 - tau) / tau, posinf=beta)
    return torch.minimum(torch.nan_to_num(c * inv_r2, posinf=beta), beta)


class RTCGuidance:
    """One chunk's guidance: built once per inference, called on every Euler step (``sample_actions``)."""

    def __init__(
        self,
        prefix: torch.Tensor,
        inference_delay: int,
        config: RTCConfig,
        chunk_size: int,
        action_dim: int,
        execution_horizon: int | None = None,
    ) -> None:
        """``prefix``: (T_prev, D) or (B, T_prev, D) in the model's normalised action space, D <= action_dim;
        rows beyond ``chunk_size`` are dropped (lerobot refuses them; they would get weight 0 anyway)."""
        if int(inference_delay) < 0:
            raise ValueError(f"inference_delay must be >= 0, got {inference_delay}")
        p = prefix.to(torch.float32)
        if p.ndim == 2:
            p = p[None]
        if p.ndim != 3 or p.shape[1] < 1 or p.shape[2] > action_dim:
            raise ValueError(f"prefix must be (T, D<={action_dim}) with T >= 1, got {tuple(prefix.shape)}")
        horizon = config.execution_horizon if execution_horizon is None else int(execution_horizon)
        if horizon < 1:
            raise ValueError(f"execution_horizon must be >= 1, got {horizon}")
        self.prefix_length = int(p.shape[1])
        self.execution_horizon = min(horizon, self.prefix_length)
        self.inference_delay = int(inference_delay)
        self.config = config
        p = p[:, :chunk_size]
        padded = torch.zeros(p.shape[0], chunk_size, action_dim, dtype=torch.float32)
        padded[:, : p.shape[1], : p.shape[2]] = p
        self.prefix = padded
        self.weights = prefix_weights(
            self.inference_delay, self.execution_horizon, chunk_size, config.prefix_attention_schedule
        )[None, :, None]

    def to(self, device: torch.device | str) -> RTCGuidance:
        self.prefix = self.prefix.to(device)
        self.weights = self.weights.to(device)
        return self

    def __call__(self, x_t: torch.Tensor, v_t: torch.Tensor, time: float) -> torch.Tensor:
        """Guided velocity for the state ``x_t`` at flow time ``time`` whose plain velocity is ``v_t``."""
        x1 = x_t - time * v_t
        err = (self.prefix - x1) * self.weights
        weight = guidance_weight(time, self.config.max_guidance_weight).to(v_t.device)
        return v_t - weight * err


__all__ = ["SCHEDULES", "RTCConfig", "RTCGuidance", "guidance_weight", "normalize_schedule", "prefix_weights"]
