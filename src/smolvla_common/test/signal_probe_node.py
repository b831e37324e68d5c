"""A real rclpy node run by ``smolvla_common.node_main.run_node`` for test_node_main_signals.py.

``python signal_probe_node.py DIR [--slow-start]``: a thread of its own publishes on ``/signal_probe`` all the
time (like camera_node's capture thread); ``shutdown()`` writes ``DIR/shutdown_begins``, waits until the test
creates ``DIR/release`` (so the test can signal the process while it is shutting down), stops and joins the
thread, publishes one last message (the context must still be valid) and writes ``DIR/shutdown_complete``.
With ``--slow-start`` the node's ``start()`` writes ``DIR/starting`` and waits for ``DIR/release`` instead.
With ``--hang-in-destroy`` its ``destroy_node()`` never returns (a stall after the node's own shutdown).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from rclpy.node import Node
from std_msgs.msg import String

from smolvla_common.node_main import run_node


def _wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


class SignalProbe(Node):
    def __init__(self, directory: Path, slow_start: bool, hang_in_destroy: bool = False) -> None:
        super().__init__("signal_probe")
        self.dir, self.slow_start, self.hang_in_destroy = directory, slow_start, hang_in_destroy
        self.pub = self.create_publisher(String, "signal_probe", 10)
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, name="publisher", daemon=True)
        self.create_timer(0.01, lambda: None)

    def _publish(self) -> None:
        while not self._stop.wait(0.002):
            self.pub.publish(String(data=f"message {self.count}"))
            self.count += 1

    def start(self) -> None:
        self._thread.start()
        if self.slow_start:
            (self.dir / "starting").write_text("")
            _wait_for(self.dir / "release")
        (self.dir / "running").write_text("")

    def shutdown(self) -> None:
        (self.dir / "shutdown_begins").write_text("")
        _wait_for(self.dir / "release")
        self._stop.set()
        self._thread.join()
        self.pub.publish(String(data="last message"))
        (self.dir / "shutdown_complete").write_text(f"{self.count} messages published\n")

    def destroy_node(self) -> None:
        while self.hang_in_destroy:
            time.sleep(1.0)
        super().destroy_node()


def main() -> int:
    directory = Path(sys.argv[1])
    slow, hang = "--slow-start" in sys.argv[2:], "--hang-in-destroy" in sys.argv[2:]
    return run_node("signal_probe", lambda: SignalProbe(directory, slow, hang), start=True, num_threads=2)


if __name__ == "__main__":
    sys.exit(main())
