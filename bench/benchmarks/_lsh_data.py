"""Data, ground truth and searchers for the LSHIndex benchmarks.

Three sets of 2e5 vectors, each with 500 *tuning* queries (what ``LSHIndex.tune``
and hnswlib's ``ef`` are chosen on) and 2000 fresh *test* queries (what recall
and speed are measured on), all drawn from the same distribution:

* ``clustered``: 128-D, 1000 Gaussian clusters (centres N(0, I), spread 0.5);
  relative contrast 2.3 at 5e4 vectors (He et al., ICML 2012: mean distance to
  a random point over the distance to the 10th neighbour);
* ``low-contrast``: 128-D Gaussian whose i-th principal axis has variance
  1 / i, in random directions: no clusters, relative contrast 1.5 (1.50 at
  5e4 vectors, 1.55 at 2e5);
* ``cosine``: unit-normalised 128-D embeddings, rank 32 plus noise (latent
  variances 1/i, noise 7% of the norm), searched by cosine distance.

Shared by the asv suite (``neighbors_lsh.py``, ``_peers.py``) and
``bench/lsh_curve.py``. Each searcher builder returns ``(search, info)``:
``search(Q)`` gives the ids of the K nearest, ``info`` a dict of what it cost.
"""

from __future__ import annotations

import functools
import importlib
import time

import numpy as np

N, N_TUNE, N_TEST, DIM, K = 200_000, 500, 2000, 128, 10
SETS = ("clustered", "low-contrast", "cosine")
TARGET = 0.95
# hnswlib and usearch construction (the settings), faiss HNSW the same.
GRAPH_M, GRAPH_EF_CONSTRUCTION = 16, 200


def make_set(name: str, n: int = N, seed: int = 0):
    """``(X, Q_tune, Q_test, metric)``: float32 arrays from one distribution."""
    rng = np.random.default_rng(seed)
    total = n + N_TUNE + N_TEST
    if name == "clustered":
        centres = rng.standard_normal((1000, DIM))
        points = centres[rng.integers(0, 1000, total)] + 0.5 * rng.standard_normal((total, DIM))
        metric = "l2"
    elif name == "low-contrast":
        scale = np.arange(1, DIM + 1) ** -0.5
        rotation, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
        points = (rng.standard_normal((total, DIM)) * scale) @ rotation
        metric = "l2"
    elif name == "cosine":
        rank = 32
        basis = rng.standard_normal((rank, DIM)) / np.sqrt(rank)
        latent = rng.standard_normal((total, rank)) * np.arange(1, rank + 1) ** -0.5
        points = latent @ basis + 0.3 * rng.standard_normal((total, DIM)) / np.sqrt(DIM)
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        metric = "cosine"
    else:
        raise ValueError(f"no data set {name!r}; one of {SETS}")
    points = points.astype(np.float32)
    return points[:n], points[n:n + N_TUNE], points[n + N_TUNE:], metric


@functools.lru_cache(maxsize=3)
def data(name: str, n: int = N):
    return make_set(name, n)


def exact(X: np.ndarray, Q: np.ndarray, metric: str, k: int = K) -> np.ndarray:
    """Ids of the exact k nearest of each query (numpy, float64)."""
    X64 = X.astype(np.float64)
    sq = np.einsum("ij,ij->i", X64, X64) if metric == "l2" else 0.0
    out = np.empty((Q.shape[0], k), dtype=np.int64)
    for start in range(0, Q.shape[0], 250):
        q = Q[start:start + 250].astype(np.float64)
        score = sq - 2.0 * (q @ X64.T)      # cosine: unit vectors, rank by -q.x
        part = np.argpartition(score, k, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(score, part, axis=1), axis=1)
        out[start:start + 250] = np.take_along_axis(part, order, axis=1)
    return out


@functools.lru_cache(maxsize=6)
def truth(name: str, which: str, n: int = N) -> np.ndarray:
    X, Q_tune, Q_test, metric = data(name, n)
    return exact(X, Q_tune if which == "tune" else Q_test, metric)


def relative_contrast(name: str, n: int = N, queries: int = 200) -> float:
    """Mean distance to a random point over mean distance to the K-th neighbour."""
    X, _, Q, metric = data(name, n)
    ids = truth(name, "test", n)[:queries, -1]
    q = Q[:queries].astype(np.float64)

    def dist(a, b):
        if metric == "l2":
            return np.linalg.norm(a - b, axis=-1)
        return 1.0 - (a * b).sum(-1)
    far = dist(q[:, None, :], X[np.random.default_rng(1).integers(0, len(X), 500)][None])
    return float(far.mean() / dist(q, X[ids].astype(np.float64)).mean())


def recall(found: np.ndarray, want: np.ndarray) -> float:
    """Mean fraction of the true K nearest ids among those found."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, want))
    return hits / want.size


def require(module: str):
    """Import an optional peer, or skip (asv's convention: NotImplementedError)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NotImplementedError(f"{module} is not installed") from None


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def best_seconds(fn, repeats: int = 3) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls."""
    return min(timed(fn)[1] for _ in range(repeats))


def first_reaching(values, recall_of, target: float = TARGET):
    """The first of ``values`` whose recall (on the tuning queries) reaches ``target``,
    else the last."""
    for value in values:
        if recall_of(value) >= target:
            return value
    return values[-1]


# -- searchers: build(name, n_threads) -> (search, settings, info) --------------------------------

class Searcher:
    """A built index: ``search(Q)`` -> ids; ``sweep`` settings for a curve;
    ``set(value)`` picks one; ``add(X_new)`` appends."""

    label = ""

    def __init__(self, X, metric, n_threads):
        self.metric, self.n_threads = metric, n_threads
        (_, self.build_seconds) = timed(lambda: self.build(X))
        self.tune_seconds = 0.0

    def tune(self, Q, want, target=TARGET):
        """Settings reaching ``target`` on the tuning queries, chosen as a user would."""
        start = time.perf_counter()
        value = first_reaching(self.sweep, lambda v: (self.set(v), recall(self.search(Q), want))[1],
                               target)
        self.set(value)
        self.tune_seconds = time.perf_counter() - start
        return value


class DlkernelsLSH(Searcher):
    label = "dlkernels LSHIndex"
    sweep = (0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, 362, 512)

    def build(self, X):
        from dlkernels.neighbors import LSHIndex

        self.index = LSHIndex(X.shape[1], metric=self.metric, rng=0)
        self.index.add(X, n_threads=self.n_threads)

    def tune(self, Q, want, target=TARGET):
        start = time.perf_counter()
        self.chosen = self.index.tune(Q, k=K, target_recall=target, n_threads=self.n_threads)
        self.tune_seconds = time.perf_counter() - start
        return f"n_probes={self.chosen['n_probes']} max_candidates={self.chosen['max_candidates']}"

    def set(self, value):
        self.index.n_probes, self.index.max_candidates = value, None

    def search(self, Q):
        return self.index.query(Q, k=K, n_threads=self.n_threads)[1]

    def add(self, X, ids):
        self.index.add(X, ids=ids, n_threads=self.n_threads)


class Hnswlib(Searcher):
    label = "hnswlib HNSW"
    sweep = (10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 160, 200, 256)

    def build(self, X):
        hnswlib = require("hnswlib")
        self.index = hnswlib.Index(space="l2" if self.metric == "l2" else "cosine",
                                   dim=X.shape[1])
        self.index.init_index(max_elements=X.shape[0] + 20_000, M=GRAPH_M,
                              ef_construction=GRAPH_EF_CONSTRUCTION, random_seed=0)
        self.index.set_num_threads(self.n_threads)
        self.index.add_items(X, np.arange(X.shape[0]))

    def set(self, value):
        self.index.set_ef(value)

    def search(self, Q):
        return self.index.knn_query(Q, k=K, num_threads=self.n_threads)[0].astype(np.int64)

    def add(self, X, ids):
        self.index.add_items(X, ids, num_threads=self.n_threads)


class Usearch(Searcher):
    label = "usearch HNSW"
    sweep = Hnswlib.sweep

    def build(self, X):
        usearch = require("usearch.index")
        self.index = usearch.Index(ndim=X.shape[1], metric="l2sq" if self.metric == "l2" else "cos",
                                   dtype="f32", connectivity=GRAPH_M,
                                   expansion_add=GRAPH_EF_CONSTRUCTION)
        self.index.add(np.arange(X.shape[0]), X, threads=self.n_threads)

    def set(self, value):
        self.index.expansion_search = value

    def search(self, Q):
        return self.index.search(Q, K, threads=self.n_threads).keys.astype(np.int64)

    def add(self, X, ids):
        self.index.add(ids, X, threads=self.n_threads)


class _Faiss(Searcher):
    def _faiss(self):
        faiss = require("faiss")
        faiss.omp_set_num_threads(self.n_threads)   # global to the process: set every call
        return faiss

    def _unit(self, X):
        return X if self.metric == "l2" else X / np.linalg.norm(X, axis=1, keepdims=True)

    def search(self, Q):
        self._faiss()
        return self.index.search(np.ascontiguousarray(self._unit(Q)), K)[1]

    def add(self, X, ids):
        self._faiss()
        self.index.add(np.ascontiguousarray(self._unit(X)))


class FaissFlat(_Faiss):
    label = "faiss IndexFlatL2"
    sweep = (0,)     # exact: nothing to tune

    def build(self, X):
        faiss = self._faiss()
        self.index = faiss.IndexFlatL2(X.shape[1])      # unit vectors: l2 ranks as cosine
        self.index.add(np.ascontiguousarray(self._unit(X)))

    def set(self, value):
        pass


class FaissHNSW(_Faiss):
    label = "faiss HNSW"
    sweep = Hnswlib.sweep

    def build(self, X):
        faiss = self._faiss()
        self.index = faiss.IndexHNSWFlat(X.shape[1], GRAPH_M)   # unit vectors: l2 ranks as cosine
        self.index.hnsw.efConstruction = GRAPH_EF_CONSTRUCTION
        self.index.add(np.ascontiguousarray(self._unit(X)))

    def set(self, value):
        self.index.hnsw.efSearch = value


class FaissIVF(_Faiss):
    label = "faiss IVF-Flat"
    sweep = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)

    def build(self, X):
        faiss = self._faiss()
        # About 200 vectors per list (1024 lists for 2e5), trained on 64 per list.
        n_lists = 1 << max(4, int(np.log2(X.shape[0] / 200) + 0.5))
        quantizer = faiss.IndexFlatL2(X.shape[1])
        self.index = faiss.IndexIVFFlat(quantizer, X.shape[1], n_lists)
        x = np.ascontiguousarray(self._unit(X))
        sample = np.random.default_rng(0).choice(len(x), min(len(x), 64 * n_lists),
                                                 replace=False)
        self.index.train(x[sample])
        self.index.add(x)

    def set(self, value):
        self.index.nprobe = value


SEARCHERS = {"dlkernels": DlkernelsLSH, "hnswlib": Hnswlib, "usearch": Usearch,
             "faiss-flat": FaissFlat, "faiss-hnsw": FaissHNSW, "faiss-ivf": FaissIVF}


@functools.lru_cache(maxsize=8)
def tuned(impl: str, name: str, n_threads: int, n: int = N) -> Searcher:
    """A searcher on data set ``name``, tuned for recall TARGET on its tuning queries."""
    X, Q_tune, _, metric = data(name, n)
    searcher = SEARCHERS[impl](X, metric, n_threads)
    searcher.tune(Q_tune, truth(name, "tune", n))
    return searcher
