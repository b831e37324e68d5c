"""lerobot units end to end on an emulated, calibrated arm (issue 10, defects 1 and 2).

Real processes over real ROS: ``so_arm_driver`` (the real scservo_sdk against the servo emulator on a
pseudo-terminal, a lerobot calibration file whose gripper range is raw 2030..3470) publishes
``/robot_description``; ``policy_server`` runs the real SmolVLA backend (units, joint order, robot model)
around a scripted model (calibrated_arm_backend.py: no network weights needed); ``action_queue`` streams the
chunks to the driver. The model's lerobot-unit actions -- gripper 0 / 50 / 100 %, arm joints +- degrees --
must arrive at the servos as the ticks lerobot itself would write (range_min / middle / range_max for the
gripper), and the state the model is given must be lerobot's normalisation of the servos' present positions.
The expected ticks are computed here from lerobot 0.6.1's formulas (``MotorsBus._normalize`` /
``_unnormalize``), not with the project's code. The same with an SO-100 whose calibrated shoulder_pan reaches
beyond the SO-101's limits.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

import ros_harness
from ros_harness import wait_for

pytestmark = pytest.mark.slow
emulator = pytest.importorskip("so_arm_driver.emulator", reason="needs so_arm_driver (the emulated arm)")

HERE = Path(__file__).resolve().parent
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def _cal(ranges: dict[str, tuple[int, int]], offsets: dict[str, int]) -> dict[str, dict[str, int]]:
    return {
        j: {"id": i + 1, "drive_mode": 0, "homing_offset": offsets[j], "range_min": lo, "range_max": hi}
        for i, (j, (lo, hi)) in enumerate(ranges.items())
    }


OFFSETS = {"shoulder_pan": -1012, "shoulder_lift": 1300, "elbow_flex": -400, "wrist_flex": 900}
OFFSETS |= {"wrist_roll": -260, "gripper": 1400}
SO101_CAL = _cal(
    {
        "shoulder_pan": (758, 3322),
        "shoulder_lift": (812, 3199),
        "elbow_flex": (900, 3100),
        "wrist_flex": (1002, 3220),
        "wrist_roll": (0, 4095),
        "gripper": (2030, 3470),
    },
    OFFSETS,
)
# SO-100: shoulder_pan calibrated over +-118.7 deg (past the SO-101 description's +-110 deg), another gripper.
SO100_CAL = _cal(
    {
        "shoulder_pan": (698, 3398),
        "shoulder_lift": (830, 3250),
        "elbow_flex": (880, 3120),
        "wrist_flex": (990, 3200),
        "wrist_roll": (0, 4095),
        "gripper": (1905, 3101),
    },
    OFFSETS,
)

# lerobot-unit actions (degrees x5, gripper %): the gripper at 0 / 50 / 100 % of its calibrated range
TARGETS = {
    "so101": [
        [30.0, -20.0, 45.0, -60.0, 90.0, 0.0],
        [-30.0, 20.0, -45.0, 60.0, -90.0, 50.0],
        [0.0, 10.0, 0.0, -10.0, 0.0, 100.0],
    ],
    "so100": [
        [115.0, -20.0, 45.0, -60.0, 90.0, 0.0],  # shoulder_pan 115 deg: beyond the SO-101's 110
        [-115.0, 20.0, -45.0, 60.0, -90.0, 50.0],
        [0.0, 10.0, 0.0, -10.0, 0.0, 100.0],
    ],
}


# -- lerobot 0.6.1's arithmetic (lerobot/motors/motors_bus.py), written out here on raw ticks ---------------
def lerobot_normalize(c: dict[str, int], raw: float, gripper: bool) -> float:
    lo, hi = c["range_min"], c["range_max"]
    if gripper:  # RANGE_0_100
        return (min(hi, max(lo, raw)) - lo) / (hi - lo) * 100
    return (raw - (lo + hi) / 2) * 360 / (4096 - 1)  # DEGREES (max_res = resolution - 1)


def lerobot_unnormalize(c: dict[str, int], value: float, gripper: bool) -> int:
    lo, hi = c["range_min"], c["range_max"]
    if gripper:
        return int(min(100.0, max(0.0, value)) / 100 * (hi - lo) + lo)
    return int(value * (4096 - 1) / 360 + (lo + hi) / 2)


def exact_tick(c: dict[str, int], value: float, gripper: bool) -> float:
    """The unrounded raw position of ``value`` (lerobot truncates it, the driver rounds it)."""
    lo, hi = c["range_min"], c["range_max"]
    if gripper:
        return value / 100 * (hi - lo) + lo
    return value * 4095 / 360 + (lo + hi) / 2


@pytest.mark.parametrize("robot", ["so101", "so100"])
def test_lerobot_units_reach_the_servos_as_lerobot_ticks(
    robot, ros_context, ros_executor, run_node, tmp_path
):
    import rclpy
    from std_msgs.msg import String

    from smolvla_common import robot_description
    from so_arm_description.robot_model import limits_from_calibration, limits_from_urdf, robot_from_urdf

    cal = SO101_CAL if robot == "so101" else SO100_CAL
    cal_file = tmp_path / "follower.json"
    cal_file.write_text(json.dumps(cal, indent=4))
    action_file, state_file = tmp_path / "action.json", tmp_path / "state.json"
    action_file.write_text(json.dumps(TARGETS[robot][0]))
    start = {
        c["id"]: ((c["range_min"] + c["range_max"]) / 2 + c["homing_offset"]) % 4096 for c in cal.values()
    }

    descriptions: list[str] = []
    node = rclpy.create_node("probe", context=ros_context)
    node.create_subscription(
        String, "/robot_description", lambda m: descriptions.append(m.data), robot_description.qos()
    )
    ros_executor.add_node(node)

    with emulator.Emulator(positions=start) as emu:
        env = ros_harness.ros_environment()
        env["PYTHONPATH"] = f"{HERE}:{env.get('PYTHONPATH', '')}"
        driver = run_node(
            "so_arm_driver",
            "so_arm_driver",
            parameters={"port": emu.port, "calibration_file": str(cal_file), "robot": robot, "max_step": 0.2},
        )
        options = {"action_file": str(action_file), "state_file": str(state_file), "robot": "so101"}
        server = run_node(
            "smolvla_policy",
            "policy_server",
            parameters={
                "backend": "calibrated_arm_backend:make_backend",
                "backend_options": json.dumps(options),  # the plug-in starts with SO-101 defaults
                "robot": robot,
                "publish_markers": False,
                "warmup": False,
            },
            env=env,
        )
        queue = run_node(
            "smolvla_policy",
            "action_queue",
            parameters={
                "robot": robot,
                "cameras": [""],
                "task": "hold the cube",
                "similarity_epsilon": -1.0,
                "chunk_threshold": 0.7,
            },
        )
        logs = lambda: "\n".join(p.output()[-3000:] for p in (driver, server, queue))  # noqa: E731

        # the driver's /robot_description: the calibrated limits, the right robot
        assert wait_for(lambda: bool(descriptions), 30), logs()
        assert robot_from_urdf(descriptions[-1]) == robot
        limits = limits_from_urdf(descriptions[-1])
        for j, (lo, hi) in limits_from_calibration(cal).items():
            assert limits[j] == pytest.approx((lo, hi), abs=1e-12)
        applied = f"joint limits of the {robot} from /robot_description"
        assert wait_for(lambda: applied in server.output() and applied in queue.output(), 60), logs()

        for target in TARGETS[robot]:
            action_file.write_text(json.dumps(target))
            expected = {}
            for k, j in enumerate(JOINTS):
                c, grip = cal[j], j == "gripper"
                expected[c["id"]] = (exact_tick(c, target[k], grip), lerobot_unnormalize(c, target[k], grip))

            def arrived(expected: dict = expected) -> bool:
                goals = emu.goal_positions()
                return all(abs(goals[i] - exact) <= 0.5 + 1e-6 for i, (exact, _) in expected.items())

            assert wait_for(arrived, 60), f"goals {emu.goal_positions()} != {expected}\n{logs()}"
            goals = emu.goal_positions()
            for j in JOINTS:
                c = cal[j]
                exact, lerobot_tick = expected[c["id"]]
                assert abs(goals[c["id"]] - lerobot_tick) <= 1, j  # lerobot truncates, the driver rounds
                if j == "gripper":
                    assert goals[c["id"]] == lerobot_tick == exact  # 0/50/100 % = range_min / middle / max
            grip = cal["gripper"]
            assert goals[6] == {0.0: grip["range_min"], 100.0: grip["range_max"]}.get(
                target[5], (grip["range_min"] + grip["range_max"]) // 2
            )

            # the reverse: once the servos are there, the model's state is lerobot's view of them
            assert wait_for(lambda: emu.present_positions() == emu.goal_positions(), 30)
            present = emu.present_positions()
            settled = time.time()  # the state file must be written after this
            want = [lerobot_normalize(cal[j], present[cal[j]["id"]], j == "gripper") for j in JOINTS]

            def state_matches(settled: float = settled, want: list = want) -> bool:
                if not state_file.exists() or state_file.stat().st_mtime < settled - 0.05:
                    return False
                state = json.loads(state_file.read_text())
                return all(abs(a - b) < 2e-3 for a, b in zip(state, want))

            assert wait_for(state_matches, 30), f"{state_file.read_text()} != {want}\n{logs()}"
            state = json.loads(state_file.read_text())
            assert state[5] == pytest.approx(target[5], abs=2e-3)  # 0 / 50 / 100 % back
            for k in range(5):
                assert math.isclose(state[k], target[k], abs_tol=360 / 4095)  # within a tick of the target
        assert driver.alive() and server.alive() and queue.alive(), logs()
