"""Data, ground truth and peers for the LSHIndex benchmarks.

The data set of the design target: 2e5 points and 2000 queries in 128-D, drawn
from Gaussian clusters (:func:`clustered`). Shared by the asv suite
(``neighbors_lsh.py``, ``_peers.py``) and ``bench/lsh_curve.py``.
"""

from __future__ import annotations

import functools
import importlib
import time

import numpy as np

N, N_QUERIES, DIM, K = 200_000, 2000, 128, 10
N_CLUSTERS, SPREAD = 1000, 0.5

# The tuned dlkernels configuration (bench/lsh_curve.py sweeps around it): at least
# 0.9 recall@10 on clustered() with the fewest seconds per query.
DLKERNELS_L2 = {"n_tables": 20, "n_bits": 12, "bucket_width": 20.0, "n_probes": 16}


def clustered(n: int = N, n_queries: int = N_QUERIES, dim: int = DIM,
              n_clusters: int = N_CLUSTERS, spread: float = SPREAD, seed: int = 0):
    """Points and queries from the same mixture of Gaussian clusters (float32).

    Cluster centres are drawn from N(0, I); each point picks a cluster
    uniformly and adds ``spread * N(0, I)``. Queries are new draws, not
    database points. At the default ``spread = 0.5`` in 128-D, two points of a
    cluster are typically ``0.5 * sqrt(2 * 128) = 8`` apart and two centres
    ``sqrt(2 * 128) = 16``: clusters are wide (their points are half as far
    apart as the centres are) and about 200 points each, so a query's 10
    nearest neighbours are in its cluster but barely closer than the rest of
    it (its 10th neighbour is at about 7.3, a random point at about 17.9:
    relative contrast 2.5, He et al., ICML 2012).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    labels = rng.integers(0, n_clusters, n + n_queries)
    points = centres[labels] + spread * rng.standard_normal((n + n_queries, dim))
    points = points.astype(np.float32)
    return points[:n], points[n:]


@functools.lru_cache(maxsize=4)
def data(spread: float = SPREAD):
    return clustered(spread=spread)


@functools.lru_cache(maxsize=4)
def ground_truth(spread: float = SPREAD) -> np.ndarray:
    """Exact ``K`` nearest ids of every query (numpy, float64 distances)."""
    X, Q = data(spread)
    X64 = X.astype(np.float64)
    sq = np.einsum("ij,ij->i", X64, X64)
    out = np.empty((Q.shape[0], K), dtype=np.int64)
    for start in range(0, Q.shape[0], 250):
        q = Q[start:start + 250].astype(np.float64)
        d2 = sq[None, :] - 2.0 * (q @ X64.T)
        part = np.argpartition(d2, K, axis=1)[:, :K]
        order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1)
        out[start:start + 250] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true ``K`` nearest ids among those found."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth))
    return hits / truth.size


def require(module: str):
    """Import an optional peer, or skip (asv's convention: NotImplementedError)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NotImplementedError(f"{module} is not installed") from None


# -- searchers: build(n_threads, **params) -> search(Q) -> ids (m, K) ----------------------

def dlkernels_lsh(X, n_threads, n_tables, n_bits, bucket_width, n_probes, metric="l2"):
    from dlkernels.neighbors import LSHIndex

    index = LSHIndex(X.shape[1], metric=metric, n_tables=n_tables, n_bits=n_bits,
                     bucket_width=bucket_width, rng=0)
    index.add(X, n_threads=n_threads)
    return lambda Q: index.query(Q, k=K, n_probes=n_probes, n_threads=n_threads)[1]


def faiss_flat(X, n_threads):
    faiss = require("faiss")
    faiss.omp_set_num_threads(n_threads)
    index = faiss.IndexFlatL2(X.shape[1])
    index.add(X)

    def search(Q):
        faiss.omp_set_num_threads(n_threads)  # global to the process: set on every call
        return index.search(Q, K)[1]
    return search


def numpy_brute(X, n_threads, block: int = 256):
    """Exact search with BLAS: ``|x|^2 - 2 q.x`` per block of queries, then argpartition."""
    threadpoolctl = require("threadpoolctl")
    sq = np.einsum("ij,ij->i", X, X)

    def search(Q):
        out = np.empty((Q.shape[0], K), dtype=np.int64)
        with threadpoolctl.threadpool_limits(n_threads):
            for start in range(0, Q.shape[0], block):
                d2 = sq[None, :] - 2.0 * (Q[start:start + block] @ X.T)
                part = np.argpartition(d2, K, axis=1)[:, :K]
                order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1)
                out[start:start + block] = np.take_along_axis(part, order, axis=1)
        return out
    return search


def faiss_lsh(X, n_threads, nbits, k_factor=None):
    """faiss ``IndexLSH``: random rotation, sign bits, then a linear scan of all codes by
    Hamming distance; no re-ranking. ``k_factor``: wrap it in ``IndexRefineFlat``, which
    re-ranks the ``k_factor * K`` best by Hamming distance with exact L2 (keeps the vectors)."""
    faiss = require("faiss")
    faiss.omp_set_num_threads(n_threads)
    index = faiss.IndexLSH(X.shape[1], nbits, True, False)
    if k_factor is not None:
        index = faiss.IndexRefineFlat(index)  # keeps its own copy of the vectors
        index.k_factor = k_factor
    index.train(X)
    index.add(X)

    def search(Q):
        faiss.omp_set_num_threads(n_threads)
        return index.search(Q, K)[1]
    return search


def best_seconds(fn, repeats: int = 3) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
