"""Ctrl-C under ``ros2 launch`` reaches each node two or three times (issue 18): the terminal's SIGINT to the
whole process group, launch's own SIGINT, then SIGTERM. These tests start the installed nodes (real rclpy) in
a process group of their own and signal the group like a terminal does.

- so_arm_driver: the torque-off on exit completes although further signals arrive while it runs (the
  emulator answers slowly, so the signals land between the torque-off writes), or its failure is reported;
  the emulator it started for ``port:=emulated`` does not outlive it, not even a SIGKILL.
- camera_node: no "publisher's context is invalid" from its capture thread, no abort.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import ros_harness
from ros_harness import wait_for
from so_arm_driver.emulator import Emulator

pytestmark = pytest.mark.slow

IDS = range(1, 7)
CAL = {
    name: {"id": i, "drive_mode": 0, "homing_offset": 0, "range_min": 1000, "range_max": 3000}
    for i, name in enumerate(
        ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"), start=1
    )
}


class GroupNode:
    """An installed node in a process group of its own (what a terminal's foreground job is)."""

    def __init__(self, tmp_path: Path, executable: str, parameters: dict, env: dict | None = None) -> None:
        exe = ros_harness.find_executable("so_arm_driver", executable)
        self.log = tmp_path / f"{executable}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [str(exe), *ros_harness.ros_args(parameters=parameters)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env or ros_harness.ros_environment(),
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, *signals: int) -> None:
        for sig in signals:
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"did not exit:\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait()


CRASH_SIGNS = ("Traceback", "context is invalid", "terminate called", "KeyboardInterrupt", "never retrieved")


def _assert_no_crash(output: str) -> None:
    for text in (
        "Traceback",
        "context is invalid",
        "terminate called",
        "KeyboardInterrupt",
        "never retrieved",
    ):
        assert text not in output, output


@pytest.fixture
def cal_file(tmp_path: Path) -> Path:
    path = tmp_path / "follower.json"
    path.write_text(json.dumps(CAL))
    return path


def test_driver_torque_off_completes_when_ctrl_c_arrives_again_during_it(tmp_path: Path, cal_file: Path):
    with Emulator(ids=list(IDS)) as emu:
        node = GroupNode(tmp_path, "so_arm_driver", {"port": emu.port, "calibration_file": str(cal_file)})
        try:
            assert wait_for(lambda: all(emu.servo(i).torque_enabled for i in IDS) or node.proc.poll(), 60)
            assert node.proc.poll() is None, node.output()
            # 20 ms per reply (within the SDK's timeout): the 12 torque-off writes take long enough for the
            # later signals to land among them
            emu.latency_s = 0.02
            node.signal(signal.SIGINT)  # the terminal
            wait_for(lambda: not emu.servo(1).torque_enabled, 30, interval=0.001)
            node.signal(signal.SIGINT, signal.SIGTERM)  # launch: its own SIGINT, then SIGTERM
            code = node.wait()
        finally:
            node.kill()
        output = node.output()
        assert [i for i in IDS if emu.servo(i).torque_enabled] == [], output
    assert code == 0, output
    _assert_no_crash(output)
    assert "torque disabled on exit" in output


def test_driver_torque_off_failure_on_exit_is_reported(tmp_path: Path, cal_file: Path):
    with Emulator(ids=list(IDS)) as emu:
        node = GroupNode(tmp_path, "so_arm_driver", {"port": emu.port, "calibration_file": str(cal_file)})
        try:
            assert wait_for(lambda: all(emu.servo(i).torque_enabled for i in IDS) or node.proc.poll(), 60)
            emu.drop_replies(duration_s=600.0)  # the bus goes silent: the torque-off writes cannot succeed
            node.signal(signal.SIGINT, signal.SIGINT)
            code = node.wait()
        finally:
            node.kill()
        output = node.output()
    assert code == 1, output
    assert "TORQUE OFF ON EXIT FAILED" in output
    assert "torque disabled on exit" not in output
    _assert_no_crash(output)


def _emulator_children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"so_arm_driver.emulator" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_emulator_does_not_outlive_a_killed_driver(tmp_path: Path) -> None:
    env = ros_harness.ros_environment()
    env["HF_LEROBOT_CALIBRATION"] = str(tmp_path / "no_calibration_here")
    node = GroupNode(tmp_path, "so_arm_driver", {"port": "emulated"}, env=env)
    try:
        assert wait_for(lambda: "connected to" in node.output() or node.proc.poll() is not None, 60)
        (emulator,) = _emulator_children(node.proc.pid)
        node.signal(signal.SIGKILL)  # no shutdown at all: the emulator must notice by itself
        node.proc.wait()
        assert wait_for(lambda: not _alive(emulator), 30), f"emulator {emulator} outlived the driver"
    finally:
        node.kill()


def test_emulator_stops_with_the_driver_on_ctrl_c(tmp_path: Path) -> None:
    env = ros_harness.ros_environment()
    env["HF_LEROBOT_CALIBRATION"] = str(tmp_path / "no_calibration_here")
    node = GroupNode(tmp_path, "so_arm_driver", {"port": "emulated"}, env=env)
    try:
        assert wait_for(lambda: "connected to" in node.output() or node.proc.poll() is not None, 60)
        (emulator,) = _emulator_children(node.proc.pid)
        node.signal(signal.SIGINT, signal.SIGINT)
        code = node.wait()
        output = node.output()
    finally:
        node.kill()
    assert code == 0, output
    assert "torque disabled on exit" in output
    _assert_no_crash(output)
    assert wait_for(lambda: not _alive(emulator), 30)


def test_camera_node_stops_on_double_ctrl_c_without_invalid_context(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_camera import write_video

    video = write_video(tmp_path / "clip.avi")
    for attempt in range(3):  # the capture thread publishes at 100 Hz: a stop mid-publish is likely
        node = GroupNode(
            tmp_path,
            "camera_node",
            {"name": "top", "source": str(video), "fps": 100.0, "width": 64, "height": 48},
        )
        try:
            started = lambda n=node: "-> /cameras/top/image_raw" in n.output() or n.proc.poll() is not None  # noqa: E731
            assert wait_for(started, 60)
            time.sleep(0.5)  # let it stream a while
            node.signal(signal.SIGINT, signal.SIGINT)
            code = node.wait()
            output = node.output()
        finally:
            node.kill()
        assert code == 0, f"attempt {attempt}:\n{output}"
        _assert_no_crash(output)


def test_torque_off_on_exit_retries_servos_whose_reply_was_lost() -> None:
    # the driver core (no ROS): three lost status packets exhaust the bus's own retries (retries=2) for the
    # first torque-off write; close() tries that servo again and reports success only when it answered
    from so_arm_driver import calibration as calib
    from so_arm_driver.bus import FeetechBus
    from so_arm_driver.driver import ArmDriver, DriverConfig

    with Emulator(ids=list(IDS)) as emu:
        bus = FeetechBus(emu.port, retries=2, retry_budget_s=5.0, latency_timer_ms=50.0)
        driver = ArmDriver(bus, calib.from_dict(CAL), DriverConfig())
        driver.connect()
        assert all(emu.servo(i).torque_enabled for i in IDS)
        emu.drop_replies(count=3)
        assert driver.close() == []
        assert [i for i in IDS if emu.servo(i).torque_enabled] == []
        assert not driver.torque_enabled
