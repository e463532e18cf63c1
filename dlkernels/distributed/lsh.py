"""An LSH index per block of a dask array, all with the same hash functions, merged exactly."""

from __future__ import annotations

import copy
import pickle
from typing import TYPE_CHECKING, Any

import numpy as np

from dlkernels._lib.array_types import ArrayLike, FloatingArray, IntArray
from dlkernels._lib.random import check_rng
from dlkernels._lib.validation import check_count
from dlkernels.distributed import _merge
from dlkernels.distributed._dask import (as_dask_rows, check_client, check_queries,
                                         modules, share)

if TYPE_CHECKING:
    from dask.array import Array as DaskArray
    from distributed import Client, Future

__all__ = ["ShardedLSHIndex"]


def _fill(template: bytes, block: ArrayLike, first_id: int) -> Any:
    """A copy of the empty template index holding ``block`` under ids ``first_id ..``."""
    index = pickle.loads(template)
    block = np.asarray(block)
    if block.shape[0]:
        index.add(block, ids=np.arange(first_id, first_id + block.shape[0], dtype=np.int64))
    return index


def _size(index: Any) -> tuple[int, int]:
    return len(index), index.dim


def _width(template: bytes, block: ArrayLike) -> float | str | None:
    return _fill(template, block, 0).bucket_width


def _unset(width: float | str | None) -> bool:
    """An l2 width still to be set from the data (``"auto"``)."""
    return isinstance(width, str)


def _query(index: Any, X: FloatingArray, k: int,
           options: dict[str, Any]) -> tuple[FloatingArray, IntArray]:
    return index.query(X, k=k, **options)


class ShardedLSHIndex:
    """Approximate nearest neighbours over dask arrays: one
    :class:`~dlkernels.neighbors.LSHIndex` per block, all with the same hash functions.

    Every shard is a copy of one empty index made here from ``lsh_args`` (so
    ``rng`` is drawn from once, as by one index), filled on a worker with its
    block under global ids. A vector lands in the same buckets as in a single
    index, a query probes the same buckets in every shard, and the shards'
    candidates ranked by (distance, id) are what one index holding all the
    vectors returns.

    Parameters
    ----------
    dim : int
        Dimension of the vectors.
    client : distributed.Client or None
        The cluster's client; None: the current one.
    **lsh_args
        Passed to ``LSHIndex(dim, **lsh_args)`` (``metric``, ``n_tables``,
        ``n_bits``, ``bucket_width``, ``dtype``, ``rng``), with
        ``hashing="random"`` (the default here, and the only family whose
        hash functions every shard can share: k-means trees are fitted to
        the data each index holds). With
        ``metric="l2"`` and an automatic bucket width, the width is set from
        the first block added, as one index sets it from its first batch, and
        shared by every shard: the result then equals one
        ``LSHIndex(..., hashing="random", bucket_width=sharded.bucket_width)``.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from distributed import Client, LocalCluster
    >>> from dlkernels.distributed import ShardedLSHIndex
    >>> X = np.random.default_rng(0).standard_normal((1000, 16))
    >>> with LocalCluster(n_workers=2, processes=False) as cluster, Client(cluster):
    ...     index = ShardedLSHIndex(16, metric="cosine", rng=0)
    ...     index.add(da.from_array(X, chunks=(400, 16)))
    ...     dist, ids = index.query(X[:3], k=2)
    >>> ids[:, 0].tolist()
    [0, 1, 2]
    """

    def __init__(self, dim: int, client: Client | None = None, **lsh_args: Any) -> None:
        modules()
        from dlkernels.neighbors import LSHIndex

        self._client = check_client(client)
        hashing = lsh_args.setdefault("hashing", "random")
        if hashing != "random":
            # Fitted trees would differ from shard to shard: no shared buckets.
            raise ValueError(f"ShardedLSHIndex needs hashing='random' (hash functions shared "
                             f"by every shard), got hashing={hashing!r}")
        gen = check_rng(lsh_args.pop("rng", None))
        self._args = dict(lsh_args)
        self._start = copy.deepcopy(gen)   # to remake the same hash functions with a width
        template = LSHIndex(dim, rng=gen, **lsh_args)
        self._dim = template.dim
        self._template = pickle.dumps(template)
        self._shards: list[Future] = []
        self._n = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def bucket_width(self) -> float | str | None:
        """The l2 bucket width shared by the shards (as ``LSHIndex.bucket_width``)."""
        return pickle.loads(self._template).bucket_width

    @property
    def n_shards(self) -> int:
        return len(self._shards)

    def __len__(self) -> int:
        return self._n

    def add(self, X: DaskArray) -> None:
        """Add the rows of a dask array, each block as a new shard, under ids ``len(self) ..``.

        Parameters
        ----------
        X : dask.array.Array, shape (b, dim)
            Vectors (finite; non-zero for the cosine metric). Blocks of unknown
            size are measured first.

        Raises
        ------
        ValueError, TypeError
            A wrong shape or dtype, or a block the index refuses (the shards
            added so far by this call are dropped: the index is as before).
        """
        modules()
        import dask

        client = check_client(self._client)
        X = as_dask_rows(X, "X")
        if X.shape[1] != self._dim:
            raise ValueError(f"X must have {self._dim} columns (dim), got shape {X.shape}")
        if any(np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        blocks = X.to_delayed().ravel()
        rows = [int(c) for c in X.chunks[0]]
        if _unset(self.bucket_width) and sum(rows):
            self._set_width(client, blocks[next(i for i, r in enumerate(rows) if r)])
        template = share(client, self._template)
        first = self._n + np.concatenate([[0], np.cumsum(rows)])
        filled = client.compute([dask.delayed(_fill)(template, block, int(first[i]))
                                 for i, block in enumerate(blocks) if rows[i]])
        sizes = client.gather([client.submit(_size, f, pure=False) for f in filled])
        for (n, d), want in zip(sizes, [r for r in rows if r]):
            if n != want:
                raise ValueError(f"a block of X has {n} rows, but the array declares {want}")
        self._shards += filled
        self._n += sum(rows)

    def _set_width(self, client: Client, block: Any) -> None:
        import dask

        from dlkernels.neighbors import LSHIndex

        width = client.compute(dask.delayed(_width)(self._template, block)).result()
        template = LSHIndex(self._dim, rng=copy.deepcopy(self._start),
                            **{**self._args, "bucket_width": width})
        self._template = pickle.dumps(template)

    def query(self, X: ArrayLike, k: int = 10,
              **query_args: Any) -> tuple[FloatingArray, IntArray]:
        """The ``k`` nearest stored vectors among each query's candidates in every shard.

        Parameters
        ----------
        X : array-like, shape (m, dim)
        k : int, default 10
        **query_args
            Passed to every shard's ``LSHIndex.query`` (``n_probes``, ``n_threads``).

        Returns
        -------
        distances : numpy.ndarray, shape (m, k)
        ids : numpy.ndarray of int64, shape (m, k)
            Global ids (row numbers across every ``add``), ties by id;
            ``inf`` and ``-1`` pad.
        """
        X, _ = check_queries(X, self._dim)
        k = check_count(k, "k", 1)
        client = check_client(self._client)
        if not self._shards:
            dtype = pickle.loads(self._template).dtype
            return (np.full((X.shape[0], k), np.inf, dtype=dtype),
                    np.full((X.shape[0], k), -1, dtype=np.int64))
        shared = share(client, X)
        answers = client.gather([client.submit(_query, shard, shared, k, query_args, pure=False)
                                 for shard in self._shards])
        return _merge.top_k([d for d, _ in answers], [i for _, i in answers], k)

    def __repr__(self) -> str:
        return f"ShardedLSHIndex(dim={self._dim}, n={self._n}, n_shards={self.n_shards})"
