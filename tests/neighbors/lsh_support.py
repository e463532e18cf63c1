"""Shared references and helpers of the LSHIndex tests."""

import re

import numpy as np
import pytest

METRICS = ["cosine", "l2"]
DTYPES = ["float32", "float64"]
HASHINGS = ["kmeans", "random"]


def brute_distances(X, q, metric):
    X = np.asarray(X, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if metric == "l2":
        return np.sqrt(((X - q) ** 2).sum(axis=1))
    return 1.0 - (X @ q) / (np.linalg.norm(X, axis=1) * np.linalg.norm(q))


def tolerance(dtype, scale=1.0):
    return dict(rtol=2e-5 if dtype == "float32" else 1e-12,
                atol=(2e-5 if dtype == "float32" else 1e-12) * scale)


def assert_topk_of(index, Q, dist, ids, k, pool_ids, X_by_id):
    """Each row equals the brute-force top-k of ``pool_ids[i]``: distances match,
    ids hold the right distances, padding where the pool is short."""
    metric, dtype = index.metric, index.dtype.name
    for i, q in enumerate(np.asarray(Q)):
        pool = np.asarray(pool_ids[i], dtype=np.int64)
        d = brute_distances(X_by_id(pool), q, metric) if pool.size else np.zeros(0)
        kk = min(k, pool.size)
        want = np.sort(d)[:kk]
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        np.testing.assert_allclose(dist[i, :kk], want, **tolerance(dtype, scale))
        assert np.all(np.diff(dist[i, :kk]) >= 0)
        found = ids[i, :kk]
        assert len(set(found.tolist())) == kk and set(found.tolist()) <= set(pool.tolist())
        np.testing.assert_allclose(brute_distances(X_by_id(found), q, metric), dist[i, :kk],
                                   **tolerance(dtype, scale))
        assert np.all(ids[i, kk:] == -1) and np.all(np.isinf(dist[i, kk:]))


def exact_ids(X, Q, k, metric):
    """Ids (rows of X) of the exact k nearest, float64, ties by row."""
    return np.array([np.argsort(brute_distances(X, q, metric), kind="stable")[:k] for q in Q])


def recall(found, truth):
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))


def clustered(rng, n, dim, n_clusters=20, spread=0.3):
    """Points around fixed centres (the same for the same n_clusters and dim, so that
    queries drawn by a second call come from the clusters of the data)."""
    centres = np.random.default_rng(1000 * n_clusters + dim).standard_normal((n_clusters, dim))
    return centres[rng.integers(0, n_clusters, n)] + spread * rng.standard_normal((n, dim))


def low_rank(rng, n, dim, rank=6, noise=0.05):
    """Points near a fixed ``rank``-dimensional subspace (as embeddings are)."""
    basis = np.random.default_rng(7 * dim + rank).standard_normal((rank, dim))
    return rng.standard_normal((n, rank)) @ basis + noise * rng.standard_normal((n, dim))


def state(index):
    """Everything observable: for before/after comparisons of failed calls."""
    if len(index) == 0:
        return {"len": 0, "repr": repr(index)}
    Q = index.vectors[:7]
    d, i = index.query(Q, k=5, n_probes=2, n_threads=1)
    c, off = index.candidates(Q, n_probes=2, n_threads=1)
    return {"len": len(index), "ids": index.ids, "vectors": index.vectors,
            "repr": repr(index), "dist": d, "found": i, "cand": c, "off": off,
            "hash": index.hash(Q), "settings": (index.n_probes, index.max_candidates)}


def assert_raises_unchanged(index, call, exc, name):
    before = state(index)
    with pytest.raises(exc, match=re.escape(name)):
        call()
    np.testing.assert_equal(state(index), before)


def family(hashing, metric, **kwargs):
    """Constructor options of a small index of either family."""
    if hashing == "random":
        kwargs.setdefault("n_tables", 4)
        kwargs.setdefault("n_bits", 8)
    return dict(metric=metric, hashing=hashing, **kwargs)
