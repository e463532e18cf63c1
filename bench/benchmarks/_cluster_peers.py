"""Benchmark cases of dlkernels.cluster, registered in ``_peers``.

``kmeans_1d``: 1-D k-means, k = 256, of normally distributed float32 values
(network weights), N1D of them here; ``bench/kmeans_compare.py`` runs the
issue's sizes (2e6).

* ``dlkernels``: ``kmeans_1d(method="lloyd")`` (the default init, "binned");
* ``dlkernels-optimal``: ``kmeans_1d(x, 256)``, the exact optimum (the default);
* ``sklearn``: ``KMeans(256, n_init=1)`` on the values as one column;
* ``faiss``: ``faiss.Kmeans(1, 256)`` trained, then every value assigned.

``kmeans_1d_exact``: the exact optimum, k = 255 (the most ckmeans takes), of the
same values: ``dlkernels`` (``kmeans_1d``), ``ckmeans`` (Ckmeans.1d.dp's
dynamic programme, ``ckmeans.ckmeans``) and ``kmeans1d`` (``kmeans1d.cluster``,
SMAWK layers), each single-threaded but dlkernels.

``kmeans``: n-D k-means, k = 256, of standard normal float32 points in 32-D,
NND of them (the script: 2e5), ``max_iter=300, tol=1e-4`` everywhere:
``dlkernels`` (``kmeans``), ``sklearn`` (``KMeans(n_init=1)``), ``faiss``
(``faiss.Kmeans(d, 256, niter=300)``, then an assignment of every point).

``kmeans_sampled``: the same points trained on a sample of 256 points per
centroid, as faiss does by default: ``dlkernels``
(``kmeans(max_points_per_centroid=256)``, ``max_iter=300, tol=1e-4``) and
``faiss`` (``faiss.Kmeans(d, 256, niter=300)``). At NND = 5e4 points the
sample is every point; the script runs 2e5.

Thread counts: ``n_threads`` for dlkernels, a threadpoolctl limit (OpenMP and
BLAS) for scikit-learn, ``faiss.omp_set_num_threads`` for faiss.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from ._peers import _register, _require

K = 256
K_EXACT = 255
N1D = 200_000
NND, DIM = 50_000, 32
FAISS_SAMPLE = 256  # faiss's default max_points_per_centroid


@functools.lru_cache(maxsize=None)
def values_1d(n: int, kind: str = "normal") -> np.ndarray:
    rng = np.random.default_rng(11)
    x = rng.standard_normal(n)
    if kind == "90% zeros":
        x[rng.random(n) < 0.9] = 0.0
    return x.astype(np.float32)


@functools.lru_cache(maxsize=None)
def points_nd(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(12).standard_normal((n, d)).astype(np.float32)


def inertia_of(x, labels, centers) -> float:
    diff = np.asarray(x, dtype=np.float64) - np.asarray(centers, dtype=np.float64)[labels]
    return float(np.sum(diff * diff))


def dlkernels_1d(x, n_threads, method="lloyd", k=K):
    from dlkernels.cluster import kmeans_1d

    return lambda: kmeans_1d(x, k, method=method, n_threads=n_threads).inertia


def ckmeans_exact(x, k=K_EXACT):
    ckmeans = _require("ckmeans")

    def run():
        clusters = ckmeans.ckmeans(x, k)
        return float(sum(np.sum((c - c.mean()) ** 2) for c in clusters))
    return run


def kmeans1d_exact(x, k=K_EXACT):
    kmeans1d = _require("kmeans1d")

    def run():
        labels, centroids = kmeans1d.cluster(x, k)
        return inertia_of(x, np.asarray(labels), centroids)
    return run


def sklearn_kmeans(X, n_threads, k=K):
    _require("sklearn")
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    def run():
        with threadpool_limits(n_threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its own ConvergenceWarning on duplicate points
            return KMeans(k, n_init=1, max_iter=300, tol=1e-4, random_state=0).fit(X).inertia_
    return run


def faiss_kmeans(X, n_threads, niter=25, k=K):
    faiss = _require("faiss")

    def run():
        faiss.omp_set_num_threads(n_threads)
        km = faiss.Kmeans(X.shape[1], k, niter=niter, seed=0, max_points_per_centroid=FAISS_SAMPLE)
        km.train(X)
        _, labels = km.index.search(X, 1)
        return inertia_of(X, labels[:, 0], km.centroids)
    return run


def dlkernels_nd(X, n_threads, sample=None):
    from dlkernels.cluster import kmeans

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter, as scikit-learn's above
            return kmeans(X, K, max_iter=300, tol=1e-4, max_points_per_centroid=sample, rng=0,
                          n_threads=n_threads).inertia
    return run


_register("kmeans_1d", "dlkernels", threaded=True)(lambda t: dlkernels_1d(values_1d(N1D), t))
_register("kmeans_1d", "dlkernels-optimal", threaded=True)(
    lambda t: dlkernels_1d(values_1d(N1D), t, method="optimal"))
_register("kmeans_1d", "sklearn", threaded=True)(lambda t: sklearn_kmeans(values_1d(N1D)[:, None], t))
_register("kmeans_1d", "faiss", threaded=True)(lambda t: faiss_kmeans(values_1d(N1D)[:, None], t))
_register("kmeans_1d_exact", "dlkernels", threaded=True)(
    lambda t: dlkernels_1d(values_1d(N1D), t, method="optimal", k=K_EXACT))
_register("kmeans_1d_exact", "ckmeans")(lambda: ckmeans_exact(values_1d(N1D)))
_register("kmeans_1d_exact", "kmeans1d")(lambda: kmeans1d_exact(values_1d(N1D)))
_register("kmeans", "dlkernels", threaded=True)(lambda t: dlkernels_nd(points_nd(NND, DIM), t))
_register("kmeans", "sklearn", threaded=True)(lambda t: sklearn_kmeans(points_nd(NND, DIM), t))
_register("kmeans", "faiss", threaded=True)(lambda t: faiss_kmeans(points_nd(NND, DIM), t, niter=300))
_register("kmeans_sampled", "dlkernels", threaded=True)(
    lambda t: dlkernels_nd(points_nd(NND, DIM), t, sample=FAISS_SAMPLE))
_register("kmeans_sampled", "faiss", threaded=True)(
    lambda t: faiss_kmeans(points_nd(NND, DIM), t, niter=300))
