"""smolvla_sim.policy_loop: a chunking policy through the action queue's core on simulated time.

The reference policy is the scripted expert's own plan served in chunks (the chunk for a request = the plan
from the request's timestep on), so the loop must reproduce the expert's success; the sync/async timing is
checked against a hand computation of the idle ticks.
"""

from __future__ import annotations

import numpy as np
import pytest

from smolvla_sim.expert import ScriptedExpert
from smolvla_sim.policy_loop import LoopConfig, run_episode, run_window
from smolvla_sim.sim import ArmSim, SimConfig

CHUNK = 50


@pytest.fixture(scope="module")
def sim() -> ArmSim:
    s = ArmSim(SimConfig(image_width=32, image_height=32))
    yield s
    s.close()


def expert_chunks(sim: ArmSim):  # type: ignore[no-untyped-def]
    """A predictor serving the expert's plan (planned at the start of each episode) from the request's
    timestep on, CHUNK actions at a time."""
    state: dict[str, np.ndarray] = {}

    def predict(images: dict[str, np.ndarray], joints: np.ndarray, timestep: int) -> np.ndarray:
        assert set(images) == {"top", "wrist"} and images["top"].shape == (32, 32, 3)
        if timestep == 0:
            state["plan"] = ScriptedExpert(sim).reset()
        plan = state["plan"]
        chunk = plan[min(timestep, len(plan) - 1) : timestep + CHUNK]
        return np.concatenate([chunk, np.repeat(plan[-1:], CHUNK - len(chunk), axis=0)])

    return predict


def test_expert_served_in_chunks_succeeds_in_sync_mode(sim: ArmSim) -> None:
    predict = expert_chunks(sim)
    res = run_episode(sim, predict, seed=3, config=LoopConfig(chunk_threshold=0.0, max_time_s=20.0))
    assert res.success
    assert res.chunks >= 5  # the plan is ~290 actions long


def test_sync_idles_for_the_latency_and_async_does_not(sim: ArmSim) -> None:
    latency = 0.5  # 15 ticks at 30 fps
    predict = expert_chunks(sim)
    sync = run_episode(sim, predict, 3, LoopConfig(chunk_threshold=0.0, latency_s=latency, max_time_s=30.0))
    predict_a = expert_chunks(sim)
    # async with g = 0.7: a request at 35 queued actions; latency 15 ticks < 35, so the queue never runs dry
    # after the first chunk; the expert's chunks are time-aligned by the queue (fusion of identical actions)
    asyn = run_episode(sim, predict_a, 3, LoopConfig(chunk_threshold=0.7, latency_s=latency, max_time_s=30.0))
    assert sync.success
    # hand computation for sync: every chunk costs latency + 1 tick of idling (request tick + arrival wait)
    k = round(latency * 30)
    assert sync.idle_ticks >= sync.chunks * k
    assert asyn.idle_ticks <= k + 1  # only the very first chunk is waited for
    assert asyn.duration_s < sync.duration_s


def test_window_counts_completed_tasks(sim: ArmSim) -> None:
    predict = expert_chunks(sim)
    done, results = run_window(sim, predict, iter(range(10, 20)), 25.0, LoopConfig(chunk_threshold=0.0))
    assert done == sum(r.success for r in results)
    assert done >= 2  # an expert task takes ~9 s of simulated time
    assert sum(r.duration_s for r in results) == pytest.approx(25.0, abs=1 / 30 + 1e-6)


def test_config_is_validated(sim: ArmSim) -> None:
    with pytest.raises(ValueError, match="chunk_threshold"):
        run_episode(sim, lambda *a: np.zeros((CHUNK, 6)), 0, LoopConfig(chunk_threshold=1.5))
    with pytest.raises(ValueError, match="latency"):
        run_episode(sim, lambda *a: np.zeros((CHUNK, 6)), 0, LoopConfig(latency_s=-1.0))
