"""Slow references for the cluster tests, as fixtures (the tests import nothing
from each other in importlib mode)."""

import itertools
from fractions import Fraction

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



def _exact_runs(x, w):
    """Distinct values with positive weight and their total weights, as Fractions."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    totals = {}
    for value, weight in zip(x.tolist(), w.tolist()):
        if weight > 0:
            totals[value] = totals.get(value, Fraction(0)) + Fraction(weight)
    values = sorted(totals)
    return [Fraction(v) for v in values], [totals[v] for v in values]


def _sse(values, weights):
    W = sum(weights)
    mean = sum(w * v for v, w in zip(values, weights)) / W
    return sum(w * (v - mean) ** 2 for v, w in zip(values, weights))


def exact_optimum(x, k, w=None):
    """The least inertia into k clusters in exact rational arithmetic: the O(k m^2)
    dynamic programme over the sorted distinct values, every sum a Fraction."""
    v, ww = _exact_runs(x, w)
    m = len(v)
    cost = {(a, b): _sse(v[a:b], ww[a:b]) for a in range(m) for b in range(a + 1, m + 1)}
    best = {i: cost[0, i] for i in range(1, m + 1)}
    for j in range(2, k + 1):
        best = {i: min(best[l] + cost[l, i] for l in range(j - 1, i)) for i in range(j, m + 1)}
    return best[m]


def exact_cost(x, labels, w=None):
    """Exact inertia of a labelling, each cluster around its exact weighted mean."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    labels = np.asarray(labels)
    total = Fraction(0)
    for j in np.unique(labels[w > 0]):
        members = (labels == j) & (w > 0)
        total += _sse([Fraction(v) for v in x[members].tolist()],
                      [Fraction(v) for v in w[members].tolist()])
    return total


def exact_inertia(x, centers, labels, w=None):
    """Exact sum of w (x - centre)**2 for the float centres returned."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)[np.asarray(labels)]
    return sum(Fraction(b) * (Fraction(a) - Fraction(d)) ** 2
               for a, b, d in zip(x.tolist(), w.tolist(), c.tolist()))


@pytest.fixture(name="exact")
def exact_fixture():
    """Exact rational references: ``optimum(x, k, w)``, ``cost(x, labels, w)``,
    ``inertia(x, centers, labels, w)``."""
    class Exact:
        optimum = staticmethod(exact_optimum)
        cost = staticmethod(exact_cost)
        inertia = staticmethod(exact_inertia)
    return Exact


@pytest.fixture(name="brute_force")
def brute_force_fixture():
    """``brute_force(x, k, w=None)``: the least inertia over all partitions (small n)."""
    return brute_force


@pytest.fixture(name="check_consistent")
def check_consistent_fixture():
    """``check_consistent(x, res, k, w=None)``: sorted centres, nearest labels, inertia."""
    return check_consistent
