"""Feature statistics as LeRobot v3.0 stores them (min, max, mean, std, count, q01, q10, q50, q90, q99).

Vectors: per dimension over frames. Images: per channel over sampled, downsampled frames, values in [0, 1],
shape (3, 1, 1). Per-episode statistics are aggregated like lerobot does (count-weighted mean, pooled
variance, min of mins, max of maxes, count-weighted quantiles).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smolvla_train.lerobot_format import QUANTILES

#: Frames sampled per episode for image statistics and their target size (longest side, pixels).
IMAGE_STATS_MAX_FRAMES = 100
IMAGE_STATS_SIZE = 150


def vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """values: (N, D) or (N,) -> stats with arrays of shape (D,) (count (1,))."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if len(x) == 0:
        raise ValueError("no values for statistics")
    out = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([len(x)], dtype=np.int64),
    }
    for name, q in QUANTILES.items():
        out[name] = np.quantile(x, q, axis=0)
    return out


def sample_indices(n: int, max_frames: int = IMAGE_STATS_MAX_FRAMES) -> set[int]:
    if n <= max_frames:
        return set(range(n))
    return {int(round(i)) for i in np.linspace(0, n - 1, max_frames)}


def downsample(image: np.ndarray, size: int = IMAGE_STATS_SIZE) -> np.ndarray:
    step = max(1, int(np.ceil(max(image.shape[:2]) / size)))
    return image[::step, ::step]


def _hist_quantile(cdf: np.ndarray, n: int, q: float) -> float:
    """numpy's default (linear) quantile of n values 0..255 given their cumulative histogram."""
    h = (n - 1) * q
    lo, hi = int(np.floor(h)), int(np.ceil(h))
    v_lo = float(np.searchsorted(cdf, lo, side="left"))  # value of the lo-th smallest element
    v_hi = float(np.searchsorted(cdf, hi, side="left"))
    return v_lo + (h - lo) * (v_hi - v_lo)


def image_stats(images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """images: sampled (H, W, 3) uint8 frames -> per-channel stats of shape (3, 1, 1) in [0, 1].

    Computed from 256-bin histograms per channel, which gives exactly what numpy would on the pixel values
    (mean, population std, min, max, linear-interpolated quantiles), without sorting millions of floats.
    """
    if not images:
        raise ValueError("no images for statistics")
    hist = np.zeros((3, 256), dtype=np.int64)
    for im in images:
        px = np.asarray(im, dtype=np.uint8).reshape(-1, 3)
        for c in range(3):
            hist[c] += np.bincount(px[:, c], minlength=256)
    levels = np.arange(256, dtype=np.float64)
    out: dict[str, np.ndarray] = {k: np.zeros((3, 1, 1)) for k in ("min", "max", "mean", "std", *QUANTILES)}
    for c in range(3):
        n = int(hist[c].sum())
        nz = np.nonzero(hist[c])[0]
        mean = float((hist[c] * levels).sum() / n)
        var = float((hist[c] * (levels - mean) ** 2).sum() / n)
        cdf = np.cumsum(hist[c]) - 1  # cdf[v] = index of the last element with value v in sorted order
        out["min"][c] = nz[0] / 255.0
        out["max"][c] = nz[-1] / 255.0
        out["mean"][c] = mean / 255.0
        out["std"][c] = np.sqrt(var) / 255.0
        for name, q in QUANTILES.items():
            out[name][c] = _hist_quantile(cdf, n, q) / 255.0
    out["count"] = np.array([len(images)], dtype=np.int64)
    return out


def aggregate(stats: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine per-episode stats (count-weighted; quantiles as count-weighted means)."""
    stats = [s for s in stats if s]
    if not stats:
        raise ValueError("no statistics to aggregate")
    counts = np.array([float(np.asarray(s["count"]).reshape(-1)[0]) for s in stats])
    w = counts / counts.sum()

    def wsum(key: str) -> np.ndarray:
        return sum(wi * np.asarray(s[key], dtype=np.float64) for wi, s in zip(w, stats))

    mean = wsum("mean")
    var = sum(
        wi
        * (
            np.asarray(s["std"], dtype=np.float64) ** 2
            + (np.asarray(s["mean"], dtype=np.float64) - mean) ** 2
        )
        for wi, s in zip(w, stats)
    )
    out = {
        "min": np.min([np.asarray(s["min"], dtype=np.float64) for s in stats], axis=0),
        "max": np.max([np.asarray(s["max"], dtype=np.float64) for s in stats], axis=0),
        "mean": mean,
        "std": np.sqrt(var),
        "count": np.array([int(counts.sum())], dtype=np.int64),
    }
    for name in QUANTILES:
        if all(name in s for s in stats):
            out[name] = wsum(name)
    return out


def to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}
