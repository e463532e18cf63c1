"""LSHIndex, both hash families: exact re-ranking against brute force, candidate
sets, add/remove, thread invariance, tensors and bad input.

The family-specific parts are in test_lsh_kmeans.py (fitted trees, tune) and
test_lsh_random.py (hash statistics); files in test_lsh_persist.py; threads in
test_lsh_threads.py; hypothesis in test_lsh_fuzz.py.
"""

import numpy as np
import pytest

from dlkernels.neighbors import LSHIndex, split_csr

from .lsh_support import (
    DTYPES,
    HASHINGS,
    assert_raises_unchanged,
    assert_topk_of,
    brute_distances,
    clustered,
    family,
    low_rank,
)


# -- construction ----------------------------------------------------------------------------

class TestConstruction:
    def test_defaults_and_properties(self):
        index = LSHIndex(8)
        assert (index.dim, index.metric, index.hashing, index.n_tables) == \
            (8, "cosine", "kmeans", 1)
        assert index.n_bits == "auto" and index.bucket_width is None
        assert index.dtype == np.float32 and len(index) == 0
        assert index.n_probes == 16 and index.max_candidates is None
        random = LSHIndex(8, metric="l2", hashing="random", n_tables=3, n_bits=5,
                          bucket_width=2.5, dtype="float64")
        assert (random.n_tables, random.n_bits, random.bucket_width, random.dtype) == \
            (3, 5, 2.5, np.float64)
        assert "l2" in repr(random) and "n=0" in repr(random) and "random" in repr(random)
        assert LSHIndex(8, metric="l2", hashing="random").bucket_width == "auto"
        assert LSHIndex(8, hashing="random").n_bits == 12
        assert LSHIndex(8, n_bits=7).n_bits == 7

    @pytest.mark.parametrize("kwargs, exc, name", [
        ({"dim": 0}, ValueError, "dim"), ({"dim": -3}, ValueError, "dim"),
        ({"dim": 2.0}, TypeError, "dim"), ({"dim": True}, TypeError, "dim"),
        ({"dim": 2**23}, ValueError, "dim"),
        ({"metric": "l1"}, ValueError, "metric"), ({"metric": 2}, TypeError, "metric"),
        ({"hashing": "lattice"}, ValueError, "hashing"), ({"hashing": None}, TypeError, "hashing"),
        ({"n_tables": 0}, ValueError, "n_tables"), ({"n_tables": 1.5}, TypeError, "n_tables"),
        ({"n_tables": 2**40}, ValueError, "n_tables"),
        ({"n_tables": 2**70}, ValueError, "n_tables"),
        ({"n_tables": 2**15, "dim": 2**22}, ValueError, "n_tables"),
        ({"n_bits": 1}, ValueError, "n_bits"), ({"n_bits": 21}, ValueError, "n_bits"),
        ({"n_bits": 2**70}, ValueError, "n_bits"), ({"n_bits": "many"}, TypeError, "n_bits"),
        ({"hashing": "random", "n_bits": 0}, ValueError, "n_bits"),
        ({"hashing": "random", "n_bits": 65}, ValueError, "n_bits"),
        ({"hashing": "random", "metric": "l2", "bucket_width": 0.0}, ValueError, "bucket_width"),
        ({"hashing": "random", "metric": "l2", "bucket_width": -1}, ValueError, "bucket_width"),
        ({"hashing": "random", "metric": "l2", "bucket_width": np.nan}, ValueError,
         "bucket_width"),
        ({"hashing": "random", "metric": "l2", "bucket_width": np.inf}, ValueError,
         "bucket_width"),
        ({"hashing": "random", "metric": "l2", "bucket_width": "wide"}, TypeError,
         "bucket_width"),
        ({"hashing": "random", "metric": "cosine", "bucket_width": 1.0}, ValueError,
         "bucket_width"),
        ({"metric": "l2", "bucket_width": 1.0}, ValueError, "bucket_width"),
        ({"dtype": "int32"}, ValueError, "dtype"), ({"dtype": "nonsense"}, TypeError, "dtype"),
        ({"rng": -1}, ValueError, "rng"), ({"rng": "seed"}, TypeError, "rng"),
    ])
    def test_bad_arguments(self, kwargs, exc, name):
        kwargs = {"dim": 4, **kwargs}
        with pytest.raises(exc, match=name):
            LSHIndex(**kwargs)

    def test_options_are_keyword_only(self):
        with pytest.raises(TypeError):
            LSHIndex(4, "l2")
        index = LSHIndex(4, rng=0)
        index.add(np.eye(4))
        with pytest.raises(TypeError):
            index.query(np.eye(4), 2, 3)
        with pytest.raises(TypeError):
            index.add(np.eye(4), [10, 11, 12, 13])

    def test_same_rng_same_index(self, rng, metric, hashing):
        X = clustered(rng, 400, 6)
        built = []
        for seed in (5, 5, 6):
            index = LSHIndex(6, **family(hashing, metric), rng=seed)
            index.add(X)
            built.append(index.hash(X))
        np.testing.assert_array_equal(built[0], built[1])
        assert (built[0] != built[2]).any()


# -- exactness ---------------------------------------------------------------------------------

class TestQuery:
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("n_probes", [0, 3, 20])
    def test_query_is_top_k_of_candidates(self, rng, metric, hashing, dtype, n_probes):
        X = clustered(rng, 2000, 24, n_clusters=30) * rng.uniform(0.5, 2, (2000, 1)) + 0.5
        Q = clustered(rng, 60, 24, n_clusters=30)
        index = LSHIndex(24, **family(hashing, metric), dtype=dtype, rng=3)
        index.add(X)
        ids, off = index.candidates(Q, n_probes=n_probes)
        assert off.shape == (61,) and off[0] == 0 and ids.shape == (off[-1],)
        pools = split_csr(ids, off)
        for pool in pools:
            assert len(np.unique(pool)) == len(pool)
        dist, found = index.query(Q, k=10, n_probes=n_probes)
        assert dist.dtype == np.dtype(dtype) and found.dtype == np.int64
        stored = index.vectors
        assert_topk_of(index, Q, dist, found, 10, pools, lambda i: stored[i])

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_low_rank_data_exact_among_candidates(self, rng, metric, dtype):
        # The sketches keep few principal directions of such data: their bounds
        # must still never rule out a true neighbour among the candidates.
        X = low_rank(rng, 3000, 40) + 0.3
        Q = low_rank(rng, 50, 40) + 0.3
        index = LSHIndex(40, metric=metric, dtype=dtype, rng=4)
        index.add(X)
        assert 0 < index._family.sketch_dims < 40
        ids, off = index.candidates(Q, n_probes=30)
        dist, found = index.query(Q, k=15, n_probes=30)
        stored = index.vectors
        assert_topk_of(index, Q, dist, found, 15, split_csr(ids, off), lambda i: stored[i])

    def test_probing_every_bucket_is_exact(self, rng, metric):
        X = clustered(rng, 1500, 12)
        Q = clustered(rng, 40, 12)
        index = LSHIndex(12, metric=metric, n_bits=4, rng=5)
        index.add(X)
        ids, off = index.candidates(Q, n_probes=15)   # every other leaf of 16
        assert np.all(np.diff(off) == 1500)
        dist, found = index.query(Q, k=9, n_probes=15)
        for i, q in enumerate(Q):
            d = brute_distances(index.vectors, q, metric)
            want = np.argsort(d, kind="stable")[:9]
            np.testing.assert_allclose(dist[i], d[want], rtol=2e-5, atol=2e-5)

    def test_more_probes_more_candidates(self, rng, metric, hashing):
        X = clustered(rng, 3000, 16)
        index = LSHIndex(16, **family(hashing, metric), rng=4)
        index.add(X)
        Q = clustered(rng, 40, 16)
        counts = [np.diff(index.candidates(Q, n_probes=p)[1]).sum() for p in (0, 2, 8, 32)]
        assert counts == sorted(counts) and counts[-1] > counts[0]
        # A stored vector always finds itself in its own buckets.
        d, i = index.query(X[:50], k=1, n_probes=0)
        np.testing.assert_array_equal(i[:, 0], np.arange(50))

    def test_max_candidates_caps_the_buckets_looked_up(self, rng, metric, hashing):
        X = clustered(rng, 3000, 16)
        index = LSHIndex(16, **family(hashing, metric), rng=4)
        index.add(X)
        Q = clustered(rng, 30, 16)
        full = np.diff(index.candidates(Q, n_probes=40)[1])
        capped = np.diff(index.candidates(Q, n_probes=40, max_candidates=50)[1])
        assert np.all(capped <= full) and capped.sum() < full.sum()
        # Whole buckets are taken until the cap is reached: each query stops at
        # its first batch of buckets past 50 (or runs out of buckets).
        home = np.diff(index.candidates(Q, n_probes=0)[1])
        assert np.all((capped >= np.minimum(50, full)) | (capped >= home))
        index.max_candidates = 50
        np.testing.assert_array_equal(np.diff(index.candidates(Q, n_probes=40)[1]), capped)

    def test_recall_on_clustered_data(self, rng, metric):
        # Not a benchmark: a sanity floor that fails if probing or hashing breaks.
        X = clustered(rng, 5000, 32, n_clusters=50, spread=0.4)
        Q = clustered(rng, 100, 32, n_clusters=50, spread=0.4)
        for hashing in HASHINGS:
            index = LSHIndex(32, **family(hashing, metric, n_tables=8 if hashing == "random"
                                          else 1), rng=5)
            index.add(X)
            _, found = index.query(Q, k=10, n_probes=64)
            stored = index.vectors
            hits = 0
            for i, q in enumerate(Q):
                truth = np.argsort(brute_distances(stored, q, metric))[:10]
                hits += len(np.intersect1d(truth, found[i]))
            assert hits / (len(Q) * 10) > 0.8, (metric, hashing, hits)

    def test_duplicates_and_ties(self, rng, metric, hashing):
        base = rng.standard_normal((5, 6))
        X = np.repeat(base, 40, axis=0)
        index = LSHIndex(6, **family(hashing, metric), rng=6)
        index.add(X)
        dist, found = index.query(base, k=50, n_probes=8)
        for i in range(5):
            # The 40 copies come first, ties by insertion order, then the rest.
            np.testing.assert_array_equal(found[i, :40], np.arange(40 * i, 40 * i + 40))
            np.testing.assert_allclose(dist[i, :40], 0.0, atol=1e-6)
            assert np.all(dist[i, 40:] > 1e-6)

    def test_k_larger_than_n_and_single_point(self, metric, hashing):
        index = LSHIndex(3, **family(hashing, metric), rng=7)
        index.add([[1.0, 2.0, 3.0]])
        dist, found = index.query([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], k=4, n_probes=4)
        assert found.shape == (2, 4) and found[0, 0] == 0
        assert np.all(found[:, 1:] == -1) and np.all(np.isinf(dist[:, 1:]))
        assert dist[0, 0] == pytest.approx(0.0, abs=1e-6)

    def test_empty_queries_and_empty_index(self, metric, hashing):
        index = LSHIndex(3, **family(hashing, metric), rng=8)
        dist, found = index.query(np.ones((2, 3)), k=3)
        assert np.all(found == -1) and np.all(np.isinf(dist))
        ids, off = index.candidates(np.ones((2, 3)))
        assert ids.size == 0 and off.tolist() == [0, 0, 0]
        index.add(np.eye(3))
        dist, found = index.query(np.zeros((0, 3)), k=2)
        assert dist.shape == (0, 2) and found.shape == (0, 2)

    def test_thread_invariance(self, rng, metric, hashing, assert_thread_invariant):
        X = clustered(rng, 3000, 12)
        Q = clustered(rng, 333, 12)
        built = []
        for t in (1, 2, 3):
            index = LSHIndex(12, **family(hashing, metric), rng=9)
            index.add(X, n_threads=t)
            built.append((index.hash(X), index.query(Q, k=7, n_threads=1)))
        np.testing.assert_equal(built[0], built[1])
        np.testing.assert_equal(built[0], built[2])
        assert_thread_invariant(lambda t: index.query(Q, k=7, n_probes=5, n_threads=t))
        assert_thread_invariant(lambda t: index.candidates(Q, n_probes=5, n_threads=t))
        assert_thread_invariant(lambda t: index.hash(X, n_threads=t))

    def test_torch_in_torch_out(self, rng, metric, hashing):
        torch = pytest.importorskip("torch")
        X = rng.standard_normal((200, 5)).astype(np.float32)
        index = LSHIndex(5, **family(hashing, metric), rng=10)
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
    def test_default_and_given_ids(self, rng, metric, hashing):
        index = LSHIndex(4, **family(hashing, metric), rng=11)
        X = rng.standard_normal((10, 4))
        index.add(X[:4])
        index.add(X[4:6], ids=[100, 7])
        index.add(X[6:])
        np.testing.assert_array_equal(index.ids, [0, 1, 2, 3, 100, 7, 101, 102, 103, 104])
        np.testing.assert_allclose(index.vectors, X.astype(np.float32))
        d, found = index.query(X, k=1)
        np.testing.assert_array_equal(found[:, 0], index.ids)

    def test_many_small_adds_equal_one_bulk_add(self, rng, metric, hashing):
        # The sorted runs and their merges must give the same buckets as one build
        # (the first batch fits the trees of either index the same way).
        X = clustered(rng, 1500, 10)
        Q = clustered(rng, 50, 10)
        bulk = LSHIndex(10, **family(hashing, metric), rng=12)
        inc = LSHIndex(10, **family(hashing, metric), rng=12)
        bulk.add(X[:500])
        bulk.add(X[500:])
        inc.add(X[:500])
        sizes = rng.integers(1, 60, 200)
        bounds = np.concatenate([[500], 500 + np.cumsum(sizes)])
        bounds = bounds[bounds < 1500].tolist() + [1500]
        for a, b in zip(bounds[:-1], bounds[1:]):
            inc.add(X[a:b])
        assert len(inc._store.run_starts) - 1 > 1  # several runs are really searched
        for p in (0, 4):
            c1, o1 = bulk.candidates(Q, n_probes=p)
            c2, o2 = inc.candidates(Q, n_probes=p)
            np.testing.assert_array_equal(o1, o2)
            for a, b in zip(split_csr(c1, o1), split_csr(c2, o2)):
                np.testing.assert_array_equal(np.sort(a), np.sort(b))
            np.testing.assert_equal(bulk.query(Q, k=6, n_probes=p), inc.query(Q, k=6, n_probes=p))

    def test_remove(self, rng, metric, hashing):
        X = clustered(rng, 600, 8)
        index = LSHIndex(8, **family(hashing, metric), rng=13)
        index.add(X)
        gone = rng.choice(600, 200, replace=False)
        index.remove(gone)
        assert len(index) == 400
        kept = np.setdiff1d(np.arange(600), gone)
        np.testing.assert_array_equal(index.ids, kept)
        dist, found = index.query(X[gone[:20]], k=30, n_probes=8)
        assert not np.isin(found, gone).any()
        ids, off = index.candidates(X[:20], n_probes=8)
        assert not np.isin(ids, gone).any()
        # Everything left is still found exactly among the candidates.
        stored = X.astype(np.float32)
        assert_topk_of(index, X[:20], *index.query(X[:20], k=30, n_probes=8), 30,
                       split_csr(ids, off), lambda i: stored[i])

    def test_remove_most_compacts_and_ids_stay(self, rng, metric, hashing):
        X = clustered(rng, 1000, 6)
        index = LSHIndex(6, **family(hashing, metric), rng=14)
        index.add(X[:500])
        index.add(X[500:], ids=np.arange(500, 1000) * 10)
        ids = index.ids.copy()
        index.remove(ids[::3])
        index.remove(ids[1::3])                          # two thirds gone: compacted
        assert index._store.n_rows == len(index) == len(ids[2::3])
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
        index = LSHIndex(3, rng=15)
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
        index = LSHIndex(4, rng=16)
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
    def test_bad_data_changes_nothing(self, rng, metric, hashing, X, exc, name):
        index = LSHIndex(4, **family(hashing, metric), rng=17)
        index.add(rng.standard_normal((6, 4)))
        assert_raises_unchanged(index, lambda: index.add(X), exc, name)

    def test_cosine_refuses_zero_vectors(self):
        index = LSHIndex(3, rng=18)
        index.add(np.eye(3))
        assert_raises_unchanged(index, lambda: index.add([[1.0, 1, 1], [0, 0, 0]]), ValueError,
                                "X has an all-zero row 1")
        assert_raises_unchanged(index, lambda: index.query([[0.0, 0, 0]]), ValueError,
                                "X has an all-zero row")
        index.hash([[0.0, 0, 0]])   # allowed here: a code, not a distance

    @pytest.mark.parametrize("ids, exc, name", [
        ([3, 99], ValueError, "ids holds 99, which is not in the index"),
        ([2, 2], ValueError, "ids holds 2 twice"),
        ([2**64 - 1], ValueError, "not in the index"),
        ([1.0], TypeError, "ids must hold integers"),
        ([[1]], ValueError, "ids must be an int or 1-dimensional"),
    ])
    def test_bad_remove_changes_nothing(self, rng, ids, exc, name):
        index = LSHIndex(4, metric="l2", rng=19)
        index.add(rng.standard_normal((6, 4)))
        index.remove([])  # nothing
        assert_raises_unchanged(index, lambda: index.remove(np.array(ids)), exc, name)

    @pytest.mark.parametrize("call, exc, name", [
        (lambda ix: ix.query(np.ones((2, 3))), ValueError, "X must have shape"),
        (lambda ix: ix.query(np.ones((2, 4)), k=0), ValueError, "k must be"),
        (lambda ix: ix.query(np.ones((2, 4)), k=2.0), TypeError, "k must be"),
        (lambda ix: ix.query(np.ones((2, 4)), k=2**62), ValueError, "k"),
        (lambda ix: ix.query(np.ones((2, 4)), n_probes=-1), ValueError, "n_probes"),
        (lambda ix: ix.query(np.ones((2, 4)), n_probes=2**20 + 1), ValueError, "n_probes"),
        (lambda ix: ix.query(np.ones((2, 4)), n_probes=2**63), ValueError, "n_probes"),
        (lambda ix: ix.query(np.ones((2, 4)), max_candidates=0), ValueError, "max_candidates"),
        (lambda ix: ix.query(np.ones((2, 4)), max_candidates=1.5), TypeError, "max_candidates"),
        (lambda ix: ix.query(np.ones((2, 4)), n_threads=0), ValueError, "n_threads"),
        (lambda ix: ix.query([[np.nan, 1, 1, 1]]), ValueError, "X must be finite"),
        (lambda ix: ix.candidates(np.ones((2, 5))), ValueError, "X must have shape"),
        (lambda ix: ix.candidates(np.ones((2, 4)), n_probes=1.5), TypeError, "n_probes"),
        (lambda ix: ix.candidates(np.ones((2, 4)), n_probes=2**70), ValueError, "n_probes"),
        (lambda ix: ix.hash(np.ones((2, 5))), ValueError, "X must have shape"),
        (lambda ix: ix.hash([[np.inf, 1, 1, 1]]), ValueError, "X must be finite"),
        (lambda ix: setattr(ix, "n_probes", -2), ValueError, "n_probes"),
        (lambda ix: setattr(ix, "max_candidates", "all"), TypeError, "max_candidates"),
    ])
    def test_bad_queries_change_nothing(self, rng, call, exc, name):
        index = LSHIndex(4, metric="l2", rng=20)
        index.add(rng.standard_normal((30, 4)))
        assert_raises_unchanged(index, lambda: call(index), exc, name)

    def test_huge_thread_counts_are_capped(self, rng, hashing):
        index = LSHIndex(4, **family(hashing, "l2"), rng=20)
        index.add(rng.standard_normal((30, 4)))
        want = index.query(np.ones((2, 4)), k=3, n_threads=1)
        for n_threads in (2**31, 2**63, 2**80):
            np.testing.assert_equal(index.query(np.ones((2, 4)), k=3, n_threads=n_threads), want)
            index.hash(np.ones((2, 4)), n_threads=n_threads)

    def test_hash_before_the_first_add(self, metric):
        with pytest.raises(ValueError, match="first add"):
            LSHIndex(4, metric=metric).hash(np.ones((1, 4)))
        with pytest.raises(ValueError, match="first add"):
            LSHIndex(4, metric="l2", hashing="random").hash(np.ones((1, 4)))
