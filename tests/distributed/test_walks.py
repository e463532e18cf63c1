"""dlkernels.distributed.random_walks / write_walks: bit-identical to the one-machine walks."""

import os
import sys

import cloudpickle
import numpy as np
import pytest

from dlkernels.distributed import random_walks, write_walks
from dlkernels.embed import SkipGram
from dlkernels.graph import Graph, Node2Vec
from dlkernels.graph import random_walks as local_walks

# The helpers below run on the workers, which cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def graphs():
    rng = np.random.default_rng(4)
    src, dst = rng.integers(0, 400, 3000), rng.integers(0, 400, 3000)
    return {"unweighted": Graph.from_edges(src, dst, n_nodes=410),
            "weighted": Graph.from_edges(src, dst, rng.random(3000) + 0.1),
            "directed": Graph.from_edges(src, dst, rng.random(3000) + 0.1, directed=True)}


@pytest.mark.parametrize("kind", ["unweighted", "weighted", "directed"])
@pytest.mark.parametrize("p, q", [(1.0, 1.0), (0.25, 4.0), (4.0, 0.5)])
def test_bitwise_equal_to_one_machine(client, graphs, kind, p, q):
    g = graphs[kind]
    expected = local_walks(g, 15, 3, p=p, q=q, rng=11)
    for per_chunk in (97, 5000):
        walks = random_walks(g, 15, 3, p=p, q=q, rng=11, walks_per_chunk=per_chunk)
        assert walks.dtype == np.int32 and walks.shape == expected.shape
        np.testing.assert_array_equal(walks.compute(), expected)


def test_one_row_blocks(client, graphs):
    g = graphs["weighted"]
    starts = np.arange(0, 400, 37)
    walks = random_walks(g, 7, 2, p=0.5, start_nodes=starts, rng=1, walks_per_chunk=1)
    assert walks.numblocks == (2 * starts.size, 1)
    np.testing.assert_array_equal(walks.compute(),
                                  local_walks(g, 7, 2, p=0.5, start_nodes=starts, rng=1))


def test_start_nodes_empty_runs_and_generators(client, graphs):
    g = graphs["weighted"]
    starts = [5, 5, 0, 399]
    np.testing.assert_array_equal(
        random_walks(g, 9, 4, q=0.5, start_nodes=starts, rng=2, walks_per_chunk=3).compute(),
        local_walks(g, 9, 4, q=0.5, start_nodes=starts, rng=2))
    empty = random_walks(g, 9, 0, rng=2)
    assert empty.shape == (0, 9) and empty.compute().shape == (0, 9)
    # A Generator is drawn from once, as by the one-machine call.
    a, b = np.random.default_rng(8), np.random.default_rng(8)
    first = random_walks(g, 5, 1, rng=a).compute()
    np.testing.assert_array_equal(first, local_walks(g, 5, 1, rng=b))
    np.testing.assert_array_equal(random_walks(g, 5, 1, rng=a).compute(),
                                  local_walks(g, 5, 1, rng=b))


def _count_graph_unpickling():
    from dlkernels.graph import graph as module

    original = module.Graph.__setstate__

    def counting(self, state):
        module.UNPICKLED = getattr(module, "UNPICKLED", 0) + 1
        original(self, state)

    module.Graph.__setstate__ = counting


def _unpickled():
    from dlkernels.graph import graph as module

    return getattr(module, "UNPICKLED", 0)


def test_the_graph_travels_to_each_worker_once(client, graphs):
    client.run(_count_graph_unpickling)
    before = client.run(_unpickled)
    g = graphs["weighted"]
    walks = random_walks(g, 6, 2, rng=0, walks_per_chunk=20)     # 41 tasks
    np.testing.assert_array_equal(walks.compute(), local_walks(g, 6, 2, rng=0))
    received = {w: n - before[w] for w, n in client.run(_unpickled).items()}
    # Once per task would be about 20 per worker. On a loaded machine Dask can
    # fetch a replica a second time (its replication racing a task's own fetch;
    # seen once in many runs), so at most 2 per worker is allowed.
    assert 1 <= max(received.values()) <= 2, received


def _loaded_paths():
    from dlkernels.distributed import walks as module

    return sorted(key[0] for key in module._GRAPHS)


def test_workers_read_the_graph_from_a_path(client, graphs, tmp_path):
    g = graphs["directed"]
    path = tmp_path / "graph.npz"
    g.save(path)
    walks = random_walks(path, 12, 2, p=0.5, q=2.0, rng=3, walks_per_chunk=50)
    np.testing.assert_array_equal(walks.compute(), local_walks(g, 12, 2, p=0.5, q=2.0, rng=3))
    loaded = client.run(_loaded_paths)
    assert all(paths == [str(path)] for paths in loaded.values() if paths)
    with_starts = random_walks(str(path), 4, 2, start_nodes=[7, 1], rng=3).compute()
    np.testing.assert_array_equal(with_starts, local_walks(g, 4, 2, start_nodes=[7, 1], rng=3))


def test_write_walks_and_train_on_the_shards(client, graphs, tmp_path):
    g = graphs["weighted"]
    shards = write_walks(g, tmp_path / "walks", 10, 3, p=0.5, rng=6, walks_per_chunk=128)
    expected = local_walks(g, 10, 3, p=0.5, rng=6)
    assert [os.path.basename(s) for s in shards] == [f"walks-{i:06d}.npy" for i in range(10)]
    np.testing.assert_array_equal(np.concatenate([np.load(s) for s in shards]), expected)
    args = dict(dim=8, window=3, epochs=2, hs=True, rng=1, n_threads=1)
    from_shards = SkipGram(**args).fit(tmp_path / "walks")
    np.testing.assert_array_equal(from_shards.vectors, SkipGram(**args).fit(expected).vectors)
    n2v = Node2Vec(dim=8, window=3, epochs=2, hs=True, rng=1, n_threads=1)
    np.testing.assert_array_equal(n2v.fit(g, walks=tmp_path / "walks").vectors,
                                  SkipGram(**args).fit(expected, vocab_size=g.n_nodes).vectors)
    with pytest.raises(ValueError, match="already holds .npy files"):
        write_walks(g, tmp_path / "walks", 10, 3, rng=6)


def test_bad_input_is_named(client, graphs, tmp_path):
    g = graphs["weighted"]
    for call, exc, pattern in [
        (lambda: random_walks(g, 0, 1, rng=0), ValueError, "walk_length"),
        (lambda: random_walks(g, 5, 1, p=0.0, rng=0), ValueError, "p must"),
        (lambda: random_walks(g, 5, 1, start_nodes=[10**6], rng=0), IndexError, "start_nodes"),
        (lambda: random_walks(g, 5, 1, walks_per_chunk=0, rng=0), ValueError, "walks_per_chunk"),
        (lambda: random_walks(np.eye(3), 5, 1), TypeError, "graph must be"),
        (lambda: random_walks(g, 5, 1, client="tcp://x"), TypeError, "client must be"),
        (lambda: random_walks(tmp_path / "none.npz", 5, 1), FileNotFoundError, "none.npz"),
    ]:
        with pytest.raises(exc, match=pattern):
            call()
    (tmp_path / "bad.npz").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="bad.npz"):
        random_walks(tmp_path / "bad.npz", 5, 1)


def test_a_closed_client_is_refused(cluster, graphs):
    from distributed import Client

    client = Client(cluster)
    client.close()
    with pytest.raises(ValueError, match="client is closed"):
        random_walks(graphs["weighted"], 5, 1, client=client)
