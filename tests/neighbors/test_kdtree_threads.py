"""The thread-safety contract of KDTree, stressed with four threads per tree.

One thread keeps adding fixed batches of points while three others read. Ids
are positions in one pre-drawn array ``ALL``, so every point a reader can meet
is known: a read must equal brute force over ``ALL[:n]`` for some forest size
``n`` the tree really had (a batch boundary no smaller than ``len(tree)`` just
before the call). A read that overlapped a write unguarded mixes two forests:
it crashed the process (a leaf longer than the scratch buffer sized for the
other forest), wrote a file whose header and trees disagree, or cached the old
``data`` after the write had cleared it.
"""

import pickle
import sys

import numpy as np
import pytest

from dlkernels.neighbors import KDTree, split_csr

N0, BATCH, MAX_BATCHES, D = 2000, 20, 1500, 3
ALL = np.random.default_rng(0).standard_normal((N0 + BATCH * MAX_BATCHES, D))
SIZES = N0 + BATCH * np.arange(MAX_BATCHES + 1)


@pytest.fixture(autouse=True)
def switch_often():
    """Switch threads every microsecond (default 5 ms), so that reads and writes
    interleave inside the Python code of a call, not only around its kernels."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def _grower():
    tree = KDTree(ALL[:N0], leafsize=8)

    def add(i):
        start = len(tree)
        if start + BATCH <= len(ALL):
            ids = tree.add(ALL[start:start + BATCH], n_threads=1)
            assert ids.tolist() == list(range(start, start + BATCH))  # one writer
        return True

    return tree, add


def _snapshot(n_before: int, ids) -> int:
    """The smallest forest size a read may have seen: a batch boundary at least
    ``len(tree)`` before the call and above every id it returned. If the read saw
    a larger forest, the points past this size were not among its results, so
    its results over both sizes are the same: checking this one is exact."""
    low = max(n_before, int(np.max(ids, initial=-1)) + 1)
    return int(SIZES[np.searchsorted(SIZES, low)])


def _squared(Q, n):
    diff = ALL[None, :n, :] - Q[:, None, :]
    return np.einsum("qnd,qnd->qn", diff, diff)


def _knn_is_exact(Q, dist, idx, n_before) -> bool:
    n = _snapshot(n_before, idx)
    D2 = _squared(Q, n)
    k = idx.shape[1]
    return (np.allclose(dist, np.sqrt(np.sort(D2, axis=1)[:, :k]), rtol=1e-12, atol=0) and
            np.allclose(dist, np.sqrt(np.take_along_axis(D2, idx, axis=1)), rtol=1e-12, atol=0))


def _radius_is_exact(Q, r, ids, offsets, n_before) -> bool:
    inside = _squared(Q, _snapshot(n_before, ids)) <= r * r
    return all(np.array_equal(np.sort(got), np.flatnonzero(row))
               for got, row in zip(split_csr(ids, offsets), inside))


def _is_a_prefix(data, n_before) -> bool:
    return len(data) >= n_before and len(data) in SIZES and np.array_equal(data, ALL[:len(data)])


def test_queries_during_add_see_one_forest(concurrently):
    tree, add = _grower()

    # Many small queries per round, checked together: most of a reader's time
    # is then spent in KDTree's own code, where an unguarded race would strike.
    def query(i):
        Q = np.random.default_rng(i).standard_normal((16, 4, D))
        ok = True
        for part in Q:
            n_before = len(tree)
            dist, idx = tree.query(part, k=3, n_threads=2)
            ok &= _knn_is_exact(part, dist, idx, n_before)
        return ok

    def query_radius(i):
        Q = np.random.default_rng(10_000 + i).standard_normal((16, 4, D))
        ok = True
        for part in Q:
            n_before = len(tree)
            ids, offsets = tree.query_radius(part, 0.3, n_threads=2)
            ok &= _radius_is_exact(part, 0.3, ids, offsets, n_before)
        return ok

    results = concurrently(add, query, query_radius, query, seconds=1.5)
    assert all(results[1]) and all(results[2]) and all(results[3])
    assert len(tree) > N0 + 10 * BATCH  # the writer really ran alongside


def test_data_save_and_pickle_during_add_see_one_forest(concurrently, tmp_path):
    tree, add = _grower()

    def data(i):
        n_before = len(tree)
        return _is_a_prefix(np.asarray(tree.data), n_before)

    def save_or_pickle(i):
        n_before = len(tree)
        if i % 2:
            path = tmp_path / f"tree{i % 8}.npz"
            tree.save(path)
            copy = KDTree.load(path)    # a header from one forest, arrays from another: refused
        else:
            copy = pickle.loads(pickle.dumps(tree))
        return _is_a_prefix(copy.data, n_before)

    results = concurrently(add, data, data, save_or_pickle, seconds=1.5)
    assert all(results[1]) and all(results[2]) and all(results[3])
    # A read that cached the old points after a write cleared them would show here.
    assert len(tree.data) == len(tree) > N0 + 10 * BATCH


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_concurrent_reads_give_each_thread_its_exact_results(concurrently, dtype):
    tree = KDTree(ALL[:20_000].astype(dtype))
    queries = {seed: np.random.default_rng(seed).standard_normal((500, D)).astype(dtype)
               for seed in range(8)}
    expected = {seed: tree.query(Q, k=5, n_threads=1) for seed, Q in queries.items()}

    def read(i):
        seed = i % 8
        dist, idx = tree.query(queries[seed], k=5, n_threads=2)
        return np.array_equal(dist, expected[seed][0]) and np.array_equal(idx, expected[seed][1])

    results = concurrently(read, read, read, read)
    assert all(all(r) for r in results)
