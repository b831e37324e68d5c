"""Bus layer: STS3215 encodings, and the real scservo_sdk against the pty emulator (errors as values)."""

from __future__ import annotations

import time

import pytest
import scservo_sdk as scs

from so_arm_driver import bus as busmod
from so_arm_driver import control_table as ct
from so_arm_driver.bus import FeetechBus
from so_arm_driver.emulator import Emulator


@pytest.fixture
def emu():
    with Emulator(positions={1: 1000, 2: 3000, 3: 2048}, ids=(1, 2, 3)) as e:
        yield e


@pytest.fixture
def bus(emu):
    # the emulator's late replies on a loaded machine must not look like lost packets; every retry of the
    # failure tests fits the budget (3 x (2 * 50 + 2) ms)
    b = FeetechBus(emu.port, retries=2, retry_budget_s=5.0, latency_timer_ms=50.0)
    b.open()
    yield b
    b.close()


# -- encodings (no I/O) -----------------------------------------------------------------------------------
def test_homing_offset_sign_bit_11():
    reg = ct.register("Homing_Offset")
    assert reg.encode(-100) == 0x0864
    assert reg.encode(-1012) == 3060  # lerobot's example: 2048 + 1012
    assert reg.decode(0x0864) == -100
    assert reg.to_bytes(-100) == [0x64, 0x08]
    with pytest.raises(ValueError):
        reg.encode(2048)  # magnitude must stay below the sign bit


@pytest.mark.parametrize(
    ("name", "bit"),
    [
        ("Goal_Position", 15),
        ("Present_Position", 15),
        ("Goal_Velocity", 15),
        ("Present_Velocity", 15),
        ("Present_Load", 10),
        ("Homing_Offset", 11),
    ],
)
def test_sign_magnitude_round_trip(name, bit):
    reg = ct.register(name)
    assert reg.sign_bit == bit
    for value in (0, 1, -1, 5, -5, (1 << bit) - 1, -((1 << bit) - 1)):
        raw = reg.encode(value)
        assert 0 <= raw < (1 << (8 * reg.size))
        assert reg.decode(raw) == value
        assert reg.from_bytes(reg.to_bytes(value)) == value
        assert reg.encode(value) == scs.SCS_TOSCS(value, bit)  # the SDK's own helper agrees
        assert reg.decode(raw) == scs.SCS_TOHOST(raw, bit)


def test_twos_complement_is_not_sign_magnitude():
    # quirk 5: -100 as two's complement (0xFF9C) decodes as -32668 with bit 15
    assert ct.register("Present_Velocity").decode(0xFF9C) == -32668


def test_control_table_addresses():
    assert ct.span("Present_Position") == (56, 2)
    assert ct.span("Present_Position", "Present_Velocity", "Present_Load", "Present_Temperature") == (56, 8)
    assert ct.register("Torque_Enable").address == 40 and not ct.register("Torque_Enable").eeprom
    assert ct.register("Homing_Offset").eeprom and ct.register("Lock").address == 55
    with pytest.raises(KeyError, match="unknown STS3215 register"):
        ct.register("Nope")


def test_bus_error_names_motor_and_register():
    err = busmod.BusError(4, "Present_Position", scs.COMM_RX_TIMEOUT)
    assert "motor id 4" in str(err) and "Present_Position" in str(err) and "no status packet" in str(err)


# -- through the real SDK ---------------------------------------------------------------------------------
def test_ping_scan_and_model(bus):
    assert bus.scan(range(1, 6)) == {1: 777, 2: 777, 3: 777}
    model, err = bus.ping(7)
    assert model is None and err.motor_id == 7 and err.code == scs.COMM_RX_TIMEOUT


def test_read_write_and_eeprom_lock(bus, emu):
    assert bus.read(1, "Present_Position") == (1000, None)
    # locked EEPROM: the write is acknowledged but not applied (emulator is stricter than the hardware)
    assert bus.write(1, "Homing_Offset", -100) is None
    assert bus.read(1, "Homing_Offset") == (0, None)
    assert bus.write(1, "Lock", 0) is None
    assert bus.write(1, "Homing_Offset", -100) is None
    assert bus.read(1, "Homing_Offset") == (-100, None)
    assert emu.servo(1).mem[31:33] == bytes([0x64, 0x08])
    assert bus.read(1, "Present_Position") == (1100, None)  # Present = Actual - Homing_Offset


def test_sync_read_block(bus, emu):
    res = bus.sync_read(
        ["Present_Position", "Present_Velocity", "Present_Load", "Present_Temperature"], [1, 2, 3]
    )
    assert res.ok and res.attempts == 1
    assert {i: v["Present_Position"] for i, v in res.values.items()} == {1: 1000, 2: 3000, 3: 2048}
    assert res.values[2]["Present_Temperature"] == 30
    assert res.t_start <= res.capture_time <= res.t_end


def test_sync_write_moves_servo(bus, emu):
    assert bus.write(3, "Torque_Enable", 1) is None
    assert bus.sync_write("Goal_Position", {3: 2100}) is None
    deadline = time.monotonic() + 5
    while emu.present_positions()[3] != 2100 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert emu.present_positions()[3] == 2100
    assert bus.sync_write("Goal_Position", {3: 1 << 16}).code == busmod.ERR_ENCODING


def test_missing_servo_fails_group_read_without_stale_values(bus, emu):
    emu.set_missing(2)
    res = bus.sync_read(["Present_Position"], [1, 2, 3])
    assert not res.ok
    assert res.values == {1: {"Present_Position": 1000}}  # id 1 answered in this transaction
    assert [(e.motor_id, e.register, e.code) for e in res.errors] == [
        (2, "Present_Position", scs.COMM_RX_TIMEOUT),
        (3, "Present_Position", busmod.ERR_NOT_READ),
    ]
    assert res.attempts == 3  # 1 + retries
    value, err = bus.read(2, "Present_Position")
    assert value is None and err.motor_id == 2 and err.register == "Present_Position"


def test_one_dropped_reply_is_retried(bus, emu):
    emu.drop_replies(count=1)
    res = bus.sync_read(["Present_Position"], [1, 2, 3])
    assert res.ok and res.attempts == 2
    emu.drop_replies(count=1)
    assert bus.read(3, "Present_Position") == (2048, None)


def test_retry_count_and_time_budget(emu):
    emu.drop_replies(duration_s=30.0)
    with FeetechBus(emu.port, retries=5, retry_budget_s=10.0, latency_timer_ms=10.0) as b:
        res = b.sync_read(["Present_Position"], [1, 2, 3])
        assert res.attempts == 6 and not res.ok
    with FeetechBus(emu.port, retries=1000, retry_budget_s=0.0, latency_timer_ms=10.0) as b:
        res = b.sync_read(["Present_Position"], [1])
        assert res.attempts == 1  # the time budget is spent after the first attempt
        assert b.read(1, "Present_Position")[1] is not None


def test_late_reply_is_not_taken_for_the_next_answer(emu):
    """Regression: the SDK flushes only output; a late status packet must not answer the next request."""
    with FeetechBus(emu.port, retries=0, latency_timer_ms=10.0) as b:
        emu.latency_s = 0.1  # longer than the 2 * 10 + 2 ms timeout: the reply arrives late
        value, err = b.read(1, "Present_Position")
        assert value is None and err.code in (scs.COMM_RX_TIMEOUT, scs.COMM_RX_CORRUPT)
        time.sleep(0.2)  # the late reply (1000) is now waiting in the input buffer
        emu.latency_s = 0.0
        emu.set_actual(1, 1234)
        assert b.read(1, "Present_Position") == (1234, None)


def test_closed_or_vanished_port_returns_errors(emu):
    b = FeetechBus(emu.port, latency_timer_ms=10.0)
    assert b.read(1, "Present_Position")[1].code == busmod.ERR_NOT_OPEN
    assert b.sync_read(["Present_Position"], [1]).errors[0].code == busmod.ERR_NOT_OPEN
    b.open()
    emu.stop()  # the pty disappears under the open port: errors, never exceptions
    res = b.sync_read(["Present_Position"], [1, 2])
    assert not res.ok
    assert b.write(1, "Torque_Enable", 0) is not None
    b.close()


def test_open_error_names_port():
    with pytest.raises(busmod.BusOpenError, match="/dev/does-not-exist"):
        FeetechBus("/dev/does-not-exist").open()


def test_sync_write_on_a_vanished_port_raised_termios_error():
    """Regression (issue 19 soak): the SDK flushes (tcdrain) before every packet; on a port whose other end is
    gone that raises termios.error, which is not an OSError, and it crashed the driver node from
    ``sync_write`` instead of coming back as a bus error."""
    import os

    master, slave = os.openpty()
    path = os.ttyname(slave)
    b = FeetechBus(path, retries=0)
    b.open()
    try:
        os.close(master)  # the adapter (the pty's other side) vanishes
        err = b.sync_write("Goal_Position", {1: 2048, 2: 2048})
        assert err is not None and err.code == busmod.ERR_IO, err
        value, err = b.read(1, "Present_Position")
        assert value is None and err is not None
    finally:
        b.close()
        os.close(slave)


def test_late_configuration_reply_taken_for_present_position(emu):
    """Regression (issue 19, the six-servo jump at 37.8 s of the graph soak): a reply to the configuration
    read-back that came after its timeout, and after the next request went out (so the input flush before that
    request could not catch it), was taken for the Present_Position reply: the SDK's readRx accepts any packet
    of the right id and truncates it, so Return_Delay_Time and Response_Status_Level (250, 1) read as position
    506. A packet with another parameter count answers another request and must be skipped."""
    config = ["Return_Delay_Time", "Min_Position_Limit", "Max_Position_Limit", "Torque_Enable", "Lock"]
    with FeetechBus(emu.port, retries=0, latency_timer_ms=10.0) as b:
        emu.hold_replies(count=1)  # the read-back's replies come late: with the next request's
        assert not b.sync_read(config, [1, 2, 3]).ok  # timed out
        res = b.sync_read(["Present_Position", "Present_Velocity", "Present_Load"], [1, 2, 3])
        assert emu.stats["held"] == 3
        assert res.ok, res.errors
        assert {i: v["Present_Position"] for i, v in res.values.items()} == {1: 1000, 2: 3000, 3: 2048}
        assert b.stale_packets == 3
        # a single-register read skips a late reply of another length too
        emu.hold_replies(count=1)
        assert b.read(2, "Homing_Offset")[0] is None  # 2 bytes, late
        assert b.read(2, "Lock") == (1, None)  # 1 byte: the late 2-byte packet is skipped
