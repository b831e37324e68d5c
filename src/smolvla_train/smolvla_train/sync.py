"""Time alignment of bag streams onto LeRobot's fixed frame grid (plain numpy, no rclpy).

Frames sit on a grid ``t_k = t0 + k / fps`` (nanoseconds on the stamp clock). Every feature is sampled
**as of** the frame time: the latest sample whose stamp is not after ``t_k`` (never a future one). If that
sample is older than the feature's ``max_age`` (or there is none), the frame is dropped and the drop is
counted against that feature. Kept frames are renumbered contiguously and get ``timestamp = frame_index /
fps``, as the format requires.

The grid of an episode window ``[start, end]`` starts at the first instant every feature has a sample
(``max(start, first stamps)``) and ends at the last instant every feature still has one (``min(end, last
stamps)``), so an episode does not begin or end with a run of drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NS = 1_000_000_000


@dataclass
class FeatureSync:
    """Per-feature result of one episode: sample index per kept frame, ages and drop count."""

    indices: np.ndarray  # (kept,) index into the feature's (sorted) sample arrays
    ages_ns: np.ndarray  # (kept,)
    drops: int = 0  # frames dropped because this feature had no fresh sample

    def report(self) -> dict[str, float | int]:
        ages = self.ages_ns / 1e6
        return {
            "frames": int(len(self.indices)),
            "drops": int(self.drops),
            "max_age_ms": round(float(ages.max()), 3) if len(ages) else None,
            "mean_age_ms": round(float(ages.mean()), 3) if len(ages) else None,
        }


@dataclass
class EpisodeSync:
    t0_ns: int
    grid_frames: int  # frames on the grid before drops
    frame_times_ns: np.ndarray  # kept frame times
    features: dict[str, FeatureSync] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(len(self.frame_times_ns))

    @property
    def drops(self) -> int:
        return self.grid_frames - self.frames

    def report(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "grid_frames": self.grid_frames,
            "dropped_frames": self.drops,
            "start_ns": int(self.t0_ns),
            "features": {k: f.report() for k, f in self.features.items()},
        }


def grid(start_ns: int, end_ns: int, fps: float) -> np.ndarray:
    """Frame times from start to end inclusive, exactly ``start + round(k * 1e9 / fps)``."""
    if end_ns < start_ns:
        return np.zeros(0, dtype=np.int64)
    n = int(np.floor((end_ns - start_ns) * fps / NS + 1e-9)) + 1
    return start_ns + np.round(np.arange(n) * (NS / fps)).astype(np.int64)


def asof(times_ns: np.ndarray, query_ns: np.ndarray) -> np.ndarray:
    """Index of the latest sample with time <= query (-1 if none). ``times_ns`` must be sorted."""
    return np.searchsorted(times_ns, query_ns, side="right") - 1


def align(
    series: dict[str, np.ndarray],
    fps: float,
    max_age_ns: dict[str, int],
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> EpisodeSync:
    """Align sorted stamp arrays ``series[name]`` onto one grid; see module docstring."""
    if not series:
        raise ValueError("nothing to align")
    for name, t in series.items():
        if len(t) == 0:
            return EpisodeSync(
                0,
                0,
                np.zeros(0, dtype=np.int64),
                {n: FeatureSync(np.zeros(0, int), np.zeros(0)) for n in series},
            )
        if np.any(np.diff(t) < 0):
            raise ValueError(f"stamps of {name} are not sorted")
    t0 = max(int(t[0]) for t in series.values())
    t1 = min(int(t[-1]) for t in series.values())
    if start_ns is not None:
        t0 = max(t0, int(start_ns))
    if end_ns is not None:
        t1 = min(t1, int(end_ns))
    g = grid(t0, t1, fps)
    keep = np.ones(len(g), dtype=bool)
    idx: dict[str, np.ndarray] = {}
    age: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    for name, t in series.items():
        i = asof(t, g)
        a = np.where(i >= 0, g - t[np.maximum(i, 0)], np.iinfo(np.int64).max)
        bad = (i < 0) | (a > int(max_age_ns[name]))
        idx[name], age[name], missing[name] = i, a, bad
        keep &= ~bad
    feats = {}
    for name in series:
        feats[name] = FeatureSync(
            idx[name][keep], age[name][keep].astype(np.float64), int(missing[name].sum())
        )
    return EpisodeSync(t0, len(g), g[keep], feats)


def split_gaps(times_ns: np.ndarray, gap_ns: int) -> list[tuple[int, int]]:
    """Windows (start, end) of ``times_ns`` separated by gaps longer than ``gap_ns``."""
    if len(times_ns) == 0:
        return []
    cuts = np.nonzero(np.diff(times_ns) > gap_ns)[0]
    starts = [int(times_ns[0])] + [int(times_ns[c + 1]) for c in cuts]
    ends = [int(times_ns[c]) for c in cuts] + [int(times_ns[-1])]
    return list(zip(starts, ends))
