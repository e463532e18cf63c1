"""Benchmark cases of dlkernels.cluster, registered in ``_peers``.

``kmeans_1d``: 1-D k-means, k = 256, of normally distributed float32 values
(network weights), N1D of them here; ``bench/kmeans_compare.py`` runs the
issue's size (2e6).

* ``dlkernels``: ``kmeans_1d(method="lloyd", init="k-means++")``;
* ``dlkernels-optimal``: ``kmeans_1d(method="optimal")``, the exact optimum;
* ``sklearn``: ``KMeans(256, n_init=1)`` on the values as one column;
* ``faiss``: ``faiss.Kmeans(1, 256)`` trained, then every value assigned.

``kmeans``: n-D k-means, k = 256, of standard normal float32 points in 32-D,
NND of them (the script: 2e5), ``max_iter=300, tol=1e-4`` everywhere:
``dlkernels`` (``kmeans``), ``sklearn`` (``KMeans(n_init=1)``), ``faiss``
(``faiss.Kmeans(d, 256, niter=300)``, then an assignment of every point).

Thread counts: ``n_threads`` for dlkernels, a threadpoolctl limit (OpenMP and
BLAS) for scikit-learn, ``faiss.omp_set_num_threads`` for faiss.
"""

from __future__ import annotations

import functools

import numpy as np

from ._peers import _register, _require

K = 256
N1D = 200_000
NND, DIM = 50_000, 32


@functools.lru_cache(maxsize=None)
def weights_1d(n: int) -> np.ndarray:
    return np.random.default_rng(11).standard_normal(n).astype(np.float32)


@functools.lru_cache(maxsize=None)
def points_nd(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(12).standard_normal((n, d)).astype(np.float32)


def dlkernels_1d(x, n_threads, method="lloyd"):
    from dlkernels.cluster import kmeans_1d

    def run():
        res = kmeans_1d(x, K, method=method, init="k-means++", rng=0, n_threads=n_threads)
        return res.inertia
    return run


def sklearn_kmeans(X, n_threads):
    _require("sklearn")
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    def run():
        with threadpool_limits(n_threads):
            return KMeans(K, n_init=1, max_iter=300, tol=1e-4, random_state=0).fit(X).inertia_
    return run


def faiss_kmeans(X, n_threads, niter=25):
    faiss = _require("faiss")

    def run():
        faiss.omp_set_num_threads(n_threads)
        km = faiss.Kmeans(X.shape[1], K, niter=niter, seed=0)
        km.train(X)
        _, labels = km.index.search(X, 1)
        diff = X.astype(np.float64) - km.centroids[labels[:, 0]]
        return float(np.einsum("ij,ij->", diff, diff))
    return run


def dlkernels_nd(X, n_threads):
    from dlkernels.cluster import kmeans

    return lambda: kmeans(X, K, max_iter=300, tol=1e-4, rng=0, n_threads=n_threads).inertia


_register("kmeans_1d", "dlkernels", threaded=True)(lambda t: dlkernels_1d(weights_1d(N1D), t))
_register("kmeans_1d", "dlkernels-optimal", threaded=True)(
    lambda t: dlkernels_1d(weights_1d(N1D), t, method="optimal"))
_register("kmeans_1d", "sklearn", threaded=True)(lambda t: sklearn_kmeans(weights_1d(N1D)[:, None], t))
_register("kmeans_1d", "faiss", threaded=True)(lambda t: faiss_kmeans(weights_1d(N1D)[:, None], t))
_register("kmeans", "dlkernels", threaded=True)(lambda t: dlkernels_nd(points_nd(NND, DIM), t))
_register("kmeans", "sklearn", threaded=True)(lambda t: sklearn_kmeans(points_nd(NND, DIM), t))
_register("kmeans", "faiss", threaded=True)(lambda t: faiss_kmeans(points_nd(NND, DIM), t, niter=300))
