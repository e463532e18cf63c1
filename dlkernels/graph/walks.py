"""node2vec random walks on a :class:`~dlkernels.graph.Graph`."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlkernels._lib.array_types import ArrayLike, IntArray, NDArray, RngLike, Tensor
from dlkernels._lib.random import draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import (as_index_array, check_alloc, check_bool, check_count,
                                       check_real)
from dlkernels.graph import _walks
from dlkernels.graph.graph import Graph

__all__ = ["random_walks"]

# Walks per kernel call when a progress bar is shown (each walk owns its random
# stream, so batching does not change them).
PROGRESS_BATCH = 1 << 16
# p and q are kept where 1/p, 1/q and the envelope built from them stay finite
# and meaningful; beyond, a walk differs from the limit with probability < 1e-9.
MIN_PQ, MAX_PQ = 1e-9, 1e9


def check_walk_params(walk_length: int, walks_per_node: int, p: float, q: float, *,
                      minimum_walks: int = 0) -> dict[str, Any]:
    """The validated walk parameters (shared with Node2Vec and the distributed walks)."""
    return {"walk_length": check_count(walk_length, "walk_length", minimum=1),
            "walks_per_node": check_count(walks_per_node, "walks_per_node",
                                          minimum=minimum_walks),
            "p": check_real(p, "p", low=MIN_PQ, high=MAX_PQ),
            "q": check_real(q, "q", low=MIN_PQ, high=MAX_PQ)}


def check_start_nodes(graph: Graph, start_nodes: ArrayLike | Tensor | None) -> IntArray:
    """The start nodes as int64 ids of ``graph`` (every node if None)."""
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a dlkernels.graph.Graph, got {type(graph).__name__}")
    if start_nodes is None:
        return np.arange(graph.n_nodes, dtype=np.int64)
    return as_index_array(start_nodes, "start_nodes", graph.n_nodes)


def check_walks_fit(n_walks: int, walk_length: int) -> None:
    """Refuse walks (int32, plus an int64 start per walk) that cannot fit in memory."""
    check_alloc(n_walks * (walk_length + 2), 4, "walk_length x walks_per_node x start nodes")


def walk_rows(graph: Graph, starts: IntArray, first_row: int, walk_length: int, p: float,
              q: float, key: int, n_threads: int) -> NDArray[np.int32]:
    """Rows ``first_row ..`` of a run of walks from ``starts`` (one per row), drawn
    from the streams of ``key``: any split of a run into blocks gives the same rows."""
    out = np.empty((starts.size, walk_length), dtype=np.int32)
    weights = graph._weights if graph._weights is not None else np.empty(0)
    _walks.random_walks(graph._indptr, graph._indices, weights, graph._table, graph._totals,
                        graph._directed, np.ascontiguousarray(starts, dtype=np.int64), out, p, q,
                        key, first_row, n_threads)
    return out


def random_walks(graph: Graph, walk_length: int = 80, walks_per_node: int = 10, *,
                 p: float = 1.0, q: float = 1.0, start_nodes: ArrayLike | Tensor | None = None,
                 rng: RngLike = None, n_threads: int | None = None,
                 progress: bool = False) -> NDArray[np.int32]:
    """node2vec walks (Grover & Leskovec, KDD 2016), exact, in O(V + E) memory.

    From the current node ``v``, having come from ``u``, a walk moves to the
    out-neighbour ``x`` of ``v`` with probability proportional to
    ``w(v, x) * bias``, where bias is ``1/p`` if ``x == u`` (return), ``1`` if
    ``x`` is an out-neighbour of ``u`` (distance 1 from ``u``) and ``1/q``
    otherwise. The first step, which has no previous node, follows the edge
    weights alone.

    Steps are drawn by rejection sampling (as KnightKing does) from the edge
    weights of ``v``, with no per-edge transition tables: memory stays linear in
    the graph. ``p == q == 1`` is a plain weighted walk through per-node alias
    tables (or a uniform draw on an unweighted graph).

    Parameters
    ----------
    graph : Graph
        The graph to walk on.
    walk_length : int
        Nodes per walk, start included; ``>= 1``.
    walks_per_node : int
        Walks started from each start node; ``>= 0``.
    p : float, keyword-only
        Return parameter, in ``[1e-9, 1e9]``: small values keep walks near
        their start.
    q : float, keyword-only
        In-out parameter, in ``[1e-9, 1e9]``: small values explore outward
        (depth-first like), large values stay local (breadth-first like).
    start_nodes : array-like of int, or None, keyword-only
        Node ids to start from, repeats allowed; None: every node.
    rng : None, int or numpy.random.Generator, keyword-only
        The same ``rng`` gives the same walks at any ``n_threads`` (and on any
        number of machines: :func:`dlkernels.distributed.random_walks`).
    n_threads : int or None, keyword-only
        Threads to use (None: OpenMP's default).
    progress : bool, keyword-only
        Show a tqdm progress bar (one tick per batch of walks). The walks are
        the same either way.

    Returns
    -------
    numpy.ndarray of int32, shape (walks_per_node * len(start_nodes), walk_length)
        Row ``r`` starts at ``start_nodes[r % len(start_nodes)]`` (walks come in
        ``walks_per_node`` rounds over the start nodes). A walk that reaches a
        node without out-edges ends there; the rest of its row is ``-1``. Node
        ids are int32 because a :class:`Graph` has fewer than 2**31 nodes; this
        halves the memory of int64 walks.

    Raises
    ------
    TypeError
        If ``graph`` is not a Graph or an argument has the wrong type.
    ValueError
        If ``walk_length < 1``, ``walks_per_node < 0``, ``p``/``q`` is not a
        number in ``[1e-9, 1e9]``, or the walks would not fit in memory.
    IndexError
        If a start node is not in ``[0, graph.n_nodes)``.

    Notes
    -----
    Thread safety: a :class:`Graph` is immutable, so any number of threads may
    walk one graph at once.

    Examples
    --------
    >>> from dlkernels.graph import Graph, random_walks
    >>> ring = Graph.from_edges([0, 1, 2, 3], [1, 2, 3, 0])
    >>> walks = random_walks(ring, 5, 2, p=0.5, q=2.0, rng=0)
    >>> walks.shape, walks.dtype
    ((8, 5), dtype('int32'))
    >>> bool(((walks[:, 1:] - walks[:, :-1]) % 4 != 2).all())  # every step is a ring edge
    True
    """
    starts = check_start_nodes(graph, start_nodes)
    params = check_walk_params(walk_length, walks_per_node, p, q)
    walk_length, walks_per_node = params["walk_length"], params["walks_per_node"]
    n_threads = check_n_threads(n_threads)
    progress = check_bool(progress, "progress")
    check_walks_fit(starts.size * walks_per_node, walk_length)
    key = draw_key(rng)
    starts = np.tile(starts, walks_per_node)
    out = np.empty((starts.size, walk_length), dtype=np.int32)
    batches = [(0, starts.size)]
    bar = None
    if progress and starts.size:
        from tqdm.auto import tqdm

        batches = [(r, min(r + PROGRESS_BATCH, starts.size))
                   for r in range(0, starts.size, PROGRESS_BATCH)]
        bar = tqdm(total=starts.size, desc="walks", unit="walk")
    for first, last in batches:
        out[first:last] = walk_rows(graph, starts[first:last], first, walk_length,
                                    params["p"], params["q"], key, n_threads)
        if bar is not None:
            bar.update(last - first)
    if bar is not None:
        bar.close()
    return out
