"""Slow references for the cluster tests, as fixtures (the tests import nothing
from each other in importlib mode)."""

import itertools

import numpy as np
import pytest


def brute_force(x, k, w=None):
    """Least inertia over every partition of the sorted distinct values into k runs."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    keep = w > 0
    values = np.unique(x[keep])
    weights = np.array([w[keep][x[keep] == u].sum() for u in values])
    m, best = values.size, np.inf
    for cuts in itertools.combinations(range(1, m), k - 1):
        edges = (0, *cuts, m)
        total = 0.0
        for a, b in zip(edges[:-1], edges[1:]):
            mean = np.average(values[a:b], weights=weights[a:b])
            total += float(np.sum(weights[a:b] * (values[a:b] - mean) ** 2))
        best = min(best, total)
    return best


def recomputed_inertia(x, res, w=None):
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    c = np.asarray(res.centers, dtype=np.float64)
    return float(np.sum(w * (x - c[np.asarray(res.labels)]) ** 2))


def check_consistent(x, res, k, w=None):
    """Sorted centres, labels = nearest centre, inertia = what the labels give."""
    from dlkernels.cluster import KMeansResult

    assert isinstance(res, KMeansResult)
    centers, labels = np.asarray(res.centers), np.asarray(res.labels)
    assert centers.shape == (k,) and labels.shape == (len(x),) and labels.dtype == np.int64
    assert np.all(np.diff(centers) >= 0)
    x64 = np.asarray(x, dtype=np.float64)
    dist = (x64[:, None] - centers.astype(np.float64)[None, :]) ** 2
    np.testing.assert_allclose(dist[np.arange(len(x)), labels], dist.min(axis=1), rtol=1e-9, atol=1e-12)
    assert res.inertia == pytest.approx(recomputed_inertia(x, res, w), rel=1e-9, abs=1e-12)



@pytest.fixture(name="brute_force")
def brute_force_fixture():
    """``brute_force(x, k, w=None)``: the least inertia over all partitions (small n)."""
    return brute_force


@pytest.fixture(name="check_consistent")
def check_consistent_fixture():
    """``check_consistent(x, res, k, w=None)``: sorted centres, nearest labels, inertia."""
    return check_consistent
