"""asv benchmarks for dlkernels.distributed: walks and sharded KD-tree queries on 1 and 2
Dask worker processes (skipped without dask). bench/distributed_scaling.py prints the
same cases against the one-process call in one table."""

import numpy as np


class _OnCluster:
    """A LocalCluster of ``n_workers`` one-thread processes for each benchmark."""
    params = [1, 2]
    param_names = ["n_workers"]
    timeout = 600

    def setup(self, n_workers):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise NotImplementedError("dask[distributed] is not installed") from None
        self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                    host="127.0.0.1", dashboard_address=None)
        self.client = Client(self.cluster)
        self.rng = np.random.default_rng(0)

    def teardown(self, n_workers):
        self.client.close()
        self.cluster.close()


class DistributedWalks(_OnCluster):
    def setup(self, n_workers):
        super().setup(n_workers)
        from dlkernels.graph import Graph

        self.graph = Graph.from_edges(self.rng.integers(0, 100_000, 1_000_000),
                                      self.rng.integers(0, 100_000, 1_000_000), n_nodes=100_000)

    def time_walks(self, n_workers):
        from distributed import wait

        from dlkernels.distributed import random_walks

        walks = random_walks(self.graph, 80, 10, p=0.5, q=2.0, rng=1,
                             walks_per_chunk=20_000).persist()
        wait(walks)


class ShardedKDTreeQuery(_OnCluster):
    def setup(self, n_workers):
        super().setup(n_workers)
        import dask.array as da

        from dlkernels.distributed import ShardedKDTree

        X = self.rng.standard_normal((1_000_000, 3))
        self.queries = self.rng.standard_normal((100_000, 3))
        self.tree = ShardedKDTree(da.from_array(X, chunks=(500_000, 3)), n_threads=1)

    def time_query(self, n_workers):
        self.tree.query(self.queries, 10, n_threads=1)
