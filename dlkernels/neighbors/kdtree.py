"""Exact nearest-neighbour search with a KD-tree that grows by insertion."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Generic, Literal, overload

import numpy as np

from dlkernels._lib.array_types import (ArrayLike, FloatingArray, IntArray, NDArray, Out, PathLike,
                                        Tensor)
from dlkernels._lib.arrays import is_tensor, like_input
from dlkernels._lib.locks import reads, writes
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import as_array, check_alloc, check_bool, check_count
from dlkernels.neighbors import _kdtree_build, _kdtree_query

__all__ = ["KDTree"]

# p -> the kernels' code (0 is the maximum norm).
_P_CODES = {1: 1, 2: 2, np.inf: 0}
_ARRAY_NAMES = ("points", "perm", "dims", "vals", "boxes")
_MAX_LEAFSIZE = 2**31 - 1
# read(key, dtype, shape): one stored array, checked before use.
_Reader = Callable[[str, Any, tuple[int, ...]], NDArray[Any]]
# What the query kernels take of one tree: (points, perm, dims, vals, boxes, leaf_start, offset).
_View = tuple[FloatingArray, IntArray, NDArray[np.int32], FloatingArray, FloatingArray, IntArray,
              int]


def _coordinate_bound(dtype: np.dtype[Any] | type[np.floating[Any]], d: int) -> float:
    """Largest absolute coordinate a tree of ``dtype`` in ``d`` dimensions accepts.

    The largest power of two ``B`` with ``16 d B**2 <= finfo(dtype).max``. Two
    points within ``[-B, B]`` are at most ``4 d B**2`` apart squared, and every
    partial sum and incremental bound the search forms stays below that (up to
    rounding, which the factor 4 to spare covers), so no distance overflows.
    """
    limit = math.sqrt(float(np.finfo(dtype).max) / (16 * max(d, 1)))
    return math.ldexp(1.0, math.frexp(limit)[1] - 1)


def _as_points(X: ArrayLike | Tensor, name: str, dtype: np.dtype[Any] | None = None,
               d: int | None = None) -> FloatingArray:
    """A C-contiguous 2-D float32/float64 array of finite values within the
    coordinate bound.

    Without ``dtype``, float32 stays float32 and anything else real becomes
    float64; with ``dtype``, values are cast to it (and checked after the cast).
    A 1-D ``X`` is one point when ``d`` is given.
    """
    arr = as_array(X, name)
    if arr.dtype.kind not in "biuf":
        what = "real" if arr.dtype.kind == "c" else "numeric"
        raise TypeError(f"{name} must be {what}, got dtype {arr.dtype}")
    if d is not None and arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (points by coordinates), got shape {arr.shape}")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have {d} coordinates per point (the tree's dimension), "
                         f"got shape {arr.shape}")
    if dtype is None:
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below
        arr = np.ascontiguousarray(arr, dtype=dtype)
    bound = _coordinate_bound(dtype, arr.shape[1])
    pos = _kdtree_build.first_outside(arr.reshape(-1), bound)
    if pos >= 0:
        row, col = divmod(int(pos), arr.shape[1])
        value = arr[row, col]
        where = f"got {value} at point {row}, coordinate {col}"
        if not np.isfinite(value):
            cast = f" in {np.dtype(dtype).name}" if dtype == np.float32 else ""
            raise ValueError(f"{name} must be finite{cast}, {where}")
        raise ValueError(f"{name} must lie within [-{bound:.6g}, {bound:.6g}] "
                         f"(+-2**{math.frexp(bound)[1] - 1}) for {np.dtype(dtype).name} points "
                         f"of {arr.shape[1]} coordinates (farther out, squared distances could "
                         f"overflow); {where}. Scale the points down")
    return arr


def _check_p(p: float) -> int:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) or p not in _P_CODES:
        raise ValueError(f"p must be 1, 2 or numpy.inf, got {p!r}")
    return _P_CODES[p]


def _reduced(r: NDArray[np.float64] | float, p_code: int) -> Any:
    """Distance -> the kernels' reduced distance (the square for p=2).

    A square beyond float64 is inf: no bound, as the distance it stands for
    exceeds every distance of points within the coordinate bound."""
    with np.errstate(over="ignore"):
        return r * r if p_code == 2 else r


def _check_radius(r: ArrayLike, name: str, m: int, one_point: bool) -> NDArray[np.float64]:
    """``r`` as float64 of shape (m,): a non-negative scalar or one per query (inf allowed)."""
    arr = as_array(r, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real number or an array of them, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1 and one_point and arr.shape == (1,):
        arr = arr.reshape(())
    if arr.ndim == 0:
        arr = np.full(m, float(arr))
    elif arr.shape != (m,):
        raise ValueError(f"{name} must be a scalar or have one value per query ({m}), "
                         f"got shape {arr.shape}")
    bad = np.flatnonzero(np.isnan(arr) | (arr < 0))
    if bad.size:
        raise ValueError(f"{name} must be non-negative, got {arr[bad[0]]} at position {bad[0]}")
    return arr


class _Tree:
    """One static tree of the forest: flat arrays, no Python object per node."""

    points: FloatingArray
    perm: IntArray
    dims: NDArray[np.int32]
    vals: FloatingArray
    boxes: FloatingArray
    leaf_start: IntArray
    n: int
    d: int
    depth: int
    offset: int

    __slots__ = ("points", "perm", "dims", "vals", "boxes", "leaf_start", "n", "d", "depth",
                 "offset")

    @classmethod
    def build(cls, data: FloatingArray, leafsize: int, offset: int, n_threads: int) -> _Tree:
        n, d = data.shape
        tree = cls._empty(n, d, leafsize, offset, data.dtype)
        _kdtree_build.build(data, tree.points, tree.perm, tree.dims, tree.vals, tree.boxes,
                      tree.leaf_start, tree.depth, n_threads)
        return tree

    @classmethod
    def _frame(cls, n: int, d: int, leafsize: int, offset: int) -> _Tree:
        """A tree's sizes and leaf boundaries, without its arrays."""
        tree = cls()
        tree.n, tree.d, tree.offset = n, d, offset
        tree.depth = _kdtree_build.layout(n, leafsize)
        n_leaves = 1 << tree.depth
        tree.leaf_start = np.arange(n_leaves + 1, dtype=np.int64) * n // n_leaves
        return tree

    @classmethod
    def _empty(cls, n: int, d: int, leafsize: int, offset: int, dtype: np.dtype[Any]) -> _Tree:
        tree = cls._frame(n, d, leafsize, offset)
        for key, (shape, kind) in cls.shapes(n, d, leafsize, dtype).items():
            setattr(tree, key, (np.zeros if key in ("dims", "vals") else np.empty)(shape, kind))
        return tree

    @staticmethod
    def shapes(n: int, d: int, leafsize: int,
               dtype: np.dtype[Any]) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Shape and dtype of each flat array of a tree of ``n`` points (nothing allocated)."""
        n_leaves = 1 << _kdtree_build.layout(n, leafsize)
        inner = max(n_leaves - 1, 1)
        return {"points": ((n * d,), dtype), "perm": ((n,), np.int64),
                "dims": ((inner,), np.int32), "vals": ((2 * inner,), dtype),
                "boxes": ((n_leaves * 2 * d,), dtype)}

    @classmethod
    def from_arrays(cls, read: _Reader, n: int, d: int, leafsize: int, offset: int,
                    dtype: np.dtype[Any]) -> _Tree:
        """Rebuild from stored arrays, checked so that a bad file cannot crash a query.

        ``read(key, dtype, shape)`` returns each array after checking its dtype
        and shape, before anything of the tree's size is allocated.
        """
        arrays = {key: read(key, kind, shape)
                  for key, (shape, kind) in cls.shapes(n, d, leafsize, dtype).items()}
        tree = cls._frame(n, d, leafsize, offset)
        for key, value in arrays.items():
            setattr(tree, key, value)
        bound = _coordinate_bound(dtype, d)
        for key in ("points", "vals", "boxes"):
            values = getattr(tree, key)
            pos = _kdtree_build.first_outside(values, bound)
            if pos >= 0:
                value = values[pos]
                what = "NaN" if np.isnan(value) else f"{value}, beyond [-{bound}, {bound}],"
                raise ValueError(f"{what} in {key}")
        problem = _kdtree_build.check_tree(tree.points, tree.perm, tree.dims, tree.vals,
                                           tree.boxes, tree.leaf_start, d)
        if problem:
            raise ValueError(f"an inconsistent tree: {problem}")
        return tree

    @property
    def max_leaf(self) -> int:
        return int(np.max(np.diff(self.leaf_start)))

    def view(self) -> _View:
        return (self.points, self.perm, self.dims, self.vals, self.boxes, self.leaf_start,
                self.offset)

    def original(self) -> FloatingArray:
        """The points in id order, shape (n, d)."""
        out = np.empty((self.n, self.d), dtype=self.points.dtype)
        _kdtree_build.extract(self.points, self.perm, self.leaf_start, out)
        return out

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {key: getattr(self, key) for key in _ARRAY_NAMES}


class KDTree(Generic[Out]):
    """Exact k-nearest-neighbour and radius search with a balanced KD-tree.

    The tree is built once in O(n log n) without the GIL (its top levels and
    then its subtrees in parallel) and keeps no Python object per node: split
    dimensions, split values, node bounding boxes and the points themselves,
    copied in tree order so that every leaf is one contiguous block, live in a
    few flat arrays. Queries run in parallel with OpenMP, in an order grouped by
    the leaf each query falls in, so that consecutive queries share cached
    nodes and leaves.

    Points added with :meth:`add` go into a logarithmic forest of static trees
    (Bentley and Saxe, "Decomposable searching problems I", J. Algorithms 1980):
    each insertion builds a tree of the new points and merges it with the
    newest trees while they are no larger, so each point is rebuilt O(log n)
    times and a query searches O(log n) trees, sharing one bound between them.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape (n, d)
        The points: finite coordinates, at least one point. float32 points
        are kept and searched in float32; any other real dtype is converted
        to float64. The tree holds its own copy, in host memory (a CUDA
        tensor is copied to the host). Query results follow the queries:
        numpy in, numpy out; a tensor in, tensors out on its device.
        Coordinates must lie within ``[-B, B]``, where ``B`` is the largest
        power of two with ``16 * d * B**2`` at most the dtype's largest value
        (``2**61``, about 2.3e18, for float32 points of up to 3 coordinates;
        2**509, about 1.7e153, for float64): farther apart, squared distances could
        overflow to infinity and the search could not find the points.
    leafsize : int, default 16, keyword-only
        Most points in a leaf (positive). Leaves hold between about
        ``leafsize / 2`` and ``leafsize`` points (the tree is complete).
    n_threads : int or None, keyword-only
        Threads for the build (None: OpenMP's default; negative counts back
        from the number of cores).

    Attributes
    ----------
    n : int
        Number of points (also ``len(tree)``).
    d : int
        Number of coordinates per point.
    dtype : numpy.dtype
        float32 or float64: the precision of the stored points and of every
        distance computed.

    Notes
    -----
    Distances are computed in ``dtype`` as ``sum((x - y)**2)`` (then one square
    root), ``sum(|x - y|)`` or ``max(|x - y|)``, summed over coordinates in
    order, as brute force and SciPy's ``cKDTree`` compute them. The tree prunes
    with lower bounds that allow for their own rounding, so the search is exact:
    for float64 the distances equal brute force up to the rounding of that
    formula. Queries are converted to ``dtype`` first.

    Thread safety: :meth:`query`, :meth:`query_radius`, :attr:`data`,
    :meth:`save` and pickling are reads; any number of them run at once from
    different threads, each with the GIL released inside its kernel.
    :meth:`add` is a write: it waits for the reads in flight, runs alone, and
    every read sees the forest entirely before or entirely after it (a
    readers-writer lock, ``dlkernels._lib.locks``).

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.neighbors import KDTree
    >>> tree = KDTree([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> dist, idx = tree.query([[0.1, 0.0]], k=2)
    >>> idx.tolist(), dist.round(3).tolist()
    ([[0, 1]], [[0.1, 0.9]])
    >>> tree.add([[0.1, 0.1]]).tolist()
    [3]
    >>> tree.query([[0.1, 0.0]], k=1)[1].tolist()
    [[3]]
    """

    @overload
    def __init__(self: KDTree[Tensor], X: Tensor, *, leafsize: int = 16,
                 n_threads: int | None = None) -> None: ...
    @overload
    def __init__(self: KDTree[NDArray[Any]], X: ArrayLike, *, leafsize: int = 16,
                 n_threads: int | None = None) -> None: ...

    def __init__(self, X: ArrayLike | Tensor, *, leafsize: int = 16,
                 n_threads: int | None = None) -> None:
        # The bound of the file format; a larger leaf size means one leaf anyway.
        leafsize = check_count(leafsize, "leafsize", minimum=1, maximum=_MAX_LEAFSIZE)
        n_threads = check_n_threads(n_threads)
        points = _as_points(X, "X")
        if points.shape[0] == 0 or points.shape[1] == 0:
            raise ValueError(f"X must hold at least one point of at least one coordinate, "
                             f"got shape {points.shape}")
        self._template = X.new_empty(0) if is_tensor(X) else None
        self._leafsize = leafsize
        self._d = points.shape[1]
        self._dtype = points.dtype
        self._trees = [_Tree.build(points, leafsize, 0, n_threads)]
        self._n = points.shape[0]
        self._data: FloatingArray | None = None

    # -- reading ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def n(self) -> int:
        """Number of points."""
        return self._n

    @property
    def d(self) -> int:
        """Number of coordinates per point."""
        return self._d

    @property
    def dtype(self) -> np.dtype[np.floating[Any]]:
        """Precision of the stored points and of the distances (float32 or float64)."""
        return self._dtype

    @property
    def leafsize(self) -> int:
        """Most points in a leaf."""
        return self._leafsize

    @property
    def n_trees(self) -> int:
        """Number of static trees in the forest (1 until :meth:`add` is used)."""
        return len(self._trees)

    @property
    @reads
    def data(self) -> Out:
        """The points in id order, shape (n, d), read-only (a tensor if ``X`` was one)."""
        if self._data is None:
            parts = [tree.original() for tree in self._trees]
            data = parts[0] if len(parts) == 1 else np.concatenate(parts)
            data.flags.writeable = False
            self._data = data
        if self._template is not None:
            return like_input(self._data.copy(), self._template)
        return self._data

    # -- queries -----------------------------------------------------------------------
    def _queries(self, X: ArrayLike | Tensor) -> tuple[FloatingArray, bool]:
        arr = as_array(X, "X")
        one = arr.ndim == 1
        return _as_points(arr, "X", dtype=self._dtype, d=self._d), one

    def _common(self) -> tuple[list[_View], int, int]:
        trees = self._trees  # read once: views, depth and leaf size of one forest
        depth = max(tree.depth for tree in trees)
        max_leaf = max(tree.max_leaf for tree in trees)
        return [tree.view() for tree in trees], depth, max_leaf

    @overload
    def query(self, X: Tensor, k: int = 1, *, p: float = 2,
              distance_upper_bound: float = np.inf,
              n_threads: int | None = None) -> tuple[Tensor, Tensor]: ...
    @overload
    def query(self, X: ArrayLike, k: int = 1, *, p: float = 2,
              distance_upper_bound: float = np.inf,
              n_threads: int | None = None) -> tuple[FloatingArray, IntArray]: ...

    @reads
    def query(self, X: ArrayLike | Tensor, k: int = 1, *, p: float = 2,
              distance_upper_bound: float = np.inf,
              n_threads: int | None = None) -> tuple[FloatingArray | Tensor, IntArray | Tensor]:
        """The ``k`` nearest points to each query point.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (m, d) or (d,)
            Query points (finite). A 1-D ``X`` is one point and gives 1-D results.
        k : int, default 1
            Neighbours per query (positive). Where fewer than ``k`` points exist,
            or lie within ``distance_upper_bound``, the rest is padding.
        p : {1, 2, numpy.inf}, default 2, keyword-only
            The Minkowski norm: Manhattan, Euclidean or maximum distance.
        distance_upper_bound : float, default inf, keyword-only
            Return only neighbours strictly closer than this (SciPy's
            convention); a finite bound also makes the search faster.
        n_threads : int or None, keyword-only
            Threads to use (None: OpenMP's default). Results do not depend on it.

        Returns
        -------
        distances : ndarray or tensor, shape (m, k), dtype of the tree
            Sorted ascending per row; ``inf`` where padded.
        indices : ndarray or tensor of int64, shape (m, k)
            Ids of the neighbours (positions in :attr:`data`); ``-1`` where
            padded. Among equally distant points, lower ids come first.

        Notes
        -----
        Unlike SciPy, ``k=1`` keeps the last axis (shape ``(m, 1)``), and padding
        uses ``-1`` rather than ``n``.

        Raises
        ------
        ValueError
            ``X`` of the wrong dimension, not finite or beyond the coordinate
            bound (see the class), ``k < 1`` or too large for memory, a bad ``p``
            or a negative or NaN ``distance_upper_bound``.
        TypeError
            ``X`` not real, or ``k`` not an int.
        """
        queries, one = self._queries(X)
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
            raise TypeError(f"k must be a positive int, got {type(k).__name__}")
        if k < 1:
            raise ValueError(f"k must be a positive int, got {k}")
        k = int(k)
        p_code = _check_p(p)
        if isinstance(distance_upper_bound, (bool, np.bool_)) or \
                not isinstance(distance_upper_bound, numbers.Real):
            raise TypeError(f"distance_upper_bound must be a real number, "
                            f"got {type(distance_upper_bound).__name__}")
        try:
            ub = float(distance_upper_bound)
        except OverflowError:  # an int beyond float64: no bound at all
            ub = np.inf if distance_upper_bound > 0 else -np.inf
        if not ub >= 0:
            raise ValueError(f"distance_upper_bound must be non-negative, got {ub}")
        n_threads = check_n_threads(n_threads)
        m = queries.shape[0]
        # One row of output must fit even without queries: k = 2**40 is refused here.
        check_alloc(max(m, 1) * k, self._dtype.itemsize + 8, "k")
        dist = np.empty((m, k), dtype=self._dtype)
        idx = np.empty((m, k), dtype=np.int64)
        trees, depth, max_leaf = self._common()
        _kdtree_query.knn(trees, queries, k, p_code, _reduced(ub, p_code), dist, idx, depth,
                          max_leaf, n_threads)
        if one:
            dist, idx = dist[0], idx[0]
        return like_input(dist, X), like_input(idx, X)

    @overload
    def query_radius(self, X: Tensor, r: ArrayLike, *, return_distance: Literal[False] = False,
                     sort_results: bool = False, p: float = 2,
                     n_threads: int | None = None) -> tuple[Tensor, Tensor]: ...
    @overload
    def query_radius(self, X: Tensor, r: ArrayLike, *, return_distance: Literal[True],
                     sort_results: bool = False, p: float = 2,
                     n_threads: int | None = None) -> tuple[Tensor, Tensor, Tensor]: ...
    @overload
    def query_radius(self, X: ArrayLike, r: ArrayLike, *, return_distance: Literal[False] = False,
                     sort_results: bool = False, p: float = 2,
                     n_threads: int | None = None) -> tuple[IntArray, IntArray]: ...
    @overload
    def query_radius(self, X: ArrayLike, r: ArrayLike, *, return_distance: Literal[True],
                     sort_results: bool = False, p: float = 2,
                     n_threads: int | None = None) -> tuple[IntArray, FloatingArray, IntArray]: ...
    @overload
    def query_radius(self, X: ArrayLike | Tensor, r: ArrayLike, *, return_distance: bool,
                     sort_results: bool = False, p: float = 2, n_threads: int | None = None
                     ) -> tuple[Any, Any] | tuple[Any, Any, Any]: ...

    @reads
    def query_radius(self, X: ArrayLike | Tensor, r: ArrayLike, *, return_distance: bool = False,
                     sort_results: bool = False, p: float = 2, n_threads: int | None = None
                     ) -> tuple[Any, Any] | tuple[Any, Any, Any]:
        """All points within distance ``r`` of each query point (inclusive).

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (m, d) or (d,)
            Query points (finite); a 1-D ``X`` is one query.
        r : float or array-like of shape (m,)
            Radius (non-negative; ``inf`` returns every point), or one per query.
        return_distance : bool, default False, keyword-only
            Also return the distances.
        sort_results : bool, default False, keyword-only
            Order each query's results by distance (ties by id). Otherwise the
            order is that of the tree's leaves: fixed, but not meaningful.
        p : {1, 2, numpy.inf}, default 2, keyword-only
            The Minkowski norm, as in :meth:`query`.
        n_threads : int or None, keyword-only
            Threads to use (None: OpenMP's default). Results do not depend on it.

        Returns
        -------
        indices : ndarray or tensor of int64, shape (total,)
            All queries' results one after the other (CSR layout).
        distances : ndarray or tensor, shape (total,)
            Only if ``return_distance``; dtype of the tree.
        offsets : ndarray or tensor of int64, shape (m + 1,)
            Query ``q``'s results are ``indices[offsets[q]:offsets[q + 1]]``.
            :func:`split_csr` turns the flat arrays into lists.

        Raises
        ------
        ValueError
            ``X`` of the wrong dimension, not finite or beyond the coordinate
            bound, a negative or NaN ``r``,
            or ``r`` of the wrong length, or a bad ``p``.
        TypeError
            ``X`` or ``r`` not real, or a flag not a bool.
        """
        queries, one = self._queries(X)
        radii = _check_radius(r, "r", queries.shape[0], one)
        return_distance = check_bool(return_distance, "return_distance")
        sort_results = check_bool(sort_results, "sort_results")
        p_code = _check_p(p)
        n_threads = check_n_threads(n_threads)
        trees, depth, max_leaf = self._common()
        ids, dist, offsets = _kdtree_query.radius(trees, queries, p_code,
                                                  _reduced(radii, p_code), sort_results, depth,
                                                  max_leaf, n_threads)
        if not return_distance:
            return like_input(ids, X), like_input(offsets, X)
        return like_input(ids, X), like_input(dist, X), like_input(offsets, X)

    # -- insertion -----------------------------------------------------------------------
    @writes
    def add(self, X: ArrayLike | Tensor, *, n_threads: int | None = None) -> IntArray:
        """Insert points; their ids follow the existing ones.

        Ids of earlier points never change. Amortised cost O(log^2 n) per point
        (a batch of ``b`` points costs a build of ``b`` points plus the merges it
        triggers), and the forest holds O(log n) trees.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (b, d) or (d,)
            Finite points with the tree's number of coordinates, converted to
            the tree's dtype. An empty batch changes nothing.
        n_threads : int or None, keyword-only
            Threads for the rebuilds (None: OpenMP's default).

        Returns
        -------
        ndarray of int64, shape (b,)
            The ids given to the new points.
        """
        batch = _as_points(X, "X", dtype=self._dtype, d=self._d)
        n_threads = check_n_threads(n_threads)
        start = self._n
        if batch.shape[0] == 0:
            return np.arange(start, start, dtype=np.int64)
        # Everything below builds new trees first and swaps them in at the end, so
        # a failure (e.g. MemoryError) leaves the forest as it was.
        merged = [batch]
        trees = list(self._trees)
        size = batch.shape[0]
        # Merge with the newest trees while they are at most twice as large: tree
        # sizes then at least halve along the forest (O(log n) trees), and a point
        # is only rebuilt when its tree grows by half or more (O(log n) rebuilds).
        while trees and trees[-1].n <= 2 * size:
            tree = trees.pop()
            merged.insert(0, tree.original())
            size += tree.n
        offset = trees[-1].offset + trees[-1].n if trees else 0
        data = merged[0] if len(merged) == 1 else np.concatenate(merged)
        trees.append(_Tree.build(data, self._leafsize, offset, n_threads))
        self._trees = trees
        self._n = start + batch.shape[0]
        self._data = None
        return np.arange(start, self._n, dtype=np.int64)

    # -- persistence -----------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        trees = self._trees
        state: dict[str, Any] = {
            "leafsize": np.int64(self._leafsize), "d": np.int64(self._d),
            "sizes": np.array([t.n for t in trees], dtype=np.int64),
            "dtype": np.array(self._dtype.name)}
        for i, tree in enumerate(trees):
            for key, value in tree.arrays().items():
                state[f"tree{i}_{key}"] = value
        return state

    @classmethod
    def _from_parts(cls, leafsize: int, d: int, sizes: IntArray, dtype: np.dtype[Any],
                    read: _Reader) -> KDTree[NDArray[Any]]:
        """A tree from its header and ``read(key, dtype, shape)`` for each stored array."""
        if dtype not in (np.float32, np.float64) or not 1 <= leafsize <= _MAX_LEAFSIZE \
                or d < 1 or sizes.ndim != 1 or not 1 <= sizes.size <= 64 or (sizes < 1).any():
            raise ValueError(f"an invalid KDTree header (dtype {dtype}, leafsize {leafsize}, "
                             f"d {d}, sizes {sizes.tolist()[:8]})")
        trees, offset = [], 0
        for i, n in enumerate(sizes.tolist()):
            trees.append(_Tree.from_arrays(
                lambda key, kind, shape, i=i: read(f"tree{i}_{key}", kind, shape),
                n, d, leafsize, offset, dtype))
            offset += n
        tree = cls.__new__(cls)
        tree._template = None
        tree._leafsize, tree._d, tree._dtype = leafsize, d, np.dtype(dtype)
        tree._trees, tree._n, tree._data = trees, offset, None
        return tree

    @reads
    def __getstate__(self) -> dict[str, Any]:
        return self._state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickles run code anyway, but a state dict is still checked like a file.
        def read(key: str, dtype: Any, shape: tuple[int, ...]) -> NDArray[Any]:
            value = np.asarray(state[key])
            if value.dtype != dtype or value.shape != tuple(shape):
                raise ValueError(f"pickled state holds {key} of shape {value.shape} and dtype "
                                 f"{value.dtype}, expected {tuple(shape)} and {np.dtype(dtype)}")
            return np.ascontiguousarray(value)

        restored = KDTree._from_parts(int(state["leafsize"]), int(state["d"]),
                                      np.asarray(state["sizes"], dtype=np.int64),
                                      np.dtype(str(state["dtype"])), read)
        self.__dict__.update(restored.__dict__)

    @reads
    def save(self, path: PathLike) -> None:
        """Write the tree (all its flat arrays) to an ``.npz`` file; loading never runs code.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write, exactly (no suffix is added).
        """
        save_arrays(path, "KDTree", **self._state())

    @classmethod
    def load(cls, path: PathLike) -> KDTree[NDArray[Any]]:
        """Read a tree written by :meth:`save`, checking it before any query can use it.

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or an inconsistent tree.
        """
        with read_archive(path, "KDTree") as archive:
            leafsize = archive.scalar("leafsize", int, low=1, high=_MAX_LEAFSIZE)
            d = archive.scalar("d", int, low=1, high=2**31 - 1)
            dtype = archive.scalar("dtype", str)
            if dtype not in ("float32", "float64"):
                raise ValueError(f"dtype is {dtype!r}, expected 'float32' or 'float64'")
            sizes = archive.array("sizes", "int64", (None,))
            archive.expect(["leafsize", "d", "dtype", "sizes"] + [
                f"tree{i}_{key}" for i in range(min(sizes.size, 64)) for key in _ARRAY_NAMES])
            return cls._from_parts(leafsize, d, sizes, np.dtype(dtype), archive.array)

    def __repr__(self) -> str:
        return (f"KDTree(n={self._n}, d={self._d}, dtype={self._dtype.name}, "
                f"leafsize={self._leafsize}, n_trees={len(self._trees)})")
