"""Stop an rclpy executor spinning in a thread without "The following exception was never retrieved: cannot
use Destroyable because destruction was requested" (issue 19, defect 7).

rclpy 9.1.2's ``Executor.shutdown`` sets its shutdown flag and then checks it to decide whether to wait for
the callbacks in flight (so it never waits), and destroys its guard condition at once; a
``MultiThreadedExecutor`` then drains its worker pool, whose queued handler tasks trigger that destroyed guard
condition and keep the error in a task nobody awaits (printed when the task is collected, often after a test
run's summary). :func:`shutdown_executor` stops the spinning first, lets the worker pool finish every queued
task, and only then lets ``shutdown`` destroy the guard condition.
"""

from __future__ import annotations

import threading
from typing import Any


def shutdown_executor(
    executor: Any, thread: threading.Thread | None = None, timeout_sec: float = 5.0
) -> bool:
    """Stop ``executor`` (spinning in ``thread``, if given), finish the callbacks in flight, shut it down.
    Returns what ``executor.shutdown`` returns (False: callbacks still running after ``timeout_sec``)."""
    lock = getattr(executor, "_shutdown_lock", None)
    if lock is not None and hasattr(executor, "_is_shutdown"):
        with lock:  # what Executor.shutdown does first: spin() ends at its next wake-up
            if not executor._is_shutdown:
                executor._is_shutdown = True
                guard = getattr(executor, "_guard", None)
                if guard is not None:
                    guard.trigger()
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout_sec)
    pool = getattr(executor, "_executor", None)  # MultiThreadedExecutor's ThreadPoolExecutor
    if callable(getattr(pool, "shutdown", None)) and (thread is None or not thread.is_alive()):
        pool.shutdown(wait=True)
    return bool(executor.shutdown(timeout_sec=timeout_sec))
