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
        "backend:=scripted",  # the scripted expert (the default is the shipped SmolVLA)
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


@pytest.mark.slow
def test_main_job_runs_the_shipped_smolvla_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without arguments the main job serves models/smolvla_sim_pick_place through backend smolvla; every
    episode ends (success or time-out) and is recorded with its seed. Its success rate is in
    docs/closed_loop.md; this test does not depend on it."""
    results = tmp_path / "episodes.jsonl"
    cmd = [sys.executable, str(ros_harness.REPO_ROOT / "tools" / "run_demo.py"), "seed:=100000"]
    cmd += ["use_sim_time:=true", "real_time_factor:=1.0", "--episodes", "2", "--episode-timeout", "15"]
    cmd += ["--results", str(results), "--status-period", "5"]
    proc = subprocess.run(cmd, env=ros_harness.ros_environment(), capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "[demo] backend: smolvla" in out, out
    assert "first chunk after" in out, out
    import json

    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [line["seed"] for line in lines] == [100000, 100001]
    assert all(line["clock"] == "sim" for line in lines)
