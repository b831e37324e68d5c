"""Threshold logic: when to request a new chunk, and the automatic choice of g from the measured latency.

Trigger rule (see :mod:`smolvla_policy.queue.core` for where it sits in a tick): a request is due when

    queue_size <= g * chunk_size

``queue_size`` counts the queued actions for this tick and later (the action of this tick not popped yet). The
paper writes ``|A_t| / n < g``; ``<=`` is used here so that ``g = 0`` means "request only when the queue is
empty" (the paper's sequential limit, sync mode) and so that the paper's no-idle bound
``g >= E[latency] / period / n`` is exact for a latency of a whole number of ticks: a request sent with ``q``
actions queued is served in time when ``q >= ceil(latency / period)``. An empty queue always triggers.

A second limit the paper does not state: with one request in flight, each chunk brings ``n - k`` new actions
every ``k = ceil(latency / period)`` ticks at best, so the queue runs dry whatever g when ``k > n / 2``
(e.g. 1 s latency, 30 fps, n = 50: k = 30, at least 1/6 of the ticks idle). See :mod:`.analysis`.
"""

from __future__ import annotations

import math


def request_due(queue_size: int, chunk_size: int, g: float) -> bool:
    """True when a new chunk should be requested (``queue_size <= g * chunk_size``, or the queue is empty)."""
    return queue_size == 0 or queue_size <= g * chunk_size


def min_threshold(latency: float, period: float, chunk_size: int) -> float:
    """The paper's bound ``latency / period / chunk_size``: the smallest g without idle ticks (may be > 1)."""
    if chunk_size <= 0 or period <= 0:
        raise ValueError("chunk_size and period must be > 0")
    return latency / period / chunk_size


def auto_threshold(latency: float, period: float, chunk_size: int, margin: float) -> float:
    """g chosen from the mean latency: ``min(1, latency / period / chunk_size + margin)``, at least 0.

    ``margin`` (in units of g) covers latency jitter and the rounding of the latency up to whole ticks
    (up to ``1 / chunk_size``).
    """
    g = min_threshold(latency, period, chunk_size) + margin
    return min(1.0, max(0.0, g))


def ticks_of_latency(latency: float, period: float) -> int:
    """Ticks from a request until its chunk can be used: ``ceil(latency / period)`` (at least 1)."""
    return max(1, math.ceil(latency / period - 1e-9))
