"""KDTree: exact k-nearest-neighbour and radius search against brute force and SciPy.

The brute-force reference computes every distance with the same formula as the
kernels, in the tree's dtype (``sum((x - y)**2)`` summed over coordinates in
order, then one square root), so the distances are compared for exact
equality; SciPy's ``cKDTree`` is compared at float64 rounding. Where several
points tie at the k-th distance any of them is a correct answer, so indices are
checked by recomputing their distances rather than by equality.
"""

import pickle

import numpy as np
import pytest

from dlkernels._lib.persist import save_arrays
from dlkernels.neighbors import KDTree, split_csr

P_VALUES = [1, 2, np.inf]
DTYPES = [np.float64, np.float32]


# -- references ----------------------------------------------------------------------------

def accumulate(D, diff, p):
    """One coordinate's term added to reduced distances ``D``, as the kernels add it."""
    if p == 2:
        return D + diff * diff
    if p == 1:
        return D + np.abs(diff)
    return np.maximum(D, np.abs(diff))


def reduced_distances(X, Q, p):
    """All reduced distances (squared for p=2), shape (len(Q), len(X)), in X's dtype,
    summed over coordinates in order as the kernels do."""
    D = np.zeros((len(Q), len(X)), dtype=X.dtype)
    for j in range(X.shape[1]):
        D = accumulate(D, X[:, j][None, :] - Q[:, j][:, None], p)
    return D


def paired_reduced(A, B, p):
    """Reduced distances between rows ``A[i]`` and ``B[i]`` (same formula as above)."""
    D = np.zeros(len(A), dtype=A.dtype)
    for j in range(A.shape[1]):
        D = accumulate(D, A[:, j] - B[:, j], p)
    return D


def to_distance(reduced, p):
    return np.sqrt(reduced) if p == 2 else reduced


def reduce_bound(bound, p, dtype):
    """A distance bound as the kernels compare it: reduced in float64, then cast."""
    bound = np.asarray(bound, dtype=np.float64)
    return (bound * bound if p == 2 else bound).astype(dtype)


def brute_knn(X, Q, k, p, upper=np.inf):
    """Expected sorted distances, shape (m, k), inf-padded."""
    D = reduced_distances(X, Q, p)
    D = np.where(D < reduce_bound(upper, p, X.dtype), D, np.inf)
    D = np.sort(D, axis=1)[:, :k]
    if D.shape[1] < k:
        D = np.hstack([D, np.full((len(Q), k - D.shape[1]), np.inf, dtype=D.dtype)])
    return to_distance(D, p)


def check_knn(X, Q, dist, idx, k, p, upper=np.inf):
    """Distances equal brute force exactly; ids are valid, distinct, and at those distances."""
    X = np.asarray(X)
    Q = np.asarray(Q, dtype=X.dtype)
    expected = brute_knn(X, Q, k, p, upper)
    assert dist.dtype == X.dtype and dist.shape == (len(Q), k) and idx.shape == (len(Q), k)
    np.testing.assert_array_equal(dist, expected)
    padded = np.isinf(expected)
    np.testing.assert_array_equal(idx[padded], -1)
    rows, cols = np.nonzero(~padded)
    found = idx[rows, cols]
    assert found.min(initial=0) >= 0 and found.max(initial=0) < len(X)
    np.testing.assert_array_equal(dist[rows, cols], to_distance(paired_reduced(X[found], Q[rows], p), p))
    for row in idx:
        real = row[row >= 0]
        assert len(set(real.tolist())) == len(real), f"repeated id in {row}"
    # Ties are ordered by id.
    same = (dist[:, 1:] == dist[:, :-1]) & (idx[:, 1:] >= 0)
    assert np.all(idx[:, 1:][same] > idx[:, :-1][same])


def uniform(rng, n, d, dtype=np.float64):
    return rng.random((n, d)).astype(dtype)


def clustered(rng, n, d, dtype=np.float64, n_clusters=7):
    centres = rng.random((n_clusters, d)) * 10
    spread = np.exp(rng.uniform(-5, 0, n_clusters))[:, None]
    labels = rng.integers(0, n_clusters, n)
    return (centres[labels] + rng.standard_normal((n, d)) * spread[labels]).astype(dtype)


def grid(rng, n, d, dtype=np.float64, levels=4):
    """Small-integer coordinates: many exact duplicates and exact distance ties."""
    return rng.integers(0, levels, (n, d)).astype(dtype)


DATASETS = {"uniform": uniform, "clustered": clustered, "grid": grid}


def data_and_queries(make, rng, n, m, d, dtype=np.float64):
    """``n`` points and ``m`` queries from one draw of a distribution (same clusters)."""
    both = make(rng, n + m, d, dtype)
    return both[:n], both[n:]


# -- k nearest neighbours ------------------------------------------------------------------

class TestQuery:
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("kind", list(DATASETS))
    @pytest.mark.parametrize("p", P_VALUES)
    def test_equals_brute_force(self, rng, dtype, kind, p):
        X, Q = data_and_queries(DATASETS[kind], rng, 3000, 300, 3, dtype)
        Q = np.vstack([Q, X[:50], Q[:10] + 100])  # data points, and far away points too
        tree = KDTree(X, leafsize=8)
        for k in (1, 4, 11):
            dist, idx = tree.query(Q, k=k, p=p)
            check_knn(X, Q, dist, idx, k, p)

    @pytest.mark.parametrize("d", [1, 2, 5, 8, 13])
    @pytest.mark.parametrize("leafsize", [1, 3, 16, 100])
    def test_dimensions_and_leaf_sizes(self, rng, d, leafsize):
        X, Q = data_and_queries(clustered, rng, 700, 60, d)
        dist, idx = KDTree(X, leafsize=leafsize).query(Q, k=6, p=2)
        check_knn(X, Q, dist, idx, 6, 2)

    @pytest.mark.parametrize("p", P_VALUES)
    def test_large_k_uses_the_heap_and_stays_exact(self, rng, p):
        X = grid(rng, 2000, 3, levels=6)
        Q = uniform(rng, 40, 3) * 6
        dist, idx = KDTree(X).query(Q, k=150, p=p)
        check_knn(X, Q, dist, idx, 150, p)

    @pytest.mark.parametrize("p", P_VALUES)
    def test_matches_scipy(self, rng, p):
        spatial = pytest.importorskip("scipy.spatial")
        X, Q = data_and_queries(clustered, rng, 20000, 2000, 4)
        dist, idx = KDTree(X).query(Q, k=10, p=p)
        ref_dist, _ = spatial.cKDTree(X).query(Q, k=10, p=p)
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)

    def test_float32_within_float32_rounding_of_float64_search(self, rng):
        X, Q = data_and_queries(clustered, rng, 5000, 500, 3, np.float32)
        dist, idx = KDTree(X).query(Q, k=8)
        assert dist.dtype == np.float32
        exact = brute_knn(X.astype(np.float64), Q.astype(np.float64), 8, 2)
        np.testing.assert_allclose(dist, exact, rtol=2e-6, atol=1e-6)

    def test_k_larger_than_n_is_padded(self):
        X = np.array([[0.0, 0.0], [3.0, 4.0]])
        dist, idx = KDTree(X).query([[0.0, 0.0]], k=4)
        np.testing.assert_array_equal(dist, [[0.0, 5.0, np.inf, np.inf]])
        np.testing.assert_array_equal(idx, [[0, 1, -1, -1]])

    @pytest.mark.parametrize("p", P_VALUES)
    def test_distance_upper_bound_is_strict(self, rng, p):
        X = grid(rng, 500, 2, levels=5)
        Q = grid(rng, 50, 2, levels=5) + 0.5
        tree = KDTree(X, leafsize=4)
        for upper in (0.0, 0.5, 1.0, 1.5, 2.5):
            dist, idx = tree.query(Q, k=7, p=p, distance_upper_bound=upper)
            check_knn(X, Q, dist, idx, 7, p, upper)
            assert np.all(dist[np.isfinite(dist)] < upper)

    def test_upper_bound_excludes_a_point_exactly_at_it(self):
        dist, idx = KDTree([[0.0, 0.0], [3.0, 4.0]]).query([0.0, 0.0], k=2, distance_upper_bound=5.0)
        np.testing.assert_array_equal(dist, [0.0, np.inf])
        np.testing.assert_array_equal(idx, [0, -1])

    def test_one_point_query_gives_1d_results(self, rng):
        X = uniform(rng, 100, 3)
        tree = KDTree(X)
        dist, idx = tree.query(X[5], k=3)
        assert dist.shape == (3,) and idx.shape == (3,)
        assert idx[0] == 5 and dist[0] == 0.0
        many = tree.query(X[5:6], k=3)
        np.testing.assert_array_equal(many[0][0], dist)

    def test_one_point_tree(self):
        tree = KDTree([[1.0, 2.0, 3.0]])
        dist, idx = tree.query([[1.0, 2.0, 5.0], [1.0, 2.0, 3.0]], k=2)
        np.testing.assert_array_equal(dist, [[2.0, np.inf], [0.0, np.inf]])
        np.testing.assert_array_equal(idx, [[0, -1], [0, -1]])

    def test_all_points_equal(self):
        X = np.ones((1000, 3))
        dist, idx = KDTree(X, leafsize=4).query([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]], k=5)
        np.testing.assert_array_equal(dist, [[0.0] * 5, [1.0] * 5])
        # Ties are ordered by id, so the lowest ids come back.
        np.testing.assert_array_equal(np.sort(idx, axis=1), idx)
        assert len(set(idx[0].tolist())) == 5

    def test_distinct_squares_with_one_root_are_ordered_by_id(self):
        # Two squared distances differ in float32 but share a square root (found by
        # hypothesis): the order is by the returned distance, then id.
        X = np.array([[-1.25e-4, -1.25e-4, -1.25e-4, 0.0], [0.0, -1.25e-4, -1.25e-4, -1.25e-4]],
                     dtype=np.float32)
        Q = np.full((1, 4), 1e-3, dtype=np.float32)
        assert len(set(reduced_distances(X, Q, 2)[0].tolist())) == 2
        dist, idx = KDTree(X, leafsize=1).query(Q, k=2)
        assert dist[0, 0] == dist[0, 1] and idx.tolist() == [[0, 1]]

    @pytest.mark.parametrize("dtype, scale", [(np.float32, 1e-22), (np.float64, 1e-161)])
    @pytest.mark.parametrize("p", P_VALUES)
    def test_subnormal_distances(self, rng, dtype, scale, p):
        # Squared distances below the normal range round in absolute, not relative, steps.
        X = (rng.integers(-30, 30, (400, 3)) * scale).astype(dtype)
        Q = (rng.integers(-30, 30, (50, 3)) * scale).astype(dtype)
        dist, idx = KDTree(X, leafsize=2).query(Q, k=5, p=p)
        check_knn(X, Q, dist, idx, 5, p)
        ids, offsets = KDTree(X, leafsize=2).query_radius(Q, 3 * scale, p=p)
        expected, _ = brute_radius(X, Q, 3 * scale, p)
        for got, want in zip(split_csr(ids, offsets), expected):
            np.testing.assert_array_equal(np.sort(got), want)

    def test_no_queries(self, rng):
        dist, idx = KDTree(uniform(rng, 10, 2)).query(np.zeros((0, 2)), k=3)
        assert dist.shape == (0, 3) and idx.shape == (0, 3)

    def test_float32_tree_casts_queries(self, rng):
        X = uniform(rng, 500, 3, np.float32)
        Q = uniform(rng, 50, 3, np.float64)
        dist, idx = KDTree(X).query(Q, k=3)
        assert dist.dtype == np.float32
        check_knn(X, Q.astype(np.float32), dist, idx, 3, 2)

    def test_integer_data_is_float64(self):
        tree = KDTree(np.array([[0, 0], [1, 1]], dtype=np.int32))
        assert tree.dtype == np.float64
        assert tree.query([[1, 0]], k=1)[0].dtype == np.float64

    def test_thread_count_does_not_change_results(self, rng, assert_thread_invariant):
        # enough queries for several chunks and the spatial order
        X, Q = data_and_queries(clustered, rng, 20000, 5000, 3)
        tree = KDTree(X)
        assert_thread_invariant(lambda t: tree.query(Q, k=7, n_threads=t))
        assert_thread_invariant(lambda t: tree.query_radius(Q, 0.3, return_distance=True,
                                                            n_threads=t))

    def test_build_thread_count_does_not_change_the_tree(self, rng):
        X = clustered(rng, 30000, 4)
        states = [KDTree(X, n_threads=t).__getstate__() for t in (1, 2, 4)]
        for other in states[1:]:
            np.testing.assert_equal(other, states[0])


# -- radius queries ------------------------------------------------------------------------

def brute_radius(X, Q, r, p):
    D = reduced_distances(X, np.asarray(Q, dtype=X.dtype), p)
    inside = D <= reduce_bound(np.broadcast_to(r, (len(Q),)), p, X.dtype)[:, None]
    return [np.flatnonzero(row) for row in inside], D


class TestQueryRadius:
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("kind", list(DATASETS))
    @pytest.mark.parametrize("p", P_VALUES)
    def test_equals_brute_force(self, rng, dtype, kind, p):
        X, Q = data_and_queries(DATASETS[kind], rng, 2000, 200, 3, dtype)
        r = {"uniform": 0.15, "clustered": 0.5, "grid": 1.0}[kind]
        tree = KDTree(X, leafsize=6)
        ids, dist, offsets = tree.query_radius(Q, r, return_distance=True, p=p)
        expected, D = brute_radius(X, Q, r, p)
        assert offsets.shape == (len(Q) + 1,) and offsets[0] == 0 and offsets[-1] == len(ids)
        assert sum(len(e) for e in expected) > len(Q)  # the test is not vacuous
        for q, (got, got_d) in enumerate(zip(split_csr(ids, offsets),
                                             split_csr(dist, offsets))):
            np.testing.assert_array_equal(np.sort(got), expected[q])
            np.testing.assert_array_equal(got_d, to_distance(D[q, got], p))

    @pytest.mark.parametrize("p", P_VALUES)
    def test_boundary_is_inclusive(self, rng, p):
        X = grid(rng, 800, 2, levels=6)
        Q = grid(rng, 80, 2, levels=6)
        for r in (0.0, 1.0, 2.0):
            ids, offsets = KDTree(X, leafsize=3).query_radius(Q, r, p=p)
            expected, _ = brute_radius(X, Q, r, p)
            for got, want in zip(split_csr(ids, offsets), expected):
                np.testing.assert_array_equal(np.sort(got), want)

    def test_sorted_results(self, rng):
        X = grid(rng, 3000, 3, levels=5)
        Q = uniform(rng, 100, 3) * 5
        ids, dist, offsets = KDTree(X).query_radius(Q, 1.5, return_distance=True,
                                                    sort_results=True)
        expected, _ = brute_radius(X, Q, 1.5, 2)
        for got, got_d, want in zip(split_csr(ids, offsets), split_csr(dist, offsets),
                                    expected):
            assert len(got) > 32 or len(got) == len(want)  # both sort paths are used
            order = np.lexsort((got, got_d))
            np.testing.assert_array_equal(order, np.arange(len(got)))
            np.testing.assert_array_equal(np.sort(got), want)

    def test_one_radius_per_query(self, rng):
        X = uniform(rng, 1000, 2)
        Q = uniform(rng, 30, 2)
        r = rng.uniform(0, 0.3, 30)
        ids, offsets = KDTree(X).query_radius(Q, r)
        expected, _ = brute_radius(X, Q, r, 2)
        for got, want in zip(split_csr(ids, offsets), expected):
            np.testing.assert_array_equal(np.sort(got), want)

    def test_matches_scipy(self, rng):
        spatial = pytest.importorskip("scipy.spatial")
        X, Q = data_and_queries(clustered, rng, 20000, 1000, 3)
        ids, offsets = KDTree(X).query_radius(Q, 0.2, sort_results=True)
        ref = spatial.cKDTree(X).query_ball_point(Q, 0.2)
        for got, want in zip(split_csr(ids, offsets), ref):
            assert sorted(got.tolist()) == sorted(want)

    def test_infinite_radius_returns_everything(self, rng):
        X = uniform(rng, 50, 2)
        ids, offsets = KDTree(X).query_radius(X[:3], np.inf)
        np.testing.assert_array_equal(offsets, [0, 50, 100, 150])
        for got in split_csr(ids, offsets):
            np.testing.assert_array_equal(np.sort(got), np.arange(50))

    def test_one_point_query(self, rng):
        X = uniform(rng, 200, 2)
        ids, offsets = KDTree(X).query_radius(X[0], 0.1)
        assert offsets.shape == (2,) and 0 in ids.tolist()

    def test_no_queries(self, rng):
        ids, dist, offsets = KDTree(uniform(rng, 10, 2)).query_radius(
            np.zeros((0, 2)), 1.0, return_distance=True)
        assert ids.shape == (0,) and dist.shape == (0,) and offsets.tolist() == [0]


def test_split_csr():
    parts = split_csr(np.arange(5), np.array([0, 2, 2, 5]))
    assert [p.tolist() for p in parts] == [[0, 1], [], [2, 3, 4]]
    with pytest.raises(ValueError, match="offsets"):
        split_csr(np.arange(5), np.array([0, 3, 2, 5]))
    with pytest.raises(ValueError, match="offsets"):
        split_csr(np.arange(5), np.array([0, 2]))


# -- insertion -----------------------------------------------------------------------------

class TestAdd:
    def test_batches_equal_one_tree_of_all_points(self, rng):
        X, Q = data_and_queries(clustered, rng, 6000, 400, 3)
        tree = KDTree(X[:4000], leafsize=8)
        bounds = [4000, 4001, 4003, 4500, 4510, 5000, 5100, 5101, 5900, 6000]
        for a, b in zip(bounds[:-1], bounds[1:]):
            ids = tree.add(X[a:b])
            np.testing.assert_array_equal(ids, np.arange(a, b))
        assert len(tree) == 6000 and tree.n_trees == 3  # sizes 4000, 1900, 100
        np.testing.assert_array_equal(tree.data, X)
        whole = KDTree(X, leafsize=8)
        for p in P_VALUES:
            dist, idx = tree.query(Q, k=9, p=p)
            np.testing.assert_array_equal(dist, whole.query(Q, k=9, p=p)[0])
            check_knn(X, Q, dist, idx, 9, p)
        ids, offsets = tree.query_radius(Q, 0.4, sort_results=True)
        ids_whole, offsets_whole = whole.query_radius(Q, 0.4, sort_results=True)
        np.testing.assert_array_equal(offsets, offsets_whole)
        np.testing.assert_array_equal(ids, ids_whole)

    def test_single_points_keep_the_forest_logarithmic(self, rng):
        X = uniform(rng, 600, 2)
        tree = KDTree(X[:1])
        for i in range(1, 600):
            assert tree.add(X[i]).tolist() == [i]
            assert tree.n_trees <= int(np.log2(len(tree))) + 1
        dist, idx = tree.query(X, k=1)
        np.testing.assert_array_equal(idx[:, 0], np.arange(600))

    def test_ids_of_earlier_points_are_stable(self, rng):
        X = uniform(rng, 300, 2)
        tree = KDTree(X[:100])
        before = tree.query(X[:100], k=1)[1]
        tree.add(X[100:])
        np.testing.assert_array_equal(tree.query(X[:100], k=1)[1], before)

    def test_empty_batch_changes_nothing(self, rng, assert_unchanged):
        tree = KDTree(uniform(rng, 20, 2))
        with assert_unchanged(tree):
            assert tree.add(np.zeros((0, 2))).tolist() == []

    def test_add_casts_to_the_tree_dtype(self, rng):
        tree = KDTree(uniform(rng, 20, 2, np.float32))
        tree.add(uniform(rng, 20, 2, np.float64))
        assert tree.data.dtype == np.float32 and len(tree) == 40


# -- objects: data, persistence, torch ----------------------------------------------------------

class TestObject:
    def test_data_is_a_readonly_copy_in_id_order(self, rng):
        X = clustered(rng, 1000, 3)
        tree = KDTree(X)
        original = X.copy()
        X[:] = 0  # the tree holds its own copy
        np.testing.assert_array_equal(tree.data, original)
        assert not tree.data.flags.writeable
        assert len(tree) == tree.n == 1000 and tree.d == 3 and tree.leafsize == 16
        assert "KDTree(n=1000, d=3" in repr(tree)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_pickle_round_trip(self, rng, dtype):
        X, Q = data_and_queries(clustered, rng, 3000, 100, 3, dtype)
        tree = KDTree(X, leafsize=5)
        tree.add(X[:700] + 1)
        copy = pickle.loads(pickle.dumps(tree))
        assert copy.n_trees == tree.n_trees and copy.dtype == dtype and copy.leafsize == 5
        np.testing.assert_array_equal(copy.data, tree.data)
        for a, b in zip(copy.query(Q, k=5), tree.query(Q, k=5)):
            np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_save_load_round_trip(self, rng, tmp_path, dtype):
        X, Q = data_and_queries(clustered, rng, 3000, 100, 4, dtype)
        tree = KDTree(X)
        tree.add(X[:10] * 2)
        tree.save(tmp_path / "tree.npz")
        loaded = KDTree.load(tmp_path / "tree.npz")
        np.testing.assert_equal(loaded.__getstate__(), tree.__getstate__())
        for a, b in zip(loaded.query(Q, k=5, p=1), tree.query(Q, k=5, p=1)):
            np.testing.assert_array_equal(a, b)
        loaded.add(X[:5])  # a loaded tree grows like any other
        assert len(loaded) == 3015

    @pytest.mark.parametrize("damage, message", [
        (lambda s: s.update(tree0_dims=s["tree0_dims"] + 100), "split dimension"),
        (lambda s: s.update(tree0_perm=np.zeros_like(s["tree0_perm"])), "permutation"),
        (lambda s: s.update(tree0_points=s["tree0_points"] + 1e6), "outside"),
        (lambda s: s.update(tree0_vals=s["tree0_vals"][::-1].copy()), "bound"),
        (lambda s: s.update(tree0_points=np.full_like(s["tree0_points"], np.nan)), "NaN"),
        (lambda s: s.update(tree0_boxes=s["tree0_boxes"][:-1]), "shape"),
        (lambda s: s.update(sizes=np.array([5])), "shape"),
        (lambda s: s.update(sizes=np.array([0])), "header"),
        (lambda s: s.update(dtype=np.array("int8")), "dtype"),
        # A consistent tree whose coordinates overflow when squared.
        (lambda s: s.update({key: s[key] * 2.0**600 for key in
                             ("tree0_points", "tree0_vals", "tree0_boxes")}), "beyond"),
        (lambda s: s.pop("tree0_perm"), "lacks"),
    ])
    def test_load_refuses_damaged_files(self, rng, tmp_path, damage, message):
        state = KDTree(uniform(rng, 300, 3), leafsize=4).__getstate__()
        damage(state)
        save_arrays(tmp_path / "bad.npz", "KDTree", **state)
        with pytest.raises(ValueError, match=message):
            KDTree.load(tmp_path / "bad.npz")

    def test_load_refuses_other_archives(self, tmp_path):
        save_arrays(tmp_path / "other.npz", "AliasSampler", x=np.zeros(3))
        with pytest.raises(ValueError, match="AliasSampler"):
            KDTree.load(tmp_path / "other.npz")

    def test_torch_in_torch_out(self, rng):
        torch = pytest.importorskip("torch")
        X = torch.from_numpy(uniform(rng, 500, 3))
        Q = torch.from_numpy(uniform(rng, 20, 3))
        tree = KDTree(X)
        dist, idx = tree.query(Q, k=3)
        assert isinstance(dist, torch.Tensor) and isinstance(idx, torch.Tensor)
        check_knn(X.numpy(), Q.numpy(), dist.numpy(), idx.numpy(), 3, 2)
        ids, offsets = tree.query_radius(Q, 0.2)
        assert isinstance(ids, torch.Tensor) and isinstance(offsets, torch.Tensor)
        assert isinstance(tree.data, torch.Tensor)
        np.testing.assert_array_equal(tree.data.numpy(), X.numpy())
        # numpy queries still give numpy results
        assert isinstance(tree.query(Q.numpy(), k=1)[0], np.ndarray)


# -- bad input -------------------------------------------------------------------------------

class TestBadInput:
    @pytest.mark.parametrize("data, exc, message", [
        (np.zeros((0, 3)), ValueError, "X must"),
        (np.zeros((5, 0)), ValueError, "X must"),
        (np.zeros(5), ValueError, "X must"),
        (np.zeros((2, 2, 2)), ValueError, "X must"),
        (np.array([[0.0, np.nan]]), ValueError, "X must be finite"),
        (np.array([[0.0], [np.inf]]), ValueError, "X must be finite"),
        (np.zeros((3, 2), dtype=complex), TypeError, "X must be real"),
        (np.array([[object()]]), TypeError, "X"),
        (np.array([["a", "b"]]), TypeError, "X"),
        ([[1.0, 2.0], [3.0]], TypeError, "X"),
    ])
    def test_constructor(self, data, exc, message):
        with pytest.raises(exc, match=message):
            KDTree(data)

    def test_float32_data_must_be_finite(self):
        with pytest.raises(ValueError, match="X must be finite"):
            KDTree(np.array([[np.inf, 0.0]], dtype=np.float32))

    @pytest.mark.parametrize("leafsize, exc", [(0, ValueError), (-1, ValueError),
                                               (1.5, TypeError), (True, TypeError)])
    def test_leafsize(self, leafsize, exc):
        with pytest.raises(exc, match="leafsize"):
            KDTree(np.zeros((4, 2)), leafsize=leafsize)

    def test_n_threads(self):
        with pytest.raises(ValueError, match="n_threads"):
            KDTree(np.zeros((4, 2)), n_threads=0)

    @pytest.mark.parametrize("kwargs, exc, name", [
        ({"X": np.zeros((3, 2))}, ValueError, "X must have 3 coordinates"),
        ({"X": np.zeros(2)}, ValueError, "X must have 3 coordinates"),
        ({"X": np.zeros((2, 3, 1))}, ValueError, "X must be 2-dimensional"),
        ({"X": [[0.0, np.nan, 0.0]]}, ValueError, "X must be finite"),
        ({"X": [[0.0, 0.0, -np.inf]]}, ValueError, "X must be finite"),
        ({"X": np.zeros((2, 3), dtype=complex)}, TypeError, "X must be real"),
        ({"X": [["a", "b", "c"]]}, TypeError, "X"),
        ({"k": 0}, ValueError, "k must be a positive int, got 0"),
        ({"k": -2}, ValueError, "k must be a positive int"),
        ({"k": 1.5}, TypeError, "k must be a positive int"),
        ({"k": True}, TypeError, "k must be a positive int"),
        ({"p": 3}, ValueError, "p must be 1, 2 or numpy.inf, got 3"),
        ({"p": 0.5}, ValueError, "p must be"),
        ({"p": "2"}, ValueError, "p must be"),
        ({"distance_upper_bound": -1.0}, ValueError, "distance_upper_bound"),
        ({"distance_upper_bound": np.nan}, ValueError, "distance_upper_bound"),
        ({"distance_upper_bound": "1"}, TypeError, "distance_upper_bound"),
        ({"n_threads": 0}, ValueError, "n_threads"),
        ({"n_threads": 1.0}, TypeError, "n_threads"),
    ])
    def test_query(self, rng, assert_raises_unchanged, kwargs, exc, name):
        tree = KDTree(uniform(rng, 50, 3))
        args = {"X": np.zeros((2, 3)), **kwargs}
        assert_raises_unchanged(tree, lambda: tree.query(**args), exc, name)

    def test_float32_tree_refuses_queries_beyond_float32(self, rng, assert_raises_unchanged):
        tree = KDTree(uniform(rng, 50, 3, np.float32))
        assert_raises_unchanged(tree, lambda: tree.query([[1e39, 0, 0]]), ValueError,
                                "X must be finite in float32")

    @pytest.mark.parametrize("kwargs, exc, name", [
        ({"r": -0.1}, ValueError, "r must be non-negative, got -0.1"),
        ({"r": np.nan}, ValueError, "r must be non-negative"),
        ({"r": [0.1, 0.2, 0.3]}, ValueError, "r must be a scalar or have one value per query (2)"),
        ({"r": [0.1, -1.0]}, ValueError, "r must be non-negative, got -1.0 at position 1"),
        ({"r": 1j}, TypeError, "r must be a real number"),
        ({"r": "x"}, TypeError, "r must be a real number"),
        ({"X": np.zeros((2, 4))}, ValueError, "X must have 3 coordinates"),
        ({"X": [[np.nan, 0, 0]]}, ValueError, "X must be finite"),
        ({"p": 4}, ValueError, "p must be"),
        ({"n_threads": 0}, ValueError, "n_threads"),
    ])
    def test_query_radius(self, rng, assert_raises_unchanged, kwargs, exc, name):
        tree = KDTree(uniform(rng, 50, 3))
        args = {"X": np.zeros((2, 3)), "r": 0.5, **kwargs}
        assert_raises_unchanged(tree, lambda: tree.query_radius(**args), exc, name)

    @pytest.mark.parametrize("points, exc, name", [
        (np.zeros((2, 4)), ValueError, "X must have 3 coordinates"),
        (np.zeros(4), ValueError, "X must have 3 coordinates"),
        ([[0.0, 0.0, np.nan]], ValueError, "X must be finite"),
        (np.zeros((2, 3), dtype=complex), TypeError, "X must be real"),
        (np.array([[object()] * 3]), TypeError, "X"),
    ])
    def test_add(self, rng, assert_raises_unchanged, points, exc, name):
        tree = KDTree(uniform(rng, 50, 3))
        tree.add(uniform(rng, 10, 3))  # a forest of two trees
        assert_raises_unchanged(tree, lambda: tree.add(points), exc, name)

    def test_options_are_keyword_only(self, rng):
        # The data and the one defining quantity (k, r) are positional; nothing else.
        X = uniform(rng, 50, 3)
        tree = KDTree(X)
        for call in (lambda: KDTree(X, 8), lambda: tree.query(X, 2, 1),
                     lambda: tree.query_radius(X, 0.1, True), lambda: tree.add(X, 2)):
            with pytest.raises(TypeError, match="positional argument"):
                call()

    @pytest.mark.parametrize("flag", ["return_distance", "sort_results"])
    def test_query_radius_flags_are_bools(self, rng, assert_raises_unchanged, flag):
        tree = KDTree(uniform(rng, 50, 3))
        assert_raises_unchanged(tree, lambda: tree.query_radius(np.zeros((2, 3)), 0.5,
                                                                **{flag: "yes"}),
                                TypeError, flag)

    def test_add_refuses_bad_n_threads_before_changing_anything(self, rng, assert_raises_unchanged):
        tree = KDTree(uniform(rng, 50, 3))
        assert_raises_unchanged(tree, lambda: tree.add(np.zeros((1, 3)), n_threads=0),
                                ValueError, "n_threads")


@pytest.mark.slow
@pytest.mark.parametrize("p", P_VALUES)
def test_large_clustered_8d_matches_scipy(p):
    spatial = pytest.importorskip("scipy.spatial")
    rng = np.random.default_rng(7)
    X, Q = data_and_queries(clustered, rng, 200_000, 5000, 8)
    dist, idx = KDTree(X).query(Q, k=10, p=p)
    ref, _ = spatial.cKDTree(X).query(Q, k=10, p=p)
    np.testing.assert_allclose(dist, ref, rtol=1e-12, atol=0)
    ids, offsets = KDTree(X).query_radius(Q[:500], 0.05, p=p)
    ref = spatial.cKDTree(X).query_ball_point(Q[:500], 0.05, p=p)
    for got, want in zip(split_csr(ids, offsets), ref):
        assert sorted(got.tolist()) == sorted(want)
