"""LSHIndex with hashing="kmeans": the trees fitted at the first add (against a
float64 reference of their leaves), the principal directions, refits, and
tune() (against recall computed here by brute force)."""

import math

import numpy as np
import pytest

from dlkernels.neighbors import LSHIndex
from dlkernels.neighbors._lsh_families import LEAF_SIZE, coarse_cells

from .lsh_support import brute_distances, clustered, exact_ids, low_rank, recall


def reference_leaves(index, X):
    """Each vector's leaf in each tree, in float64 from the fitted arrays, and
    whether the choice was clear (the best two scores of a level not within
    rounding of each other)."""
    fam = index._family
    x = np.asarray(X, dtype=np.float64)
    if index.metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    z = (x - fam.mean) @ fam.basis.T.astype(np.float64)
    leaves = np.empty((len(x), fam.n_tables), dtype=np.int64)
    clear = np.ones(len(x), dtype=bool)

    def nearest(centres, points):
        d = ((points[:, None, :] - centres[None].astype(np.float64)) ** 2).sum(-1)
        part = np.sort(d, axis=1)
        gap = part[:, 1] - part[:, 0] if d.shape[1] > 1 else np.inf
        return d.argmin(axis=1), gap > 1e-4 * (1 + part[:, 0])

    for t in range(fam.n_tables):
        cell, ok1 = nearest(fam.coarse[t], z)
        clear &= ok1
        for i, a in enumerate(cell):
            lo, hi = fam.offsets[t, a], fam.offsets[t, a + 1]
            b, ok2 = nearest(fam.fine[t, lo:hi], z[i:i + 1])
            leaves[i, t] = lo + b[0]
            clear[i] &= ok2[0]
    return leaves, clear


class TestTrees:
    def test_fitted_at_the_first_add(self, rng, metric):
        X = clustered(rng, 3000, 12, n_clusters=40) + 0.5
        index = LSHIndex(12, metric=metric, n_tables=2, rng=1)
        assert index.n_bits == "auto" and not index._family.ready
        index.add(X)
        bits = round(math.log2(3000 / LEAF_SIZE))
        assert index.n_bits == bits
        fam = index._family
        assert fam.coarse.shape == (2, coarse_cells(bits), fam.tree_dims)
        assert fam.fine.shape == (2, 2**bits, fam.tree_dims)
        # The cells' leaves tile each tree, every cell owning at least one.
        assert (fam.offsets[:, 0] == 0).all() and (fam.offsets[:, -1] == 2**bits).all()
        assert (np.diff(fam.offsets, axis=1) >= 1).all()
        codes = index.hash(X)
        assert codes.dtype == np.uint64 and codes.max() < 2**bits
        want, clear = reference_leaves(index, index.vectors)
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(codes.astype(np.int64)[clear], want[clear])

    def test_given_n_bits(self, rng):
        index = LSHIndex(8, n_bits=5, rng=2)
        index.add(rng.standard_normal((100, 8)))   # fewer points than twice the leaves
        assert index.n_bits == 5 and index._family.fine.shape[1] == 32
        d, i = index.query(index.vectors[:10], k=1, n_probes=0)
        np.testing.assert_array_equal(i[:, 0], np.arange(10))

    def test_leaves_follow_the_data(self, rng):
        # One tight cluster of 9 points in 10 and a second of 1 in 10: the big one
        # gets about 9 times the leaves, so that leaves hold similar counts.
        big = rng.standard_normal((9000, 6)) * 0.1
        small = rng.standard_normal((1000, 6)) * 0.1 + 50
        index = LSHIndex(6, metric="l2", n_bits=8, rng=3)
        index.add(np.concatenate([big, small]))
        codes = index.hash(np.concatenate([big, small]))[:, 0].astype(np.int64)
        big_leaves, small_leaves = len(np.unique(codes[:9000])), len(np.unique(codes[9000:]))
        assert 5 < big_leaves / small_leaves < 14
        counts = np.bincount(codes, minlength=256)
        assert counts.max() < 8 * 10000 / 256

    def test_principal_directions(self, rng, metric):
        X = low_rank(rng, 4000, 30, rank=5, noise=0.01) + 2.0
        index = LSHIndex(30, metric=metric, rng=4)
        index.add(X)
        fam = index._family
        rot = fam.rotation.astype(np.float64)
        np.testing.assert_allclose(rot @ rot.T, np.eye(rot.shape[0]), atol=1e-5)
        # Five directions hold the data (less its mean): a sketch keeps 16, the
        # least multiple of 16, and the trees see all 30.
        assert fam.sketch_dims == 16 and fam.tree_dims == 30
        x = X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X
        centred = x - x.mean(axis=0)
        kept = np.linalg.norm(centred @ rot[:5].T) / np.linalg.norm(centred)
        assert kept > (0.99 if metric == "l2" else 0.98)   # unit vectors: not quite rank 5

    def test_isotropic_data_keeps_every_coordinate(self, rng):
        index = LSHIndex(24, metric="l2", rng=5)
        index.add(rng.standard_normal((3000, 24)))
        assert index._family.sketch_dims == 0       # no rotation for the sketches

    def test_cosine_codes_ignore_scale(self, rng):
        X = clustered(rng, 2000, 10) + 0.3
        index = LSHIndex(10, rng=6)
        index.add(X)
        np.testing.assert_array_equal(index.hash(X * 7.5), index.hash(X))

    def test_refit_after_growing_eightfold(self, rng, metric):
        X = clustered(rng, 2400, 10)
        index = LSHIndex(10, metric=metric, rng=7)
        index.add(X[:200])
        small = index._family
        assert small.fit_size == 200
        index.add(X[200:1000])                       # 5x: the same trees
        assert index._family is small
        index.add(X[1000:], ids=np.arange(5000, 6400))    # 12x: new ones
        assert index._family.fit_size == 2400 and index.n_bits > small.fitted_bits
        np.testing.assert_array_equal(index.ids, np.r_[np.arange(1000), np.arange(5000, 6400)])
        d, found = index.query(X[::97], k=1, n_probes=0)
        np.testing.assert_array_equal(found[:, 0], index.ids[::97])

    def test_torch_hash_equals_numpy_hash(self, rng, metric):
        torch = pytest.importorskip("torch")
        X = clustered(rng, 1500, 16) + 0.2
        index = LSHIndex(16, metric=metric, n_tables=2, rng=8)
        index.add(X)
        want = index.hash(X)
        got = index.hash(torch.from_numpy(X))
        assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
        _, clear = reference_leaves(index, X.astype(np.float32))
        np.testing.assert_array_equal(got.numpy().view(np.uint64)[clear], want[clear])

    @pytest.mark.gpu
    def test_cuda_hash_equals_numpy_hash(self, rng, metric):
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        X = clustered(rng, 1500, 16) + 0.2
        index = LSHIndex(16, metric=metric, n_tables=2, rng=8)
        index.add(X)
        got = index.hash(torch.from_numpy(X).cuda())
        assert got.device.type == "cuda"
        _, clear = reference_leaves(index, X.astype(np.float32))
        np.testing.assert_array_equal(got.cpu().numpy().view(np.uint64)[clear],
                                      index.hash(X)[clear])


class TestTune:
    def test_exact_neighbours_of_tune(self, rng, metric):
        # tune's reference: exact k nearest, ties by insertion order.
        X = np.round(clustered(rng, 2000, 8) * 4) / 4     # many exact ties
        Q = np.round(clustered(rng, 60, 8) * 4) / 4
        index = LSHIndex(8, metric=metric, dtype="float64", rng=9)
        index.add(X)
        d, ids = index._exact(index._points(Q, "X", allow_empty=False), 12, 2)
        for i, q in enumerate(Q):
            dist = brute_distances(X, q, metric)
            np.testing.assert_allclose(d[i], np.sort(dist)[:12], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(dist[ids[i]], d[i], rtol=1e-9, atol=1e-9)

    @pytest.mark.parametrize("target", [0.8, 0.95])
    def test_reaches_the_target_on_the_sample(self, rng, metric, target):
        X = clustered(rng, 6000, 16, n_clusters=60, spread=0.5)
        Q = clustered(rng, 200, 16, n_clusters=60, spread=0.5)
        index = LSHIndex(16, metric=metric, rng=10)
        index.add(X)
        result = index.tune(Q, k=10, target_recall=target)
        assert index.n_probes == result["n_probes"]
        assert index.max_candidates == result["max_candidates"]
        truth = exact_ids(index.vectors, Q, 10, metric)
        got = recall(index.query(Q, k=10)[1], truth)
        assert got == pytest.approx(result["recall"], abs=1e-12) and got >= target
        # Without a cap, one step fewer probes would not have reached it.
        if result["max_candidates"] is None and result["n_probes"] > 0:
            from dlkernels.neighbors._lsh_tune import GRID

            fewer = max(n for n in GRID if n < result["n_probes"])
            assert recall(index.query(Q, k=10, n_probes=fewer, max_candidates=None)[1],
                          truth) < target

    @pytest.mark.parametrize("target", [0.9, 0.95])
    def test_target_holds_on_fresh_queries(self, rng, metric, target):
        # The choice must generalise: tuned on 200 queries, measured on 400 others
        # of the same distribution. Per-query recall@10 has a spread of at most
        # 0.5, so the mean of 400 has a standard error below 0.025 (0.5 / sqrt 400)
        # whatever the correlation inside a query; 0.06 below the target is 2.4 of
        # them: an unbiased choice fails by chance under 1 % of seeds (fixed here).
        centres = rng.standard_normal((80, 24)) * 3
        def draw(n):
            return centres[rng.integers(0, 80, n)] + rng.standard_normal((n, 24))
        X, Q_tune, Q_test = draw(8000), draw(200), draw(400)
        index = LSHIndex(24, metric=metric, rng=15)
        index.add(X)
        result = index.tune(Q_tune, k=10, target_recall=target)
        assert result["recall"] >= target
        got = recall(index.query(Q_test, k=10)[1], exact_ids(index.vectors, Q_test, 10, metric))
        assert got >= target - 0.06, (got, result)

    def test_same_choice_at_any_thread_count(self, rng):
        X = clustered(rng, 4000, 12)
        Q = clustered(rng, 120, 12)
        chosen = []
        for t in (1, 3):
            index = LSHIndex(12, rng=11)
            index.add(X, n_threads=t)
            chosen.append(index.tune(Q, k=5, target_recall=0.9, n_threads=t))
        assert chosen[0] == chosen[1]

    def test_warns_when_out_of_reach(self, rng):
        # Slots far narrower than the distances between points: a probe reaches
        # the next slot of a component, never the points several slots away.
        X = rng.standard_normal((3000, 8))
        index = LSHIndex(8, metric="l2", hashing="random", n_tables=1, n_bits=4,
                         bucket_width=0.01, rng=12)
        index.add(X)
        with pytest.warns(UserWarning, match="no setting reaches recall 1.0"):
            result = index.tune(rng.standard_normal((50, 8)), k=10, target_recall=1.0)
        assert result["recall"] < 1.0

    @pytest.mark.parametrize("kwargs, exc, name", [
        ({"k": 0}, ValueError, "k"), ({"k": 1.5}, TypeError, "k"),
        ({"target_recall": 0.0}, ValueError, "target_recall"),
        ({"target_recall": 1.5}, ValueError, "target_recall"),
        ({"target_recall": float("nan")}, ValueError, "target_recall"),
        ({"target_recall": "high"}, TypeError, "target_recall"),
        ({"n_threads": 0}, ValueError, "n_threads"),
    ])
    def test_bad_arguments_change_nothing(self, rng, kwargs, exc, name):
        from .lsh_support import assert_raises_unchanged

        index = LSHIndex(4, rng=13)
        index.add(rng.standard_normal((300, 4)))
        assert_raises_unchanged(index, lambda: index.tune(rng.standard_normal((20, 4)), **kwargs),
                                exc, name)

    def test_needs_data_and_queries(self, rng):
        index = LSHIndex(4, rng=14)
        with pytest.raises(ValueError, match="add data first"):
            index.tune(np.ones((3, 4)))
        index.add(rng.standard_normal((50, 4)))
        with pytest.raises(ValueError, match="X must not be empty"):
            index.tune(np.ones((0, 4)))
