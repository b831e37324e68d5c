"""Leader arm and teleoperation: the driver in leader mode against the emulator through the real SDK (torque
never enabled, checked on every register write), leader radians equal a follower's with the same
calibration (and the calibration formula by hand), and the teleop core's safety rules."""

from __future__ import annotations

import math

import pytest

from so_arm_description.robot_spec import JOINT_NAMES
from so_arm_driver import calibration as calib
from so_arm_driver import control_table as ct
from so_arm_driver.bus import FeetechBus
from so_arm_driver.driver import ArmDriver, DriverConfig
from so_arm_driver.emulator import EMULATED_BUS_TIMING, Emulator
from so_arm_driver.teleop import TeleopConfig, TeleopCore

CAL = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1012, "range_min": 758, "range_max": 3322},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 1300, "range_min": 812, "range_max": 3199},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": -400, "range_min": 900, "range_max": 3100},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 900, "range_min": 1002, "range_max": 3220},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -260, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1400, "range_min": 2030, "range_max": 3470},
}
TORQUE_ENABLE = ct.register("Torque_Enable").address
GOAL_POSITION = ct.register("Goal_Position").address


def positions(cal, offsets):  # type: ignore[no-untyped-def]
    """Encoder positions (homing offset included) ``offsets[k]`` ticks from the middle of each range."""
    return {m.id: (m.mid + off + m.homing_offset) % 4096 for m, off in zip(cal.values(), offsets)}


class WriteLog:
    """Every register write the emulated servos apply, as (id, address, bytes)."""

    def __init__(self, emu: Emulator) -> None:
        self.writes: list[tuple[int, int, bytes]] = []
        for motor_id, servo in emu.servos.items():
            original = servo.write

            def write(address: int, data: bytes, _id=motor_id, _orig=original) -> None:
                self.writes.append((_id, address, bytes(data)))
                _orig(address, data)

            servo.write = write  # type: ignore[method-assign]

    def registers(self) -> set[str]:
        names = set()
        for _, address, data in self.writes:
            for k in range(len(data)):
                reg = ct.register_at(address + k)
                if reg is not None:
                    names.add(reg.name)
        return names

    def torque_on_writes(self) -> list:
        return [
            w for w in self.writes if w[1] <= TORQUE_ENABLE < w[1] + len(w[2]) and w[2][TORQUE_ENABLE - w[1]]
        ]


OFFSETS = [300, -200, 150, -350, 600, 400]


def read(driver: ArmDriver):  # type: ignore[no-untyped-def]
    """One good sample (a loaded machine can time an SDK read out: the driver then reports no sample)."""
    for _ in range(20):
        res = driver.cycle()
        assert not res.wrote  # whatever happens, a leader (and a follower with torque off) writes nothing
        if res.sample is not None:
            return res.sample
    raise AssertionError("no successful read in 20 cycles")


def test_leader_never_enables_torque_and_reads_like_a_follower() -> None:
    cal = calib.from_dict(CAL)
    start = positions(cal, OFFSETS)
    with Emulator(positions=start) as leader_emu, Emulator(positions=start) as follower_emu:
        log = WriteLog(leader_emu)
        leader = ArmDriver(FeetechBus(leader_emu.port, **EMULATED_BUS_TIMING), cal, DriverConfig(leader=True))
        follower = ArmDriver(
            FeetechBus(follower_emu.port, **EMULATED_BUS_TIMING), cal, DriverConfig(torque_on_connect=False)
        )
        leader.connect()
        follower.connect()
        try:
            for _ in range(5):
                sample = read(leader)
            # the same calibration gives the same radians on both arms
            follower_sample = read(follower)
            assert sample.position == pytest.approx(follower_sample.position, abs=1e-12)
            # ... and they are the calibration formula on the servos' present raw positions
            raw = leader_emu.present_positions()
            mids = [(m.range_min + m.range_max) / 2 for m in cal.values()]
            expected = [(raw[m.id] - mid) * 2 * math.pi / 4095 for m, mid in zip(cal.values(), mids)]
            assert sample.position[:5] == pytest.approx(expected[:5], abs=1e-12)
            assert expected[0] == pytest.approx(OFFSETS[0] * 2 * math.pi / 4095, abs=2e-3)
            # moving the leader by hand moves its reading
            leader_emu.set_present(1, raw[1] + 100)
            moved = read(leader)
            assert moved.position[0] == pytest.approx(expected[0] + 100 * 2 * math.pi / 4095, abs=1e-12)
            # refusals: torque on and commands
            ok, message = leader.set_torque(True)
            assert not ok and "leader" in message
            assert leader.set_target(list(JOINT_NAMES), [0.0] * 6) is not None
            assert leader.set_trajectory(list(JOINT_NAMES), [(0.5, [0.0] * 6), (1.0, [0.1] * 6)]) is not None
            for _ in range(3):
                assert not leader.cycle().wrote
        finally:
            leader.close()
            follower.close()
        # register check: torque never enabled on any leader servo, no goal ever written, no follower gains
        assert log.torque_on_writes() == []
        assert all(not s.torque_enabled for s in leader_emu.servos.values())
        assert all(not (w[1] <= GOAL_POSITION < w[1] + len(w[2])) for w in log.writes)
        written = log.registers()
        assert {"Torque_Enable", "Return_Delay_Time", "Operating_Mode"} <= written
        assert not written & {"Goal_Position", "P_Coefficient", "D_Coefficient", "Max_Torque_Limit"}


# -- teleop core -------------------------------------------------------------------------------------------
LIMITS = [(-1.0, 1.0)] * 5 + [(0.0, 1.5)]


def make_core(**kw) -> TeleopCore:  # type: ignore[no-untyped-def]
    core = TeleopCore(TeleopConfig(max_step=0.1, leader_timeout=0.25, range_margin=0.2, **kw))
    assert core.set_limits(LIMITS) is None
    return core


def test_teleop_starts_from_the_follower_and_caps_each_step() -> None:
    core = make_core()
    assert core.tick(0.0).command is None  # not started
    assert core.start() == (False, "no follower joint state yet")
    core.on_follower(list(JOINT_NAMES), [0.0] * 5 + [0.5])
    assert core.start()[0]
    assert core.on_leader(list(JOINT_NAMES), [0.35, -0.05, 0.0, 0.0, 0.0, 0.5], now=0.0) is None
    steps = [core.tick(0.01 * k).command for k in range(1, 6)]
    assert steps[0] == pytest.approx([0.1, -0.05, 0, 0, 0, 0.5])
    assert steps[1] == pytest.approx([0.2, -0.05, 0, 0, 0, 0.5])
    assert steps[3] == pytest.approx([0.35, -0.05, 0, 0, 0, 0.5])  # reached, then stays
    assert steps[4] == steps[3]
    # joint order of the message does not matter (mapping by name)
    names = list(reversed(JOINT_NAMES))
    assert core.on_leader(names, list(reversed([0.35, -0.05, 0, 0, 0, 0.6])), now=0.06) is None
    assert core.tick(0.07).command == pytest.approx([0.35, -0.05, 0, 0, 0, 0.6])


def test_teleop_refuses_nan_and_out_of_range_and_clamps_within_the_margin() -> None:
    core = make_core()
    core.on_follower(list(JOINT_NAMES), [0.0] * 6)
    core.start()
    assert core.on_leader(list(JOINT_NAMES), [0.05] * 6, now=0.0) is None
    first = core.tick(0.01).command
    assert "non-finite" in core.on_leader(list(JOINT_NAMES), [math.nan] + [0.0] * 5, now=0.02)
    assert "non-finite" in core.on_leader(list(JOINT_NAMES), [math.inf] + [0.0] * 5, now=0.02)
    assert "out of range" in core.on_leader(list(JOINT_NAMES), [1.3] + [0.0] * 5, now=0.02)  # > 1.0 + 0.2
    assert "missing" in core.on_leader(list(JOINT_NAMES)[:5], [0.0] * 5, now=0.02)
    assert core.rejected == 4
    assert core.tick(0.03).command == first  # the refused states changed nothing
    assert core.on_leader(list(JOINT_NAMES), [1.15, 0, 0, 0, 0, -0.1], now=0.04) is None  # within margin
    for k in range(20):
        cmd = core.tick(0.05 + 0.001 * k).command
    assert cmd == pytest.approx([1.0, 0, 0, 0, 0, 0.0])  # clamped to the follower's limits


def test_teleop_holds_when_the_leader_goes_silent_and_resumes() -> None:
    core = make_core()
    core.on_follower(list(JOINT_NAMES), [0.0] * 6)
    core.start()
    core.on_leader(list(JOINT_NAMES), [0.5] * 6, now=0.0)
    cmd = core.tick(0.1).command
    held = core.tick(0.3)  # 0.3 s after the last leader state > 0.25 s
    assert held.holding and held.command == cmd
    assert core.tick(5.0).command == cmd  # however long
    core.on_leader(list(JOINT_NAMES), [0.5] * 6, now=5.0)
    resumed = core.tick(5.01)
    assert not resumed.holding and resumed.command == pytest.approx([0.2] * 6)
    assert core.stop()[0] and core.tick(5.02).command is None


# -- so_arm_calibrate --leader -------------------------------------------------------------------------------
def test_calibrate_leader_writes_lerobots_leader_file_and_never_enables_torque(tmp_path, monkeypatch, capsys):
    """``so_arm_calibrate --leader`` records like the follower's procedure, into lerobot's teleoperator
    location, and the leader's torque register is never written 1; the file then drives a leader driver."""
    import threading
    import time

    import numpy as np

    from so_arm_driver import calibrate_cli as cli

    middle = {1: 2048, 2: 2100, 3: 1900, 4: 2048, 5: 3000, 6: 2500}
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(tmp_path / "calibration"))
    with Emulator(positions=middle) as emu:
        log = WriteLog(emu)
        stop = threading.Event()

        def move() -> None:  # a person sweeping the joints by hand
            t0 = time.monotonic()
            while not stop.is_set():
                s = np.sin(2 * np.pi * (time.monotonic() - t0) / 0.3)
                for motor_id, amp in ((1, 900), (2, 800), (3, 700), (4, 600), (6, 500)):
                    emu.set_actual(motor_id, middle[motor_id] + amp * s)
                time.sleep(0.002)

        mover = threading.Thread(target=move, daemon=True)
        mover.start()
        try:
            rc = cli.main(
                ["--leader", "--port", emu.port, "--robot-id", "my_leader", "--yes", "--sweep-seconds", "0.8"]
            )
        finally:
            stop.set()
            mover.join()
        for motor_id, raw in middle.items():  # back inside the swept range (the last move may be past it)
            emu.set_actual(motor_id, raw)
        assert rc == 0, capsys.readouterr()
        path = tmp_path / "calibration" / "teleoperators" / "so_leader" / "my_leader.json"
        assert path == calib.default_leader_calibration_path("my_leader") and path.is_file()
        cal = calib.load(path)
        assert list(cal) == list(JOINT_NAMES)
        leader = ArmDriver(FeetechBus(emu.port, **EMULATED_BUS_TIMING), cal, DriverConfig(leader=True))
        leader.connect()
        try:
            sample = read(leader)
            assert all(lo - 1e-9 <= q <= hi + 1e-9 for q, (lo, hi) in zip(sample.position, leader.limits))
        finally:
            leader.close()
    assert log.torque_on_writes() == []
