"""so_arm_calibrate against the emulator (real SDK): scripted sweeps, the 0/4095 seam, --yes mode, errors."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from so_arm_description.robot_spec import MOTOR_IDS
from so_arm_driver import calibrate_cli as cli
from so_arm_driver import calibration as calib
from so_arm_driver.bus import FeetechBus
from so_arm_driver.emulator import EMULATED_BUS_TIMING, Emulator

MIDDLE = {1: 2048, 2: 4000, 3: 1000, 4: 2048, 5: 3000, 6: 2500}
# encoder waypoints per servo (homing offset 0); servo 2 sweeps across the 0/4095 seam
WAYPOINTS = {
    1: [2048, 1000, 3000, 2048],
    2: [4000, 4096 + 600, 3300, 4000],
    3: [1000, 300, 1800, 1000],
    4: [2048, 1500, 2600, 2048],
    6: [2500, 2000, 3400, 2500],
}


def _script(steps: int = 60) -> list[dict[int, int]]:
    """Positions per sample: joints move one after the other along their waypoints (< 100 ticks/sample)."""
    frames = []
    for motor_id, pts in WAYPOINTS.items():
        for a, b in zip(pts, pts[1:]):
            for x in np.linspace(a, b, steps):
                frames.append({motor_id: int(round(x)) % 4096})
    return frames


def test_scripted_sweep_records_seam_crossing_range(tmp_path):
    frames = _script()
    with Emulator(positions=MIDDLE) as emu:
        # a previous calibration in the servos is reset by the procedure
        emu.servo(2).write(55, b"\x00")
        emu.servo(2).write(31, bytes([0x64, 0x08]))  # Homing_Offset -100
        emu.servo(2).write(55, b"\x01")
        state = {"n": 0}

        def on_sample(n: int) -> None:
            if n - 1 < len(frames):
                for motor_id, raw in frames[n - 1].items():
                    emu.set_actual(motor_id, raw)
            state["n"] = n

        prompts = []
        with FeetechBus(emu.port, **EMULATED_BUS_TIMING) as bus:
            cal = cli.run_calibration(
                bus,
                MOTOR_IDS,
                ask=prompts.append,
                should_stop_sweep=lambda: state["n"] > len(frames),
                on_sample=on_sample,
                say=lambda s: None,
                period=0.0,
            )
        assert len(prompts) == 2 and "MIDDLE" in prompts[0]
        lift = cal["shoulder_lift"]
        assert (lift.homing_offset, lift.range_min, lift.range_max) == (1951, 1349, 2745)
        pan = cal["shoulder_pan"]
        assert (pan.homing_offset, pan.range_min, pan.range_max) == (
            -47,
            1047,
            3047,
        )  # centre 2000 -> raw 2047
        roll = cal["wrist_roll"]  # full turn: offset from the middle pose
        assert (roll.homing_offset, roll.range_min, roll.range_max) == (3000 - 2047, 0, 4095)
        for name, m in cal.items():
            assert not m.wraps, name
            servo = emu.servo(m.id)
            assert servo.get("Homing_Offset") == m.homing_offset
            assert (servo.get("Min_Position_Limit"), servo.get("Max_Position_Limit")) == (
                m.range_min,
                m.range_max,
            )
        # with the new offset, the joint that crossed the seam reads continuously through it
        for encoder, expected in (
            (3300, lift.range_min),
            (4095, 4095 - 1951),
            (0, 4096 - 1951),
            (600, lift.range_max),
        ):
            emu.set_actual(2, encoder)
            assert emu.present_positions()[2] == expected
        emu.set_actual(2, 4000)
        assert lift.to_radians(emu.present_positions()[2]) == pytest.approx(0.0, abs=2 * calib.RAD_PER_TICK)
        out = calib.save(cal, tmp_path / "c.json")
        assert calib.load(out) == cal


def _oscillate(emu: Emulator, stop: threading.Event) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        s = np.sin(2 * np.pi * (time.monotonic() - t0) / 0.3)
        for motor_id, amp in ((1, 900), (2, 800), (3, 700), (4, 600), (6, 500)):
            emu.set_actual(motor_id, MIDDLE[motor_id] + amp * s)
        time.sleep(0.002)


def test_cli_yes_mode_writes_lerobot_file(tmp_path, capsys):
    with Emulator(positions=MIDDLE) as emu:
        stop = threading.Event()
        mover = threading.Thread(target=_oscillate, args=(emu, stop), daemon=True)
        mover.start()
        try:
            rc = cli.main(
                ["--port", emu.port, "--yes", "--sweep-seconds", "0.8", "--output", str(tmp_path / "f.json")]
            )
        finally:
            stop.set()
            mover.join()
    assert rc == 0, capsys.readouterr()
    data = json.loads((tmp_path / "f.json").read_text())
    assert list(data) == list(MOTOR_IDS)
    assert data["shoulder_lift"]["range_max"] - data["shoulder_lift"]["range_min"] > 1000  # crossed the seam
    assert all(0 <= e["range_min"] < e["range_max"] <= 4095 for e in data.values())
    assert "Calibration saved" in capsys.readouterr().out


def test_cli_reports_joints_that_did_not_move(tmp_path, capsys):
    with Emulator(positions=MIDDLE) as emu:
        rc = cli.main(
            ["--port", emu.port, "--yes", "--sweep-seconds", "0.1", "--output", str(tmp_path / "f.json")]
        )
    assert rc == 1
    err = capsys.readouterr().err
    assert "did not move" in err and "shoulder_pan (id 1)" in err
    assert not (tmp_path / "f.json").exists()


def test_cli_names_missing_servo(tmp_path, capsys):
    with Emulator(positions=MIDDLE, missing_ids=[4]) as emu:
        rc = cli.main(
            ["--port", emu.port, "--yes", "--sweep-seconds", "0.1", "--output", str(tmp_path / "f.json")]
        )
    assert rc == 1
    assert "wrist_flex (id 4)" in capsys.readouterr().err
