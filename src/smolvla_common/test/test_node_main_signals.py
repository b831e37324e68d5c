"""run_node's signal handling as a terminal's Ctrl-C under ``ros2 launch`` exercises it (issue 18).

A terminal sends SIGINT to its whole foreground process group, and launch forwards one more SIGINT to each
node (then SIGTERM if it is still running): a node gets the signal two or three times. The node here is a real
rclpy node (test/signal_probe_node.py) with a thread of its own that publishes all the time, run by
``run_node`` in a process group of its own that the test signals with ``killpg``, like a terminal does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ros_harness import wait_for

PROBE = Path(__file__).with_name("signal_probe_node.py")


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    log = open(tmp_path / "output.log", "w")  # noqa: SIM115 (closed by the OS with the test's tmp dir)
    return subprocess.Popen(
        [sys.executable, str(PROBE), str(tmp_path), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )


def _finish(proc: subprocess.Popen, tmp_path: Path) -> tuple[int, str]:
    (tmp_path / "release").write_text("")
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("the node did not exit")
    return code, (tmp_path / "output.log").read_text(errors="replace")


def _assert_clean(code: int, output: str, tmp_path: Path) -> None:
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "context is invalid" not in output, output
    assert "terminate called" not in output, output
    assert "never retrieved" not in output, output  # a callback in flight meeting a destroyed executor
    assert (tmp_path / "shutdown_complete").exists(), output


@pytest.mark.slow
def test_second_sigint_during_shutdown_does_not_interrupt_it(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    assert wait_for(lambda: (tmp_path / "running").exists() or proc.poll() is not None, 60)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C
    assert wait_for(lambda: (tmp_path / "shutdown_begins").exists() or proc.poll() is not None, 60)
    os.killpg(proc.pid, signal.SIGINT)  # launch forwards it
    os.killpg(proc.pid, signal.SIGTERM)  # launch escalates
    code, output = _finish(proc, tmp_path)
    _assert_clean(code, output, tmp_path)
    assert "[signal_probe] stopped by SIGINT (2 more ignored during shutdown)" in output


@pytest.mark.slow
def test_two_sigints_at_once_stop_the_node_cleanly(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    assert wait_for(lambda: (tmp_path / "running").exists() or proc.poll() is not None, 60)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    assert wait_for(lambda: (tmp_path / "shutdown_begins").exists() or proc.poll() is not None, 60)
    code, output = _finish(proc, tmp_path)
    _assert_clean(code, output, tmp_path)


@pytest.mark.slow
def test_sigint_during_startup_abandons_the_start_and_still_shuts_down(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--slow-start")
    assert wait_for(lambda: (tmp_path / "starting").exists() or proc.poll() is not None, 60)
    os.killpg(proc.pid, signal.SIGINT)
    assert wait_for(lambda: (tmp_path / "shutdown_begins").exists() or proc.poll() is not None, 60)
    os.killpg(proc.pid, signal.SIGINT)
    code, output = _finish(proc, tmp_path)
    _assert_clean(code, output, tmp_path)
    assert not (tmp_path / "running").exists()


@pytest.mark.slow
def test_exit_stalled_after_shutdown_ends_with_the_stacks_and_the_code(tmp_path: Path) -> None:
    """CI run 7 (session 3): the driver printed "torque disabled on exit" and then never exited (SIGTERM is
    ignored from there on), until launch's SIGKILL gave -9. A stall after the node's own shutdown now ends the
    process with its exit code, saying so and dumping every thread's stack (where it hung)."""
    proc = _start(tmp_path, "--hang-in-destroy")
    assert wait_for(lambda: (tmp_path / "running").exists() or proc.poll() is not None, 60)
    os.killpg(proc.pid, signal.SIGINT)
    code, output = _finish(proc, tmp_path)  # fails if the process does not end by itself
    assert code == 0, output
    assert (tmp_path / "shutdown_complete").exists(), output
    assert "[signal_probe] exit stalled" in output and "exiting with code 0" in output, output
    dump = output.split("exit stalled", 1)[1]
    assert "in destroy_node" in dump, output  # the stack names where it hung


_HANDLER_INSIDE_A_LOCK = """
import signal, sys, threading
kind = sys.argv[1]
lock = threading.Lock()
if kind == "event":  # the policy server's and the emulator's handlers until session 5
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lock = stop._cond  # the lock Event.wait() holds for a moment around each wait
else:
    from smolvla_common.node_main import StopSignals
    stop = StopSignals().install()
    stop.phase = "running"
with lock:  # the signal is handled while the main thread holds it
    signal.raise_signal(signal.SIGINT)
print("handled", flush=True)
"""


@pytest.mark.parametrize("kind", ["event", "stop_signals"])
def test_a_stop_signal_handled_inside_event_wait_deadlocked_the_main_thread(kind: str) -> None:
    """Regression (fresh-clone CI, twice: the policy server of sim_demo.launch.py ignored a double Ctrl-C and
    SIGTERM, printed nothing, and was SIGKILLed): its SIGINT handler called threading.Event.set(), whose lock
    the main thread holds for a moment inside each Event.wait() of its loop; a signal handled there blocks
    the main thread on a lock it holds itself, forever. The handlers now only record the signal
    (StopSignals). Positive control: the old handler run while that lock is held never returns."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HANDLER_INSIDE_A_LOCK, kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    try:
        out, _ = proc.communicate(timeout=10.0)
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        hung = True
    if kind == "event":
        assert hung, out  # the deadlock the policy server had
    else:
        assert not hung and "handled" in out, out
