"""asv benchmarks for dlkernels.neighbors.KDTree against pykdtree and SciPy's cKDTree.

Each class is parametrized over ``impl`` (dlkernels or a peer) and ``n_threads``,
as in ``sampling.py``; a peer that is not installed is skipped (n/a). The data
sets are those of the design targets:

* ``uniform3d``: 1e6 points uniform in the unit cube (3-D), 1e5 queries from
  the same distribution;
* ``clustered8d``: 1e6 points from 100 Gaussian clusters (sigma 0.02, centres
  uniform in the unit cube) in 8-D, 1e5 queries from the same mixture.

Threads: dlkernels takes ``n_threads``, SciPy ``workers``; pykdtree reads the
OpenMP thread count, set here with threadpoolctl around its calls (its build
is serial, its query parallel). SciPy builds on one thread.
``bench/kdtree_compare.py`` times the same calls in one process and prints
the ratios of the targets.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from ._peers import N_THREADS, _require

N_POINTS = 10**6
N_QUERIES = 10**5
K = 10
LEAFSIZE = 16  # every implementation's default
# Radii giving 10-30 neighbours per query (measured means: 19.5 uniform; 27 clustered,
# median 15: in 8-D the count grows as r**8, so its spread is wide).
RADIUS = {"uniform3d": 0.0168, "clustered8d": 0.03}
IMPLS = ["dlkernels", "pykdtree", "scipy"]
RADIUS_IMPLS = ["dlkernels", "scipy"]  # pykdtree has no radius search


@functools.lru_cache(maxsize=None)
def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(points, queries) of a benchmark data set, float64 (fixed seeds)."""
    if name == "uniform3d":
        rng = np.random.default_rng(0)
        return rng.random((N_POINTS, 3)), rng.random((N_QUERIES, 3))
    if name == "clustered8d":
        centres = np.random.default_rng(99).random((100, 8))

        def draw(n, seed):
            rng = np.random.default_rng(seed)
            return centres[rng.integers(0, 100, n)] + rng.normal(scale=0.02, size=(n, 8))

        return draw(N_POINTS, 1), draw(N_QUERIES, 2)
    raise ValueError(f"unknown data set {name!r}")


def _openmp_threads(n_threads: int):
    threadpoolctl = _require("threadpoolctl")
    return threadpoolctl.threadpool_limits(limits=n_threads, user_api="openmp")


class Implementation:
    """Build, k-NN and radius search of one library, all at ``n_threads``."""

    def __init__(self, impl: str, n_threads: int):
        self.impl, self.n_threads = impl, n_threads
        if impl == "dlkernels":
            from dlkernels.neighbors import KDTree

            self._cls = KDTree
        elif impl == "pykdtree":
            self._cls = _require("pykdtree.kdtree").KDTree
            _openmp_threads(1)  # fails early if threadpoolctl is missing
        elif impl == "scipy":
            self._cls = _require("scipy.spatial").cKDTree
        else:
            raise ValueError(f"unknown implementation {impl!r}")

    def _threads(self):
        return _openmp_threads(self.n_threads) if self.impl == "pykdtree" else contextlib.nullcontext()

    def build(self, points):
        with self._threads():
            if self.impl == "dlkernels":
                return self._cls(points, leafsize=LEAFSIZE, n_threads=self.n_threads)
            return self._cls(points, leafsize=LEAFSIZE)

    def knn(self, tree, queries, k: int = K):
        with self._threads():
            if self.impl == "dlkernels":
                return tree.query(queries, k=k, n_threads=self.n_threads)
            if self.impl == "scipy":
                return tree.query(queries, k=k, workers=self.n_threads)
            return tree.query(queries, k=k)

    def radius(self, tree, queries, r: float):
        if self.impl == "dlkernels":
            return tree.query_radius(queries, r, n_threads=self.n_threads)
        if self.impl == "scipy":
            return tree.query_ball_point(queries, r, workers=self.n_threads)
        raise NotImplementedError(f"{self.impl} has no radius search")


class _KNN:
    """k=10 neighbours of 1e5 queries among 1e6 points."""

    data: str
    params = [IMPLS, N_THREADS]
    param_names = ["impl", "n_threads"]
    timeout = 600  # the peers take tens of seconds on clustered 8-D data

    def setup(self, impl, n_threads):
        self.points, self.queries = dataset(self.data)
        self.lib = Implementation(impl, n_threads)
        self.tree = self.lib.build(self.points)

    def time_build(self, impl, n_threads):
        self.lib.build(self.points)

    def time_query(self, impl, n_threads):
        self.lib.knn(self.tree, self.queries)

    def time_build_and_query(self, impl, n_threads):
        self.lib.knn(self.lib.build(self.points), self.queries)


class KNNUniform3D(_KNN):
    """Target (a): build + query at least 1.3x faster than the faster peer."""

    data = "uniform3d"


class KNNClustered8D(_KNN):
    """Target (b): as (a), on clustered 8-D data."""

    data = "clustered8d"


class _Radius:
    """Points within a radius (about 20 per query) of 1e5 queries among 1e6 points."""

    data: str
    params = [RADIUS_IMPLS, N_THREADS]
    param_names = ["impl", "n_threads"]
    timeout = 600

    def setup(self, impl, n_threads):
        self.points, self.queries = dataset(self.data)
        self.lib = Implementation(impl, n_threads)
        self.tree = self.lib.build(self.points)

    def time_query(self, impl, n_threads):
        self.lib.radius(self.tree, self.queries, RADIUS[self.data])

    def time_build_and_query(self, impl, n_threads):
        self.lib.radius(self.lib.build(self.points), self.queries, RADIUS[self.data])


class RadiusUniform3D(_Radius):
    """Target (c): radius queries against cKDTree.query_ball_point."""

    data = "uniform3d"


class RadiusClustered8D(_Radius):
    """Radius queries on clustered 8-D data."""

    data = "clustered8d"


class KSweepUniform3D:
    """k-NN query time as k grows, on one thread: dlkernels keeps the k best in a
    sorted array up to k=48 and in its bounded heap above."""

    params = [IMPLS, [1, 10, 100]]
    param_names = ["impl", "k"]
    timeout = 600

    def setup(self, impl, k):
        self.points, self.queries = dataset("uniform3d")
        self.lib = Implementation(impl, 1)
        self.tree = self.lib.build(self.points)

    def time_query(self, impl, k):
        self.lib.knn(self.tree, self.queries, k)
