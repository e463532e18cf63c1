"""Graph: a CSR adjacency structure for random walks."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from dlkernels._lib.array_types import ArrayLike, FloatArray, IntArray, NDArray, PathLike
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import (as_array, as_float_array, check_bool, check_count,
                                    check_finite_total)
from dlkernels.graph import _walks
from dlkernels.sampling.alias import TABLE_DTYPE

if TYPE_CHECKING:
    from scipy.sparse import csr_array, sparray, spmatrix

    from dlkernels._lib.persist import Archive

__all__ = ["Graph", "MAX_NODES"]

# Node ids are stored as int32 (half the memory of int64 for the edges and the walks).
MAX_NODES = 2**31 - 1


def _check_options(n_threads: int | None, **flags: bool) -> tuple[Any, ...]:
    """The bool flags (in the order given), then the resolved thread count."""
    return (*(check_bool(value, name) for name, value in flags.items()),
            check_n_threads(n_threads))


def _node_array(x: ArrayLike, name: str, n_nodes: int | None) -> IntArray:
    """Edge endpoints: a 1-D int64 array of ids in [0, n_nodes) (or >= 0 if n_nodes is None)."""
    arr = as_array(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer node ids, got dtype {arr.dtype}")
    raw, arr = arr, np.asarray(arr, dtype=np.int64)  # a uint64 beyond int64 wraps negative: refused
    if arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < 0:
            pos = int(np.argmax(arr < 0))
            raise ValueError(f"{name} must hold non-negative node ids, got {raw[pos]} at "
                             f"position {pos}")
        limit = MAX_NODES if n_nodes is None else n_nodes
        if high >= limit:
            pos = int(np.argmax(arr >= limit))
            what = f"n_nodes={n_nodes}" if n_nodes is not None else f"{MAX_NODES} nodes at most"
            raise ValueError(f"{name} must hold node ids below {limit} ({what}), got {high} "
                             f"at position {pos}")
    return arr


def _csr_from_edges(src: IntArray, dst: IntArray, weights: FloatArray | None, n_nodes: int,
                    directed: bool, self_loops: bool
                    ) -> tuple[IntArray, NDArray[np.int32], FloatArray | None]:
    """Sorted, merged CSR arrays from validated edge arrays (weights None: unweighted)."""
    if not self_loops:
        keep = src != dst
        if not keep.all():
            src, dst = src[keep], dst[keep]
            weights = None if weights is None else weights[keep]
    if weights is not None:
        # A zero weight is no edge (scipy's explicit zeros): dropped, documented.
        keep = weights > 0
        if not keep.all():
            src, dst, weights = src[keep], dst[keep], weights[keep]
    if not directed:
        # Both directions of every edge; a self-loop is stored once.
        other = src != dst
        src, dst = np.concatenate([src, dst[other]]), np.concatenate([dst, src[other]])
        if weights is not None:
            weights = np.concatenate([weights, weights[other]])
    # One int64 key per edge (n_nodes < 2**31, so src * n + dst fits): sort, then merge
    # runs of equal keys, summing their weights.
    key = src * np.int64(n_nodes) + dst
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.ones(key.shape[0], dtype=bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    key = key[starts]
    merged = None
    if weights is not None:
        with np.errstate(over="ignore"):  # an overflow to inf is refused by the caller
            merged = np.add.reduceat(weights[order], starts) if starts.size else np.zeros(0)
    rows = key // n_nodes
    indices = (key - rows * n_nodes).astype(np.int32)
    indptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_nodes), out=indptr[1:])
    return indptr, indices, merged


def _check_csr(indptr: ArrayLike, indices: ArrayLike, weights: ArrayLike | None, directed: bool,
               node_ids: ArrayLike | None
               ) -> tuple[IntArray, NDArray[np.int32], FloatArray | None, NDArray[Any] | None]:
    """CSR arrays checked as a graph, converted to the stored dtypes (views where they
    already have them): ``(indptr int64, indices int32, weights float64 or None, node_ids)``."""
    indptr = as_array(indptr, "indptr")
    indices = as_array(indices, "indices")
    for name, arr in (("indptr", indptr), ("indices", indices)):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if indptr.size < 2:
        raise ValueError(f"indptr must have n_nodes + 1 >= 2 entries (an empty graph has "
                         f"no nodes to walk from), got {indptr.size}")
    n_nodes = indptr.size - 1
    if n_nodes > MAX_NODES:
        raise ValueError(f"indptr describes {n_nodes} nodes; at most {MAX_NODES} are supported")
    indptr = np.asarray(indptr, dtype=np.int64)
    if indptr[0] != 0 or indptr[-1] != indices.size:
        raise ValueError(f"indptr must run from 0 to len(indices) = {indices.size}, "
                         f"got {indptr[0]} .. {indptr[-1]}")
    steps = np.diff(indptr)
    if (steps < 0).any():
        pos = int(np.argmax(steps < 0))
        raise ValueError(f"indptr must be non-decreasing, got {indptr[pos]} then "
                         f"{indptr[pos + 1]} at position {pos}")
    wide = np.asarray(indices, dtype=np.int64)
    if wide.size and (wide.min() < 0 or wide.max() >= n_nodes):
        pos = int(np.argmax((wide < 0) | (wide >= n_nodes)))
        raise ValueError(f"indices must lie in [0, {n_nodes}), got {wide[pos]} at position {pos}")
    rows = np.repeat(np.arange(n_nodes, dtype=np.int64), steps)
    if wide.size > 1:
        same_row = rows[1:] == rows[:-1]
        bad = same_row & (wide[1:] <= wide[:-1])
        if bad.any():
            pos = int(np.argmax(bad)) + 1
            raise ValueError(f"indices must be strictly increasing within each row (sorted, "
                             f"no repeated edge), got {wide[pos - 1]} then {wide[pos]} in row "
                             f"{rows[pos]}")
    if weights is not None:
        weights = as_float_array(weights, "weights", nonnegative=True, allow_empty=True)
        if weights.shape != wide.shape:
            raise ValueError(f"weights must have one value per edge ({wide.size}), got "
                             f"shape {weights.shape}")
        if weights.size and not weights.min() > 0:
            pos = int(np.argmin(weights))
            raise ValueError(f"weights must be > 0 (drop zero-weight edges), got "
                             f"{weights[pos]} at position {pos}")
        check_finite_total(weights, "weights")
    if not directed:
        key = rows * n_nodes + wide
        reverse = wide * n_nodes + rows
        order = np.argsort(reverse, kind="stable")
        if not np.array_equal(reverse[order], key) or (
                weights is not None and not np.array_equal(weights[order], weights)):
            raise ValueError("directed=False needs a symmetric adjacency (every edge stored "
                             "in both directions with equal weights)")
    if node_ids is not None:
        node_ids = as_array(node_ids, "node_ids")
        if node_ids.shape != (n_nodes,):
            raise ValueError(f"node_ids must have one label per node ({n_nodes}), got "
                             f"shape {node_ids.shape}")
        if node_ids.dtype.kind not in "iuU":
            raise TypeError(f"node_ids must hold integers or strings, got dtype {node_ids.dtype}")
        if np.unique(node_ids).size != n_nodes:
            raise ValueError("node_ids must be distinct labels")
        node_ids = np.asarray(node_ids)
    return indptr, np.asarray(indices, dtype=np.int32), weights, node_ids



class Graph:
    """A graph as CSR adjacency arrays, ready for :func:`dlkernels.graph.random_walks`.

    A Graph is immutable: its arrays are read-only and no method changes it, so
    any number of threads may use one graph at once without a lock.

    Build one with :meth:`from_edges`, :meth:`from_scipy` or :meth:`read_edgelist`;
    the constructor takes CSR arrays and checks them.

    Node ids are ``0 .. n_nodes - 1`` stored as int32 (so at most 2**31 - 1 nodes);
    ``indptr`` is int64, so the number of edges is not limited by int32. Row ``v``
    of ``indices`` lists the out-neighbours of ``v`` in increasing order, without
    repeats; an undirected graph stores both directions of every edge (a self-loop
    once). Weights are float64 and strictly positive, or ``None`` for an
    unweighted graph (every edge weighs 1).

    Parameters
    ----------
    indptr : array-like of int, shape (n_nodes + 1,)
        Row ``v`` of the adjacency is ``indices[indptr[v]:indptr[v + 1]]``.
    indices : array-like of int, shape (nnz,)
        Out-neighbours, strictly increasing within each row.
    weights : array-like of float, shape (nnz,), or None
        Edge weights, finite and > 0; None for an unweighted graph.
    directed : bool, keyword-only
        If False, the adjacency must be symmetric (weights included).
    node_ids : array-like, shape (n_nodes,), or None, keyword-only
        The original label of each node (ints or strings), kept by
        :meth:`read_edgelist`; None when nodes are their own ids.
    n_threads : int or None
        Threads for building the per-node alias tables of a weighted graph.

    Raises
    ------
    ValueError, TypeError
        If the arrays are not a valid CSR adjacency as described above; the
        message names the argument and the offending value.

    Examples
    --------
    >>> from dlkernels.graph import Graph
    >>> g = Graph.from_edges([0, 1, 1], [1, 2, 2])  # the repeated edge is merged
    >>> g.n_nodes, g.n_edges, g.directed
    (3, 2, False)
    >>> g.neighbors(1).tolist()
    [0, 2]
    """

    def __init__(self, indptr: ArrayLike, indices: ArrayLike, weights: ArrayLike | None = None, *,
                 directed: bool = False, node_ids: ArrayLike | None = None,
                 n_threads: int | None = None) -> None:
        directed = check_bool(directed, "directed")
        n_threads = check_n_threads(n_threads)
        arrays = _check_csr(indptr, indices, weights, directed, node_ids)
        # The graph owns its arrays: a caller who changes theirs later changes nothing here.
        own = [None if a is None else np.array(a) for a in arrays]
        self._set(*own[:3], directed, own[3], n_threads)

    def _set(self, indptr: IntArray, indices: NDArray[np.int32], weights: FloatArray | None,
             directed: bool, node_ids: NDArray[Any] | None, n_threads: int) -> None:
        # Everything below is derived and cannot fail on checked arrays, so the
        # object is complete or never made. Every array is read-only from here on:
        # a Graph never changes, so threads share it without a lock.
        self._indptr, self._indices, self._weights = indptr, indices, weights
        self._directed, self._node_ids = directed, node_ids
        self._table = np.empty(0, dtype=TABLE_DTYPE)
        self._totals = np.empty(0, dtype=np.float64)
        if weights is not None:
            table = np.empty(indices.size, dtype=TABLE_DTYPE)
            totals = np.empty(indptr.size - 1, dtype=np.float64)
            _walks.build_tables(indptr, weights, table, totals, n_threads)
            self._table, self._totals = table, totals
        for arr in (indptr, indices, weights, node_ids, self._table, self._totals):
            if arr is not None and arr.flags.writeable:
                arr.flags.writeable = False

    @classmethod
    def _trusted(cls, indptr: IntArray, indices: NDArray[np.int32], weights: FloatArray | None,
                 directed: bool, node_ids: NDArray[Any] | None, n_threads: int) -> Graph:
        graph = cls.__new__(cls)
        graph._set(indptr, indices, weights, directed, node_ids, n_threads)
        return graph

    @classmethod
    def _merged(cls, src: IntArray, dst: IntArray, weights: FloatArray | None, n_nodes: int,
                directed: bool, self_loops: bool, node_ids: NDArray[Any] | None,
                n_threads: int) -> Graph:
        # Checked edge arrays -> a graph. Merging can only add weights up (an
        # undirected graph doubles the total), so the sum is checked once more.
        indptr, indices, merged = _csr_from_edges(src, dst, weights, n_nodes, directed, self_loops)
        if merged is not None:
            check_finite_total(merged, "weights")
        return cls._trusted(indptr, indices, merged, directed, node_ids, n_threads)

    # -- constructors ---------------------------------------------------------------

    @classmethod
    def from_edges(cls, src: ArrayLike, dst: ArrayLike, weights: ArrayLike | None = None, *,
                   directed: bool = False,
                   n_nodes: int | None = None, self_loops: bool = False,
                   n_threads: int | None = None) -> Graph:
        """A graph from edge arrays: edge ``i`` goes from ``src[i]`` to ``dst[i]``.

        Repeated edges are merged into one, their weights summed; in an undirected
        graph ``(a, b)`` and ``(b, a)`` are the same edge and are merged too.
        Zero-weight edges are dropped (a zero weight means no edge, as scipy's
        explicit zeros do). Self-loops are dropped unless ``self_loops=True``.

        Parameters
        ----------
        src, dst : array-like of int, shape (n_edges,)
            Node ids, ``>= 0`` (and ``< n_nodes`` if given).
        weights : array-like of float, shape (n_edges,), or None
            Finite, ``>= 0``. None: an unweighted graph (repeats still merge to one
            edge of weight 1).
        directed : bool
            If False, every edge is walkable both ways.
        n_nodes : int or None
            Number of nodes; None: ``max(src, dst) + 1``. Nodes without edges are
            allowed (a walk that reaches one ends there).
        self_loops : bool
            Keep edges ``(v, v)``.
        n_threads : int or None
            Threads for the per-node alias tables of a weighted graph.

        Returns
        -------
        Graph

        Raises
        ------
        ValueError
            Negative or out-of-range ids, shapes that differ, NaN, infinite or
            negative weights, or no nodes at all.
        TypeError
            Non-integer ids or non-numeric weights.

        Examples
        --------
        >>> from dlkernels.graph import Graph
        >>> g = Graph.from_edges([0, 0, 1], [1, 1, 2], weights=[1.0, 2.0, 0.5], directed=True)
        >>> g.neighbors(0).tolist(), g.edge_weights(0).tolist()
        ([1], [3.0])
        """
        directed, self_loops, n_threads = _check_options(n_threads, directed=directed,
                                                         self_loops=self_loops)
        if n_nodes is not None:
            n_nodes = check_count(n_nodes, "n_nodes", minimum=1)
            if n_nodes > MAX_NODES:
                raise ValueError(f"n_nodes must be <= {MAX_NODES}, got {n_nodes}")
        src = _node_array(src, "src", n_nodes)
        dst = _node_array(dst, "dst", n_nodes)
        if src.shape != dst.shape:
            raise ValueError(f"src and dst must have the same length, got {src.size} and {dst.size}")
        if weights is not None:
            weights = as_float_array(weights, "weights", nonnegative=True, allow_empty=True)
            if weights.shape != src.shape:
                raise ValueError(f"weights must have one value per edge ({src.size}), got "
                                 f"shape {weights.shape}")
            check_finite_total(weights, "weights")
        if n_nodes is None:
            if src.size == 0:
                raise ValueError("the graph is empty: no edges and n_nodes not given")
            n_nodes = int(max(src.max(), dst.max())) + 1
        return cls._merged(src, dst, weights, n_nodes, directed, self_loops, None, n_threads)

    @classmethod
    def from_scipy(cls, matrix: sparray | spmatrix, *, directed: bool = False,
                   weighted: bool = True, self_loops: bool = False,
                   n_threads: int | None = None) -> Graph:
        """A graph from a square scipy sparse matrix: entry ``(i, j)`` is edge ``i -> j``.

        Parameters
        ----------
        matrix : scipy.sparse matrix or array, shape (n, n)
            Stored entries are edges with their values as weights (finite,
            ``>= 0``; explicit zeros are dropped). Repeated entries of a COO
            matrix are summed.
        directed : bool
            If False, the matrix must be symmetric; each pair ``(i, j)``,
            ``(j, i)`` is one undirected edge with weight ``matrix[i, j]``.
        weighted : bool
            False ignores the values (every stored non-zero entry weighs 1).
        self_loops : bool
            Keep diagonal entries.
        n_threads : int or None
            Threads for the per-node alias tables of a weighted graph.

        Returns
        -------
        Graph

        Raises
        ------
        TypeError
            If ``matrix`` is not a scipy sparse matrix.
        ValueError
            If it is not square, is empty, holds NaN or negative values, or is
            not symmetric while ``directed=False``.

        Examples
        --------
        >>> import scipy.sparse
        >>> from dlkernels.graph import Graph
        >>> m = scipy.sparse.csr_array([[0, 2.0], [2.0, 0]])
        >>> Graph.from_scipy(m).edge_weights(0).tolist()
        [2.0]
        """
        directed, weighted, self_loops, n_threads = _check_options(
            n_threads, directed=directed, weighted=weighted, self_loops=self_loops)
        try:
            import scipy.sparse
        except ImportError:  # pragma: no cover - scipy is a test dependency
            raise TypeError("matrix must be a scipy sparse matrix, but scipy is not installed") from None
        if not scipy.sparse.issparse(matrix):
            raise TypeError(f"matrix must be a scipy sparse matrix or array, got "
                            f"{type(matrix).__name__}")
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {matrix.shape}")
        n_nodes = matrix.shape[0]
        if n_nodes == 0:
            raise ValueError("matrix must not be empty (a graph needs a node)")
        if n_nodes > MAX_NODES:
            raise ValueError(f"matrix has {n_nodes} rows; at most {MAX_NODES} nodes are supported")
        coo = scipy.sparse.coo_array(matrix)
        coo.sum_duplicates()
        values = as_float_array(coo.data, "matrix values", nonnegative=True, allow_empty=True)
        rows, cols = coo.coords[0].astype(np.int64), coo.coords[1].astype(np.int64)
        keep = values != 0
        rows, cols, values = rows[keep], cols[keep], values[keep]
        if not directed:
            forward = rows * n_nodes + cols
            backward = cols * n_nodes + rows
            order_f, order_b = np.argsort(forward), np.argsort(backward)
            if not (np.array_equal(forward[order_f], backward[order_b])
                    and np.array_equal(values[order_f], values[order_b])):
                raise ValueError("matrix must be symmetric when directed=False (or pass "
                                 "directed=True)")
            upper = rows <= cols
            rows, cols, values = rows[upper], cols[upper], values[upper]
        return cls._merged(rows, cols, values if weighted else None, n_nodes, directed,
                           self_loops, None, n_threads)

    @classmethod
    def read_edgelist(cls, path: PathLike, *, weighted: bool = False, directed: bool = False,
                      self_loops: bool = False, n_threads: int | None = None) -> Graph:
        """Read a text edge list: one ``src dst [weight]`` per line.

        Fields are separated by spaces or tabs; ``#`` starts a comment (a whole
        line or the end of one) and blank lines are skipped. Node ids are
        integers or strings: if every id parses as an integer they are integers,
        else all are strings (so ``"7"`` and ``"07"`` are different nodes).
        Labels are mapped to ``0 .. n - 1`` in sorted order (numeric order for
        integers) and kept in :attr:`node_ids`. Repeated edges are merged with
        their weights summed, as in :meth:`from_edges`.

        Parameters
        ----------
        path : str or os.PathLike
            The file to read (UTF-8 text).
        weighted : bool
            Read a third column as the weight (required on every line). If
            False a third column, if present, is ignored.
        directed : bool
            If False, every edge is walkable both ways.
        self_loops : bool
            Keep lines whose two ids are equal.
        n_threads : int or None
            Threads for the per-node alias tables of a weighted graph.

        Returns
        -------
        Graph

        Raises
        ------
        ValueError
            A malformed line (its message starts with ``path:line:``), a NaN,
            infinite or negative weight, or a file without edges.

        Examples
        --------
        >>> import os, tempfile
        >>> from dlkernels.graph import Graph
        >>> path = os.path.join(tempfile.mkdtemp(), "edges.txt")
        >>> with open(path, "w") as f:
        ...     _ = f.write("# a triangle\\nalice bob\\nbob\\tcarol\\ncarol alice  # closes it\\n")
        >>> g = Graph.read_edgelist(path)
        >>> g.node_ids.tolist(), g.n_edges
        (['alice', 'bob', 'carol'], 3)
        """
        from dlkernels.graph._edgelist import read_edges

        directed, weighted, self_loops, n_threads = _check_options(
            n_threads, directed=directed, weighted=weighted, self_loops=self_loops)
        src, dst, weights, labels = read_edges(path, weighted)
        if labels.size > MAX_NODES:
            raise ValueError(f"{path}: {labels.size} nodes; at most {MAX_NODES} are supported")
        labels.flags.writeable = False
        return cls._merged(src, dst, weights, labels.size, directed, self_loops, labels,
                           n_threads)

    # -- accessors ------------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return self._indptr.size - 1

    @property
    def n_edges(self) -> int:
        """Number of edges: stored entries if directed, else unordered pairs (a self-loop counts once)."""
        nnz = self._indices.size
        if self._directed:
            return nnz
        loops = int(np.count_nonzero(self._indices == np.repeat(
            np.arange(self.n_nodes, dtype=np.int32), np.diff(self._indptr))))
        return (nnz + loops) // 2

    @property
    def directed(self) -> bool:
        """Whether edges are one-way."""
        return self._directed

    @property
    def weighted(self) -> bool:
        """Whether edges carry weights (else every edge weighs 1)."""
        return self._weights is not None

    @property
    def indptr(self) -> IntArray:
        """CSR row pointers, int64, shape (n_nodes + 1,) (read-only)."""
        return self._indptr

    @property
    def indices(self) -> NDArray[np.int32]:
        """Out-neighbours, int32, sorted within each row (read-only)."""
        return self._indices

    @property
    def weights(self) -> FloatArray | None:
        """Edge weights aligned with :attr:`indices` (read-only), or None if unweighted."""
        return self._weights

    @property
    def node_ids(self) -> NDArray[Any] | None:
        """The original label of each node (from :meth:`read_edgelist`), or None."""
        return self._node_ids

    def degree(self) -> IntArray:
        """Out-degree of every node (int64)."""
        return np.diff(self._indptr)

    def _check_node(self, v: int) -> int:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"v must be an int node id, got {type(v).__name__}")
        if not 0 <= v < self.n_nodes:
            raise IndexError(f"v must lie in [0, {self.n_nodes}), got {v}")
        return int(v)

    def neighbors(self, v: int) -> NDArray[np.int32]:
        """Out-neighbours of node ``v`` in increasing order (a read-only view)."""
        v = self._check_node(v)
        return self._indices[self._indptr[v]:self._indptr[v + 1]]

    def edge_weights(self, v: int) -> FloatArray:
        """Weights of the out-edges of ``v``, aligned with :meth:`neighbors` (ones if unweighted)."""
        v = self._check_node(v)
        if self._weights is None:
            return np.ones(int(self._indptr[v + 1] - self._indptr[v]))
        return self._weights[self._indptr[v]:self._indptr[v + 1]]

    def to_scipy(self) -> csr_array:
        """The adjacency as a ``scipy.sparse.csr_array`` (weights, or ones if unweighted)."""
        import scipy.sparse

        data = self._weights if self._weights is not None else np.ones(self._indices.size)
        n = self.n_nodes
        return scipy.sparse.csr_array((data.copy(), self._indices.copy(), self._indptr.copy()),
                                      shape=(n, n))

    # -- persistence ----------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"indptr": self._indptr, "indices": self._indices, "weights": self._weights,
                "directed": self._directed, "node_ids": self._node_ids}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickles are trusted (unpickling runs code anyway); the derived alias
        # tables are rebuilt rather than stored.
        arrays = {k: (None if v is None else np.array(v)) for k, v in state.items()
                  if k != "directed"}
        self._set(arrays["indptr"], arrays["indices"], arrays["weights"], state["directed"],
                  arrays["node_ids"], check_n_threads(None))

    def save(self, path: PathLike) -> None:
        """Write the graph to an ``.npz`` file (loading it never runs code).

        Parameters
        ----------
        path : str or os.PathLike
            Where to write; numpy adds ``.npz`` if the name lacks it.
        """
        arrays = {"indptr": self._indptr, "indices": self._indices,
                  "directed": np.array(self._directed)}
        if self._weights is not None:
            arrays["weights"] = self._weights
        if self._node_ids is not None:
            arrays["node_ids"] = self._node_ids
        save_arrays(path, "Graph", **arrays)

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = False, n_threads: int | None = None) -> Graph:
        """Read a graph written by :meth:`save`; every array is checked as by the constructor.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`Graph.save`.
        mmap : bool, default False, keyword-only
            Map the edge arrays from the file instead of reading them into
            memory: processes that load one file share its pages (the workers
            of :func:`dlkernels.distributed.random_walks` do). The file is
            still read through once to check its checksums and its arrays; it
            must not change while the graph is in use.
        n_threads : int or None, keyword-only
            Threads for the per-node alias tables of a weighted graph.

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) if the file is not a Graph file, is damaged, or its
            arrays are not a valid graph.
        """
        mmap = check_bool(mmap, "mmap")
        n_threads = check_n_threads(n_threads)
        with read_archive(path, "Graph") as archive:
            archive.expect(["indptr", "indices", "directed"], optional=["weights", "node_ids"])
            read = archive.mapped if mmap else archive.array
            indptr = read("indptr", "int64", (None,))
            if indptr.shape[0] < 1:
                raise ValueError("indptr is empty")
            indices = read("indices", "int32", (None,))
            weights = read("weights", "float64", indices.shape) \
                if "weights" in archive.members else None
            node_ids = read_node_ids(archive, indptr.shape[0] - 1) \
                if "node_ids" in archive.members else None
            directed = archive.scalar("directed", bool)
            arrays = _check_csr(indptr, indices, weights, directed, node_ids)
            return cls._trusted(*arrays[:3], directed, arrays[3], n_threads)

    def __repr__(self) -> str:
        kind = "directed" if self._directed else "undirected"
        weighted = ", weighted" if self.weighted else ""
        return f"Graph(n_nodes={self.n_nodes}, n_edges={self.n_edges}, {kind}{weighted})"


def read_node_ids(archive: Archive, n_nodes: int) -> NDArray[Any]:
    """The ``node_ids`` member of a file: one integer or string label per node."""
    dtype = archive.header("node_ids")[0]
    if dtype.kind not in "iuU":
        raise ValueError(f"node_ids has dtype {dtype}, expected integers or strings")
    return archive.array("node_ids", dtype, (n_nodes,))
