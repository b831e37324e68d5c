"""Issue 19, defect 7: "The following exception was never retrieved: cannot use Destroyable because
destruction was requested" printed after a test run (callbacks queued in a MultiThreadedExecutor's worker
pool when the executor was shut down). The probe runs in a process of its own (the message is printed when
the orphaned task is collected); ``plain`` is the positive control (rclpy 9.1.2's own shutdown)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("executor_flood_probe.py")
MESSAGE = "exception was never retrieved"


def run_probe(mode: str) -> str:
    domain = str(int(os.environ.get("ROS_DOMAIN_ID", "0")))
    proc = subprocess.run(
        [sys.executable, str(PROBE), mode, domain], capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "probe done" in out, out
    return out


@pytest.mark.parametrize("attempt", range(2))
def test_never_retrieved_exception_at_executor_shutdown(attempt: int) -> None:
    assert MESSAGE not in run_probe("fixed")


def test_never_retrieved_exception_positive_control() -> None:
    """rclpy's own shutdown of the same flooded executor shows the message (else the test above proves
    nothing)."""
    assert any(MESSAGE in run_probe("plain") for _ in range(3))
