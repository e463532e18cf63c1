"""Hypothesis: random shapes, values and insertion orders against brute force, and
bad inputs for every KDTree method (the error names the argument and the tree is
left as it was).

Coordinates come either from a small integer grid (exact duplicates and exact
distance ties everywhere) or from floats over several orders of magnitude, up
to the largest coordinates a tree accepts.
"""

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import given, strategies as st

from dlkernels.neighbors import KDTree, split_csr

P_VALUES = [1, 2, np.inf]


def reduced_distances(X, Q, p):
    """As the kernels compute them: in X's dtype, coordinates summed in order."""
    D = np.zeros((len(Q), len(X)), dtype=X.dtype)
    for j in range(X.shape[1]):
        diff = X[:, j][None, :] - Q[:, j][:, None]
        D = D + diff * diff if p == 2 else (D + np.abs(diff) if p == 1 else np.maximum(D, np.abs(diff)))
    return D


def reduce(value, p, dtype):
    value = np.asarray(value, dtype=np.float64)
    return (value * value if p == 2 else value).astype(dtype)


@st.composite
def point_sets(draw, max_n=120, max_d=5):
    """(data, queries): same dtype and dimension, grid or float coordinates."""
    d = draw(st.integers(1, max_d))
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(0, 30))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    if draw(st.booleans()):
        levels = draw(st.integers(1, 5))
        make = lambda rows: draw(hnp.arrays(np.int64, (rows, d), elements=st.integers(0, levels)))
    else:
        # ... or up to the largest coordinates a tree accepts (no distance overflows)
        bound = 2.0 ** np.floor(np.log2(0.99 * np.sqrt(np.finfo(dtype).max / (16 * d))))
        scale = draw(st.sampled_from([1e-3, 1.0, 1e4, bound]))
        elements = st.floats(-1.0, 1.0, allow_nan=False, width=32)
        make = lambda rows: draw(hnp.arrays(np.float64, (rows, d), elements=elements)) * scale
    return make(n).astype(dtype), make(m).astype(dtype)


@given(point_sets(), st.integers(1, 12), st.sampled_from(P_VALUES), st.integers(1, 9),
       st.sampled_from([np.inf, 0.0, 0.5, 1.0, 2.0]))
def test_query_equals_brute_force(points, k, p, leafsize, upper):
    X, Q = points
    dist, idx = KDTree(X, leafsize=leafsize).query(Q, k=k, p=p, distance_upper_bound=upper)
    D = reduced_distances(X, Q, p)
    D = np.where(D < reduce(upper, p, X.dtype), D, np.inf)
    expected = np.sort(D, axis=1)[:, :k]
    expected = np.hstack([expected, np.full((len(Q), k - expected.shape[1]), np.inf, X.dtype)])
    np.testing.assert_array_equal(dist, np.sqrt(expected) if p == 2 else expected)
    rows, cols = np.nonzero(np.isfinite(expected))
    np.testing.assert_array_equal(idx[~np.isfinite(expected)], -1)
    # Each id is at its reported distance (ties may pick any of the tied points; two
    # reduced distances may share a square root, so compare distances).
    found = D[rows, idx[rows, cols]]
    np.testing.assert_array_equal(np.sqrt(found) if p == 2 else found, dist[rows, cols])
    for row in idx:
        assert len(set(row[row >= 0].tolist())) == int((row >= 0).sum())


@given(point_sets(), st.sampled_from(P_VALUES), st.integers(1, 9),
       st.sampled_from([0.0, 0.5, 1.0, 3.0]), st.booleans())
def test_query_radius_equals_brute_force(points, p, leafsize, r, sort_results):
    X, Q = points
    ids, dist, offsets = KDTree(X, leafsize=leafsize).query_radius(
        Q, r, return_distance=True, sort_results=sort_results, p=p)
    D = reduced_distances(X, Q, p)
    assert offsets.shape == (len(Q) + 1,)
    for q, (got, got_d) in enumerate(zip(split_csr(ids, offsets), split_csr(dist, offsets))):
        np.testing.assert_array_equal(np.sort(got), np.flatnonzero(D[q] <= reduce(r, p, X.dtype)))
        np.testing.assert_array_equal(got_d, np.sqrt(D[q, got]) if p == 2 else D[q, got])
        if sort_results:
            np.testing.assert_array_equal(np.lexsort((got, got_d)), np.arange(len(got)))


@given(point_sets(max_n=80), st.lists(st.integers(0, 40), min_size=1, max_size=6),
       st.sampled_from(P_VALUES))
def test_add_in_batches_equals_one_tree(points, batches, p):
    X, Q = points
    tree = KDTree(X, leafsize=3)
    extra = np.concatenate([X[:1] + i for i in range(sum(batches) + 1)])[:sum(batches)]
    start = 0
    for size in batches:
        ids = tree.add(extra[start:start + size])
        np.testing.assert_array_equal(ids, np.arange(len(X) + start, len(X) + start + size))
        start += size
    everything = np.concatenate([X, extra])
    np.testing.assert_array_equal(tree.data, everything)
    k = min(len(everything), 5)
    np.testing.assert_array_equal(tree.query(Q, k=k, p=p)[0],
                                  KDTree(everything, leafsize=3).query(Q, k=k, p=p)[0])


# -- bad input ------------------------------------------------------------------------------

@st.composite
def broken_points(draw, d):
    """Points that must be refused, with the exception they must raise."""
    kind = draw(st.sampled_from(["nan", "inf", "-inf", "complex", "object", "str", "dim", "ndim"]))
    rows = draw(st.integers(1, 5))
    arr = np.zeros((rows, d))
    if kind in ("nan", "inf", "-inf"):
        arr[draw(st.integers(0, rows - 1)), draw(st.integers(0, d - 1))] = float(kind)
        return arr, ValueError
    if kind == "complex":
        return arr.astype(complex), TypeError
    if kind == "object":
        return arr.astype(object), TypeError
    if kind == "str":
        return arr.astype(str), TypeError
    if kind == "dim":
        return np.zeros((rows, d + draw(st.integers(1, 3)))), ValueError
    return np.zeros((rows, d, 1)), ValueError


@given(point_sets(max_n=60), st.data())
def test_bad_queries_change_nothing(assert_raises_unchanged, points, data):
    X, _ = points
    tree = KDTree(X)
    if data.draw(st.booleans()):
        tree.add(X[:3])
    bad, exc = data.draw(broken_points(X.shape[1]))
    assert_raises_unchanged(tree, lambda: tree.query(bad, k=2), exc, "X")
    assert_raises_unchanged(tree, lambda: tree.query_radius(bad, 1.0), exc, "X")
    assert_raises_unchanged(tree, lambda: tree.add(bad), exc, "X")
    good = X[:2]
    k = data.draw(st.integers(-3, 0))
    assert_raises_unchanged(tree, lambda: tree.query(good, k=k), ValueError, "k")
    p = data.draw(st.sampled_from([0, 0.5, 3, -1, np.nan, "l2"]))
    assert_raises_unchanged(tree, lambda: tree.query(good, p=p), ValueError, "p")
    r = data.draw(st.sampled_from([-1e-9, -1.0, np.nan, -np.inf]))
    assert_raises_unchanged(tree, lambda: tree.query_radius(good, r), ValueError, "r")
    assert_raises_unchanged(tree, lambda: tree.query(good, distance_upper_bound=r),
                            ValueError, "distance_upper_bound")


@given(st.data())
def test_bad_data_is_refused(data):
    d = data.draw(st.integers(1, 4))
    bad, exc = data.draw(broken_points(d))
    try:
        KDTree(bad)
    except exc as err:
        assert "X" in str(err)
    else:
        assert bad.ndim == 2 and bad.dtype.kind in "f" and np.isfinite(bad).all()  # "dim": fine
