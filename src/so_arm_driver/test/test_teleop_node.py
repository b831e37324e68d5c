"""Teleoperation through real ROS: a leader driver node and a follower driver node (each on an emulated bus
owned by this test, through the real SDK) and the teleop node. Moving the leader by hand moves the follower;
the follower holds when the leader node stops; NaN and out-of-range leader states change nothing; the
leader's torque register is never written 1."""

from __future__ import annotations

import json
import math
import time

import pytest

from ros_harness import wait_for
from so_arm_description.robot_spec import JOINT_NAMES
from so_arm_driver import calibration as calib
from so_arm_driver.emulator import Emulator

pytestmark = pytest.mark.slow
rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import JointState  # noqa: E402


def _helpers():  # type: ignore[no-untyped-def]
    """CAL, WriteLog and positions() of test_leader_teleop.py (tests are not importable by name here)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "_leader_helpers", Path(__file__).with_name("test_leader_teleop.py")
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_h = _helpers()
CAL, WriteLog, positions = _h.CAL, _h.WriteLog, _h.positions


def test_leader_moves_follower_and_holds(tmp_path, ros_context, ros_executor, run_node) -> None:  # type: ignore[no-untyped-def]
    cal_path = tmp_path / "arm.json"
    cal_path.write_text(json.dumps(CAL))
    cal = calib.from_dict(CAL)
    start = positions(cal, [0] * 6)
    with Emulator(positions=start) as leader_emu, Emulator(positions=start) as follower_emu:
        log = WriteLog(leader_emu)
        common = {"calibration_file": str(cal_path), "read_retries": 3}
        leader = run_node(
            "so_arm_driver",
            "so_arm_driver",
            name="so_arm_leader",
            parameters={**common, "port": leader_emu.port, "leader": True},
        )
        run_node("so_arm_driver", "so_arm_driver", parameters={**common, "port": follower_emu.port})
        teleop = run_node("so_arm_driver", "teleop", parameters={"autostart": True, "rate": 30.0})
        assert teleop.wait_for_output("teleoperation started", 60.0), teleop.output()
        assert leader.wait_for_output("leader arm on", 60.0), leader.output()  # configured (homing written)
        # the leader is moved by hand: the follower goes to the same raw positions (same calibration)
        target = positions(cal, [400, -300, 250, 200, -500, 300])
        for motor_id, raw in target.items():
            leader_emu.set_actual(motor_id, raw)  # the encoder position (the homing offset applies on top)
        want = leader_emu.present_positions()
        assert wait_for(
            lambda: all(abs(follower_emu.present_positions()[i] - want[i]) <= 3 for i in want), 60.0
        ), (follower_emu.present_positions(), want, teleop.output())
        # the leader node stops: the teleop holds, the follower stays where it is
        leader.stop()
        assert teleop.wait_for_output("leader silent: holding", 30.0)
        held = follower_emu.present_positions()
        # NaN and out-of-range leader states from another publisher are refused
        node = rclpy.create_node("fake_leader", context=ros_context)
        ros_executor.add_node(node)
        pub = node.create_publisher(JointState, "/leader/joint_states", 10)
        assert wait_for(lambda: pub.get_subscription_count() > 0, 30.0)
        for bad, warning in (
            ([math.nan, 0, 0, 0, 0, 0], "non-finite"),
            ([0, 0, 0, 0, 0, 7.0], "out of range"),
        ):
            deadline = time.monotonic() + 30.0
            while warning not in teleop.output() and time.monotonic() < deadline:
                pub.publish(JointState(name=list(JOINT_NAMES), position=[float(v) for v in bad]))
                time.sleep(0.05)
            assert warning in teleop.output()
        time.sleep(0.5)
        assert follower_emu.present_positions() == held
        assert teleop.alive()
    assert log.torque_on_writes() == []
