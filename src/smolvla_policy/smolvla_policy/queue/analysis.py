"""Analytic predictions for the action queue (the paper's section 3.3 analysis, made exact for whole ticks).

With a deterministic latency ``l``, period ``dt``, chunk size ``n``, threshold ``g`` and no similarity filter,
let ``k = ceil(l / dt)`` (ticks from sending a request until its chunk can be used) and ``q* = floor(g
n)`` (the
queue size at which a request is sent). One request cycle that starts with ``q0`` queued actions:

* waits ``k`` ticks, executing ``e = min(q0, k)`` actions and idling ``k - e`` ticks;
* receives the chunk: ``e`` of its actions are late, the queue then holds ``Q = n - e`` actions;
* sends the next request at once if ``Q <= q*`` (with ``q0' = Q``), else after ``Q - q*`` more ticks
(``q0' = q*``).

Idle ticks vanish in steady state iff ``q* >= k`` (the paper's ``g >= E[l] / dt / n``). In the common regime
``q* < k`` and ``q* <= n / 2`` the idle fraction is ``(k - q*) / (k + n - 2 q*)``; g = 0 gives ``k / (k + n)``
(sync: ``l`` idle seconds per chunk of ``n`` actions). :func:`predict` iterates the cycle map from start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from .threshold import ticks_of_latency


@dataclass
class Prediction:
    idle_fraction: float  # steady state
    ticks_per_chunk: float  # ticks between two requests (= between two chunks)
    late_per_chunk: float  # actions of each chunk dropped as late
    latency_ticks: int  # k
    trigger_size: int  # q*


def predict(latency: float, period: float, chunk_size: int, g: float, cycles: int = 400) -> Prediction:
    """Steady-state prediction of the cycle map above (the first half of ``cycles`` is discarded)."""
    n = int(chunk_size)
    k = ticks_of_latency(latency, period)
    q_star = int(g * n + 1e-9)
    q0 = 0
    idle = ticks = late = 0
    counted = 0
    for i in range(cycles):
        e = min(q0, k)
        arrived = n - e
        wait = max(0, arrived - q_star)
        if i >= cycles // 2:
            idle += k - e
            ticks += k + wait
            late += e
            counted += 1
        q0 = arrived if arrived <= q_star else q_star
    return Prediction(idle / ticks, ticks / counted, late / counted, k, q_star)


def idle_fraction_closed_form(latency: float, period: float, chunk_size: int, g: float) -> float:
    """``(k - q*) / (k + n - 2 q*)`` when ``q* < k`` and ``q* <= n / 2``; 0 when ``q* >= k``."""
    n = int(chunk_size)
    k = ticks_of_latency(latency, period)
    q_star = int(g * n + 1e-9)
    if q_star >= k:
        return 0.0
    if 2 * q_star > n:
        raise ValueError("closed form only for q* <= n / 2; use predict()")
    return (k - q_star) / (k + n - 2 * q_star)
