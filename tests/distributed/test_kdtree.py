"""ShardedKDTree: one KD-tree per block, merged results bit-identical to one KDTree."""

import numpy as np
import pytest

from dlkernels.distributed import ShardedKDTree
from dlkernels.neighbors import KDTree

da = pytest.importorskip("dask.array")


def _data(dtype):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((2000, 3)).astype(dtype)
    Q = rng.standard_normal((300, 3)).astype(dtype)
    return X, Q


def _brute(X, Q, k, p):
    """The k nearest by (distance, id), distances by KDTree's formula, ties by id."""
    diff = np.abs(Q[:, None, :] - X[None, :, :])
    if p == 2:
        D = np.sqrt((diff * diff).sum(axis=2))
    else:
        D = diff.sum(axis=2) if p == 1 else diff.max(axis=2)
    ids = np.broadcast_to(np.arange(X.shape[0]), D.shape)
    order = np.lexsort((ids, D), axis=1)[:, :k]
    return np.take_along_axis(D, order, axis=1), order


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunks", [(700, 700, 600), (0, 1, 998, 1, 0, 1000), (2000,)])
def test_query_equals_one_tree(client, dtype, chunks):
    X, Q = _data(dtype)
    sharded = ShardedKDTree(da.from_array(X, chunks=(chunks, 3)), leafsize=8)
    tree = KDTree(X, leafsize=8)
    assert len(sharded) == 2000 and sharded.n_shards == len(chunks)
    for k in (1, 7, 40):
        for p in (1, 2, np.inf):
            d1, i1 = sharded.query(Q, k, p=p)
            d2, i2 = tree.query(Q, k, p=p)
            assert d1.dtype == d2.dtype
            np.testing.assert_array_equal(i1, i2)
            np.testing.assert_array_equal(d1, d2)
    # Padding: fewer neighbours than k within the bound.
    d1, i1 = sharded.query(Q, 5, distance_upper_bound=1.2)
    d2, i2 = tree.query(Q, 5, distance_upper_bound=1.2)
    assert (i2 == -1).any()
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)
    d1, i1 = sharded.query(Q[0], 3)
    np.testing.assert_array_equal(i1, tree.query(Q[0], 3)[1])


@pytest.mark.parametrize("p", [1, 2, np.inf])
def test_ties_are_broken_by_id(client, p):
    # Integer coordinates on a small grid: most neighbours tie with others.
    rng = np.random.default_rng(6)
    X = rng.integers(-3, 4, size=(1500, 3)).astype(np.float64)
    Q = rng.integers(-3, 4, size=(200, 3)) + 0.5 * (rng.random((200, 3)) < 0.3)
    sharded = ShardedKDTree(da.from_array(X, chunks=(400, 3)))
    dist, ids = sharded.query(Q, 9, p=p)
    want_dist, want_ids = _brute(X, Q, 9, p)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(dist, want_dist)


@pytest.mark.parametrize("r", [0.0, 1.0, 2.5])
def test_query_radius_equals_one_tree(client, r):
    X, Q = _data(np.float64)
    sharded = ShardedKDTree(da.from_array(X, chunks=((500, 0, 1500), 3)))
    tree = KDTree(X)
    got = sharded.query_radius(Q, r, return_distance=True, sort_results=True)
    want = tree.query_radius(Q, r, return_distance=True, sort_results=True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    ids, offsets = sharded.query_radius(Q, np.full(len(Q), r))
    want_ids, want_offsets = tree.query_radius(Q, r)
    np.testing.assert_array_equal(offsets, want_offsets)
    for q in range(len(Q)):
        assert sorted(ids[offsets[q]:offsets[q + 1]]) == \
            sorted(want_ids[want_offsets[q]:want_offsets[q + 1]])


def test_blocks_of_unknown_size(client):
    X, Q = _data(np.float64)
    unknown = da.from_array(X, chunks=(600, 3))
    unknown = unknown[unknown[:, 0] > -10]          # a filter: row counts are nan until built
    assert np.isnan(unknown.shape[0])
    sharded = ShardedKDTree(unknown)
    np.testing.assert_array_equal(sharded.query(Q, 4)[1], KDTree(X).query(Q, 4)[1])


def test_bad_input_is_named(client):
    import dask

    X, Q = _data(np.float64)
    good = da.from_delayed(dask.delayed(np.zeros)((5, 3)), shape=(5, 3), dtype=float)
    wrong = da.from_delayed(dask.delayed(np.zeros)((5, 4)), shape=(5, 3), dtype=float)
    with pytest.raises(ValueError, match="block 1 has 4"):
        ShardedKDTree(da.concatenate([good, wrong]))
    for data, exc, pattern in [
        (X, TypeError, "dask.array.Array"),
        (da.zeros((0, 3), chunks=(1, 3)), ValueError, "at least one point"),
        (da.zeros(10, chunks=5), ValueError, "2-dimensional"),
        (da.from_array(X.astype(complex), chunks=(500, 3)), TypeError, "real"),
    ]:
        with pytest.raises(exc, match=pattern):
            ShardedKDTree(data)
    sharded = ShardedKDTree(da.from_array(X, chunks=(1000, 3)))
    for call, exc, pattern in [
        (lambda: sharded.query(Q[:, :2], 3), ValueError, r"shape \(m, 3\)"),
        (lambda: sharded.query(Q, 0), ValueError, "k must"),
        (lambda: sharded.query(np.full((2, 3), np.nan), 1), ValueError, "finite"),
        (lambda: sharded.query_radius(Q, -1.0), ValueError, "r must"),
        (lambda: sharded.query_radius(Q, [1.0, 2.0]), ValueError, "r must"),
    ]:
        with pytest.raises(exc, match=pattern):
            call()


def test_a_closed_client_is_refused(cluster):
    from distributed import Client

    X, Q = _data(np.float64)
    with Client(cluster) as client:
        sharded = ShardedKDTree(da.from_array(X, chunks=(1000, 3)), client=client)
    with pytest.raises(ValueError, match="client is closed"):
        sharded.query(Q, 2)
