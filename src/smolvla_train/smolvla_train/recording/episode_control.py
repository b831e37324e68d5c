"""Who ends the running episode, and how (plain Python, no rclpy; used by the ``episode_recorder`` node).

An episode ends for one of several reasons that can coincide: ``~/end_episode`` (with an outcome), the time
limit, a cancel of the goal. :class:`EndRequests` is the one place where they meet:

- the episode loop calls :meth:`begin` when it starts, polls :meth:`requested`, and calls :meth:`close` once
  it has decided to stop (for whatever reason): the outcome requested until then is the episode's; and
  :meth:`finish` with the saved result when the bag is written (always, also on failure or discard);
- ``~/end_episode`` calls :meth:`request`: ``None`` when no episode is running, else a :class:`EndWaiter`
  that :meth:`finish` wakes with the episode's result -- also when the request came after :meth:`close`
  (the episode was already ending at its time limit: ``applied`` is then False and the saved outcome is the
  time limit's).

Regression (record-sim: "~/end_episode did not answer within 120 s"): an end request that arrived while the
episode was ending at its time limit was stored but never answered (the loop had stopped looking), so the
service waited its full 120 s; :meth:`finish` now wakes every waiter, whenever it came.
"""

from __future__ import annotations

import threading
from typing import Any


class EndWaiter:
    """One ``~/end_episode`` request: :meth:`wait` returns once the episode is saved (or discarded)."""

    def __init__(self, outcome: str, applied: bool) -> None:
        self.outcome = outcome
        self.applied = applied  # False: the episode was ending already (its outcome was decided before)
        self.result: Any = None
        self._done = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _set(self, result: Any) -> None:
        self.result = result
        self._done.set()


class EndRequests:
    """State of the recorder's episode: ``idle`` -> ``running`` (begin) -> ``ending`` (close) -> ``idle``
    (finish). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = "idle"
        self._outcome: str | None = None
        self._waiters: list[EndWaiter] = []

    @property
    def busy(self) -> bool:
        with self._lock:
            return self.state != "idle"

    def begin(self) -> bool:
        """Start an episode; False if one is running or ending."""
        with self._lock:
            if self.state != "idle":
                return False
            self.state = "running"
            self._outcome = None
            self._waiters = []
            return True

    def request(self, outcome: str) -> EndWaiter | None:
        """Ask the running episode to end with ``outcome``; None when no episode is running or ending."""
        with self._lock:
            if self.state == "idle":
                return None
            applied = self.state == "running" and self._outcome is None
            if applied:
                self._outcome = outcome
            waiter = EndWaiter(outcome, applied)
            self._waiters.append(waiter)
            return waiter

    def requested(self) -> str | None:
        """The outcome asked for so far (None: no end request yet)."""
        with self._lock:
            return self._outcome

    def close(self) -> str | None:
        """The episode loop stops: returns the requested outcome (None: none); later requests only wait."""
        with self._lock:
            if self.state == "running":
                self.state = "ending"
            return self._outcome

    def finish(self, result: Any) -> None:
        """The episode is over (saved, failed or discarded): wake every request with ``result``."""
        with self._lock:
            waiters, self._waiters = self._waiters, []
            self.state = "idle"
            self._outcome = None
        for waiter in waiters:
            waiter._set(result)
