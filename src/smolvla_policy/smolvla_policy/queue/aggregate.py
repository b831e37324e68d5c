"""Aggregation functions: how an incoming chunk is fused with the queued actions on overlapping ticks.

Every function takes the two blocks of the overlap, ``old`` and ``new`` (shape ``(m, joints)``, row ``j``
is the
``j``-th overlapping control tick, ``j = 0`` being the earliest one, i.e. the next action to execute) and
returns
the fused block. Fixed-weight functions work elementwise (lerobot's names and weights):

==================== ==================================
``latest_only``      ``new``
``rtc``              ``new`` (real-time chunking: the request carries the queued actions as a prefix that
                     guides the new chunk, :mod:`smolvla_policy.model.rtc`; no averaging on arrival)
``weighted_average`` ``0.3 * old + 0.7 * new``
``average``          ``0.5 * old + 0.5 * new``
``conservative``     ``0.7 * old + 0.3 * new``
``blend``            ``(1 - w_j) * old + w_j * new`` with ``w_j = min(1, (j + 1) / (blend_ramp + 1))``
==================== ==================================

``blend`` is time-aware: the weight on the new chunk ramps linearly from ``1 / (R + 1)`` on the first
overlapping
tick to 1 after ``R = blend_ramp`` ticks (``R`` in control ticks, real-valued, ``>= 0``), so the command
does not
jump where the new chunk takes over and the near future still follows the newest prediction. ``R = 0`` equals
``latest_only``. Example, ``R = 3``: weights 0.25, 0.5, 0.75, 1, 1, ...
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

AggregateFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Fixed weights on the *new* chunk of the elementwise functions.
FIXED_NEW_WEIGHTS: dict[str, float] = {
    "latest_only": 1.0,
    "weighted_average": 0.7,
    "average": 0.5,
    "conservative": 0.3,
}
AGGREGATE_NAMES: tuple[str, ...] = (*FIXED_NEW_WEIGHTS, "blend", "rtc")


def blend_weights(overlap: int, blend_ramp: float) -> np.ndarray:
    """Weights on the new chunk over ``overlap`` ticks: ``min(1, (j + 1) / (blend_ramp + 1))``."""
    if blend_ramp < 0:
        raise ValueError(f"blend_ramp must be >= 0, got {blend_ramp}")
    j = np.arange(overlap, dtype=np.float64)
    return np.minimum(1.0, (j + 1.0) / (blend_ramp + 1.0))


def make_aggregate(name: str, blend_ramp: float = 10.0) -> AggregateFn:
    """Return the aggregation function called ``name`` (one of :data:`AGGREGATE_NAMES`)."""
    if name == "rtc":  # the new chunk already agrees with the queue where it matters (guided prefix)
        return make_aggregate("latest_only")
    if name in FIXED_NEW_WEIGHTS:
        w = FIXED_NEW_WEIGHTS[name]

        def fixed(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            if w == 1.0:
                return np.array(new, dtype=np.float64, copy=True)
            return (1.0 - w) * np.asarray(old, dtype=np.float64) + w * np.asarray(new, dtype=np.float64)

        fixed.__name__ = name
        return fixed
    if name == "blend":
        if blend_ramp < 0:
            raise ValueError(f"blend_ramp must be >= 0, got {blend_ramp}")

        def blend(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            w = blend_weights(len(new), blend_ramp)[:, None]
            return (1.0 - w) * np.asarray(old, dtype=np.float64) + w * np.asarray(new, dtype=np.float64)

        return blend
    raise ValueError(f"unknown aggregate_fn '{name}' (expected one of {', '.join(AGGREGATE_NAMES)})")
