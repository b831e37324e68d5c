"""Fault injection of the pty servo emulator (issue 19), seen through the real scservo_sdk: USB unplug and
replug behind a stable link, brown-out (silence, then the servos as after power-up), garbled replies."""

from __future__ import annotations

import os
import time

import scservo_sdk as scs

from so_arm_driver import bus as busmod
from so_arm_driver.bus import FeetechBus
from so_arm_driver.emulator import Emulator


def test_unplug_gives_io_errors_and_replug_answers_behind_the_same_link(tmp_path):
    link = tmp_path / "ttyACM0"
    with Emulator(ids=(1, 2), positions={1: 1000, 2: 3000}, link=link) as emu:
        bus = FeetechBus(str(link), retries=0, latency_timer_ms=50.0)
        bus.open()
        emu.servo(1).set("Lock", 0)
        assert bus.write(1, "Torque_Enable", 1) is None
        emu.unplug()
        assert not link.exists() and not emu.plugged
        value, err = bus.read(1, "Present_Position")
        assert value is None and err is not None and err.code == busmod.ERR_IO, err
        bus.close()
        first = os.path.realpath(link) if link.exists() else None
        assert first is None
        emu.replug()
        assert link.is_symlink() and emu.plugged
        bus.open()
        assert bus.read(2, "Present_Position") == (3000, None)
        assert emu.servo(1).torque_enabled  # only USB was lost: the servo kept its state
        assert emu.stats["unplugs"] == 1
        bus.close()


def test_brownout_silence_then_power_up_state(tmp_path):
    with Emulator(ids=(1,), positions={1: 1500}) as emu:
        bus = FeetechBus(emu.port, retries=0, latency_timer_ms=50.0)
        bus.open()
        for reg, value in (("Lock", 0), ("P_Coefficient", 16), ("Homing_Offset", 100), ("Acceleration", 254)):
            assert bus.write(1, reg, value) is None
        assert bus.write(1, "Goal_Position", 1400) is None
        assert bus.write(1, "Torque_Enable", 1) is None
        emu.brownout(duration_s=0.3)
        t0 = time.monotonic()
        _, err = bus.read(1, "Torque_Enable")
        assert err is not None and err.code == scs.COMM_RX_TIMEOUT
        while time.monotonic() - t0 < 0.35:
            time.sleep(0.02)
        assert bus.read(1, "Torque_Enable") == (0, None)
        assert bus.read(1, "Lock") == (1, None)
        assert bus.read(1, "Acceleration") == (0, None)
        # EEPROM written unlocked survives; the goal is the present position (nothing moves at torque on)
        assert bus.read(1, "P_Coefficient") == (16, None)
        assert bus.read(1, "Homing_Offset") == (100, None)
        present, _ = bus.read(1, "Present_Position")
        assert bus.read(1, "Goal_Position") == (present, None)
        emu.brownout(duration_s=0.0, lose_eeprom=True)
        assert bus.read(1, "P_Coefficient") == (32, None)  # factory value
        assert bus.read(1, "Homing_Offset") == (0, None)
        assert emu.stats["brownouts"] == 2
        bus.close()


def test_garbled_reply_is_a_corrupt_packet_for_the_sdk():
    with Emulator(ids=(1,), positions={1: 1234}) as emu:
        bus = FeetechBus(emu.port, retries=0, latency_timer_ms=50.0)
        bus.open()
        bad = 0
        for _ in range(20):
            emu.garble_replies(count=1)
            value, err = bus.read(1, "Present_Position")
            bad += err is not None or value != 1234
            if err is None:  # a flipped bit the packet survived would be a wrong value: never
                assert value == 1234
        assert bad == 20 and emu.stats["garbled"] == 20
        assert bus.read(1, "Present_Position") == (1234, None)  # the next clean reply is read again
        bus.close()
