"""ShardedLSHIndex: shards with one set of hash functions answer as one LSHIndex."""

import numpy as np
import pytest

from dlkernels.distributed import ShardedLSHIndex
from dlkernels.neighbors import LSHIndex

da = pytest.importorskip("dask.array")


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_equals_one_index_across_adds(client, metric):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((3000, 12))
    sharded = ShardedLSHIndex(12, metric=metric, n_tables=6, n_bits=8, rng=4)
    sharded.add(da.from_array(X[:1800], chunks=((700, 0, 1, 1099), 12)))
    sharded.add(da.from_array(X[1800:], chunks=(500, 12)))
    assert len(sharded) == 3000
    extra = {"bucket_width": sharded.bucket_width} if metric == "l2" else {}
    one = LSHIndex(12, metric=metric, hashing="random", n_tables=6, n_bits=8, rng=4, **extra)
    one.add(X[:1800])
    one.add(X[1800:])
    Q = np.concatenate([X[::37], rng.standard_normal((50, 12))])
    for k, n_probes in ((1, 0), (10, 16)):
        got = sharded.query(Q, k=k, n_probes=n_probes)
        want = one.query(Q, k=k, n_probes=n_probes)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


def test_width_of_the_first_block_is_shared(client):
    X = np.random.default_rng(0).standard_normal((900, 5))
    sharded = ShardedLSHIndex(5, metric="l2", rng=1)
    assert sharded.bucket_width == "auto"
    sharded.add(da.from_array(X, chunks=(300, 5)))
    first = LSHIndex(5, metric="l2", hashing="random", rng=1)
    first.add(X[:300])
    assert sharded.bucket_width == first.bucket_width


def test_bad_input_is_named(client):
    sharded = ShardedLSHIndex(4, rng=0)
    empty = sharded.query(np.ones((2, 4)), k=3)
    assert (empty[1] == -1).all() and np.isinf(empty[0]).all()
    with pytest.raises(ValueError, match="4 columns"):
        sharded.add(da.ones((10, 3), chunks=(5, 3)))
    with pytest.raises(TypeError, match="dask.array.Array"):
        sharded.add(np.ones((10, 4)))
    with pytest.raises(ValueError, match="metric"):
        ShardedLSHIndex(4, metric="hamming")
    with pytest.raises(ValueError, match="hashing='kmeans'"):
        ShardedLSHIndex(4, hashing="kmeans")
    sharded.add(da.ones((10, 4), chunks=(5, 4)))
    with pytest.raises(ValueError, match=r"shape \(m, 4\)"):
        sharded.query(np.ones((2, 5)))
    with pytest.raises(ValueError):
        sharded.add(da.zeros((4, 4), chunks=(2, 4)))   # cosine of a zero vector
    assert len(sharded) == 10 and sharded.n_shards == 2
