"""The action queue: the paper's Algorithm 1 as a clock-free state machine (plain Python, no rclpy).

The node (or a test) drives it with three events and passes the time ``now`` (seconds, any monotonic clock):

* :meth:`ActionQueueCore.tick` once per control period;
* :meth:`ActionQueueCore.on_chunk` when a requested chunk arrives;
* :meth:`ActionQueueCore.on_request_failed` when a request failed or was rejected.

Timeline
    The queue is indexed by an absolute **timestep** (control tick of the action timeline). An observation
    captured at timestep ``t`` carries ``timestep = t``; action ``i`` of the chunk predicted from it is for
    timestep ``start_timestep + i`` (dataset convention: ``a_0`` is the action for the observed frame). The
    timestep advances by one on every tick that executes an action; a *held* (idle) tick does not advance it,
    because nothing was executed and the arm did not move along the chunk. Consequently, in sync mode (g = 0)
    the whole chunk is executed after the wait, as in synchronous inference, instead of its first
    ``latency / period`` actions being thrown away, and after an idle gap the arm resumes with the action that
    follows the last one it executed. Invariant: ``timestep == ticks - idle_ticks``.

Order within one tick (``tick(now, state)``)
    1. request timeout check (a request older than ``request_timeout`` counts as failed; its id is returned
       in ``TickResult.cancel_request`` so the node can cancel the goal);
    2. **capture**: when no request is in flight, no backoff is pending and
       ``queue_size <= g * chunk_size`` (or the queue is empty; see :mod:`.threshold`), the observation given
       to this tick is captured with ``timestep`` = the current timestep. ``queue_size`` is counted *before*
       the pop, i.e. it includes the action of this tick. Stale or missing observations are not sent
       (``TickResult.stale``); near-duplicates are not sent unless the queue is empty (must-go);
    3. **pop**: the action for the current timestep is executed (clamped to the joint limits, then to
       ``max_step`` per joint from the last command) and the timestep advances; with an empty queue the last
       command is held (before the first chunk: the measured position, latched once) and an idle tick counted.

    The observation is therefore captured before this tick's action is sent: its state is the result of the
    previous commands, and the chunk's ``a_0`` is the action for that very tick (which, with any latency,
    will have been executed from the old queue by the time the chunk arrives, and is dropped as late).

Arrival of a chunk (``on_chunk``)
    Actions for timesteps already executed are dropped (``actions_dropped_late``); on timesteps present
    in both
    the queue and the chunk the two are fused by the aggregation function (:mod:`.aggregate`); timesteps
    only in
    the new chunk are appended (``rtc``: the new chunk is taken as it is from the first tick not yet executed,
    the actual delay, on). Queued timesteps that the new chunk does not cover (beyond its end) are
    **kept**: they are still the best prediction available for those ticks, and dropping them could empty the
    queue for no reason (lerobot's client discards them). A chunk that would leave a gap (starting after the
    end of the queue) is rejected. Only the response to the request in flight is accepted; responses to
    cancelled or timed-out requests are ignored.

Real-time chunking (``aggregate_fn = "rtc"``)
    A request captured with ``q > 0`` queued actions carries them as ``rtc_prefix`` (rows for the timesteps
    ``timestep .. timestep + q - 1``) and ``rtc_inference_delay = min(q, ceil(L / period))``, ``L`` the
    largest latency of the window (0 before the first measurement): the ticks that will have executed
    actions of the old queue, the capture tick included, when the chunk arrives. The server guides the new
    chunk's first actions towards the prefix (:mod:`smolvla_policy.model.rtc`).

Failures
    A failed, rejected or timed-out request is counted and retried after an exponential backoff
    (``retry_backoff * 2**(k-1)``, at most ``retry_backoff_max``, ``k`` consecutive failures); meanwhile the
    queue drains and then the arm holds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from .aggregate import AGGREGATE_NAMES, AggregateFn, make_aggregate
from .similarity import needs_processing
from .stats import LatencyStats
from .threshold import auto_threshold, request_due, ticks_of_latency


@dataclass(frozen=True)
class QueueConfig:
    """Settings of the action queue; all may change at run time through
    :meth:`ActionQueueCore.update_config`."""

    fps: float = 30.0
    chunk_threshold: float = 0.7
    auto_threshold: bool = False
    auto_threshold_margin: float = 0.1
    aggregate_fn: str = "weighted_average"
    blend_ramp: float = 10.0
    similarity_epsilon: float = 0.01
    max_step: float = 0.1
    lower_limits: tuple[float, ...] | None = None
    upper_limits: tuple[float, ...] | None = None
    request_timeout: float = 10.0
    retry_backoff: float = 0.2
    retry_backoff_max: float = 2.0
    latency_window: int = 20
    rtc_execution_horizon: int = 0  # rtc: prefix actions that guide the new chunk; 0 = the server's setting

    @property
    def period(self) -> float:
        return 1.0 / self.fps

    def validate(self, num_joints: int | None = None) -> None:
        """Raise ``ValueError`` with the reason when a value is out of range."""
        if not (self.fps > 0 and np.isfinite(self.fps)):
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not 0.0 <= self.chunk_threshold <= 1.0:
            raise ValueError(f"chunk_threshold (g) must be in [0, 1], got {self.chunk_threshold}")
        if not 0.0 <= self.auto_threshold_margin <= 1.0:
            raise ValueError(f"auto_threshold_margin must be in [0, 1], got {self.auto_threshold_margin}")
        if self.aggregate_fn not in AGGREGATE_NAMES:
            raise ValueError(
                f"unknown aggregate_fn '{self.aggregate_fn}' (expected one of {', '.join(AGGREGATE_NAMES)})"
            )
        if not self.blend_ramp >= 0:
            raise ValueError(f"blend_ramp must be >= 0 ticks, got {self.blend_ramp}")
        if not self.max_step >= 0:
            raise ValueError(f"max_step must be >= 0 (0 disables), got {self.max_step}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0, got {self.request_timeout}")
        if not (self.retry_backoff >= 0 and self.retry_backoff_max >= self.retry_backoff):
            raise ValueError("retry_backoff must be >= 0 and retry_backoff_max >= retry_backoff")
        if not 0 <= int(self.rtc_execution_horizon) <= 100000:
            raise ValueError(
                f"rtc_execution_horizon must be in [0, 100000], got {self.rtc_execution_horizon!r}"
            )
        if self.latency_window < 1:
            raise ValueError(f"latency_window must be >= 1, got {self.latency_window}")
        if (self.lower_limits is None) != (self.upper_limits is None):
            raise ValueError("lower_limits and upper_limits must be given together")
        if self.lower_limits is not None and self.upper_limits is not None:
            lo, hi = np.asarray(self.lower_limits, float), np.asarray(self.upper_limits, float)
            if lo.shape != hi.shape:
                raise ValueError("lower_limits and upper_limits must have the same length")
            if num_joints is not None and len(lo) != num_joints:
                raise ValueError(f"joint limits have {len(lo)} entries for {num_joints} joints")
            if np.any(lo >= hi):
                raise ValueError("every lower limit must be below its upper limit")


@dataclass
class ObservationRequest:
    """A request the node must send now (build the goal from the observation it passed to this tick)."""

    request_id: int
    timestep: int
    state: np.ndarray
    must_go: bool
    #: rtc mode: queued actions for timesteps ``timestep, timestep + 1, ...`` (None = no RTC).
    rtc_prefix: np.ndarray | None = None
    rtc_inference_delay: int = 0


@dataclass
class TickResult:
    command: np.ndarray | None  # position to command (None only when nothing is known yet)
    executed: bool  # an action of the queue was executed
    idle: bool  # running with an empty queue: the last command was held
    timestep: int  # timestep of this tick (of the executed action)
    request: ObservationRequest | None = None
    cancel_request: int | None = None  # a timed-out request the node should cancel
    filtered: bool = False  # a request was due but the observation was a near-duplicate
    stale: bool = False  # a request was due but no fresh observation was available
    clamped: bool = False  # the command was changed by the joint limits or max_step


@dataclass
class ChunkOutcome:
    accepted: bool
    late: int = 0
    fused: int = 0
    appended: int = 0
    reason: str = ""


@dataclass
class Counters:
    ticks: int = 0
    idle_ticks: int = 0
    observations_sent: int = 0
    observations_filtered: int = 0
    observations_stale: int = 0
    chunks_received: int = 0
    actions_dropped_late: int = 0
    requests_failed: int = 0
    commands_clamped: int = 0


@dataclass
class _InFlight:
    request_id: int
    timestep: int
    sent_at: float


class ActionQueueCore:
    """Algorithm 1: threshold-triggered asynchronous chunk requests, time-aligned fusion, safety clamps."""

    def __init__(self, num_joints: int, config: QueueConfig | None = None, running: bool = True) -> None:
        self.num_joints = int(num_joints)
        self._config = config or QueueConfig()
        self._config.validate(self.num_joints)
        self._aggregate: AggregateFn = make_aggregate(self._config.aggregate_fn, self._config.blend_ramp)
        self.latency = LatencyStats(self._config.latency_window)
        self.counters = Counters()
        self.running = running
        self.timestep = 0
        self.chunk_size = 0
        self._queue = np.zeros((0, self.num_joints))
        self._in_flight: _InFlight | None = None
        self._next_id = 1
        self._consecutive_failures = 0
        self._retry_at = -np.inf
        self._last_sent_state: np.ndarray | None = None
        self.last_command: np.ndarray | None = None
        self.last_error = ""

    # -- configuration -----------------------------------------------------------------------------
    @property
    def config(self) -> QueueConfig:
        return self._config

    def check_config(self, **changes: object) -> QueueConfig:
        """Return the config with ``changes`` applied; ``ValueError`` (with the reason) if invalid."""
        names = {f.name for f in fields(QueueConfig)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        new = replace(self._config, **changes)  # type: ignore[arg-type]
        new.validate(self.num_joints)
        return new

    def update_config(self, **changes: object) -> QueueConfig:
        """Apply ``changes`` (validated first; nothing changes when invalid). Takes effect at the next
        event."""
        new = self.check_config(**changes)
        aggregate = make_aggregate(new.aggregate_fn, new.blend_ramp)
        if new.latency_window != self._config.latency_window:
            old = list(self.latency._values)
            self.latency = LatencyStats(new.latency_window)
            for v in old:
                self.latency.add(v)
        self._config, self._aggregate = new, aggregate
        return new

    # -- state -------------------------------------------------------------------------------------
    @property
    def queue_size(self) -> int:
        return len(self._queue)

    @property
    def queued_actions(self) -> np.ndarray:
        """Copy of the queue; row ``i`` is the action for timestep ``self.timestep + i``."""
        return self._queue.copy()

    @property
    def request_in_flight(self) -> bool:
        return self._in_flight is not None

    @property
    def in_flight_id(self) -> int | None:
        return self._in_flight.request_id if self._in_flight else None

    @property
    def threshold(self) -> float:
        """g in force: the configured value, or the automatic choice once a latency and a chunk size are
        known."""
        cfg = self._config
        mean = self.latency.mean
        if cfg.auto_threshold and mean is not None and self.chunk_size > 0:
            return auto_threshold(mean, cfg.period, self.chunk_size, cfg.auto_threshold_margin)
        return cfg.chunk_threshold

    def rtc_inference_delay(self, queue_size: int) -> int:
        """Expected ticks from a capture until its chunk is merged: ``min(q, ceil(L_max / period))``."""
        worst = self.latency.percentile(100)
        ticks = 0 if worst is None else ticks_of_latency(worst, self._config.period)
        return int(min(queue_size, ticks))

    # -- start / stop ------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the loop (again): the queue starts empty, so the first tick requests a chunk (must-go).

        The held position is re-latched from the measured state at the next tick: the arm may have been
        moved (or the simulator reset) while stopped, and commanding the old position would make it jump.
        """
        if not self.running:
            self.last_command = None
        self.running = True
        self._consecutive_failures = 0
        self._retry_at = -np.inf

    def stop(self) -> int | None:
        """Stop: hold the last command, drop the queue, forget the request in flight (returns its id to
        cancel)."""
        self.running = False
        self._queue = np.zeros((0, self.num_joints))
        cancelled = self.in_flight_id
        self._in_flight = None
        return cancelled

    def hold_command(self, state: np.ndarray | None = None) -> np.ndarray | None:
        """The position held when nothing is executed: the last command, else ``state`` latched once -- as
        measured, not clipped to the limits: holding must not move the arm (the driver enforces its own)."""
        if self.last_command is None and state is not None and len(state) == self.num_joints:
            self.last_command = np.asarray(state, dtype=np.float64).copy()
        return None if self.last_command is None else self.last_command.copy()

    # -- events ------------------------------------------------------------------------------------
    def tick(self, now: float, state: np.ndarray | None = None, fresh: bool = True) -> TickResult:
        """One control period: timeout check, capture (maybe request), pop (or hold). See the module doc."""
        if not self.running:
            return TickResult(self.hold_command(state), False, False, self.timestep)
        cfg = self._config
        c = self.counters
        c.ticks += 1
        result = TickResult(None, False, False, self.timestep)

        if self._in_flight is not None and now - self._in_flight.sent_at > cfg.request_timeout:
            result.cancel_request = self._in_flight.request_id
            self._fail(now, f"request timed out after {cfg.request_timeout:g} s")

        q = len(self._queue)
        if (
            self._in_flight is None
            and now >= self._retry_at
            and request_due(q, self.chunk_size, self.threshold)
        ):
            if state is None or not fresh or len(state) != self.num_joints:
                result.stale = True
                c.observations_stale += 1
            else:
                state = np.asarray(state, dtype=np.float64)
                if needs_processing(state, self._last_sent_state, cfg.similarity_epsilon, q == 0):
                    req = ObservationRequest(self._next_id, self.timestep, state.copy(), must_go=q == 0)
                    if cfg.aggregate_fn == "rtc" and q > 0:
                        req.rtc_prefix = self._queue.copy()
                        req.rtc_inference_delay = self.rtc_inference_delay(q)
                    self._next_id += 1
                    self._in_flight = _InFlight(req.request_id, req.timestep, now)
                    self._last_sent_state = state.copy()
                    c.observations_sent += 1
                    result.request = req
                else:
                    result.filtered = True
                    c.observations_filtered += 1

        if q > 0:
            action = self._queue[0]
            self._queue = self._queue[1:]
            ref = self.hold_command(state)
            command = self._safe(action, ref)
            result.clamped = not np.array_equal(command, action)
            c.commands_clamped += int(result.clamped)
            self.last_command = command
            result.command = command.copy()
            result.executed = True
            self.timestep += 1
        else:
            c.idle_ticks += 1
            result.idle = True
            result.command = self.hold_command(state)
        return result

    def on_chunk(self, request_id: int, start_timestep: int, actions: np.ndarray, now: float) -> ChunkOutcome:
        """Merge the chunk answering request ``request_id`` (rows: actions for ``start_timestep + i``)."""
        if self._in_flight is None or request_id != self._in_flight.request_id:
            return ChunkOutcome(False, reason=f"request {request_id} is not the request in flight (ignored)")
        sent_at = self._in_flight.sent_at
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != self.num_joints or len(actions) == 0:
            reason = f"chunk of shape {actions.shape}, expected (n > 0, {self.num_joints})"
            self._fail(now, reason)
            return ChunkOutcome(False, reason=reason)
        if not np.all(np.isfinite(actions)):
            reason = "chunk contains non-finite values"
            self._fail(now, reason)
            return ChunkOutcome(False, reason=reason)
        start = int(start_timestep)
        q = len(self._queue)
        if start > self.timestep + q:
            reason = f"chunk starts at timestep {start}, after the end of the queue ({self.timestep + q})"
            self._fail(now, reason)
            return ChunkOutcome(False, reason=reason)

        self._in_flight = None
        self._consecutive_failures = 0
        self.latency.add(now - sent_at)
        self.chunk_size = len(actions)
        self.counters.chunks_received += 1

        late = min(len(actions), max(0, self.timestep - start))
        self.counters.actions_dropped_late += late
        new = actions[late:]
        first = start + late - self.timestep  # offset of new[0] in the queue (0 <= first <= q)
        overlap = max(0, min(q - first, len(new)))
        merged = self._queue.copy()
        if overlap:
            merged[first : first + overlap] = self._aggregate(merged[first : first + overlap], new[:overlap])
        tail = new[overlap:]
        if len(tail):
            merged = np.concatenate([merged, tail], axis=0)
        self._queue = merged
        return ChunkOutcome(True, late=late, fused=overlap, appended=len(tail))

    def on_request_failed(self, request_id: int, now: float, reason: str = "request failed") -> bool:
        """Count a failed / rejected request and schedule the retry; False if it is not the one in flight."""
        if self._in_flight is None or request_id != self._in_flight.request_id:
            return False
        self._fail(now, reason)
        return True

    # -- internals ---------------------------------------------------------------------------------
    def _fail(self, now: float, reason: str) -> None:
        cfg = self._config
        self._in_flight = None
        self.counters.requests_failed += 1
        self._consecutive_failures += 1
        delay = min(cfg.retry_backoff_max, cfg.retry_backoff * 2 ** (self._consecutive_failures - 1))
        self._retry_at = now + delay
        self.last_error = reason

    def _clip_limits(self, command: np.ndarray) -> np.ndarray:
        cfg = self._config
        if cfg.lower_limits is not None and cfg.upper_limits is not None:
            command = np.clip(command, cfg.lower_limits, cfg.upper_limits)
        return command

    def _safe(self, action: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        """Clamp to the joint limits, then to ``max_step`` per joint from ``ref`` (the last command)."""
        command = self._clip_limits(np.asarray(action, dtype=np.float64))
        step = self._config.max_step
        if step > 0 and ref is not None:
            command = ref + np.clip(command - ref, -step, step)
        return command


__all__ = [
    "ActionQueueCore",
    "ChunkOutcome",
    "Counters",
    "ObservationRequest",
    "QueueConfig",
    "TickResult",
]
