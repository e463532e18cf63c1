"""node2vec walks on a Dask cluster: a dask array equal to the one-machine walks, or shards.

Walk ``r`` of a run draws only from random stream ``r`` of the run's key (see
dlkernels/graph/_walks.pyx), so a block of rows computed on any worker is the
block the one-machine call computes. The graph reaches each worker once:
scattered with ``broadcast=True``, or loaded (memory-mapped) by each worker
process from a file that :meth:`Graph.save` wrote, and kept for later tasks.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlkernels._lib.array_types import ArrayLike, IntArray, NDArray, PathLike, RngLike, Tensor
from dlkernels._lib.random import draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import as_index_array, check_alloc, check_count
from dlkernels.distributed._dask import check_client, modules, share
from dlkernels.graph.graph import Graph
from dlkernels.graph.walks import check_start_nodes, check_walk_params, walk_rows

if TYPE_CHECKING:
    from dask.array import Array as DaskArray
    from distributed import Client, Future

__all__ = ["random_walks", "write_walks"]

# Rows per block when walks_per_chunk is not given: 16 MB of int32 at 80 nodes a walk.
DEFAULT_WALKS_PER_CHUNK = 1 << 16

# Graphs loaded from files, per worker process: {(path, size, mtime): Graph}.
_GRAPHS: dict[tuple[str, int, int], Graph] = {}
_GRAPHS_LOCK = threading.Lock()
_GRAPHS_KEPT = 4


def _graph_from(source: Graph | PathLike) -> Graph:
    """The graph a task walks on: a scattered Graph, or the file's (loaded once per process)."""
    if isinstance(source, Graph):
        return source
    stat = os.stat(source)
    key = (os.fspath(source), stat.st_size, stat.st_mtime_ns)
    with _GRAPHS_LOCK:
        graph = _GRAPHS.get(key)
        if graph is None:
            graph = Graph.load(source, mmap=True, n_threads=1)
            if len(_GRAPHS) >= _GRAPHS_KEPT:
                _GRAPHS.pop(next(iter(_GRAPHS)))
            _GRAPHS[key] = graph
    return graph


def _graph_size(source: Graph | PathLike) -> int:
    return _graph_from(source).n_nodes


def _walk_block(rows: IntArray, source: Graph | PathLike, starts: IntArray | None,
                walk_length: int, p: float, q: float, key: int,
                n_threads: int | None) -> NDArray[np.int32]:
    """The walks of rows ``rows`` (a block of a dask arange) of the run."""
    graph = _graph_from(source)
    if rows.size == 0:
        return np.empty((0, walk_length), dtype=np.int32)
    if starts is None:
        block_starts = rows % graph.n_nodes
    else:
        block_starts = starts[rows % starts.size]
    return walk_rows(graph, block_starts, int(rows[0]), walk_length, p, q, key,
                     check_n_threads(n_threads))


def random_walks(graph: Graph | PathLike, walk_length: int = 80, walks_per_node: int = 10, *,
                 p: float = 1.0, q: float = 1.0, start_nodes: ArrayLike | Tensor | None = None,
                 rng: RngLike = None, client: Client | None = None,
                 walks_per_chunk: int | None = None, n_threads: int | None = 1) -> DaskArray:
    """node2vec walks computed on a Dask cluster, as a lazy ``dask.array.Array``.

    Row for row and bit for bit the walks of
    :func:`dlkernels.graph.random_walks` with the same arguments and ``rng``,
    whatever the number of workers, the block size or the order in which
    blocks run (a block a failed worker had computed is recomputed
    identically).

    Parameters
    ----------
    graph : Graph, or str or os.PathLike
        The graph, sent once to every worker (``client.scatter(...,
        broadcast=True)``); or the path of a file written by
        :meth:`Graph.save` that every worker can read (a shared file
        system): each worker process memory-maps it once
        (``Graph.load(path, mmap=True)``) and keeps it for later tasks, so
        nothing but the path travels.
    walk_length, walks_per_node : int
        As in :func:`dlkernels.graph.random_walks`.
    p, q, start_nodes, rng : keyword-only
        As in :func:`dlkernels.graph.random_walks` (``start_nodes``, if given,
        travels to the scheduler once, as a task the workers fetch). The key of the run is drawn from
        ``rng`` here, as the one-machine call draws it.
    client : distributed.Client or None, keyword-only
        The cluster's client; None: the current one.
    walks_per_chunk : int or None, keyword-only
        Rows per block (task) of the result; default 65,536.
    n_threads : int or None, keyword-only
        OpenMP threads per task on the workers (default 1: Dask runs one task
        per worker thread).

    Returns
    -------
    dask.array.Array of int32, shape (walks_per_node * len(start_nodes), walk_length)
        Lazy: ``.compute()`` gathers it, ``.persist()`` keeps it on the
        workers, :func:`write_walks` writes it to shards without gathering it.

    Raises
    ------
    ImportError
        Without Dask (``pip install "dlkernels[dask]"``).
    TypeError, ValueError, IndexError
        As the one-machine call, and for a client that is closed; a bad graph
        file is a :class:`dlkernels.FileFormatError`.

    Examples
    --------
    >>> import numpy as np
    >>> from distributed import Client, LocalCluster
    >>> from dlkernels.graph import Graph, random_walks as local_walks
    >>> from dlkernels.distributed import random_walks
    >>> ring = Graph.from_edges(np.arange(100), (np.arange(100) + 1) % 100)
    >>> with LocalCluster(n_workers=2, processes=False) as cluster, Client(cluster) as client:
    ...     walks = random_walks(ring, 10, 3, p=0.5, q=2.0, rng=7, walks_per_chunk=64)
    ...     same = np.array_equal(walks.compute(), local_walks(ring, 10, 3, p=0.5, q=2.0, rng=7))
    >>> same
    True
    """
    da, _ = modules()
    client = check_client(client)
    params = check_walk_params(walk_length, walks_per_node, p, q)
    walk_length, walks_per_node = params["walk_length"], params["walks_per_node"]
    per_chunk = DEFAULT_WALKS_PER_CHUNK if walks_per_chunk is None else \
        check_count(walks_per_chunk, "walks_per_chunk", minimum=1)
    check_alloc(per_chunk * walk_length, 4, "walks_per_chunk x walk_length")
    if n_threads is not None:
        check_n_threads(n_threads)
    if isinstance(graph, Graph):
        n_nodes = graph.n_nodes
        starts = check_start_nodes(graph, start_nodes)
        source = client.scatter(graph, broadcast=True, hash=False)
    elif isinstance(graph, (str, os.PathLike)):
        source = os.path.abspath(os.fspath(graph))
        # One worker loads (and checks) the file now, so that a bad path or file
        # is reported here rather than from the first task.
        n_nodes = client.submit(_graph_size, source, pure=False).result()
        starts = None if start_nodes is None else \
            as_index_array(start_nodes, "start_nodes", n_nodes)
    else:
        raise TypeError(f"graph must be a dlkernels.graph.Graph or the path of a saved one, "
                        f"got {type(graph).__name__}")
    n_starts = n_nodes if starts is None else starts.size
    key = draw_key(rng)
    if start_nodes is None:
        starts_arg: Future | None = None
    else:
        starts_arg = share(client, starts)
    rows = da.arange(n_starts * walks_per_node, chunks=per_chunk, dtype=np.int64)
    return rows.map_blocks(_walk_block, source, starts_arg, walk_length, params["p"],
                           params["q"], key, n_threads, dtype=np.int32, new_axis=1,
                           chunks=(rows.chunks[0], (walk_length,)),
                           meta=np.empty((0, walk_length), dtype=np.int32))


def _write_block(walks: NDArray[np.int32], directory: str, width: int,
                 block_info: dict[Any, Any] | None = None) -> IntArray:
    index = block_info[0]["chunk-location"][0]
    final = Path(directory) / f"walks-{index:0{width}d}.npy"
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, walks)
    os.replace(tmp, final)   # a rerun of the task (a lost worker) writes the same bytes
    return np.array([walks.shape[0]], dtype=np.int64)


def write_walks(graph: Graph | PathLike, directory: PathLike, walk_length: int = 80,
                walks_per_node: int = 10, *, p: float = 1.0, q: float = 1.0,
                start_nodes: ArrayLike | Tensor | None = None, rng: RngLike = None,
                client: Client | None = None, walks_per_chunk: int | None = None,
                n_threads: int | None = 1) -> list[str]:
    """Compute walks on the cluster and write them as ``.npy`` shards, without gathering them.

    Each task writes its block of rows to ``directory/walks-<block>.npy``
    (zero-padded, so name order is row order) and returns only its row count.
    :meth:`dlkernels.embed.SkipGram.fit` and :meth:`dlkernels.graph.Node2Vec.fit`
    (``walks=directory``) read the directory back, streaming, and train as on
    the one array of all the walks.

    Parameters
    ----------
    graph, walk_length, walks_per_node, p, q, start_nodes, rng, client, walks_per_chunk, n_threads
        As in :func:`random_walks`.
    directory : str or os.PathLike
        Where the shards go: a directory every worker can write to (a shared
        file system). It is created if missing and must hold no ``.npy`` file
        yet (shards of another run would be read with these).

    Returns
    -------
    list of str
        The shard paths, in row order.
    """
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    if any(name.endswith(".npy") for name in os.listdir(directory)):
        raise ValueError(f"directory {directory!r} already holds .npy files: write the shards "
                         f"of a run into a directory of their own")
    walks = random_walks(graph, walk_length, walks_per_node, p=p, q=q, start_nodes=start_nodes,
                         rng=rng, client=client, walks_per_chunk=walks_per_chunk,
                         n_threads=n_threads)
    n_blocks = len(walks.chunks[0])
    width = max(6, len(str(n_blocks - 1)))
    counts = walks.map_blocks(_write_block, directory, width, dtype=np.int64, drop_axis=1,
                              chunks=((1,) * n_blocks,), meta=np.empty(0, dtype=np.int64))
    check_client(client).compute(counts).result()
    return [os.path.join(directory, f"walks-{i:0{width}d}.npy") for i in range(n_blocks)]
