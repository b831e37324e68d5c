"""The goal scheduler: one inference at a time on a worker thread (plain Python, no rclpy).

- At most one job runs and at most one waits. A newly submitted job replaces the waiting one, which is
  finished as ``aborted`` with an error saying it was preempted; a running job is never preempted.
- A running job is cancelled at its next step (the backend's step callback returns False and the backend
  raises :class:`InferenceCancelled`); a waiting job is cancelled at once.
- Jobs submitted while the backend loads wait for it; if loading fails they are aborted with the reason.
- ``latency_s`` adds artificial latency to every job, spread over its steps and interruptible by a cancel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from smolvla_policy.backend import BadRequest, ChunkRequest, InferenceCancelled, PolicyBackend
from smolvla_policy.server.conversion import check_chunk

SUCCEEDED, ABORTED, CANCELLED = "succeeded", "aborted", "cancelled"
PREEMPTED_ERROR = "preempted: a newer goal arrived while this one was waiting"


@dataclass
class Outcome:
    status: str  # SUCCEEDED | ABORTED | CANCELLED
    chunk: np.ndarray | None = None  # (T, joints) radians, request joint order
    error: str = ""
    inference_ms: float = 0.0
    steps: int = 0  # step callbacks seen


class Job:
    """One goal's request and, once finished, its :class:`Outcome`."""

    def __init__(
        self, job_id: Any, request: ChunkRequest, on_step: Callable[[int, int], None] | None = None
    ) -> None:
        self.id = job_id
        self.request = request
        self.on_step = on_step
        self.state = "new"  # new -> pending -> running -> done
        self.outcome: Outcome | None = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        self._done.wait(timeout)
        return self.outcome

    def finish(self, outcome: Outcome) -> bool:
        """Set the outcome (the first one wins); returns True if this call set it."""
        with self._lock:
            if self._done.is_set():
                return False
            self.outcome = outcome
            self.state = "done"
            self._done.set()
            return True


class GoalScheduler:
    """Runs jobs one at a time against the current backend."""

    def __init__(self, latency_s: Callable[[], float] | float = 0.0, logger: Any = None) -> None:
        self._latency = latency_s if callable(latency_s) else (lambda: float(latency_s))
        self._log = logger or logging.getLogger("policy_server")
        self._cond = threading.Condition()
        self._backend: PolicyBackend | None = None
        self._backend_state = "loading"  # loading | ready | failed
        self._backend_error = ""
        self._pending: Job | None = None
        self._running: Job | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="policy-worker", daemon=True)
        self._thread.start()

    # ---- backend life cycle -----------------------------------------------------------------------------
    @property
    def backend(self) -> PolicyBackend | None:
        return self._backend

    @property
    def backend_state(self) -> str:
        return self._backend_state

    def set_loading(self) -> None:
        with self._cond:
            self._backend_state = "loading"
            self._cond.notify_all()

    def set_backend(self, backend: PolicyBackend) -> None:
        with self._cond:
            self._backend, self._backend_state, self._backend_error = backend, "ready", ""
            self._cond.notify_all()

    def set_failed(self, reason: str) -> None:
        with self._cond:
            self._backend, self._backend_state, self._backend_error = None, "failed", reason
            self._cond.notify_all()

    # ---- jobs ----------------------------------------------------------------------------------------------
    @property
    def running(self) -> Job | None:
        return self._running

    @property
    def pending(self) -> Job | None:
        return self._pending

    def submit(self, job: Job) -> Job | None:
        """Queue ``job``; returns the waiting job it preempted (already finished as aborted), if any."""
        with self._cond:
            if self._stopped:
                job.finish(Outcome(ABORTED, error="policy server is shutting down"))
                return None
            old, self._pending = self._pending, job
            job.state = "pending"
            self._cond.notify_all()
        if old is not None and old.finish(Outcome(ABORTED, error=PREEMPTED_ERROR)):
            return old
        return None

    def cancel(self, job: Job) -> bool:
        """Request cancellation; a waiting job finishes at once, a running one at its next step."""
        with self._cond:
            if job.done:
                return False
            job._cancel.set()
            if self._pending is job:
                self._pending = None
                job.finish(Outcome(CANCELLED, error="cancelled before it started"))
            return True

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopped = True
            pending, self._pending = self._pending, None
            running = self._running
            self._cond.notify_all()
        if pending is not None:
            pending.finish(Outcome(ABORTED, error="policy server is shutting down"))
        if running is not None:
            running._cancel.set()
        self._thread.join(timeout)

    # ---- worker --------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (self._pending is None or self._backend_state == "loading"):
                    self._cond.wait()
                if self._stopped:
                    return
                job, self._pending = self._pending, None
                if self._backend_state == "failed" or self._backend is None:
                    job.finish(
                        Outcome(ABORTED, error=f"policy backend is not available: {self._backend_error}")
                    )
                    continue
                backend = self._backend
                job.state = "running"
                self._running = job
            try:
                job.finish(self._run(backend, job))
            finally:
                with self._cond:
                    self._running = None

    def _run(self, backend: PolicyBackend, job: Job) -> Outcome:
        latency = max(0.0, float(self._latency()))
        steps_seen = 0

        def step_callback(step: int, num_steps: int) -> bool:
            nonlocal steps_seen
            steps_seen += 1
            if job.cancel_requested:
                return False
            if job.on_step is not None:
                try:
                    job.on_step(step, num_steps)
                except Exception as exc:  # feedback must never kill the inference
                    self._log.warning(f"feedback callback failed: {exc}")
            if latency > 0:  # after the feedback: a client sees the job running, then it is slow
                job._cancel.wait(latency / max(1, num_steps))
            return not job.cancel_requested

        t0 = time.perf_counter()
        try:
            if job.cancel_requested:
                raise InferenceCancelled("cancelled")
            chunk = backend.predict(job.request, step_callback)
            if steps_seen == 0 and latency > 0:  # a backend without steps still gets its latency
                job._cancel.wait(latency)
            if job.cancel_requested:
                raise InferenceCancelled("cancelled")
            chunk = check_chunk(chunk, job.request)
        except InferenceCancelled:
            if self._stopped:
                return Outcome(ABORTED, error="policy server is shutting down", steps=steps_seen)
            return Outcome(
                CANCELLED, error="cancelled", steps=steps_seen, inference_ms=(time.perf_counter() - t0) * 1e3
            )
        except BadRequest as exc:
            return Outcome(ABORTED, error=str(exc), steps=steps_seen)
        except Exception as exc:
            self._log.error(f"backend failed on a request: {type(exc).__name__}: {exc}")
            return Outcome(ABORTED, error=f"backend error: {type(exc).__name__}: {exc}", steps=steps_seen)
        ms = (time.perf_counter() - t0) * 1e3
        return Outcome(SUCCEEDED, chunk=chunk, inference_ms=ms, steps=steps_seen)
