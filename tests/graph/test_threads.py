"""A Graph is immutable: threads walk one graph at once and get exactly their walks."""

import numpy as np
import pytest

from dlkernels.graph import Graph, random_walks


def test_concurrent_walks_equal_single_thread_walks(concurrently):
    rng = np.random.default_rng(3)
    src, dst = rng.integers(0, 2000, 20_000), rng.integers(0, 2000, 20_000)
    graph = Graph.from_edges(src, dst, weights=rng.random(src.size) + 0.1)
    params = [(0.5, 2.0), (1.0, 1.0), (4.0, 0.25), (0.25, 0.25)]
    expected = {(k, seed): random_walks(graph, 15, 1, p=p, q=q, rng=seed, n_threads=1)
                for k, (p, q) in enumerate(params) for seed in range(3)}

    def walker(k):
        p, q = params[k]

        def run(i):
            seed = i % 3
            walks = random_walks(graph, 15, 1, p=p, q=q, rng=seed, n_threads=2)
            return np.array_equal(walks, expected[k, seed])
        return run

    results = concurrently(*(walker(k) for k in range(4)))
    assert all(all(r) for r in results)


def test_every_array_is_read_only():
    g = Graph.from_edges([0, 1, 2], [1, 2, 0], weights=[1.0, 2.0, 3.0])
    for arr in (g.indptr, g.indices, g.weights, g._table, g._totals):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = arr[0]


def test_caller_arrays_are_copied():
    indptr, indices = np.array([0, 1, 2]), np.array([1, 0])
    g = Graph(indptr, indices)
    indices[:] = 0
    assert g.indices.tolist() == [1, 0]
