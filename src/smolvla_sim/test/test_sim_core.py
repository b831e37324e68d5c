"""The simulator core without ROS: model facts, determinism, rendering and the scripted expert."""

from __future__ import annotations

import numpy as np
import pytest

from smolvla_sim.expert import ScriptedExpert, run_expert_episode
from smolvla_sim.model import build_model
from smolvla_sim.sim import ArmSim, SimConfig
from so_arm_description.robot_model import build_urdf, limits_from_urdf
from so_arm_description.robot_spec import JOINT_NAMES, get_robot_spec


@pytest.fixture(scope="module")
def sim():
    s = ArmSim(SimConfig(image_width=128, image_height=96))
    yield s
    s.close()


@pytest.mark.parametrize("robot", ["so101", "so100"])
def test_model_matches_the_contract(robot):
    m = build_model(robot)
    assert m.opt.timestep <= 1 / 500
    limits = limits_from_urdf(build_urdf(robot))  # what the simulator publishes on /robot_description
    for name in JOINT_NAMES:
        j = m.joint(name)
        assert tuple(np.round(j.range, 5)) == pytest.approx(limits[name], abs=1e-5)
        a = m.actuator(name)
        assert a.gainprm[0] > 0 and a.forcerange[1] > 0  # position servo with a force limit
    assert {m.cam(i).name for i in range(m.ncam)} == {"top", "wrist"}


def test_so100_is_one_robot():
    """Defect 2: the simulated SO-100 has the SO-100's limits (shoulder_pan +-2.0, wrist_roll +-pi), the same
    numbers as its URDF and robot_spec, not the SO-101's."""
    m = build_model("so100")
    urdf = limits_from_urdf(build_urdf("so100"))
    assert urdf["shoulder_pan"] == pytest.approx((-2.0, 2.0))
    assert urdf["wrist_roll"] == pytest.approx((-3.14159, 3.14159))
    for name in ("shoulder_pan", "wrist_roll"):
        assert tuple(m.joint(name).range) == pytest.approx(urdf[name], abs=1e-6)
        assert tuple(m.joint(name).range) != pytest.approx(get_robot_spec("so101").limits[name], abs=1e-3)
    s = ArmSim(SimConfig(robot="so100", image_width=64, image_height=48))
    try:
        s.reset(seed=0)
        target = np.zeros(len(JOINT_NAMES))
        target[JOINT_NAMES.index("shoulder_pan")] = 1.95  # beyond the SO-101's 1.92, inside the SO-100's 2.0
        for _ in range(60):
            s.step(target)
        assert s.joint_positions[JOINT_NAMES.index("shoulder_pan")] > 1.92
    finally:
        s.close()


def test_config_validation():
    with pytest.raises(ValueError):
        SimConfig(physics_rate=200).validate()
    with pytest.raises(ValueError):
        SimConfig(robot="ur5").validate()
    with pytest.raises(ValueError):
        SimConfig(cameras=("side",)).validate()


def test_step_clamps_targets_and_rejects_bad_actions(sim):
    sim.reset(0)
    obs = sim.step(np.full(6, 10.0))
    assert np.all(sim.targets <= sim.upper + 1e-9)
    assert obs["joint_positions"].shape == (6,)
    with pytest.raises(ValueError):
        sim.step([0.0] * 5)
    with pytest.raises(ValueError):
        sim.step([np.nan] * 6)


def _rollout(sim: ArmSim, seed: int, actions: np.ndarray) -> np.ndarray:
    sim.reset(seed)
    out = []
    for a in actions:
        obs = sim.step(a)
        out.append(
            np.concatenate([obs["joint_positions"], obs["joint_velocities"], sim.object_poses()["cube"]])
        )
    return np.array(out)


def test_same_seed_same_commands_same_trajectory(sim):
    rng = np.random.default_rng(1)
    sim.reset(7)
    actions = sim.joint_positions + rng.uniform(-0.3, 0.3, size=(60, 6))
    a = _rollout(sim, 7, actions)
    b = _rollout(sim, 7, actions)
    np.testing.assert_array_equal(a, b)
    c = _rollout(sim, 8, actions)
    assert not np.array_equal(a, c)


def test_reset_randomises_objects(sim):
    poses = []
    for seed in range(4):
        sim.reset(seed)
        poses.append(np.concatenate([sim.task.cube_position(), sim.task.tray_position()]))
    assert len({tuple(np.round(p, 4)) for p in poses}) == 4
    sim.reset(0)
    assert not sim.task_success()


def test_render_size_and_content(sim):
    sim.reset(3)
    top = sim.render("top")
    assert top.shape == (96, 128, 3) and top.dtype == np.uint8
    assert np.any((top[..., 0] > 150) & (top[..., 1] < 60))  # the red cube is visible from the top camera
    wrist = sim.render("wrist", 64, 64)
    assert wrist.shape == (64, 64, 3)
    assert top.std() > 5 and wrist.std() > 5


@pytest.mark.slow
def test_expert_solves_50_seeded_episodes(sim):
    results = [run_expert_episode(sim, seed) for seed in range(50)]
    rate = sum(results) / len(results)
    print(f"scripted expert success: {sum(results)}/50")
    assert rate >= 0.9


@pytest.mark.slow
def test_expert_sorts_two_cubes():
    s = ArmSim(SimConfig(task="sort"))
    results = [run_expert_episode(s, seed) for seed in range(10)]
    print(f"sorting: {sum(results)}/10")
    assert sum(results) >= 9
    assert len(s.object_poses()) == 4


@pytest.mark.slow
def test_expert_on_so100():
    s = ArmSim(SimConfig(robot="so100"))
    assert sum(run_expert_episode(s, seed) for seed in range(5)) >= 4


def test_expert_plan_is_deterministic(sim):
    sim.reset(11)
    p1 = ScriptedExpert(sim).reset()
    sim.reset(11)
    p2 = ScriptedExpert(sim).reset()
    np.testing.assert_array_equal(p1, p2)
