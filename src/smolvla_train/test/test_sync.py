"""Frame grid and as-of sampling (smolvla_train.sync) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from smolvla_train.sync import NS, align, asof, grid, split_gaps

MS = 1_000_000


def test_grid_is_start_plus_k_over_fps_inclusive() -> None:
    g = grid(10 * NS, 10 * NS + NS, 30)
    assert len(g) == 31 and g[0] == 10 * NS and g[-1] == 11 * NS
    assert g[1] - g[0] == 33_333_333 and g[3] - g[0] == 100_000_000  # rounded from the start, no drift
    assert len(grid(5, 4, 30)) == 0


def test_asof_never_takes_a_future_sample() -> None:
    t = np.array([0, 10, 20, 30])
    q = np.array([-1, 0, 9, 10, 11, 29, 30, 99])
    assert asof(t, q).tolist() == [-1, 0, 0, 1, 1, 2, 3, 3]


def test_align_by_hand() -> None:
    # state at 100 Hz from 0; camera at 10 Hz from 5 ms with a gap (no frame at 305, 405 ms)
    state = np.arange(0, 1000 * MS, 10 * MS)
    cam = np.array([5, 105, 205, 505, 605, 705, 805, 905]) * MS
    sync = align({"s": state, "c": cam}, fps=10, max_age_ns={"s": 20 * MS, "c": 150 * MS})
    # grid from max(first stamps) = 5 ms to min(last stamps) = 905 ms: 5, 105, ..., 905 ms (10 frames)
    assert sync.grid_frames == 10
    # camera age at 305 ms = 100 ms (ok), at 405 ms = 200 ms > 150 ms -> dropped
    assert sync.features["c"].drops == 1 and sync.features["s"].drops == 0
    assert sync.frames == 9 and 405 * MS not in sync.frame_times_ns.tolist()
    # state as-of 5 ms is the 0 ms sample (age 5 ms), never the 10 ms one
    assert sync.features["s"].indices[0] == 0 and sync.features["s"].ages_ns[0] == 5 * MS
    rep = sync.report()
    assert rep["features"]["c"]["max_age_ms"] == pytest.approx(100.0)
    assert rep["dropped_frames"] == 1


def test_align_window_limits_the_grid() -> None:
    t = np.arange(0, 2 * NS, 10 * MS)
    sync = align({"a": t}, fps=20, max_age_ns={"a": 50 * MS}, start_ns=500 * MS, end_ns=1000 * MS)
    assert sync.frame_times_ns[0] == 500 * MS and sync.frame_times_ns[-1] == 1000 * MS and sync.frames == 11


def test_split_gaps() -> None:
    t = np.array([0, 1, 2, 10, 11, 30]) * NS
    assert split_gaps(t, 5 * NS) == [(0, 2 * NS), (10 * NS, 11 * NS), (30 * NS, 30 * NS)]
