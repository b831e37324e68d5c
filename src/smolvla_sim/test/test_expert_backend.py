"""The expert as a policy backend, run in chunks on the core (no ROS): perception and planning from images."""

from __future__ import annotations

import numpy as np
import pytest

from smolvla_sim.expert_backend import make_backend
from smolvla_sim.perception import CameraModel, estimate_scene
from smolvla_sim.sim import ArmSim, SimConfig

backend_api = pytest.importorskip("smolvla_policy.backend")


@pytest.fixture(scope="module")
def sim():
    s = ArmSim(SimConfig(image_width=256, image_height=256))
    yield s
    s.close()


def test_perception_locates_cube_and_tray(sim):
    for seed in range(5):
        sim.reset(seed)
        pos, rot = sim.camera_pose("top")
        cam = CameraModel(pos, rot, float(sim.model.cam("top").fovy[0]))
        est = estimate_scene(sim.render("top"), cam)
        assert est is not None
        assert np.linalg.norm(est.cube_position[:2] - sim.task.cube_position()[:2]) < 0.004
        assert np.linalg.norm(est.tray_position[:2] - sim.task.tray_position()[:2]) < 0.01
        dyaw = (est.cube_yaw - sim.task.cube_yaw() + np.pi / 4) % (np.pi / 2) - np.pi / 4
        assert abs(dyaw) < 0.1


def test_camera_model_round_trip(sim):
    pos, rot = sim.camera_pose("top")
    cam = CameraModel(pos, rot, float(sim.model.cam("top").fovy[0]))
    pts = np.array([[0.2, 0.1, 0.01], [0.15, -0.12, 0.01]])
    uv = cam.project(pts, 256, 256)
    back = cam.backproject(uv[:, 0], uv[:, 1], 256, 256, 0.01)
    np.testing.assert_allclose(back, pts, atol=1e-9)


def _run_episode(sim: ArmSim, seed: int, chunk: int, ticks: int = 390, execute: int | None = None) -> bool:
    backend = make_backend({"chunk_size": chunk, "fps": sim.config.control_rate})
    assert isinstance(backend, backend_api.PolicyBackend)
    sim.reset(seed)
    names = list(reversed(sim.joint_names))  # the request's joint order need not be the contract order
    tick = 0
    while tick < ticks:
        req = backend_api.ChunkRequest(
            images={"top": sim.render("top"), "wrist": sim.render("wrist")},
            joint_names=names,
            positions=sim.joint_positions[::-1].copy(),
            task="Pick up the red cube and place it in the blue box.",
            timestep=tick,
        )
        out = backend.predict(req)
        assert out.shape == (chunk, 6)
        for a in out[:execute]:
            sim.step(a[::-1])
            tick += 1
    return sim.task_success()


@pytest.mark.slow
def test_expert_backend_in_chunks_of_50(sim):
    results = [_run_episode(sim, seed, 50) for seed in range(100, 110)]
    print(f"expert backend success: {sum(results)}/10")
    assert sum(results) >= 9


@pytest.mark.slow
def test_expert_backend_with_overlapping_requests(sim):
    """An asynchronous action queue asks for the next chunk before the current one is used up."""
    results = [_run_episode(sim, seed, 50, execute=20) for seed in range(200, 205)]
    assert sum(results) >= 4


def test_expert_backend_rejects_missing_camera_and_bad_joints():
    backend = make_backend({})
    req = backend_api.ChunkRequest(images={}, joint_names=["a"], positions=np.zeros(1), task="", timestep=0)
    with pytest.raises(backend_api.BadRequest):
        backend.predict(req)
    with pytest.raises(ValueError):
        make_backend({"nonsense": 1})
