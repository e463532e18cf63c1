"""A KD-tree per block of a dask array, queried together and merged exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from dlkernels._lib.array_types import ArrayLike, FloatingArray, IntArray
from dlkernels._lib.validation import check_bool, check_count
from dlkernels.distributed import _merge
from dlkernels.distributed._dask import (as_dask_rows, check_client, check_queries,
                                         modules, share)

if TYPE_CHECKING:
    from dask.array import Array as DaskArray
    from distributed import Client, Future

    from dlkernels.neighbors import KDTree

__all__ = ["ShardedKDTree"]


class _Shard:
    """What a worker keeps for one block: its tree (None if empty) and the block's shape."""

    def __init__(self, block: ArrayLike, kdtree_args: dict[str, Any]) -> None:
        from dlkernels.neighbors import KDTree

        block = np.asarray(block)
        self.shape: tuple[int, ...] = block.shape
        self.tree: KDTree[Any] | None = KDTree(block, **kdtree_args) if block.shape[0] else None


def _shape(shard: _Shard) -> tuple[int, ...]:
    return shard.shape


def _query(shard: Any, X: FloatingArray, k: int, offset: int,
           options: dict[str, Any]) -> tuple[FloatingArray, IntArray]:
    dist, idx = shard.tree.query(X, k, **options)
    return dist, np.where(idx >= 0, idx + offset, -1)


def _query_radius(shard: Any, X: FloatingArray, r: ArrayLike, offset: int,
                  options: dict[str, Any]) -> tuple[IntArray, FloatingArray, IntArray]:
    ids, dist, offsets = shard.tree.query_radius(X, r, return_distance=True, sort_results=True,
                                           **options)
    return ids + offset, dist, offsets


class ShardedKDTree:
    """Exact nearest neighbours over a dask array: one :class:`~dlkernels.neighbors.KDTree`
    per block, built and kept on the workers.

    A query goes to every shard and the shards' answers are merged on the
    client by (distance, id): the result equals one ``KDTree`` over all the
    rows, bit for bit, ties included (ids are global row numbers, and every
    shard computes distances by the same formula in the same precision).

    Parameters
    ----------
    data : dask.array.Array, shape (n, d)
        The points; each block of rows becomes a shard (blocks split across
        columns are joined first). Empty blocks hold no tree. Blocks of
        unknown size (``nan`` chunks) are measured when built.
    client : distributed.Client or None
        The cluster's client; None: the current one.
    **kdtree_args
        Passed to every shard's ``KDTree`` (``leafsize``, ``n_threads``).

    Attributes
    ----------
    n, d : int
        Number of points and of coordinates.
    offsets : numpy.ndarray of int64, shape (n_shards + 1,)
        Shard ``s`` holds the rows ``offsets[s]:offsets[s + 1]``.

    Notes
    -----
    Dask's lineage makes the shards fault tolerant: a shard whose worker dies
    is rebuilt from its block and answers as before. Queries (numpy arrays;
    a dask array of queries is computed first) go to the scheduler once, as a
    task whose result the workers fetch from each other.
    Thread safety: the object never changes after construction.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from dlkernels.distributed import ShardedKDTree
    >>> from dlkernels.neighbors import KDTree
    >>> X = np.random.default_rng(0).standard_normal((1000, 3))
    >>> with LocalCluster(n_workers=2, processes=False) as cluster, Client(cluster):
    ...     tree = ShardedKDTree(da.from_array(X, chunks=(300, 3)))
    ...     dist, ids = tree.query(X[:5], 4)
    >>> bool((ids == KDTree(X).query(X[:5], 4)[1]).all())
    True
    """

    n: int
    d: int
    offsets: IntArray

    def __init__(self, data: DaskArray, client: Client | None = None,
                 **kdtree_args: Any) -> None:
        modules()
        import dask

        self._client = check_client(client)
        data = as_dask_rows(data, "data")

        futures = self._client.compute([dask.delayed(_Shard, pure=False)(block, kdtree_args)
                                        for block in data.to_delayed().ravel()])
        shapes = self._client.gather([self._client.submit(_shape, f, pure=False)
                                      for f in futures])
        declared = data.shape[1]
        for i, shape in enumerate(shapes):
            if shape[1] != shapes[0][1] or (not np.isnan(declared) and shape[1] != declared):
                raise ValueError(f"data's blocks disagree on the number of columns: block {i} "
                                 f"has {shape[1]}, block 0 has {shapes[0][1]} and the array "
                                 f"declares {declared}")
        rows = np.array([shape[0] for shape in shapes], dtype=np.int64)
        if rows.sum() == 0:
            raise ValueError(f"data must hold at least one point, got shape {data.shape}")
        starts = np.concatenate([[0], np.cumsum(rows)])
        # Empty blocks hold no tree and are never asked.
        self._shards: list[tuple[Future, int]] = [
            (f, int(starts[i])) for i, f in enumerate(futures) if rows[i]]
        self.offsets = starts
        self.n = int(starts[-1])
        self.d = int(shapes[0][1])

    def __len__(self) -> int:
        return self.n

    @property
    def n_shards(self) -> int:
        """Number of blocks of ``data`` (empty ones included)."""
        return self.offsets.size - 1

    def _ask(self, fn: Callable[..., Any], X: FloatingArray, extra: Any,
             options: dict[str, Any]) -> list[Any]:
        """``fn(shard, X, extra, offset, options)`` on every non-empty shard."""
        client = check_client(self._client)
        shared = share(client, X)
        return client.gather([client.submit(fn, shard, shared, extra, offset, options, pure=False)
                              for shard, offset in self._shards])

    def query(self, X: ArrayLike, k: int = 1, *, p: float = 2,
              distance_upper_bound: float = np.inf,
              n_threads: int | None = None) -> tuple[FloatingArray, IntArray]:
        """The ``k`` nearest points to each query, as :meth:`KDTree.query
        <dlkernels.neighbors.KDTree.query>` over all the rows gives them.

        Parameters
        ----------
        X : array-like, shape (m, d) or (d,)
            Finite query points.
        k : int, default 1
            Neighbours per query.
        p, distance_upper_bound, n_threads : keyword-only
            As in ``KDTree.query`` (``n_threads`` per shard, on the workers).

        Returns
        -------
        distances : numpy.ndarray, shape (m, k)
        ids : numpy.ndarray of int64, shape (m, k)
            Global row numbers; ``inf`` and ``-1`` pad rows with fewer than
            ``k`` neighbours.
        """
        X, one = check_queries(X, self.d)
        k = check_count(k, "k", 1)
        options = {"p": p, "distance_upper_bound": distance_upper_bound, "n_threads": n_threads}
        answers = self._ask(_query, X, k, options)
        dist, ids = _merge.top_k([d for d, _ in answers], [i for _, i in answers], k)
        return (dist[0], ids[0]) if one else (dist, ids)

    @overload
    def query_radius(self, X: ArrayLike, r: ArrayLike, *,
                     return_distance: Literal[False] = False, sort_results: bool = False,
                     p: float = 2, n_threads: int | None = None) -> tuple[IntArray, IntArray]: ...
    @overload
    def query_radius(self, X: ArrayLike, r: ArrayLike, *,
                     return_distance: Literal[True], sort_results: bool = False, p: float = 2,
                     n_threads: int | None = None
                     ) -> tuple[IntArray, FloatingArray, IntArray]: ...
    @overload
    def query_radius(self, X: ArrayLike, r: ArrayLike, *, return_distance: bool,
                     sort_results: bool = False, p: float = 2, n_threads: int | None = None
                     ) -> tuple[IntArray, IntArray] | tuple[IntArray, FloatingArray, IntArray]: ...

    def query_radius(self, X: ArrayLike, r: ArrayLike, *,
                     return_distance: bool = False, sort_results: bool = False, p: float = 2,
                     n_threads: int | None = None
                     ) -> tuple[IntArray, IntArray] | tuple[IntArray, FloatingArray, IntArray]:
        """All points within ``r`` of each query (CSR layout), as ``KDTree.query_radius``.

        With ``sort_results=True`` the result equals one tree's bit for bit;
        without it each query's points are the same set, shard by shard.

        Returns
        -------
        ids : numpy.ndarray of int64
        distances : numpy.ndarray
            Only if ``return_distance``.
        offsets : numpy.ndarray of int64, shape (m + 1,)
        """
        X, _ = check_queries(X, self.d)
        return_distance = check_bool(return_distance, "return_distance")
        sort_results = check_bool(sort_results, "sort_results")
        radii = np.asarray(r, dtype=np.float64)
        if radii.ndim > 1 or (radii.ndim == 1 and radii.shape[0] != X.shape[0]):
            raise ValueError(f"r must be a number or one radius per query ({X.shape[0]}), "
                             f"got shape {radii.shape}")
        if not (radii >= 0).all():
            raise ValueError(f"r must be non-negative, got {radii.min() if radii.size else r}")
        options = {"p": p, "n_threads": n_threads}
        parts = self._ask(_query_radius, X, r, options)
        ids, dist, offsets = _merge.radius(parts, X.shape[0], sort_results)
        return (ids, dist, offsets) if return_distance else (ids, offsets)

    def __repr__(self) -> str:
        return f"ShardedKDTree(n={self.n}, d={self.d}, n_shards={self.n_shards})"
