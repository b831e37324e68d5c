"""Latency statistics over a sliding window (plain Python, no clock of its own)."""

from __future__ import annotations

from collections import deque

import numpy as np


class LatencyStats:
    """Round-trip latencies (seconds) of the last ``window`` requests."""

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._values: deque[float] = deque(maxlen=window)
        self.count = 0
        self.last: float | None = None

    def add(self, seconds: float) -> None:
        self._values.append(float(seconds))
        self.last = float(seconds)
        self.count += 1

    def __len__(self) -> int:
        return len(self._values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self._values)) if self._values else None

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self._values, q)) if self._values else None

    def clear(self) -> None:
        self._values.clear()
        self.last = None
