"""A worker killed mid-computation: Dask reruns its tasks and the results are unchanged."""

import os
import signal
import sys
import time

import cloudpickle
import numpy as np
import pytest

from dlkernels.distributed import ShardedKDTree, random_walks
from dlkernels.graph import Graph
from dlkernels.graph import random_walks as local_walks
from dlkernels.neighbors import KDTree

da = pytest.importorskip("dask.array")
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slow


@pytest.fixture
def own_client():
    # A cluster of its own: this test kills one of its workers.
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _kill_one_worker(client):
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    return victim


def test_walks_survive_a_killed_worker(own_client, tmp_path):
    from distributed import futures_of, wait

    rng = np.random.default_rng(1)
    g = Graph.from_edges(rng.integers(0, 20_000, 200_000), rng.integers(0, 20_000, 200_000),
                         weights=rng.random(200_000) + 0.1)
    g.save(tmp_path / "g.npz")
    expected = local_walks(g, 40, 4, p=0.5, q=2.0, rng=9)
    for source in (g, tmp_path / "g.npz"):
        walks = random_walks(source, 40, 4, p=0.5, q=2.0, rng=9, walks_per_chunk=500).persist()
        futures = futures_of(walks)
        deadline = time.monotonic() + 60
        while sum(f.done() for f in futures) < len(futures) // 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sum(f.done() for f in futures) < len(futures), "finished before the kill"
        _kill_one_worker(own_client)
        wait(futures, timeout=120)
        np.testing.assert_array_equal(walks.compute(), expected)


def test_kdtree_shards_survive_a_killed_worker(own_client):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20_000, 3))
    Q = rng.standard_normal((500, 3))
    sharded = ShardedKDTree(da.from_array(X, chunks=(2500, 3)))
    _kill_one_worker(own_client)   # half the trees are gone: rebuilt from their blocks
    dist, ids = sharded.query(Q, 5)
    want = KDTree(X).query(Q, 5)
    np.testing.assert_array_equal(ids, want[1])
    np.testing.assert_array_equal(dist, want[0])
