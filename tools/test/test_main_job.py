"""The README's main job: the simulated arm in a closed loop with the policy server and the action queue."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ros_harness


@pytest.mark.slow
def test_sim_demo_closed_loop_completes_an_episode() -> None:
    cmd = [
        sys.executable,
        str(ros_harness.REPO_ROOT / "tools" / "run_demo.py"),
        "--episodes",
        "1",
        "--episode-timeout",
        "60",
        "--status-period",
        "2",
    ]
    proc = subprocess.run(cmd, env=ros_harness.ros_environment(), capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "first chunk after" in out, out
    assert "[demo] episode 1: SUCCESS" in out, out
    assert "1/1 episodes succeeded" in out, out
