"""asv benchmarks for dlkernels.graph: node2vec walks against PecanPy's SparseOTF.

Parametrized over ``impl`` (dlkernels or pecanpy), ``n_threads`` and ``(p, q)``. The
graph is the issue-5 one: 100k nodes, 1M random edges (Erdős–Rényi-like,
undirected, unweighted, fixed seed). Each timed call walks 80 nodes from 20k
start nodes (1.6M steps). PecanPy is timed at its compiled core
(``SparseOTF._random_walks``) with its JIT warmed in set-up; without PecanPy
installed (it needs numpy < 2 today) its rows are skipped. For its peak memory
and the full-size run see ``bench/walks_compare.py``.
"""

from __future__ import annotations

import numpy as np

N_NODES, N_EDGES = 100_000, 1_000_000
WALK_LENGTH = 80
N_STARTS = 20_000
SEED = 5


def random_edges(n_nodes=N_NODES, n_edges=N_EDGES, seed=SEED):
    """Erdős–Rényi-like edges: both ends uniform (repeats and self-loops are merged or dropped)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_nodes, n_edges), rng.integers(0, n_nodes, n_edges)


def _dlkernels(p, q, n_threads):
    from dlkernels.graph import Graph, random_walks

    g = Graph.from_edges(*random_edges(), n_nodes=N_NODES)
    starts = np.random.default_rng(SEED).integers(0, N_NODES, N_STARTS)

    def run():
        random_walks(g, WALK_LENGTH, 1, p=p, q=q, start_nodes=starts, rng=0, n_threads=n_threads)

    return run


def pecanpy_walker(src, dst, n_nodes, p, q, n_threads):
    """PecanPy's SparseOTF on the graph dlkernels builds from these edges (symmetric,
    repeats merged, no self-loops, weight 1): ``(graph, move_forward, has_nbrs)``."""
    import scipy.sparse
    from pecanpy.pecanpy import SparseOTF

    keep = src != dst
    a = scipy.sparse.coo_matrix((np.ones(keep.sum(), np.float32), (src[keep], dst[keep])),
                                shape=(n_nodes, n_nodes)).tocsr()
    a = ((a + a.T) > 0).astype(np.float32).tocsr()
    a.sort_indices()
    g = SparseOTF(p=p, q=q, workers=n_threads, verbose=False, extend=False)
    g.indptr, g.indices, g.data = (a.indptr.astype(np.uint32), a.indices.astype(np.uint32),
                                   a.data.astype(np.float32))
    g.set_node_ids(None, implicit_ids=True, num_nodes=n_nodes)
    return g, g.get_move_forward(), g.get_has_nbrs()


def _pecanpy(p, q, n_threads):
    try:
        import numba
        from numba_progress import ProgressBar
        import pecanpy  # noqa: F401
    except ImportError as exc:
        raise NotImplementedError(f"pecanpy is not installed: {exc}") from None
    if n_threads > numba.config.NUMBA_NUM_THREADS:
        raise NotImplementedError("more threads than numba was started with")
    numba.set_num_threads(n_threads)
    g, move_forward, has_nbrs = pecanpy_walker(*random_edges(), N_NODES, p, q, n_threads)
    starts = np.random.default_rng(SEED).integers(0, N_NODES, N_STARTS).astype(np.uint32)
    progress = ProgressBar(total=1, disable=True)
    # PecanPy's walk_length counts the steps after the start node.
    g._random_walks(100, WALK_LENGTH - 1, None, starts[:100], has_nbrs, move_forward, progress)

    def run():
        g._random_walks(starts.size, WALK_LENGTH - 1, None, starts, has_nbrs, move_forward,
                        progress)

    run.close = progress.close  # its updater thread would keep the process alive
    return run


IMPLS = {"dlkernels": _dlkernels, "pecanpy": _pecanpy}


class Node2VecWalks:
    """20k walks of 80 nodes on a 100k-node, 1M-edge random graph."""

    param_names = ["impl", "n_threads", "p_q"]
    params = [list(IMPLS), [1, 2], ["1,1", "0.5,2", "2,0.5"]]
    timeout = 300

    def setup(self, impl, n_threads, p_q):
        p, q = (float(x) for x in p_q.split(","))
        self.run = IMPLS[impl](p, q, n_threads)

    def teardown(self, impl, n_threads, p_q):
        getattr(self.run, "close", lambda: None)()

    def time_walks(self, impl, n_threads, p_q):
        self.run()

    def track_steps_per_second(self, impl, n_threads, p_q):
        import time

        start = time.perf_counter()
        self.run()
        return N_STARTS * WALK_LENGTH / (time.perf_counter() - start)

    track_steps_per_second.unit = "steps/s"


class GraphBuild:
    """Graph.from_edges on 1M random edges (merge, symmetrise, sort)."""

    def setup(self):
        self.src, self.dst = random_edges()

    def time_from_edges(self):
        from dlkernels.graph import Graph

        Graph.from_edges(self.src, self.dst, n_nodes=N_NODES)
