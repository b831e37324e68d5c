"""The common ``main()`` of the project's nodes: init, spin, and a clean shutdown whatever ends the spin.

Signals (issue 18): a Ctrl-C in a terminal running ``ros2 launch`` reaches every node **twice**: once from
the terminal (SIGINT to the whole foreground process group) and once from launch, which forwards it (and
SIGTERM a few seconds later if the node is still running). rclpy's own signal handler would shut every context
down asynchronously at the first one (publishers of other threads then fail with "publisher's context is
invalid") and turn the second one into a ``KeyboardInterrupt`` in the middle of the shutdown (e.g. inside the
driver's torque-off). So :func:`run_node` handles SIGINT and SIGTERM itself (rclpy's handler is not
installed):

- while the node is being created/started, the first signal raises ``KeyboardInterrupt`` (start-up is
  abandoned; ``node.shutdown()`` still runs if the node exists);
- while spinning, the first signal asks the spin loop to stop (callbacks finish; the context stays valid);
- every further signal is ignored: the shutdown (``node.shutdown()``: torque off, camera thread joined, ...;
  ``destroy_node``; ``rclpy.try_shutdown``) always runs to its end, and after it SIGINT/SIGTERM stay
  ignored until the process has exited (``run_node`` is the end of a node process's ``main()``).

The exit is bounded: once ``node.shutdown()`` has returned (the arm is safe, files are closed), the rest
(``destroy_node``, ``rclpy.try_shutdown``, the interpreter's exit) gets :data:`EXIT_STALL_S` seconds. A
process still alive then prints that its exit stalled, dumps every thread's stack (the diagnosis) and exits
with its code; otherwise launch's SIGKILL would end it with -9 a few seconds later (seen once in a CI run: the
driver hung after "torque disabled on exit", where no signal is handled any more).

``kill -USR2 <pid>`` prints every Python thread's stack to the node's stderr and the node carries on
(:func:`enable_stack_dumps`): the diagnosis of a node that stopped answering.

A start-up error of the node (bad configuration, missing hardware, :class:`ParameterError`) is printed with
the node's name and gives exit code 1. ``node.shutdown()`` returning ``False`` (e.g. torque off failed) also
gives exit code 1. A shutdown by signal exits 0.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from smolvla_common.executor_shutdown import shutdown_executor
from smolvla_common.parameters import ParameterError

#: The signals a node process stops on (a terminal's Ctrl-C, launch's SIGINT then SIGTERM, systemd's SIGTERM).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Longest wait of the spin loop between two looks at the stop request [s] (signals are handled in between).
SPIN_PERIOD = 0.1
#: How long the exit may take after the node's own shutdown has returned before the process ends itself [s].
EXIT_STALL_S = 3.0


def bound_the_exit(name: str, code: int, seconds: float = EXIT_STALL_S) -> None:
    """End this process with ``code`` if it is still alive ``seconds`` from now, after printing that its exit
    stalled and every thread's stack. For the end of a node process only (:func:`run_node` calls it once the
    node's shutdown is done). A Python thread does it (exit code kept); faulthandler's own thread, which needs
    no GIL, is the backstop 2 s later (exit code 1) for a stall inside C code that holds the GIL."""

    def watchdog() -> None:
        time.sleep(seconds)
        print(
            f"[{name}] exit stalled {seconds:g} s after the node's shutdown (destroy_node, rclpy shutdown or "
            f"the interpreter's exit); every thread's stack follows; exiting with code {code}",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()
    with contextlib.suppress(Exception):  # no usable stderr file descriptor: the Python watchdog alone
        faulthandler.dump_traceback_later(seconds + 2.0, exit=True, file=sys.stderr)


class StopSignals:
    """SIGINT/SIGTERM handling of a node process: the first signal stops it, every later one is ignored.

    ``phase`` is ``"starting"`` (the first signal raises ``KeyboardInterrupt``), ``"running"`` (it only
    sets :attr:`requested`) or ``"stopping"`` (signals are only counted). Python runs the handler in the main
    thread between two bytecodes; it does no I/O (a print there can collide with the main thread's print).
    """

    def __init__(self) -> None:
        self.phase = "starting"
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def install(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if len(self.received) == 1 and self.phase == "starting":
            self.phase = "stopping"
            raise KeyboardInterrupt

    def describe(self) -> str:
        names = [signal.Signals(s).name for s in self.received]
        extra = f" ({len(names) - 1} more ignored during shutdown)" if len(names) > 1 else ""
        return f"{names[0]}{extra}" if names else "no signal"


#: The signal on which a node prints every thread's stack and carries on.
STACK_DUMP_SIGNAL = signal.SIGUSR2


def enable_stack_dumps() -> None:
    """On :data:`STACK_DUMP_SIGNAL`, print every Python thread's stack to stderr (faulthandler: works while
    the interpreter is stuck in C code holding the GIL) and go on."""
    with contextlib.suppress(ValueError, RuntimeError, OSError, AttributeError):  # no main thread, no fd 2
        faulthandler.register(STACK_DUMP_SIGNAL, file=sys.stderr, all_threads=True, chain=False)


def run_node(
    name: str,
    make_node: Callable[[], Any],
    *,
    args: list[str] | None = None,
    start: bool = False,
    startup_errors: tuple[type[BaseException], ...] = (),
    num_threads: int = 1,
    bound_exit: bool = True,
) -> int:
    """Create the node with ``make_node()``, call its ``start()`` if ``start``, and spin it; returns the exit
    code. Afterwards ``node.shutdown()`` is called if the node has one (e.g. torque off, renderer closed),
    also when ``start()`` failed or was interrupted. See the module docstring for the signal handling and
    the bounded exit (``bound_exit``: arm it; only a caller that does not end the process may say False).
    """
    import rclpy
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    signals = StopSignals().install()
    enable_stack_dumps()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except KeyboardInterrupt:
        return 0
    node: Any = None
    executor = MultiThreadedExecutor(num_threads=num_threads) if num_threads > 1 else SingleThreadedExecutor()
    code = 0
    try:
        node = make_node()
        if start:
            node.start()
        executor.add_node(node)
        if signals.phase == "starting":
            signals.phase = "running"
        while not signals.requested and executor.context.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD)
    except (*startup_errors, ParameterError) as exc:
        signals.phase = "stopping"
        message = f"{name} cannot start: {exc}"
        if node is not None:
            with contextlib.suppress(Exception):
                node.get_logger().fatal(message)
        print(message, file=sys.stderr, flush=True)
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException, RCLError):
        pass
    finally:
        signals.phase = "stopping"  # from here on every signal is ignored: the shutdown runs to its end
        # the callbacks in flight end before the executor's guard condition is destroyed (issue 19, defect 7)
        shutdown_executor(executor)
        if node is not None and callable(getattr(node, "shutdown", None)):
            try:
                if node.shutdown() is False:
                    code = code or 1
            except Exception as exc:  # noqa: BLE001 (reported; the rest of the shutdown still runs)
                message = f"{name}: shutdown failed: {type(exc).__name__}: {exc}"
                print(message, file=sys.stderr, flush=True)
                code = code or 1
        if bound_exit:
            bound_the_exit(name, code)
        if node is not None:
            with contextlib.suppress(Exception):
                node.destroy_node()
        rclpy.try_shutdown()
        if signals.requested:
            print(f"[{name}] stopped by {signals.describe()}", flush=True)
        # the process ends: ignore late signals at the OS level too (Python's finalization resets signals that
        # have a Python handler to their default, so a late SIGINT would still kill it with -2; SIG_IGN stays)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    return code
