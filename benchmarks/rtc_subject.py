"""A cheap flow-matching policy for the seam benchmark (``rtc_seams.py --subject empirical``).

Stand-in until the suite-trained SmolVLA (``models/smolvla_sim_pick_place``) exists, for a machine where even
a tiny SmolVLA cannot be trained in minutes. It is a real flow-matching policy, only with an exact denoiser
instead of a network: the data distribution is a library of scripted-expert chunks recorded in the simulator
(the next ``chunk_size`` joint targets at every ``stride``-th tick of ``episodes`` demonstrations),
conditioned on the joint state with a Gaussian kernel, and the denoiser returns the exact posterior mean

    E[a | x_t, q] = sum_i p_i a_i,   p_i ~ w_i(q) N(x_t; (1 - t) a_i, t^2 I)

(actions normalised per joint), i.e. ``v = (x_t - E[a | x_t]) / t``, integrated with the same Euler loop
convention as SmolVLA (``t`` from 1 to 0, ``num_steps`` steps) and guided by the same
:class:`smolvla_policy.model.rtc.RTCGuidance` as the model. Its chunks are smooth expert segments, and
different noise picks different segments (multimodal, like a trained flow policy): that is what makes seams.
It does not look at the images: the caller may give it the scene's cube and tray positions (privileged,
``request.extras["scene"]``), which select the demonstrations of that scene; evaluated on scenes of its
library it then replays (and blends) the expert, so its success rate says whether a fusion mode breaks a
grasp, not how well a policy generalises.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def scene_features(sim: Any) -> np.ndarray:
    """Privileged scene description: (cube x, y, tray x, y) of the task's first pair, metres."""
    task = sim.task
    cube, tray = task.pairs[0]
    return np.concatenate(
        [np.asarray(task.cube_position(cube))[:2], np.asarray(task.tray_position(tray))[:2]]
    )


def record_library(
    seeds: list[int], stride: int, chunk: int, bar=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(states (M, 6), scenes (M, 4), chunks (M, chunk, 6)) from scripted-expert demonstrations (radians)."""
    from smolvla_sim.expert import ScriptedExpert
    from smolvla_sim.sim import ArmSim, SimConfig

    sim = ArmSim(SimConfig(image_width=32, image_height=32))
    states, scenes, chunks = [], [], []
    for seed in seeds:
        sim.reset(seed)
        expert = ScriptedExpert(sim)
        plan = expert.reset()
        scene = scene_features(sim)
        for t in range(len(plan)):
            if t % stride == 0:
                idx = np.minimum(np.arange(t, t + chunk), len(plan) - 1)
                states.append(sim.joint_positions)
                scenes.append(scene)
                chunks.append(plan[idx])
            sim.step(plan[t])
        if bar is not None:
            bar.update(1)
    sim.close()
    return np.asarray(states), np.asarray(scenes), np.asarray(chunks)


class EmpiricalFlowBackend:
    """PolicyBackend (predict, warmup, chunk_size, num_steps): the exact flow of an expert-chunk library."""

    supports_rtc = True
    needs_images = False

    def __init__(
        self,
        states: np.ndarray,
        scenes: np.ndarray,
        chunks: np.ndarray,
        joint_names: list[str],
        num_steps: int = 10,
        state_bandwidth: float = 0.15,
        scene_bandwidth: float = 0.02,
    ) -> None:
        import torch

        self.joint_names = list(joint_names)
        self.num_steps = int(num_steps)
        self.chunk_size = int(chunks.shape[1])
        self.mean = chunks.reshape(-1, chunks.shape[2]).mean(0)
        self.std = chunks.reshape(-1, chunks.shape[2]).std(0) + 1e-3
        self.states = states
        self.scenes = scenes
        self.scene_bandwidth = float(scene_bandwidth)
        self.library = torch.from_numpy(((chunks - self.mean) / self.std).astype(np.float32))  # (M, S, D)
        self.bandwidth = float(state_bandwidth)

    def warmup(self) -> None:
        pass

    def predict(self, request: Any, step_callback: Any = None) -> np.ndarray:
        import torch

        from smolvla_policy.model.rtc import RTCConfig, RTCGuidance

        names = list(request.joint_names)
        order = [names.index(n) for n in self.joint_names]
        q = np.asarray(request.positions, dtype=np.float64)[order]
        d2 = (((self.states - q) / self.bandwidth) ** 2).sum(1)
        scene = request.extras.get("scene")  # privileged (cube, tray) positions, when the caller gives them
        if scene is not None:
            d2 = d2 + (((self.scenes - np.asarray(scene)) / self.scene_bandwidth) ** 2).sum(1)
        log_w = torch.from_numpy((-0.5 * (d2 - d2.min())).astype(np.float32))  # (M,)
        gen = torch.Generator().manual_seed(int(request.seed or 0))
        lib = self.library
        x = torch.randn(lib.shape[1:], generator=gen)[None]  # (1, S, D)
        guidance = None
        rtc = request.rtc
        if rtc is not None:
            prefix = (np.asarray(rtc.prefix, dtype=np.float64)[:, order] - self.mean) / self.std
            config = RTCConfig(
                enabled=True,
                prefix_attention_schedule=rtc.prefix_attention_schedule,
                max_guidance_weight=rtc.max_guidance_weight,
                execution_horizon=rtc.execution_horizon,
            )
            guidance = RTCGuidance(
                torch.from_numpy(prefix.astype(np.float32)), rtc.inference_delay, config,
                chunk_size=self.chunk_size, action_dim=lib.shape[2],
            )  # fmt: skip
        dt = -1.0 / self.num_steps
        for step in range(self.num_steps):
            t = 1.0 + step * dt
            sq = ((x - (1.0 - t) * lib) ** 2).sum(dim=(1, 2))  # (M,)
            post = torch.softmax(log_w - sq / (2.0 * t * t), dim=0)
            x0 = (post[:, None, None] * lib).sum(0, keepdim=True)
            v = (x - x0) / t
            if guidance is not None:
                v = guidance(x, v, t)
            x = x + dt * v
            if step_callback is not None:
                step_callback(step + 1, self.num_steps)
        chunk = x[0].numpy().astype(np.float64) * self.std + self.mean
        out = np.empty_like(chunk)
        out[:, order] = chunk  # back to the request's joint order
        return out


def make_empirical_backend(seeds: list[int], stride: int = 2, num_steps: int = 10) -> EmpiricalFlowBackend:
    from tqdm import tqdm

    from smolvla_sim.model import JOINT_NAMES

    with tqdm(total=len(seeds), desc="expert demonstrations (library)", unit="episode") as bar:
        states, scenes, chunks = record_library(list(seeds), stride, 50, bar)
    return EmpiricalFlowBackend(states, scenes, chunks, list(JOINT_NAMES), num_steps=num_steps)
