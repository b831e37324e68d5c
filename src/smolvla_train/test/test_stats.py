"""Dataset statistics against numpy on the raw values (the histogram path for images must agree exactly)."""

from __future__ import annotations

import numpy as np

from smolvla_train.stats import aggregate, image_stats, vector_stats


def test_image_stats_from_histograms_equal_numpy_on_the_pixels() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        hi = int(rng.integers(2, 256))
        imgs = [
            rng.integers(0, hi, (int(rng.integers(1, 40)), int(rng.integers(1, 40)), 3), dtype=np.uint8)
            for _ in range(int(rng.integers(1, 6)))
        ]
        got = image_stats(imgs)
        px = np.concatenate([i.reshape(-1, 3) for i in imgs]).astype(np.float64) / 255.0
        for name, q in (("q01", 0.01), ("q10", 0.1), ("q50", 0.5), ("q90", 0.9), ("q99", 0.99)):
            np.testing.assert_allclose(got[name].reshape(3), np.quantile(px, q, axis=0), atol=1e-12)
        np.testing.assert_allclose(got["mean"].reshape(3), px.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(got["std"].reshape(3), px.std(axis=0), atol=1e-12)
        np.testing.assert_allclose(got["min"].reshape(3), px.min(axis=0))
        np.testing.assert_allclose(got["max"].reshape(3), px.max(axis=0))
        assert got["count"].tolist() == [len(imgs)] and got["mean"].shape == (3, 1, 1)


def test_aggregate_mean_and_std_equal_the_pooled_values() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (30, 4)), rng.normal(3, 2, (50, 4))
    agg = aggregate([vector_stats(a), vector_stats(b)])
    both = np.concatenate([a, b])
    np.testing.assert_allclose(agg["mean"], both.mean(axis=0))
    np.testing.assert_allclose(agg["std"], both.std(axis=0))
    np.testing.assert_allclose(agg["min"], both.min(axis=0))
    assert agg["count"].tolist() == [80]
