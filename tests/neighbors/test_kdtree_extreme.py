"""KDTree at the edges: coordinates near the largest a tree accepts (checked in exact
rational arithmetic), coordinates beyond it, and absurd or unusual arguments (huge
k, thread counts and leaf sizes, bfloat16 tensors, masked arrays). Each refusal
names the argument and leaves the tree as it was.
"""

import numpy as np
import pytest

from dlkernels.neighbors import KDTree, split_csr

P_VALUES = [1, 2, np.inf]
DTYPES = [np.float64, np.float32]


def uniform(rng, n, d, dtype=np.float64):
    return rng.random((n, d)).astype(dtype)

def expected_bound(dtype, d):
    """The documented coordinate bound, in exact integer arithmetic: the largest power
    of two ``B`` with ``16 d B**2 <= finfo(dtype).max``."""
    from fractions import Fraction

    largest = Fraction(float(np.finfo(dtype).max))
    e = 1100
    while 16 * d * Fraction(2) ** (2 * e) > largest:
        e -= 1
    return 2.0 ** e


def exact_distances(X, Q, p):
    """Distances from each query to each point, from the exact rational reduced
    distance (no rounding at all) rounded once to float64, shape (len(Q), len(X))."""
    from fractions import Fraction

    Xf = [[Fraction(float(v)) for v in row] for row in X]
    out = np.empty((len(Q), len(X)))
    for q, row in enumerate(Q):
        qf = [Fraction(float(v)) for v in row]
        for i, x in enumerate(Xf):
            diffs = [abs(a - b) for a, b in zip(x, qf)]
            if p == 2:
                out[q, i] = np.sqrt(float(sum(t * t for t in diffs)))
            else:
                out[q, i] = float(sum(diffs) if p == 1 else max(diffs))
    return out


def near_the_bound(rng, n, d, dtype):
    """Points filling [-B, B]**d, the two extreme corners included."""
    B = expected_bound(dtype, d)
    X = (rng.uniform(-1, 1, (n, d)) * B).astype(dtype)
    X[0], X[1] = B, -B
    X[2:n // 4] = np.where(rng.random((n // 4 - 2, d)) < 0.5, -B, B)  # more corners
    return X


class TestExtremeValues:
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("d", [1, 2, 5])
    def test_the_bound_is_as_documented(self, dtype, d):
        B = expected_bound(dtype, d)
        tree = KDTree(np.array([[B] * d, [-B] * d], dtype=dtype))
        dist, idx = tree.query(np.full(d, B, dtype=dtype), k=2)
        assert np.isfinite(dist).all() and idx.tolist() == [0, 1]
        above = np.nextafter(dtype(B), dtype(np.inf))
        with pytest.raises(ValueError, match=r"X must lie within .*2\*\*%d" % np.log2(B)):
            KDTree(np.array([[0.0] * (d - 1) + [-above]], dtype=dtype))

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("p", P_VALUES)
    def test_knn_near_the_bound_equals_exact_arithmetic(self, rng, dtype, p):
        X = near_the_bound(rng, 200, 3, dtype)
        Q = np.vstack([near_the_bound(rng, 24, 3, dtype), X[:4]])
        exact = exact_distances(X, Q, p)
        rtol = 5 * np.finfo(dtype).eps  # a few roundings of each of 3 coordinates
        tree = KDTree(X, leafsize=4)
        for k in (1, 7, 200):
            dist, idx = tree.query(Q, k=k, p=p)
            assert np.isfinite(dist).all() and (idx >= 0).all()
            want = np.sort(exact, axis=1)[:, :k]
            np.testing.assert_allclose(dist, want, rtol=rtol, atol=0)
            np.testing.assert_allclose(np.take_along_axis(exact, idx, axis=1), want,
                                       rtol=rtol, atol=0)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("p", P_VALUES)
    def test_radius_near_the_bound_equals_exact_arithmetic(self, rng, dtype, p):
        X = near_the_bound(rng, 200, 3, dtype)
        Q = near_the_bound(rng, 12, 3, dtype)
        exact = exact_distances(X, Q, p)
        rtol = 5 * np.finfo(dtype).eps  # a few roundings of each of 3 coordinates
        tree = KDTree(X, leafsize=4)
        r = float(np.median(exact))
        ids, dist, offsets = tree.query_radius(Q, r, return_distance=True, p=p)
        for q, (got, got_d) in enumerate(zip(split_csr(ids, offsets), split_csr(dist, offsets))):
            surely_in = np.flatnonzero(exact[q] < r * (1 - rtol))
            maybe_in = np.flatnonzero(exact[q] <= r * (1 + rtol))
            assert set(surely_in) <= set(got.tolist()) <= set(maybe_in)
            np.testing.assert_allclose(got_d, exact[q, got], rtol=rtol, atol=0)
        # A radius (or bound) whose square overflows includes everything.
        ids, offsets = tree.query_radius(Q, 1e300 if dtype == np.float64 else 1e30, p=p)
        assert offsets[-1] == len(Q) * len(X)
        dist, idx = tree.query(Q, k=len(X), p=p, distance_upper_bound=10**400)
        assert (idx >= 0).all()

    @pytest.mark.parametrize("dtype, value", [(np.float32, 3e38), (np.float64, 1e200)])
    def test_points_whose_distances_overflow_are_refused(self, rng, dtype, value,
                                                         assert_raises_unchanged):
        # The reproducer of issue 13: these gave inf distances and ids -1.
        with pytest.raises(ValueError, match="X must lie within"):
            KDTree(np.array([[value, 0], [-value, 0]], dtype))
        tree = KDTree(uniform(rng, 50, 2, dtype))
        big = np.array([[0, value]], dtype)
        for call in (lambda: tree.query(big), lambda: tree.query_radius(big, 1.0),
                     lambda: tree.add(big)):
            assert_raises_unchanged(tree, call, ValueError, "X must lie within")

    @pytest.mark.parametrize("k", [2**40, 2**63, np.uint64(2**64 - 1)])
    @pytest.mark.parametrize("m", [0, 1, 3])
    def test_absurd_k_is_refused_without_allocating(self, rng, assert_raises_unchanged, k, m):
        tree = KDTree(uniform(rng, 50, 3))
        assert_raises_unchanged(tree, lambda: tree.query(np.zeros((m, 3)), k=k), ValueError,
                                "k asks for")

    def test_k_far_above_n_is_padded(self, rng):
        # The kernel keeps at most n candidates per query, whatever k is.
        X = uniform(rng, 40, 3)
        Q = uniform(rng, 3, 3)
        dist, idx = KDTree(X).query(Q, k=10**6)
        assert dist.shape == (3, 10**6)
        exact = exact_distances(X, Q, 2)
        np.testing.assert_allclose(dist[:, :40], np.sort(exact, axis=1), rtol=1e-15, atol=0)
        np.testing.assert_array_equal(np.sort(idx[:, :40], axis=1), np.tile(np.arange(40), (3, 1)))
        assert np.isinf(dist[:, 40:]).all() and (idx[:, 40:] == -1).all()

    @pytest.mark.parametrize("n_threads", [2**31, 2**63, -2**63, np.int64(2**62)])
    def test_huge_thread_counts_are_capped(self, rng, n_threads):
        X, Q = uniform(rng, 3000, 3), uniform(rng, 300, 3)
        tree = KDTree(X, n_threads=n_threads)
        tree.add(X[:10], n_threads=n_threads)
        reference = KDTree(np.vstack([X, X[:10]]), n_threads=1)
        for a, b in zip(tree.query(Q, k=3, n_threads=n_threads), reference.query(Q, k=3)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(tree.query_radius(Q, 0.1, sort_results=True, n_threads=n_threads),
                        reference.query_radius(Q, 0.1, sort_results=True)):
            np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("leafsize", [2**31, 2**63, 2**100])
    def test_huge_leafsize_is_refused(self, leafsize):
        with pytest.raises(ValueError, match="leafsize must be at most 2147483647"):
            KDTree(np.zeros((4, 2)), leafsize=leafsize)

    def test_largest_leafsize_makes_one_leaf(self, rng):
        X, Q = uniform(rng, 300, 2), uniform(rng, 20, 2)
        dist, idx = KDTree(X, leafsize=2**31 - 1).query(Q, k=4)
        exact = exact_distances(X, Q, 2)
        np.testing.assert_allclose(dist, np.sort(exact, axis=1)[:, :4], rtol=1e-15, atol=0)
        np.testing.assert_allclose(np.take_along_axis(exact, idx, axis=1), dist, rtol=1e-15, atol=0)

    def test_bfloat16_tensors_are_named(self, rng, assert_raises_unchanged):
        torch = pytest.importorskip("torch")
        half = torch.ones((4, 3), dtype=torch.bfloat16)
        with pytest.raises(TypeError, match="X has a dtype numpy cannot hold"):
            KDTree(half)
        tree = KDTree(uniform(rng, 50, 3))
        for call, name in [(lambda: tree.query(half), "X has a dtype"),
                           (lambda: tree.query_radius(half, 0.1), "X has a dtype"),
                           (lambda: tree.query_radius(np.zeros((4, 3)), half[:, 0]),
                            "r has a dtype"),
                           (lambda: tree.add(half), "X has a dtype")]:
            assert_raises_unchanged(tree, call, TypeError, name)

    def test_masked_arrays_are_refused(self, rng, assert_raises_unchanged):
        masked = np.ma.masked_array(np.zeros((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
        with pytest.raises(TypeError, match="X must not be a masked array"):
            KDTree(masked)
        tree = KDTree(uniform(rng, 50, 3))
        for call in (lambda: tree.query(masked), lambda: tree.add(masked)):
            assert_raises_unchanged(tree, call, TypeError, "X must not be a masked array")



@pytest.mark.parametrize("p", [1, 2, np.inf])
@pytest.mark.parametrize("k", [1, 4, 30, 60])
def test_ties_on_a_grid_come_in_id_order(p, k):
    # Integer coordinates: most distances tie exactly. Among equally distant
    # points the lower ids must be kept and come first, whatever the leaf order,
    # and across the trees of a forest.
    rng = np.random.default_rng(11)
    X = rng.integers(-4, 5, size=(1200, 3)).astype(np.float64)
    Q = rng.integers(-4, 5, size=(150, 3)) + 0.5 * (rng.random((150, 3)) < 0.3)
    tree = KDTree(X[:700], leafsize=4)
    tree.add(X[700:])
    dist, ids = tree.query(Q, k, p=p)
    diff = np.abs(Q[:, None, :] - X[None, :, :])
    full = diff.max(-1) if p == np.inf else (diff.sum(-1) if p == 1 else np.sqrt((diff ** 2).sum(-1)))
    order = np.lexsort((np.broadcast_to(np.arange(len(X)), full.shape), full), axis=1)[:, :k]
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(dist, np.take_along_axis(full, order, axis=1))
