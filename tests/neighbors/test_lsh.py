"""LSHIndex: exact re-ranking against brute force, candidate sets, add/remove,
hash statistics (SimHash and p-stable collision probabilities), torch hashing,
thread invariance, persistence and bad input.

Statistical tests use a binomial test at the suite's false-alarm rate ALPHA
(tests/conftest.py): with correct hash functions each fails at a random seed
with probability ALPHA; at the fixed seed the outcome is deterministic.
"""

import math
import pickle
import re

import numpy as np
import pytest
from scipy import stats

from dlkernels.neighbors import LSHIndex, split_csr
from dlkernels._lib.persist import save_arrays

ALPHA = 1e-4  # as in tests/conftest.py
METRICS = ["cosine", "l2"]
DTYPES = ["float32", "float64"]


# -- references ----------------------------------------------------------------------------

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


def clustered(rng, n, dim, n_clusters=20, spread=0.3):
    """Points around fixed centres (the same for the same n_clusters and dim, so that
    queries drawn by a second call come from the clusters of the data)."""
    centres = np.random.default_rng(1000 * n_clusters + dim).standard_normal((n_clusters, dim))
    return centres[rng.integers(0, n_clusters, n)] + spread * rng.standard_normal((n, dim))


def state(index):
    """Everything observable: for before/after comparisons of failed calls."""
    if len(index) == 0:
        return {"len": 0, "repr": repr(index)}
    Q = index.vectors[:7]
    d, i = index.query(Q, k=5, n_probes=2, n_threads=1)
    c, off = index.candidates(Q, n_probes=2, n_threads=1)
    return {"len": len(index), "ids": index.ids, "vectors": index.vectors,
            "repr": repr(index), "dist": d, "found": i, "cand": c, "off": off,
            "hash": index.hash(Q)}


def assert_raises_unchanged(index, call, exc, name):
    before = state(index)
    with pytest.raises(exc, match=re.escape(name)):
        call()
    np.testing.assert_equal(state(index), before)


@pytest.fixture(params=METRICS)
def metric(request):
    return request.param


# -- construction ----------------------------------------------------------------------------

class TestConstruction:
    def test_defaults_and_properties(self):
        index = LSHIndex(8)
        assert (index.dim, index.metric, index.n_tables, index.n_bits) == (8, "cosine", 16, 12)
        assert index.bucket_width is None and index.dtype == np.float32 and len(index) == 0
        l2 = LSHIndex(8, metric="l2", n_tables=3, n_bits=5, bucket_width=2.5, dtype="float64")
        assert (l2.n_tables, l2.n_bits, l2.bucket_width, l2.dtype) == (3, 5, 2.5, np.float64)
        assert "l2" in repr(l2) and "n=0" in repr(l2)
        assert LSHIndex(8, metric="l2").bucket_width == "auto"

    @pytest.mark.parametrize("kwargs, exc, name", [
        ({"dim": 0}, ValueError, "dim"), ({"dim": -3}, ValueError, "dim"),
        ({"dim": 2.0}, TypeError, "dim"), ({"dim": True}, TypeError, "dim"),
        ({"dim": 2**23}, ValueError, "dim"),
        ({"metric": "l1"}, ValueError, "metric"), ({"metric": 2}, TypeError, "metric"),
        ({"n_tables": 0}, ValueError, "n_tables"), ({"n_tables": 1.5}, TypeError, "n_tables"),
        ({"n_bits": 0}, ValueError, "n_bits"), ({"n_bits": 65}, ValueError, "n_bits"),
        ({"n_tables": 2**40}, ValueError, "n_tables"), ({"n_tables": 2**70}, ValueError, "n_tables"),
        ({"n_bits": 2**70}, ValueError, "n_bits"), ({"n_tables": 2**15, "dim": 2**22}, ValueError,
                                                      "n_tables"),
        ({"metric": "l2", "bucket_width": 0.0}, ValueError, "bucket_width"),
        ({"metric": "l2", "bucket_width": -1}, ValueError, "bucket_width"),
        ({"metric": "l2", "bucket_width": np.nan}, ValueError, "bucket_width"),
        ({"metric": "l2", "bucket_width": np.inf}, ValueError, "bucket_width"),
        ({"metric": "l2", "bucket_width": "wide"}, TypeError, "bucket_width"),
        ({"metric": "cosine", "bucket_width": 1.0}, ValueError, "bucket_width"),
        ({"dtype": "int32"}, ValueError, "dtype"), ({"dtype": "nonsense"}, TypeError, "dtype"),
        ({"rng": -1}, ValueError, "rng"), ({"rng": "seed"}, TypeError, "rng"),
    ])
    def test_bad_arguments(self, kwargs, exc, name):
        kwargs = {"dim": 4, **kwargs}
        with pytest.raises(exc, match=re.escape(name)):
            LSHIndex(**kwargs)

    def test_same_rng_same_hash_functions(self, rng):
        X = rng.standard_normal((50, 6))
        for metric in METRICS:
            a = LSHIndex(6, metric=metric, bucket_width=1.0 if metric == "l2" else "auto", rng=5)
            b = LSHIndex(6, metric=metric, bucket_width=1.0 if metric == "l2" else "auto", rng=5)
            c = LSHIndex(6, metric=metric, bucket_width=1.0 if metric == "l2" else "auto", rng=6)
            np.testing.assert_array_equal(a.hash(X), b.hash(X))
            assert (a.hash(X) != c.hash(X)).any()


# -- exactness ---------------------------------------------------------------------------------

class TestQuery:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_all_candidates_equals_brute_force(self, rng, metric, dtype):
        # One bit per table and one probe: every table's two buckets are visited,
        # so every point is a candidate and the result is the exact top k.
        X = clustered(rng, 400, 9)
        Q = clustered(rng, 30, 9)
        index = LSHIndex(9, metric=metric, n_tables=2, n_bits=1, dtype=dtype,
                         bucket_width=0.5 if metric == "l2" else "auto", rng=1)
        index.add(X)
        ids, off = index.candidates(Q, n_probes=1)
        if metric == "cosine":
            assert np.all(np.diff(off) == 400)
        dist, found = index.query(Q, k=12, n_probes=1)
        assert dist.dtype == np.dtype(dtype) and found.dtype == np.int64
        stored = index.vectors
        pools = split_csr(ids, off)
        assert_topk_of(index, Q, dist, found, 12, pools, lambda i: stored[i])
        if metric == "cosine":
            for i, q in enumerate(Q):
                want = np.argsort(brute_distances(stored, q, metric), kind="stable")[:12]
                d_want = brute_distances(stored[want], q, metric)
                np.testing.assert_allclose(dist[i], d_want, **tolerance(dtype))

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_large_width_l2_equals_brute_force(self, rng, dtype):
        X = rng.standard_normal((300, 5)) * 3
        Q = rng.standard_normal((25, 5)) * 3
        index = LSHIndex(5, metric="l2", n_tables=3, n_bits=2, bucket_width=1e4, dtype=dtype,
                         rng=2)
        index.add(X)
        dist, found = index.query(Q, k=7)
        stored = index.vectors
        for i, q in enumerate(Q):
            d = brute_distances(stored, q, "l2")
            np.testing.assert_allclose(dist[i], np.sort(d)[:7], **tolerance(dtype, 10))
            np.testing.assert_array_equal(found[i], np.argsort(d, kind="stable")[:7])

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("n_probes", [0, 3, 20])
    def test_query_is_top_k_of_candidates(self, rng, metric, dtype, n_probes):
        X = clustered(rng, 2000, 24, n_clusters=30) * rng.uniform(0.5, 2, (2000, 1)) + 0.5
        Q = clustered(rng, 60, 24, n_clusters=30)
        index = LSHIndex(24, metric=metric, n_tables=5, n_bits=8, dtype=dtype, rng=3)
        index.add(X)
        ids, off = index.candidates(Q, n_probes=n_probes)
        assert off.shape == (61,) and off[0] == 0 and ids.shape == (off[-1],)
        pools = split_csr(ids, off)
        for pool in pools:
            assert len(np.unique(pool)) == len(pool)
        dist, found = index.query(Q, k=10, n_probes=n_probes)
        stored = index.vectors
        assert_topk_of(index, Q, dist, found, 10, pools, lambda i: stored[i])

    def test_more_probes_more_candidates(self, rng, metric):
        X = clustered(rng, 3000, 16)
        index = LSHIndex(16, metric=metric, n_tables=4, n_bits=12, rng=4)
        index.add(X)
        Q = clustered(rng, 40, 16)
        counts = [np.diff(index.candidates(Q, n_probes=p)[1]).sum() for p in (0, 2, 8, 32)]
        assert counts == sorted(counts) and counts[-1] > counts[0]
        # A stored vector always finds itself in its own buckets.
        d, i = index.query(X[:50], k=1, n_probes=0)
        np.testing.assert_array_equal(i[:, 0], np.arange(50))

    def test_recall_on_clustered_data(self, rng):
        # Not a benchmark: a sanity floor that fails if probing or hashing breaks.
        X = clustered(rng, 5000, 32, n_clusters=50, spread=0.4)
        Q = clustered(rng, 100, 32, n_clusters=50, spread=0.4)
        for metric in METRICS:
            index = LSHIndex(32, metric=metric, n_tables=8, n_bits=10, rng=5)
            index.add(X)
            _, found = index.query(Q, k=10, n_probes=8)
            stored = index.vectors
            hits = 0
            for i, q in enumerate(Q):
                truth = np.argsort(brute_distances(stored, q, metric))[:10]
                hits += len(np.intersect1d(truth, found[i]))
            assert hits / (len(Q) * 10) > 0.8, (metric, hits)

    def test_duplicates_and_ties(self, rng, metric):
        base = rng.standard_normal((5, 6))
        X = np.repeat(base, 40, axis=0)
        index = LSHIndex(6, metric=metric, n_tables=3, n_bits=4, rng=6)
        index.add(X)
        dist, found = index.query(base, k=50)
        for i in range(5):
            # The 40 copies come first, ties by insertion order, then the rest.
            np.testing.assert_array_equal(found[i, :40], np.arange(40 * i, 40 * i + 40))
            np.testing.assert_allclose(dist[i, :40], 0.0, atol=1e-6)
            assert np.all(dist[i, 40:] > 1e-6)

    def test_k_larger_than_n_and_single_point(self, metric):
        index = LSHIndex(3, metric=metric, n_tables=2, n_bits=2, rng=7)
        index.add([[1.0, 2.0, 3.0]])
        dist, found = index.query([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], k=4, n_probes=4)
        assert found.shape == (2, 4) and found[0, 0] == 0
        assert np.all(found[:, 1:] == -1) and np.all(np.isinf(dist[:, 1:]))
        assert dist[0, 0] == pytest.approx(0.0, abs=1e-6)

    def test_empty_queries_and_empty_index(self, metric):
        index = LSHIndex(3, metric=metric, n_tables=2, n_bits=2, bucket_width=1.0
                         if metric == "l2" else "auto", rng=8)
        dist, found = index.query(np.ones((2, 3)), k=3)
        assert np.all(found == -1) and np.all(np.isinf(dist))
        ids, off = index.candidates(np.ones((2, 3)))
        assert ids.size == 0 and off.tolist() == [0, 0, 0]
        index.add(np.eye(3))
        dist, found = index.query(np.zeros((0, 3)), k=2)
        assert dist.shape == (0, 2) and found.shape == (0, 2)

    def test_thread_invariance(self, rng, metric, assert_thread_invariant):
        X = clustered(rng, 3000, 12)
        Q = clustered(rng, 333, 12)
        index = LSHIndex(12, metric=metric, n_tables=6, n_bits=9, rng=9)
        index.add(X, n_threads=3)
        assert_thread_invariant(lambda t: index.query(Q, k=7, n_probes=5, n_threads=t))
        assert_thread_invariant(lambda t: index.candidates(Q, n_probes=5, n_threads=t))
        assert_thread_invariant(lambda t: index.hash(X, n_threads=t))

    def test_torch_in_torch_out(self, rng, metric):
        torch = pytest.importorskip("torch")
        X = rng.standard_normal((200, 5)).astype(np.float32)
        index = LSHIndex(5, metric=metric, n_tables=3, n_bits=4, rng=10)
        index.add(torch.from_numpy(X))
        Q = torch.from_numpy(X[:9])
        dist, found = index.query(Q, k=3)
        assert isinstance(dist, torch.Tensor) and isinstance(found, torch.Tensor)
        d_np, f_np = index.query(X[:9], k=3)
        np.testing.assert_array_equal(found.numpy(), f_np)
        ids, off = index.candidates(Q)
        assert isinstance(ids, torch.Tensor) and isinstance(off, torch.Tensor)
        assert [len(p) for p in split_csr(ids, off)] == np.diff(off.numpy()).tolist()


# -- adding and removing ------------------------------------------------------------------------

class TestAddRemove:
    def test_default_and_given_ids(self, rng, metric):
        index = LSHIndex(4, metric=metric, n_tables=3, n_bits=3, rng=11)
        X = rng.standard_normal((10, 4))
        index.add(X[:4])
        index.add(X[4:6], ids=[100, 7])
        index.add(X[6:])
        np.testing.assert_array_equal(index.ids, [0, 1, 2, 3, 100, 7, 101, 102, 103, 104])
        np.testing.assert_allclose(index.vectors, X.astype(np.float32))
        d, found = index.query(X, k=1)
        np.testing.assert_array_equal(found[:, 0], index.ids)

    def test_many_small_adds_equal_one_bulk_add(self, rng, metric):
        # The sorted runs and their merges must give the same buckets as one build.
        X = clustered(rng, 1500, 10)
        Q = clustered(rng, 50, 10)
        bulk = LSHIndex(10, metric=metric, n_tables=4, n_bits=8, bucket_width=1.0
                        if metric == "l2" else "auto", rng=12)
        bulk.add(X)
        inc = LSHIndex(10, metric=metric, n_tables=4, n_bits=8, bucket_width=1.0
                       if metric == "l2" else "auto", rng=12)
        sizes = rng.integers(1, 60, 200)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        bounds = bounds[bounds < 1500].tolist() + [1500]
        for a, b in zip(bounds[:-1], bounds[1:]):
            inc.add(X[a:b])
        assert len(inc._run_starts) - 1 > 1  # several runs are really searched
        for p in (0, 4):
            c1, o1 = bulk.candidates(Q, n_probes=p)
            c2, o2 = inc.candidates(Q, n_probes=p)
            np.testing.assert_array_equal(o1, o2)
            for a, b in zip(split_csr(c1, o1), split_csr(c2, o2)):
                np.testing.assert_array_equal(np.sort(a), np.sort(b))
            np.testing.assert_equal(bulk.query(Q, k=6, n_probes=p), inc.query(Q, k=6, n_probes=p))

    def test_remove(self, rng, metric):
        X = clustered(rng, 600, 8)
        # One bit per table, probed both ways (cosine) or one huge slot (l2):
        # every live point is a candidate.
        index = LSHIndex(8, metric=metric, n_tables=2, n_bits=1, rng=13,
                         bucket_width=1e6 if metric == "l2" else "auto")
        index.add(X)
        gone = rng.choice(600, 200, replace=False)
        index.remove(gone)
        assert len(index) == 400
        kept = np.setdiff1d(np.arange(600), gone)
        np.testing.assert_array_equal(index.ids, kept)
        dist, found = index.query(X[gone[:20]], k=30, n_probes=1)
        assert not np.isin(found, gone).any()
        ids, _ = index.candidates(X[:20], n_probes=1)
        assert not np.isin(ids, gone).any()
        # Everything left is still found exactly.
        stored = X.astype(np.float32)
        assert_topk_of(index, X[:20], *index.query(X[:20], k=30, n_probes=1), 30,
                       [kept] * 20, lambda i: stored[i])

    def test_remove_most_compacts_and_ids_stay(self, rng, metric):
        X = clustered(rng, 1000, 6)
        index = LSHIndex(6, metric=metric, n_tables=3, n_bits=6, rng=14)
        index.add(X[:500])
        index.add(X[500:], ids=np.arange(500, 1000) * 10)
        ids = index.ids.copy()
        index.remove(ids[::3])
        index.remove(ids[1::3])                          # two thirds gone: compacted
        assert index._n_rows == len(index) == len(ids[2::3])
        np.testing.assert_array_equal(index.ids, ids[2::3])
        d, found = index.query(index.vectors, k=1, n_probes=0)
        np.testing.assert_array_equal(found[:, 0], ids[2::3])
        # A removed id may be given again; the default ids do not reuse it.
        index.add(X[:1], ids=[ids[0]])
        index.add(X[1:2])
        assert index.ids[-2] == ids[0] and index.ids[-1] == 9990 + 1
        index.remove(index.ids)
        assert len(index) == 0
        assert index.query(X[:2], k=2)[1].tolist() == [[-1, -1], [-1, -1]]

    def test_re_added_id_after_remove_without_compaction(self, rng):
        index = LSHIndex(3, n_tables=2, n_bits=2, rng=15)
        X = rng.standard_normal((10, 3))
        index.add(X)
        index.remove([4])
        index.add(X[4:5] * 2, ids=[4])
        with pytest.raises(ValueError, match="ids must be new"):
            index.add(X[:1], ids=[4])
        index.remove(4)
        with pytest.raises(ValueError, match="4"):
            index.remove([4])

    @pytest.mark.parametrize("ids, exc, name", [
        ([0, 1], ValueError, "ids must have shape"),
        ([0, 0, 1], ValueError, "distinct"),
        ([-1, 5, 6], ValueError, "non-negative"),
        ([1, 2, 2**63 - 1], ValueError, "ids must be below"),
        ([0.0, 1.0, 2.0], TypeError, "ids must hold integers"),
        (["a", "b", "c"], TypeError, "ids"),
        ([3, 8, 9], ValueError, "already in the index"),
        ([[1, 2, 3]], ValueError, "ids"),
    ])
    def test_bad_ids_change_nothing(self, rng, ids, exc, name):
        index = LSHIndex(4, n_tables=2, n_bits=3, rng=16)
        index.add(rng.standard_normal((5, 4)))
        assert_raises_unchanged(index, lambda: index.add(rng.standard_normal((3, 4)), ids=ids),
                                exc, name)

    @pytest.mark.parametrize("X, exc, name", [
        (np.zeros((0, 4)), ValueError, "X must not be empty"),
        (np.ones((3, 5)), ValueError, "X must have shape"),
        (np.ones(4), ValueError, "X must have shape"),
        (np.array([[1, 2, np.nan, 4.0]]), ValueError, "X must be finite"),
        (np.array([[1, 2, np.inf, 4.0]]), ValueError, "X must be finite"),
        (np.array([[1, 2, 1e300, 4.0]]), ValueError, "X must be finite"),
        (np.ones((2, 4), dtype=complex), TypeError, "X must be real"),
        (np.array([["a"] * 4]), TypeError, "X must be numeric"),
        ([[1, 2], [3]], TypeError, "X must be array-like"),
    ])
    def test_bad_data_changes_nothing(self, rng, metric, X, exc, name):
        index = LSHIndex(4, metric=metric, n_tables=2, n_bits=3, rng=17)
        index.add(rng.standard_normal((6, 4)))
        assert_raises_unchanged(index, lambda: index.add(X), exc, name)

    def test_cosine_refuses_zero_vectors(self):
        index = LSHIndex(3, rng=18)
        index.add(np.eye(3))
        assert_raises_unchanged(index, lambda: index.add([[1.0, 1, 1], [0, 0, 0]]), ValueError,
                                "X has an all-zero row 1")
        assert_raises_unchanged(index, lambda: index.query([[0.0, 0, 0]]), ValueError, "X has an all-zero row")
        assert index.hash([[0.0, 0, 0]])[0, 0] == 2**12 - 1  # all bits set, allowed here

    @pytest.mark.parametrize("ids, exc, name", [
        ([3, 99], ValueError, "ids holds 99, which is not in the index"),
        ([2, 2], ValueError, "ids holds 2 twice"),
        ([2**64 - 1], ValueError, "not in the index"),
        ([1.0], TypeError, "ids must hold integers"),
        ([[1]], ValueError, "ids must be an int or 1-dimensional"),
    ])
    def test_bad_remove_changes_nothing(self, rng, ids, exc, name):
        index = LSHIndex(4, metric="l2", n_tables=2, n_bits=3, rng=19)
        index.add(rng.standard_normal((6, 4)))
        index.remove([])  # nothing
        assert_raises_unchanged(index, lambda: index.remove(np.array(ids)), exc, name)

    @pytest.mark.parametrize("call, exc, name", [
        (lambda ix: ix.query(np.ones((2, 3))), ValueError, "X must have shape"),
        (lambda ix: ix.query(np.ones((2, 4)), k=0), ValueError, "k must be"),
        (lambda ix: ix.query(np.ones((2, 4)), k=2.0), TypeError, "k must be"),
        (lambda ix: ix.query(np.ones((2, 4)), n_probes=-1), ValueError, "n_probes"),
        (lambda ix: ix.query(np.ones((2, 4)), n_probes=4097), ValueError, "n_probes"),
        (lambda ix: ix.query(np.ones((2, 4)), n_threads=0), ValueError, "n_threads"),
        (lambda ix: ix.query(np.ones((2, 4)), k=2**62), ValueError, "k"),
        (lambda ix: ix.query(np.ones((2, 4)), n_probes=2**63), ValueError, "n_probes"),
        (lambda ix: ix.candidates(np.ones((2, 4)), n_probes=2**70), ValueError, "n_probes"),
        (lambda ix: ix.query([[np.nan, 1, 1, 1]]), ValueError, "X must be finite"),
        (lambda ix: ix.candidates(np.ones((2, 5))), ValueError, "X must have shape"),
        (lambda ix: ix.candidates(np.ones((2, 4)), n_probes=1.5), TypeError, "n_probes"),
        (lambda ix: ix.hash(np.ones((2, 5))), ValueError, "X must have shape"),
        (lambda ix: ix.hash([[np.inf, 1, 1, 1]]), ValueError, "X must be finite"),
    ])
    def test_bad_queries_change_nothing(self, rng, call, exc, name):
        index = LSHIndex(4, metric="l2", n_tables=2, n_bits=3, rng=20)
        index.add(rng.standard_normal((30, 4)))
        assert_raises_unchanged(index, lambda: call(index), exc, name)

    def test_huge_thread_counts_are_capped(self, rng):
        index = LSHIndex(4, metric="l2", n_tables=2, n_bits=3, rng=20)
        index.add(rng.standard_normal((30, 4)))
        want = index.query(np.ones((2, 4)), k=3, n_threads=1)
        for n_threads in (2**31, 2**63, 2**80):
            np.testing.assert_equal(index.query(np.ones((2, 4)), k=3, n_threads=n_threads), want)
            index.hash(np.ones((2, 4)), n_threads=n_threads)

    def test_auto_width(self, rng):
        index = LSHIndex(4, metric="l2", rng=21)
        with pytest.raises(ValueError, match="bucket_width is 'auto'"):
            index.hash(np.ones((1, 4)))
        X = rng.standard_normal((300, 4)) * 7.0
        index.add(X)
        w = index.bucket_width
        assert isinstance(w, float) and w > 0
        # Proportional to the data's scale.
        other = LSHIndex(4, metric="l2", rng=21)
        other.add(X / 7.0)
        assert other.bucket_width == pytest.approx(w / 7.0, rel=1e-6)
        # Degenerate first batches still give a usable width.
        for data in (np.ones((5, 4)), np.array([[3.0, 0, 0, 0]]), np.zeros((2, 4))):
            one = LSHIndex(4, metric="l2", rng=21)
            one.add(data)
            assert one.bucket_width > 0


# -- hashing and its statistics -----------------------------------------------------------------

def binomial_ok(successes, trials, p):
    return stats.binomtest(int(successes), int(trials), p).pvalue > ALPHA


def pair_at_angle(rng, dim, angle):
    u = rng.standard_normal(dim)
    u /= np.linalg.norm(u)
    v = rng.standard_normal(dim)
    v -= (v @ u) * u
    v /= np.linalg.norm(v)
    return np.stack([u, math.cos(angle) * u + math.sin(angle) * v]) * rng.uniform(0.5, 3)


def datar(c, w):
    """Collision probability of one p-stable (Gaussian) hash of width w at distance c
    (Datar, Immorlica, Indyk & Mirrokni, SoCG 2004)."""
    r = w / c
    return (1 - 2 * stats.norm.cdf(-r)
            - 2 / (math.sqrt(2 * math.pi) * r) * (1 - math.exp(-r * r / 2)))


class TestHash:
    def test_shape_dtype_and_sign_symmetry(self, rng):
        index = LSHIndex(7, n_tables=5, n_bits=64, dtype="float64", rng=22)
        X = rng.standard_normal((40, 7))
        codes = index.hash(X)
        assert codes.shape == (40, 5) and codes.dtype == np.uint64
        # SimHash: -x flips every bit; a positive scale changes none.
        np.testing.assert_array_equal(index.hash(-X), ~codes)
        np.testing.assert_array_equal(index.hash(3.5 * X), codes)
        few = LSHIndex(7, n_tables=5, n_bits=6, rng=22)
        assert few.hash(X).max() < 2**6

    def test_l2_hash_is_translation_sensitive_and_deterministic(self, rng):
        index = LSHIndex(3, metric="l2", n_tables=4, n_bits=3, bucket_width=0.1, rng=23)
        X = rng.standard_normal((30, 3))
        np.testing.assert_array_equal(index.hash(X), index.hash(X.copy()))
        assert (index.hash(X + 10.0) != index.hash(X)).all()

    @pytest.mark.parametrize("angle", [math.pi / 8, math.pi / 3, math.pi / 2, 0.8 * math.pi])
    def test_simhash_bit_collision_probability(self, rng, angle):
        # 4096 independent hyperplanes: agreements ~ Binomial(4096, 1 - angle/pi).
        index = LSHIndex(16, n_tables=64, n_bits=64, dtype="float64", rng=rng)
        a, b = index.hash(pair_at_angle(rng, 16, angle))
        agree = 4096 - sum(bin(int(x)).count("1") for x in (a ^ b))
        assert binomial_ok(agree, 4096, 1 - angle / math.pi), (agree / 4096, 1 - angle / math.pi)

    @pytest.mark.parametrize("ratio", [0.3, 1.0, 2.5, 6.0])
    def test_pstable_collision_probability(self, rng, ratio):
        # n_bits=1: one p-stable hash per table, 4096 independent tables; two
        # points at distance c share a bucket with Datar et al.'s p(c).
        w, dim = 2.0, 10
        c = w / ratio
        index = LSHIndex(dim, metric="l2", n_tables=4096, n_bits=1, bucket_width=w,
                         dtype="float64", rng=rng)
        x = rng.standard_normal(dim)
        step = rng.standard_normal(dim)
        pair = np.stack([x, x + c * step / np.linalg.norm(step)])
        a, b = index.hash(pair)
        assert binomial_ok(np.sum(a == b), 4096, datar(c, w)), (np.mean(a == b), datar(c, w))

    def test_torch_hash_equals_numpy_hash(self, rng, metric):
        torch = pytest.importorskip("torch")
        X = rng.standard_normal((500, 33)) * 4
        for dtype in DTYPES:
            index = LSHIndex(33, metric=metric, n_tables=7, n_bits=64 if metric == "cosine" else 9,
                             bucket_width=0.7 if metric == "l2" else "auto", dtype=dtype, rng=24)
            want = index.hash(X)
            for t in (torch.from_numpy(X), torch.from_numpy(X.astype(np.float32))):
                got = index.hash(t)
                assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
                want_t = index.hash(t.numpy())
                np.testing.assert_array_equal(got.numpy().view(np.uint64), want_t)
            np.testing.assert_array_equal(index.hash(torch.from_numpy(X)).numpy().view(np.uint64),
                                          want)
            ints = torch.arange(66).reshape(2, 33)
            np.testing.assert_array_equal(index.hash(ints).numpy().view(np.uint64),
                                          index.hash(ints.numpy()))

    def test_torch_hash_bad_input(self, metric):
        torch = pytest.importorskip("torch")
        index = LSHIndex(3, metric=metric, bucket_width=1.0 if metric == "l2" else "auto", rng=25)
        with pytest.raises(ValueError, match="X must have shape"):
            index.hash(torch.ones(2, 4))
        with pytest.raises(ValueError, match="X must be finite"):
            index.hash(torch.tensor([[1.0, float("nan"), 0.0]]))
        with pytest.raises(TypeError, match="X must be a real tensor"):
            index.hash(torch.ones(2, 3, dtype=torch.complex64))
        with pytest.raises(TypeError, match="X must be a real tensor"):
            index.hash(torch.ones(2, 3, dtype=torch.bool))

    @pytest.mark.gpu
    def test_cuda_hash_equals_numpy_hash(self, rng, metric):
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        X = rng.standard_normal((1000, 64))
        index = LSHIndex(64, metric=metric, n_tables=8, n_bits=32 if metric == "cosine" else 10,
                         bucket_width=0.5 if metric == "l2" else "auto", rng=26)
        got = index.hash(torch.from_numpy(X).cuda())
        assert got.device.type == "cuda" and got.dtype == torch.int64
        # float64 on both sides: codes may differ only where a projection is within
        # rounding of a boundary, which random data never hits at this size.
        np.testing.assert_array_equal(got.cpu().numpy().view(np.uint64), index.hash(X))


# -- persistence --------------------------------------------------------------------------------

class TestPersistence:
    def build(self, rng, metric):
        index = LSHIndex(6, metric=metric, n_tables=3, n_bits=5, dtype="float64", rng=27)
        X = clustered(rng, 400, 6)
        index.add(X[:300])
        index.add(X[300:], ids=np.arange(1000, 1100))
        index.remove([5, 1050])
        return index, X

    def test_pickle_round_trip(self, rng, metric):
        index, X = self.build(rng, metric)
        clone = pickle.loads(pickle.dumps(index))
        np.testing.assert_equal(state(clone), state(index))
        np.testing.assert_equal(clone.query(X, k=5, n_probes=3), index.query(X, k=5, n_probes=3))
        clone.add(X[:2])
        index.add(X[:2])
        np.testing.assert_array_equal(clone.ids, index.ids)  # next_id survives

    def test_save_load(self, rng, metric, tmp_path):
        index, X = self.build(rng, metric)
        index.save(tmp_path / "lsh.npz")
        loaded = LSHIndex.load(tmp_path / "lsh.npz")
        np.testing.assert_equal(state(loaded), state(index))
        assert loaded.bucket_width == index.bucket_width and loaded.dtype == index.dtype

    def test_save_load_empty_auto(self, tmp_path):
        index = LSHIndex(4, metric="l2", rng=28)
        index.save(tmp_path / "e.npz")
        loaded = LSHIndex.load(tmp_path / "e.npz")
        assert len(loaded) == 0 and loaded.bucket_width == "auto"

    def test_load_refuses_bad_files(self, rng, tmp_path):
        index, _ = self.build(rng, "l2")
        save_arrays(tmp_path / "other.npz", "AliasSampler", probabilities=np.ones(2))
        with pytest.raises(ValueError, match="not a LSHIndex|AliasSampler"):
            LSHIndex.load(tmp_path / "other.npz")
        good = index._state()
        for key, value in [("n_bits", 99), ("planes", np.ones((2, 2))),
                           ("vectors", np.full((2, 6), np.nan)), ("ids", np.array([1, 1])),
                           ("bucket_width", -1.0), ("metric", "hamming")]:
            bad = dict(good, **{key: value})
            if key == "ids":
                bad["vectors"] = np.ones((2, 6))
            save_arrays(tmp_path / "bad.npz", "LSHIndex", **bad)
            with pytest.raises(ValueError):
                LSHIndex.load(tmp_path / "bad.npz")


def test_split_csr():
    parts = split_csr(np.array([4, 7, 1]), np.array([0, 2, 2, 3]))
    assert [p.tolist() for p in parts] == [[4, 7], [], [1]]
    assert split_csr(np.array([], dtype=np.int64), np.array([0])) == []  # zero queries
    for off in ([0, 2], [1, 3], [0, 3, 2, 3], [[0, 3]], [0.0, 3.0]):
        with pytest.raises(ValueError, match="offsets"):
            split_csr(np.arange(3), np.array(off))
