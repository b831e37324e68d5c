"""The observation similarity filter (joint space, radians).

An observation whose joint state is within ``epsilon`` (Euclidean norm over the joints, radians) of the
state of
the last observation *sent* is not sent, unless the queue is empty (must-go: the arm never stalls on the
filter).
A negative ``epsilon`` disables the filter. Only the joint state is compared (images are not), as in the
paper.
"""

from __future__ import annotations

import numpy as np


def joint_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def is_similar(state: np.ndarray, last_sent: np.ndarray | None, epsilon: float) -> bool:
    """True when ``state`` is a near-duplicate of ``last_sent`` (``distance < epsilon``); never when
    disabled."""
    if epsilon < 0 or last_sent is None or len(state) != len(last_sent):
        return False
    return joint_distance(state, last_sent) < epsilon


def needs_processing(
    state: np.ndarray, last_sent: np.ndarray | None, epsilon: float, queue_empty: bool
) -> bool:
    """Algorithm 1's NEEDSPROCESSING: must-go when the queue is empty, else not a near-duplicate."""
    return queue_empty or not is_similar(state, last_sent, epsilon)
