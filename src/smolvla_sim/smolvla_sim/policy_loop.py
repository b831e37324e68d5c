"""A chunking policy in closed loop with the simulator on simulated time, through the action queue's core
(plain Python, no rclpy).

The loop is the ROS graph's (``sim_node`` -> ``policy_server`` -> ``action_queue`` -> ``sim_node``) without
the transport: every control tick (``fps``) the :class:`~smolvla_policy.queue.ActionQueueCore` decides whether
an observation goes out (Algorithm 1 of the SmolVLA paper, threshold ``g``), the policy's chunk for it arrives
``latency_s`` *simulated* seconds later and is fused into the queue, and the tick's command is applied to the
simulator for one period. Because time is the simulator's, the result does not depend on how fast this
machine runs the network: the latency is whatever ``latency_s`` says (a fixed value, e.g. to reproduce the
paper's regime). ``g = 0`` is the synchronous baseline (the robot idles while the next chunk is computed).

Used by ``scripts/sim_pipeline.py`` (quick evaluation), ``benchmarks/async_vs_sync_sim.py`` (the paper's
Figure 5) and the closed-loop tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smolvla_policy.queue import ActionQueueCore, QueueConfig
from smolvla_sim.sim import ArmSim

#: predict(images {camera: HxWx3 uint8}, joint positions [rad], timestep) -> chunk (T, joints) [rad];
#: ``timestep`` is the queue's index of the first action the chunk is for (0 at the start of an episode).
Predictor = Callable[[dict[str, np.ndarray], np.ndarray, int], np.ndarray]


@dataclass
class LoopConfig:
    """Settings of the simulated closed loop (times in simulated seconds)."""

    fps: float = 30.0
    chunk_threshold: float = 0.7
    aggregate_fn: str = "weighted_average"
    #: Time from capturing an observation to the chunk being available to the queue.
    latency_s: float = 0.0
    #: Largest command change per tick [rad] (the action queue's default).
    max_step: float = 0.1
    #: An episode ends as a failure after this long.
    max_time_s: float = 30.0
    #: The queue's similarity filter (negative = off, every due observation is sent).
    similarity_epsilon: float = -1.0
    #: Keep every n-th tick's camera images in the result (0 = none).
    frame_every: int = 0

    def validate(self) -> None:
        if not self.fps > 0:
            raise ValueError("fps must be > 0")
        if not 0.0 <= self.chunk_threshold <= 1.0:
            raise ValueError("chunk_threshold must be in [0, 1]")
        if self.latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if not self.max_time_s > 0:
            raise ValueError("max_time_s must be > 0")


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    duration_s: float  # simulated time until success (or until the time limit)
    ticks: int
    idle_ticks: int
    chunks: int
    frames: list[np.ndarray] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "success": self.success,
            "duration_s": round(self.duration_s, 4),
            "ticks": self.ticks,
            "idle_ticks": self.idle_ticks,
            "chunks": self.chunks,
        }


def run_episode(
    sim: ArmSim, predict: Predictor, seed: int, config: LoopConfig | None = None
) -> EpisodeResult:
    """Reset ``sim`` with ``seed`` and run the loop until the task succeeds or ``max_time_s`` passes."""
    cfg = config or LoopConfig()
    cfg.validate()
    if abs(sim.config.control_rate - cfg.fps) > 1e-9:
        raise ValueError(
            f"the simulator's control_rate ({sim.config.control_rate}) must equal fps ({cfg.fps})"
        )
    sim.reset(seed)
    queue = ActionQueueCore(
        len(sim.joint_names),
        QueueConfig(
            fps=cfg.fps,
            chunk_threshold=cfg.chunk_threshold,
            aggregate_fn=cfg.aggregate_fn,
            similarity_epsilon=cfg.similarity_epsilon,
            max_step=cfg.max_step,
            lower_limits=tuple(sim.lower),
            upper_limits=tuple(sim.upper),
            request_timeout=max(10.0, 10 * cfg.latency_s),
        ),
    )
    period = 1.0 / cfg.fps
    pending: list[tuple[float, int, int, np.ndarray]] = []  # (arrival time, request id, timestep, chunk)
    frames: list[np.ndarray] = []
    tick = 0
    now = 0.0
    success = False
    while now < cfg.max_time_s - 1e-9:
        for item in [p for p in pending if p[0] <= now + 1e-9]:
            pending.remove(item)
            queue.on_chunk(item[1], item[2], item[3], now)
        state = sim.joint_positions
        result = queue.tick(now, state)
        if result.request is not None or (cfg.frame_every and tick % cfg.frame_every == 0):
            images = {cam: sim.render(cam) for cam in sim.config.cameras}
            if cfg.frame_every and tick % cfg.frame_every == 0:
                frames.append(np.concatenate([images[c] for c in sim.config.cameras], axis=1))
            if result.request is not None:
                req = result.request
                chunk = np.asarray(predict(images, req.state, req.timestep), dtype=np.float64)
                pending.append((now + cfg.latency_s, req.request_id, req.timestep, chunk))
        command = result.command if result.command is not None else state
        sim.step(command)
        tick += 1
        now = tick * period
        if sim.task_success():
            success = True
            break
    c = queue.counters
    return EpisodeResult(seed, success, now, c.ticks, c.idle_ticks, c.chunks_received, frames)


def run_window(
    sim: ArmSim, predict: Predictor, seeds: Iterable[int], window_s: float, config: LoopConfig | None = None
) -> tuple[int, list[EpisodeResult]]:
    """Tasks back to back (a new scene right after each success or time-out) for ``window_s`` simulated
    seconds; returns (tasks completed within the window, every episode started). The last episode is cut
    at the window's end."""
    cfg = config or LoopConfig()
    results: list[EpisodeResult] = []
    used = 0.0
    completed = 0
    it: Iterator[int] = iter(seeds)
    while used < window_s - 1e-9:
        remaining = window_s - used
        ep_cfg = LoopConfig(**{**cfg.__dict__, "max_time_s": min(cfg.max_time_s, remaining)})
        res = run_episode(sim, predict, next(it), ep_cfg)
        results.append(res)
        used += res.duration_s
        completed += int(res.success)
    return completed, results


def policy_predictor(
    policy: Any, task: str, units: Any, camera_keys: dict[str, str] | None = None, seed: int = 0
) -> Predictor:
    """A :data:`Predictor` around a :class:`smolvla_policy.model.SmolVLAPolicy`: radians <-> the checkpoint's
    units with ``units`` (``to_model`` / ``to_ros``), cameras ``top``/``wrist`` ->
    ``observation.images.<cam>`` unless ``camera_keys`` maps them, noise seeded by the timestep (reproducible
    episodes)."""

    def predict(images: dict[str, np.ndarray], state: np.ndarray, timestep: int) -> np.ndarray:
        keys = camera_keys or {cam: f"observation.images.{cam}" for cam in images}
        obs = {keys[cam]: img for cam, img in images.items() if cam in keys}
        model_state = np.asarray(units.to_model(state), dtype=np.float32)
        chunk = policy.predict_chunk(obs, model_state, task, seed=seed * 100003 + timestep)
        return np.asarray(units.to_ros(chunk), dtype=np.float64)

    return predict


__all__ = ["EpisodeResult", "LoopConfig", "Predictor", "policy_predictor", "run_episode", "run_window"]
