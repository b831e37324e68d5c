"""The arm's joint limits reach every policy backend (issue 10, defects 1 and 2), without ROS.

The limits come as a ``RobotModel`` (the policy server builds it from ``/robot_description``); the reference
numbers are computed here by hand from lerobot's definition of RANGE_0_100 (0..100 % of the calibrated
range_min..range_max) and from the SO-100/SO-101 descriptions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from smolvla_policy.backend import ChunkRequest
from smolvla_policy.queue import ActionQueueCore, QueueConfig
from smolvla_policy.server.backends import RobotModel, make_backend
from smolvla_policy.server.smolvla_backend import SmolVLABackend
from so_arm_description.joints import JOINT_NAMES
from so_arm_description.robot_model import build_urdf, limits_from_calibration

# the calibration: gripper raw 2030..3470 (1440 ticks = +-1.1047 rad about its middle)
CAL = {"gripper": {"id": 6, "range_min": 2030, "range_max": 3470}}
GRIP = limits_from_calibration(CAL)["gripper"]
G = JOINT_NAMES.index("gripper")


def calibrated_model(robot: str = "so101") -> RobotModel:
    return RobotModel.from_urdf(build_urdf(robot, {"gripper": GRIP}))


class EchoModel:
    """What SmolVLABackend needs of SmolVLAPolicy; returns ``action`` and remembers the state it got."""

    camera_keys: list[str] = []
    state_dim = action_dim = 6
    chunk_size, num_steps = 3, 1

    def __init__(self, action: list[float]) -> None:
        self.action, self.state = np.asarray(action, np.float32), None

    def predict_chunk(self, images, state, task, **_):  # type: ignore[no-untyped-def]
        self.state = np.asarray(state)
        return np.tile(self.action, (self.chunk_size, 1))


def _request(positions: list[float]) -> ChunkRequest:
    return ChunkRequest(images={}, joint_names=list(JOINT_NAMES), positions=np.asarray(positions), task="t")


def _smolvla(action: list[float]) -> SmolVLABackend:
    from smolvla_policy.server.backends import make_joint_units

    model = RobotModel.defaults("so101")
    return SmolVLABackend(EchoModel(action), JOINT_NAMES, make_joint_units(JOINT_NAMES, {}, model.limits))


def test_gripper_units_follow_calibration() -> None:
    """lerobot 0/50/100 % = calibrated range_min/middle/range_max (as radians about the middle: -1.1047, 0,
    +1.1047), both ways; before the fix 0/50/100 % were a fixed -0.17..1.75 rad span."""
    half = 720 * 2 * math.pi / 4095
    assert pytest.approx((-half, half)) == GRIP
    for percent, rad in ((0.0, -half), (50.0, 0.0), (100.0, half)):
        backend = _smolvla([10.0, -20.0, 30.0, -40.0, 50.0, percent])
        backend.set_robot_model(calibrated_model())
        chunk = backend.predict(_request([0.0, 0.0, 0.0, 0.0, 0.0, rad]))
        assert chunk[0, G] == pytest.approx(rad, abs=1e-9)
        np.testing.assert_allclose(chunk[0, :5], np.radians([10.0, -20.0, 30.0, -40.0, 50.0]), atol=1e-6)
        assert backend.policy.state[G] == pytest.approx(percent, abs=1e-4)  # the observation, the same way


def test_smolvla_backend_keeps_one_mapping_per_chunk_and_describes_it() -> None:
    backend = _smolvla([0, 0, 0, 0, 0, 0.0])
    assert backend.units.describe().endswith("gripper 0..100 = -0.17453..1.74533 rad")  # so101 defaults
    backend.set_robot_model(calibrated_model())
    assert backend.robot_model is not None and backend.robot_model.from_arm
    assert f"gripper 0..100 = {GRIP[0]:.5f}..{GRIP[1]:.5f} rad" in backend.units.describe()


def test_so100_is_one_robot() -> None:
    """Defect 2: the scripted and replay backends clamp to the robot they serve (SO-100: shoulder_pan +-2.0,
    wrist_roll +-pi), not always to the SO-101's limits."""
    target = [1.98, 0.0, 0.0, 0.0, 3.0, 0.0]  # inside the SO-100's limits, outside the SO-101's
    scripted = make_backend(
        "scripted", {"mode": "target", "target": target, "max_velocity": 100.0, "robot": "so100"}
    )
    chunk = scripted.predict(_request([1.9, 0.0, 0.0, 0.0, 2.8, 0.0]))
    np.testing.assert_allclose(chunk[-1, [0, 4]], [1.98, 3.0])
    scripted.set_robot_model(RobotModel.defaults("so101"))
    chunk = scripted.predict(_request([1.9, 0.0, 0.0, 0.0, 2.8, 0.0]))
    np.testing.assert_allclose(chunk[-1, [0, 4]], [1.91986, 2.84121])

    replay = ReplayFixture.make(np.tile(target, (4, 1)), robot="so100")
    np.testing.assert_allclose(replay.predict(_request([0.0] * 6))[0, [0, 4]], [1.98, 3.0])
    replay.set_robot_model(RobotModel.from_urdf(build_urdf("so100", {"shoulder_pan": (-1.5, 1.5)})))
    np.testing.assert_allclose(replay.predict(_request([0.0] * 6))[0, [0, 4]], [1.5, 3.0])  # calibrated


class ReplayFixture:
    @staticmethod
    def make(actions: np.ndarray, robot: str, units: str = "radians"):  # type: ignore[no-untyped-def]
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp()) / "actions.npy"
        np.save(path, actions)
        return make_backend("replay", {"path": str(path), "robot": robot, "units": units, "chunk_size": 2})


def test_replay_lerobot_units_follow_the_robot_model() -> None:
    replay = ReplayFixture.make(np.tile([0.0, 0.0, 0.0, 0.0, 0.0, 50.0], (3, 1)), "so101", units="lerobot")
    lo, hi = RobotModel.defaults("so101").limits["gripper"]
    assert replay.predict(_request([0.0] * 6))[0, G] == pytest.approx((lo + hi) / 2)
    replay.set_robot_model(calibrated_model())
    assert replay.predict(_request([0.0] * 6))[0, G] == pytest.approx(0.0, abs=1e-12)  # the calibrated middle


def test_queue_hold_does_not_move_a_calibrated_gripper() -> None:
    """At start-up the queue holds the measured pose as is; clipping it into other limits moved the arm."""
    lower = tuple(lo for lo, _ in RobotModel.defaults().limits.values())
    upper = tuple(hi for _, hi in RobotModel.defaults().limits.values())
    core = ActionQueueCore(6, QueueConfig(lower_limits=lower, upper_limits=upper))
    measured = np.array([0.0, 0.0, 0.0, 0.0, 0.0, GRIP[0]])  # gripper closed: below the SO-101 default -0.17
    res = core.tick(0.0, measured)
    np.testing.assert_array_equal(res.command, measured)
