"""Driver core (no ROS) against the emulator through the real SDK: configure, clamp, max_step, watchdog,
trajectories, malformed commands, error counting and recovery, torque."""

from __future__ import annotations

import math

import pytest

from so_arm_description.robot_spec import JOINT_NAMES
from so_arm_driver import calibration as calib
from so_arm_driver.bus import FeetechBus
from so_arm_driver.driver import ArmDriver, DriverConfig, DriverStartupError, DriverState
from so_arm_driver.emulator import EMULATED_BUS_TIMING, Emulator

CAL = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1012, "range_min": 758, "range_max": 3322},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 1300, "range_min": 812, "range_max": 3199},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": -400, "range_min": 900, "range_max": 3100},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 900, "range_min": 1002, "range_max": 3220},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -260, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1400, "range_min": 2030, "range_max": 3470},
}


@pytest.fixture
def cal():
    return calib.from_dict(CAL)


def middle_positions(cal):
    """Encoder positions (homing included) at the middle of each calibrated range, plus a small offset."""
    return {m.id: (m.mid + 100 + m.homing_offset) % 4096 for m in cal.values()}


@pytest.fixture
def emu(cal):
    with Emulator(positions=middle_positions(cal), speed=20000.0) as e:
        yield e


def make_driver(emu, cal, **cfg):
    bus = FeetechBus(emu.port, **EMULATED_BUS_TIMING)  # robust on a loaded machine
    return ArmDriver(bus, cal, DriverConfig(**cfg))


@pytest.fixture
def driver(emu, cal):
    d = make_driver(emu, cal, max_step=0.05, command_timeout=0.5, max_consecutive_errors=3)
    d.connect()
    yield d
    d.close()


def test_connect_configures_like_lerobot(driver, emu, cal):
    for name, m in cal.items():
        s = emu.servo(m.id)
        assert (s.get("Return_Delay_Time"), s.get("Acceleration"), s.get("Maximum_Acceleration")) == (
            0,
            254,
            254,
        )
        assert (s.get("P_Coefficient"), s.get("I_Coefficient"), s.get("D_Coefficient")) == (16, 0, 32)
        assert s.get("Phase") & 0x10 == 0 and s.get("Operating_Mode") == 0
        # the file's calibration is written into the servos (as lerobot does when it differs)
        assert s.get("Homing_Offset") == m.homing_offset
        assert (s.get("Min_Position_Limit"), s.get("Max_Position_Limit")) == (m.range_min, m.range_max)
        assert s.torque_enabled and s.get("Lock") == 1, name
    g = emu.servo(6)
    assert (g.get("Max_Torque_Limit"), g.get("Protection_Current"), g.get("Overload_Torque")) == (
        500,
        250,
        25,
    )
    assert emu.servo(1).get("Max_Torque_Limit") == 1000
    # goals were set to the present pose before torque on: nothing moved
    assert emu.goal_positions() == emu.present_positions()


def test_sample_in_radians_via_calibration(driver, emu, cal):
    res = driver.cycle()
    present = emu.present_positions()
    for k, name in enumerate(JOINT_NAMES):
        m = cal[name]
        assert res.sample.raw[k] == present[m.id]
        assert res.sample.position[k] == pytest.approx(m.to_radians(present[m.id]))
        assert res.sample.position[k] == pytest.approx(100 * 2 * math.pi / 4095, abs=1e-3)
    assert len(res.sample.velocity) == 6 and len(res.sample.effort) == 6


def test_step_limit_and_clamp(driver, emu, cal):
    assert driver.set_target(["elbow_flex", "gripper"], [0.5, 10.0]) is None
    prev = driver.cycle().goal
    steps = []
    for _ in range(60):
        res = driver.cycle(now=driver.follower.last_command)  # command stays fresh
        steps.append([abs(a - b) for a, b in zip(res.goal, prev)])
        prev = res.goal
    assert max(max(s) for s in steps) <= 0.05 + 1e-12
    assert steps[0][2] == pytest.approx(0.05)  # the first steps are limited
    i_elbow, i_grip = JOINT_NAMES.index("elbow_flex"), JOINT_NAMES.index("gripper")
    assert prev[i_elbow] == pytest.approx(0.5)
    assert prev[i_grip] == pytest.approx(
        cal["gripper"].limits_radians()[1]
    )  # clamped to the calibrated range
    goals = emu.goal_positions()
    assert goals[3] == cal["elbow_flex"].from_radians(0.5)
    assert goals[6] == cal["gripper"].range_max


def test_watchdog_holds_when_commands_stop(driver, emu):
    t0 = driver.follower.last_command or 0.0
    driver.set_target(["shoulder_pan"], [1.0], now=t0)
    for k in range(5):
        driver.cycle(now=t0 + 0.01 * k)
    assert not driver.watchdog_active
    held = driver.cycle(now=t0 + 0.6).goal  # command_timeout 0.5 s passed
    assert driver.watchdog_active
    for k in range(5):
        assert driver.cycle(now=t0 + 0.7 + k).goal == held
    assert held[0] < 1.0
    assert driver.status()[1] == "holding position"
    driver.set_target(["shoulder_pan"], [1.0], now=t0 + 10)
    assert driver.cycle(now=t0 + 10).goal[0] > held[0]  # a new command resumes


def test_trajectory_follows_time_from_start(driver):
    d = driver
    d.config.max_step = 10.0
    start = 1000.0
    d.cycle(now=start)
    g0 = d.follower.goal[1]
    assert (
        d.set_trajectory(["shoulder_lift"], [(0.2, [g0 + 0.2]), (0.4, [g0 - 0.2])], start=start, now=start)
        is None
    )
    assert d.cycle(now=start + 0.1).goal[1] == pytest.approx(g0 + 0.1)
    assert d.cycle(now=start + 0.3).goal[1] == pytest.approx(g0)
    assert d.cycle(now=start + 0.5).goal[1] == pytest.approx(g0 - 0.2)
    assert not d.watchdog_active  # alive until end + command_timeout
    d.cycle(now=start + 1.0)
    assert d.watchdog_active


@pytest.mark.parametrize(
    ("names", "points", "reason"),
    [
        (["elbow"], [(0.0, [0.1])], "unknown joint"),
        (["elbow_flex"], [(0.0, [float("nan")])], "non-finite"),
        (["elbow_flex", "gripper"], [(0.0, [0.1])], "positions for 2 joints"),
        (["elbow_flex", "elbow_flex"], [(0.0, [0.1, 0.2])], "duplicate"),
        (["elbow_flex"], [(0.2, [0.1]), (0.1, [0.2])], "backwards"),
        (["elbow_flex"], [], "without points"),
    ],
)
def test_malformed_commands_are_rejected(driver, names, points, reason):
    before = driver.follower.target
    msg = driver.set_trajectory(names, points)
    assert msg is not None and reason in msg
    assert driver.rejected_commands == 1 and reason in driver.status()[2]["last_command_error"]
    assert driver.follower.target == before
    assert driver.cycle().wrote


def test_error_burst_error_state_no_writes_and_recovery(driver, emu):
    driver.cycle()
    emu.drop_replies(count=10_000)
    for k in range(3):
        res = driver.cycle()
        if k == 0:  # the emulator has handled the previous cycle's write before this failed read
            writes = emu.stats["sync_writes"]
        assert res.sample is None and not res.wrote and res.errors[0].motor_id == 1
    assert driver.state == DriverState.ERROR
    level, message, values = driver.status()
    assert level == "ERROR" and "motor id 1" in message and values["consecutive_errors"] == "3"
    for _ in range(3):
        driver.cycle()
    assert emu.stats["sync_writes"] == writes  # nothing written while failing
    emu.drop_replies(count=0)
    emu._drop_count = 0
    res = driver.cycle()
    assert driver.state == DriverState.OK and driver.recoveries == 1 and res.wrote
    assert driver.status()[0] == "OK"
    assert driver.watchdog_active  # recovered into hold, the old command is dropped


def test_torque_off_and_on(driver, emu, cal):
    ok, _ = driver.set_torque(False)
    assert ok and not any(emu.servo(i).torque_enabled for i in range(1, 7))
    assert all(emu.servo(i).get("Lock") == 0 for i in range(1, 7))
    writes = emu.stats["sync_writes"]
    driver.set_target(["shoulder_pan"], [0.5])
    assert not driver.cycle().wrote and emu.stats["sync_writes"] == writes
    emu.set_present(1, 1500)  # moved by hand while limp
    ok, _ = driver.set_torque(True)
    assert ok and emu.servo(1).torque_enabled and emu.goal_positions()[1] == 1500  # no jump back
    assert driver.cycle().wrote


def test_close_disables_torque(emu, cal):
    d = make_driver(emu, cal)
    d.connect()
    d.close()
    assert not any(emu.servo(i).torque_enabled for i in range(1, 7))
    d2 = make_driver(emu, cal, disable_torque_on_exit=False)
    d2.connect()
    d2.close()
    assert all(emu.servo(i).torque_enabled for i in range(1, 7))


def test_missing_servo_at_start_is_named(cal):
    with Emulator(positions=middle_positions(cal), missing_ids=[3]) as emu:
        d = make_driver(emu, cal)
        with pytest.raises(DriverStartupError, match=r"servo id 3 \(elbow_flex\) does not answer"):
            d.connect()


def test_wrong_model_at_start_is_named(cal):
    with Emulator(positions=middle_positions(cal), models={5: 1020}) as emu:
        d = make_driver(emu, cal)
        with pytest.raises(DriverStartupError, match=r"servo id 5 \(wrist_roll\) has model number 1020"):
            d.connect()


def test_calibration_missing_joint_is_named(cal):
    del cal["gripper"]
    with pytest.raises(DriverStartupError, match="gripper"):
        ArmDriver(FeetechBus("/dev/null"), cal)


def test_seam_crossing_calibration_reads_continuously(cal):
    cal["elbow_flex"] = calib.MotorCalibration(3, homing_offset=0, range_min=3700, range_max=1900)
    pos = middle_positions(cal)
    with Emulator(positions=pos) as emu:
        d = make_driver(emu, cal, torque_on_connect=False)  # limp: the horn stays where it is put
        d.connect()
        s = emu.servo(3)
        assert (s.get("Min_Position_Limit"), s.get("Max_Position_Limit")) == (0, 4095)  # limits cannot wrap
        readings = []
        for encoder in (3800, 4095, 0, 300):
            emu.set_actual(3, encoder)
            readings.append(d.cycle().sample.position[2])
        assert readings == sorted(readings)
        assert readings[2] - readings[1] == pytest.approx(calib.RAD_PER_TICK)
        d.close()
