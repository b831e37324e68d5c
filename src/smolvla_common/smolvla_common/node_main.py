"""The common ``main()`` of the project's nodes: init, spin, and a clean shutdown whatever ends the spin.

Ctrl-C and SIGTERM end rclpy's spin with ``KeyboardInterrupt``, ``ExternalShutdownException`` or, about one
run in eight, ``RCLError`` (the context became invalid mid-spin): all are a normal exit. A start-up error of
the node (bad configuration, missing hardware) is printed with the node's name and gives exit code 1. The
executor is shut down before the node is closed and rclpy is shut down last.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any


def run_node(
    name: str,
    make_node: Callable[[], Any],
    *,
    args: list[str] | None = None,
    start: bool = False,
    startup_errors: tuple[type[BaseException], ...] = (),
    num_threads: int = 1,
) -> int:
    """Create the node with ``make_node()``, call its ``start()`` if ``start``, and spin it; returns the exit
    code. Afterwards ``node.shutdown()`` is called if the node has one (e.g. torque off, renderer closed),
    also when ``start()`` failed.
    """
    import rclpy
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    rclpy.init(args=args)
    node: Any = None
    executor = MultiThreadedExecutor(num_threads=num_threads) if num_threads > 1 else SingleThreadedExecutor()
    code = 0
    try:
        node = make_node()
        if start:
            node.start()
        executor.add_node(node)
        executor.spin()
    except startup_errors as exc:
        message = f"{name} cannot start: {exc}"
        if node is not None:
            node.get_logger().fatal(message)
        print(message, file=sys.stderr, flush=True)
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException, RCLError):
        pass
    finally:
        executor.shutdown(timeout_sec=5.0)
        if node is not None:
            if callable(getattr(node, "shutdown", None)):
                node.shutdown()
            with contextlib.suppress(Exception):
                node.destroy_node()
        rclpy.try_shutdown()
    return code
