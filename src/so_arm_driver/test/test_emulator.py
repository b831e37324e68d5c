"""The pty servo emulator: framing, control table rules, motion model, and the so_arm_emulator process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import serial

from so_arm_driver import control_table as ct
from so_arm_driver.bus import FeetechBus
from so_arm_driver.emulator import EMULATED_BUS_TIMING, Emulator, positions_from_calibration


def packet(motor_id: int, inst: int, *params: int) -> bytes:
    body = [motor_id, len(params) + 2, inst, *params]
    return bytes([0xFF, 0xFF, *body, ct.checksum(body)])


def status(motor_id: int, *params: int, error: int = 0) -> bytes:
    body = [motor_id, len(params) + 2, error, *params]
    return bytes([0xFF, 0xFF, *body, ct.checksum(body)])


@pytest.fixture
def emu():
    with Emulator(positions={1: 1000, 2: 2000, 3: 3000}, ids=(1, 2, 3)) as e:
        yield e


@pytest.fixture
def raw(emu):
    with serial.Serial(emu.port, timeout=0.15) as s:
        yield s


def exchange(s: serial.Serial, data: bytes, expect: int) -> bytes:
    s.reset_input_buffer()
    s.write(data)
    return s.read(expect)


def test_ping_and_read(raw):
    assert exchange(raw, packet(2, 1), 6) == status(2)
    assert exchange(raw, packet(1, 2, 56, 2), 8) == status(1, 1000 & 0xFF, 1000 >> 8)
    assert exchange(raw, packet(3, 2, 3, 2), 8) == status(3, 777 & 0xFF, 777 >> 8)


def test_resync_after_garbage_and_bad_checksum_gets_no_reply(raw, emu):
    bad = bytearray(packet(1, 1))
    bad[-1] ^= 0xFF
    assert exchange(raw, bytes(bad), 6) == b""
    assert exchange(raw, b"\x00\x13\xff" + packet(1, 1), 6) == status(1)
    assert exchange(raw, b"\xff\xff\xff" + packet(2, 1), 6) == status(2)
    assert emu.stats["bad_checksum"] == 1


def test_sync_read_in_id_list_order_skips_missing(raw, emu):
    emu.set_missing(2)
    reply = exchange(raw, packet(0xFE, 0x82, 56, 2, 3, 2, 1), 16)
    assert reply == status(3, 3000 & 0xFF, 3000 >> 8) + status(1, 1000 & 0xFF, 1000 >> 8)


def test_broadcast_and_sync_write_send_no_reply(raw, emu):
    assert exchange(raw, packet(0xFE, 3, 40, 1), 6) == b""  # broadcast torque on
    assert all(emu.servo(i).torque_enabled for i in (1, 2, 3))
    assert exchange(raw, packet(0xFE, 0x83, 42, 2, 1, 0x10, 0x04, 3, 0x00, 0x0C), 6) == b""
    assert emu.goal_positions()[1] == 0x0410 and emu.goal_positions()[3] == 0x0C00


def test_reg_write_action_and_response_level(raw, emu):
    assert exchange(raw, packet(1, 4, 42, 0xE8, 0x03), 6) == status(1)
    assert emu.goal_positions()[1] == 1000  # not applied yet
    exchange(raw, packet(0xFE, 5), 6)
    assert emu.goal_positions()[1] == 1000  # 0x03E8
    emu.servo(2).mem[8] = 0  # Response_Status_Level 0: only PING and READ answered
    assert exchange(raw, packet(2, 3, 41, 10), 6) == b""
    assert emu.servo(2).mem[41] == 10
    assert exchange(raw, packet(2, 1), 6) == status(2)


def test_eeprom_lock_and_read_only_registers(raw, emu):
    exchange(raw, packet(1, 3, 9, 100, 0), 6)  # Min_Position_Limit while locked
    assert emu.servo(1).get("Min_Position_Limit") == 0
    exchange(raw, packet(1, 3, 55, 0), 6)  # unlock
    exchange(raw, packet(1, 3, 9, 100, 0), 6)
    assert emu.servo(1).get("Min_Position_Limit") == 100
    exchange(raw, packet(1, 3, 56, 0, 0), 6)  # Present_Position is read-only
    assert emu.present_positions()[1] == 1000
    exchange(raw, packet(1, 3, 3, 1, 0), 6)  # so is Model_Number
    assert emu.servo(1).get("Model_Number") == 777


def test_motion_finite_speed_limits_and_torque(emu):
    with FeetechBus(emu.port, **EMULATED_BUS_TIMING) as bus:
        bus.write(1, "Goal_Position", 3000)
        time.sleep(0.05)
        assert emu.present_positions()[1] == 1000  # torque off: no motion
        bus.write(1, "Goal_Velocity", 1000)  # steps/s
        bus.write(1, "Torque_Enable", 1)
        time.sleep(0.2)
        p = emu.present_positions()[1]
        assert 1000 < p < 3000  # moving, not teleported
        res = bus.sync_read(["Present_Position", "Present_Velocity", "Present_Load"], [1])
        assert res.values[1]["Present_Velocity"] > 0 and res.values[1]["Present_Load"] > 0
        bus.write(1, "Lock", 0)
        bus.write(1, "Max_Position_Limit", 2500)
        deadline = time.monotonic() + 10
        while emu.present_positions()[1] != 2500 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert emu.present_positions()[1] == 2500  # goal clamped to the limit
        bus.write(1, "Torque_Enable", 0)
        assert bus.sync_read(["Present_Velocity"], [1]).values[1]["Present_Velocity"] == 0


def test_model_numbers_and_positions_from_calibration(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        '{"a": {"id": 1, "homing_offset": 100, "range_min": 1000, "range_max": 3000},'
        ' "b": {"id": 2, "homing_offset": 0, "range_min": 3900, "range_max": 100}}'
    )
    assert positions_from_calibration(path) == {1: 2100.0, 2: 4048.0}  # middle across the seam
    with Emulator(ids=(1, 2), models={2: 1234}) as emu, FeetechBus(emu.port, **EMULATED_BUS_TIMING) as bus:
        assert bus.scan([1, 2]) == {1: 777, 2: 1234}


@pytest.mark.slow
def test_emulator_process(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "so_arm_driver.emulator",
            "--port-file",
            str(port_file),
            "--missing-id",
            "6",
            "--latency-ms",
            "1",
            "--baud",
            "1000000",
            "--burst-on-sigusr1",
            "30",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/") and port_file.read_text().strip() == port
        with FeetechBus(port, retries=0) as bus:  # SDK default timeout (34 ms)
            assert bus.scan(range(1, 8)) == dict.fromkeys(range(1, 6), 777)
            assert bus.sync_read(["Present_Position"], [1, 2, 3]).ok
            proc.send_signal(signal.SIGUSR1)  # drop every reply for 30 s
            time.sleep(0.2)
            res = bus.sync_read(["Present_Position"], [1, 2, 3])
            assert not res.ok and res.errors[0].motor_id == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not port_file.exists()
