"""Locality-sensitive hashing: approximate nearest neighbours, re-ranked exactly."""

from __future__ import annotations

import warnings
from typing import Any, overload

import numpy as np

from dlkernels._lib.array_types import (
    ArrayLike,
    FloatingArray,
    IntArray,
    NDArray,
    PathLike,
    RngLike,
    Tensor,
)
from dlkernels._lib.arrays import is_tensor, like_input
from dlkernels._lib.locks import reads, writes
from dlkernels._lib.random import check_rng
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import (
    check_alloc,
    check_choice,
    check_count,
    check_real,
)
from dlkernels.neighbors import _lsh_query
from dlkernels.neighbors._lsh_checks import (
    check_known_rows,
    check_new_ids,
    check_points,
    check_tensor_points,
)
from dlkernels.neighbors._lsh_families import (
    MAX_TREE_BITS,
    MIN_TREE_BITS,
    RandomFamily,
    TreeFamily,
)
from dlkernels.neighbors._lsh_persist import load_index, state_of
from dlkernels.neighbors._lsh_store import MAX_ROWS, BucketStore
from dlkernels.neighbors._lsh_tune import tune_settings

__all__ = ["LSHIndex"]

METRICS = ("cosine", "l2")
HASHINGS = ("kmeans", "random")
# The kernel's 16-bit query sketch needs dim * qmax * 255 < 2**31 with qmax >= 2.
MAX_DIM = 2**22
# Far beyond any useful index; keeps the hash functions' allocation sane.
MAX_TABLES = 2**16
DTYPES = {"float32": np.float32, "float64": np.float64}
# Buckets probed beyond the home buckets, over all tables: at most this many.
MAX_PROBES = 2**20
# Construction defaults of each family: (n_tables, n_bits); None is "auto".
DEFAULTS = {"kmeans": (1, None), "random": (16, 12)}
# Query settings before tune(): buckets probed beyond the home buckets.
DEFAULT_PROBES = {"kmeans": 16, "random": 256}


class LSHIndex:
    """Approximate nearest-neighbour search by locality-sensitive hashing.

    Each of ``n_tables`` hash tables puts every vector in a bucket; a query
    looks up its own bucket in every table plus the most promising other
    buckets over all tables (multiprobe), and re-ranks the vectors found there
    (the candidates) with exact distances.

    Two families of hash functions:

    * ``hashing="kmeans"`` (default): data-aware. Each table is a two-level
      k-means tree (``2**n_bits`` leaves) fitted on a sample of the first batch
      added; a vector's bucket is its leaf, and a query probes the leaves whose
      centres are nearest to it. On real data it needs several times fewer
      candidates than random hashing for the same recall.
    * ``hashing="random"``: data-independent. Cosine: random hyperplanes
      (SimHash; Charikar, STOC 2002), bit ``j`` of a code is the sign of a
      projection. L2: p-stable hashing (Datar et al., SoCG 2004), components
      ``floor((a . x + b) / w)`` mixed into one 64-bit key. Nothing to fit, and
      :meth:`hash` works on tensors of any device (bucketing for LSH attention).

    Distances: ``1 - cos(x, q)`` for ``metric="cosine"``, Euclidean for
    ``metric="l2"``. Tables are compact sorted stores (no Python object per
    bucket): vectors can be added at any time at amortised O(log n) sorting
    cost each, and removed (marked, then compacted once half are removed).

    The recipe: ``index = LSHIndex(dim, rng=0)``, ``index.add(X)``, then
    ``index.tune(sample_queries, k=10, target_recall=0.95)``, which picks the
    query settings (:attr:`n_probes`, :attr:`max_candidates`) that reach the
    recall on those queries at the lowest cost; :meth:`query` uses them.

    Parameters
    ----------
    dim : int
        Dimension of the vectors.
    metric : {"cosine", "l2"}, default "cosine"
        Distance to search by.
    hashing : {"kmeans", "random"}, default "kmeans"
        Hash family (see above).
    n_tables : int, optional
        Number of hash tables (default 1 for kmeans, 16 for random). More
        tables: fewer candidates for the same recall, but more memory (16 bytes
        per vector per table), more hashing, and only table 0 keeps its buckets'
        vectors side by side in memory (see the user guide for measurements).
    n_bits : int or "auto", optional
        kmeans: ``log2`` of the leaves per tree, 2 to 20; ``"auto"`` (default)
        gives about 50 vectors per leaf at the fit. random: hash functions per
        table, 1 to 64 (default 12).
    bucket_width : float or "auto", default "auto"
        Only for ``hashing="random", metric="l2"``: the width ``w`` of a
        p-stable slot, in the units of the data. ``"auto"`` sets it at the
        first :meth:`add` to 3 times the median distance from a sample of that
        batch to its 10th nearest neighbour within the batch.
    dtype : {"float32", "float64"}, default "float32"
        Precision the vectors are stored and re-ranked in; the returned
        distances are exact in this precision.
    rng : None, int or numpy.random.Generator
        Draws the hash functions (and seeds the k-means fit). The same ``rng``
        and the same data give the same index at any thread count.

    Notes
    -----
    The k-means trees are fitted at the first :meth:`add`, on a sample of that
    batch (a representative first batch gives good trees), and fitted again on
    all stored vectors whenever the index has grown 8-fold since: amortised,
    a constant cost per vector.

    Thread safety: :meth:`query`, :meth:`candidates`, :meth:`hash`,
    :meth:`save`, :attr:`vectors` and :attr:`ids` may run from any number of
    threads at once; :meth:`add`, :meth:`remove`, :meth:`tune` and the setters
    of the query settings wait for them and run alone.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.neighbors import LSHIndex
    >>> X = np.random.default_rng(0).standard_normal((1000, 32))
    >>> index = LSHIndex(32, rng=0)
    >>> index.add(X)
    >>> dist, ids = index.query(X[:2], k=3)
    >>> ids[:, 0].tolist()  # each point is its own nearest neighbour
    [0, 1]
    """

    def __init__(self, dim: int, *, metric: str = "cosine", hashing: str = "kmeans",
                 n_tables: int | None = None, n_bits: int | str | None = None,
                 bucket_width: float | str | None = "auto", dtype: Any = "float32",
                 rng: RngLike = None) -> None:
        dim = check_count(dim, "dim", 1, MAX_DIM)
        for value, name, choices in ((metric, "metric", METRICS), (hashing, "hashing", HASHINGS)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, one of {choices}, got "
                                f"{type(value).__name__}")
            check_choice(value, name, choices)
        l2 = metric == "l2"
        n_tables = DEFAULTS[hashing][0] if n_tables is None else \
            check_count(n_tables, "n_tables", 1, MAX_TABLES)
        if hashing == "kmeans":
            if n_bits is not None and not (isinstance(n_bits, str) and n_bits == "auto"):
                n_bits = check_count(n_bits, "n_bits", MIN_TREE_BITS, MAX_TREE_BITS)
            else:
                n_bits = None
        else:
            n_bits = 12 if n_bits is None else check_count(n_bits, "n_bits", 1, 64)
        per_table = n_bits if hashing == "random" else 2**(n_bits or MIN_TREE_BITS)
        check_alloc(n_tables * per_table * dim, 8, "n_tables")
        width = None
        if not (bucket_width is None or (isinstance(bucket_width, str) and bucket_width == "auto")):
            if hashing != "random" or not l2:
                raise ValueError(f"bucket_width applies to hashing='random' with metric='l2' "
                                 f"only, got {bucket_width!r} with hashing={hashing!r}, "
                                 f"metric={metric!r}")
            width = check_real(bucket_width, "bucket_width", low=0.0, low_open=True)
        try:
            dtype = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        rng = check_rng(rng)
        if hashing == "kmeans":
            family = TreeFamily(dim, l2, n_tables, n_bits, int(rng.integers(2**63)))
        else:
            family = RandomFamily.draw(dim, l2, n_tables, n_bits, width, rng)
        self._setup(dim, metric, np.dtype(dtype), family, DEFAULT_PROBES[hashing], 0)

    def _setup(self, dim, metric, dtype, family, n_probes: int, max_candidates: int):
        self._dim, self._metric, self._l2 = dim, metric, metric == "l2"
        self._dtype, self._family = dtype, family
        self._n_probes, self._max_candidates = n_probes, max_candidates
        self._next_id = 0
        self._store = BucketStore(dim, dtype, family.n_tables, self._l2, family.sketch_basis())

    # -- properties ----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return self._dim

    @property
    def metric(self) -> str:
        """``"cosine"`` or ``"l2"``."""
        return self._metric

    @property
    def hashing(self) -> str:
        """``"kmeans"`` or ``"random"``."""
        return self._family.name

    @property
    def n_tables(self) -> int:
        """Number of hash tables."""
        return self._family.n_tables

    @property
    def n_bits(self) -> int | str:
        """kmeans: log2 of the leaves per tree (``"auto"`` before the fit); random:
        hash functions per table."""
        family = self._family
        if family.name == "kmeans":
            return family.fitted_bits if family.ready else (family.n_bits or "auto")
        return family.n_bits

    @property
    def bucket_width(self) -> float | str | None:
        """The p-stable slot width (random, l2); ``"auto"`` until the first add; else None."""
        if self._family.name != "random" or not self._l2:
            return None
        return "auto" if self._family.width is None else self._family.width

    @property
    def dtype(self) -> np.dtype[Any]:
        """Precision of the stored vectors and of the returned distances."""
        return self._dtype

    @property
    def n_probes(self) -> int:
        """Buckets :meth:`query` looks up beyond each table's own bucket of the query, in
        all (set by :meth:`tune`, or assigned)."""
        return self._n_probes

    @n_probes.setter
    @writes
    def n_probes(self, value: int) -> None:
        self._n_probes = check_count(value, "n_probes", 0, MAX_PROBES)

    @property
    def max_candidates(self) -> int | None:
        """The most candidates :meth:`query` gathers per query (None: no limit); set by
        :meth:`tune`, or assigned."""
        return self._max_candidates or None

    @max_candidates.setter
    @writes
    def max_candidates(self, value: int | None) -> None:
        self._max_candidates = 0 if value is None else check_count(value, "max_candidates", 1)

    def __len__(self) -> int:
        return self._store.n_alive

    @property
    @reads
    def ids(self) -> IntArray:
        """Ids of the stored vectors, in the order they were added (a copy)."""
        return self._store.row_ids[self._store.live_rows()]

    @property
    @reads
    def vectors(self) -> FloatingArray:
        """The stored vectors, row ``i`` for ``ids[i]`` (a copy, in :attr:`dtype`)."""
        return self._store.vectors[self._store.live_rows()]

    def __repr__(self) -> str:
        width = f", bucket_width={self.bucket_width!r}" if self.bucket_width is not None else ""
        return (f"LSHIndex(dim={self._dim}, metric={self._metric!r}, hashing={self.hashing!r}, "
                f"n_tables={self.n_tables}, n_bits={self.n_bits!r}{width}, n={len(self)})")

    # -- input checks -----------------------------------------------------------------------
    def _points(self, x, name: str, *, allow_empty: bool, allow_zero: bool = False) -> np.ndarray:
        """``x`` as a C-contiguous (m, dim) array of :attr:`dtype`, every value finite."""
        return check_points(x, name, self._dim, self._dtype, self._metric == "cosine",
                            allow_empty=allow_empty, allow_zero=allow_zero)

    def _settings(self, n_probes, max_candidates) -> tuple[int, int]:
        n_probes = self._n_probes if n_probes is None else \
            check_count(n_probes, "n_probes", 0, MAX_PROBES)
        if max_candidates is None:
            return n_probes, self._max_candidates
        return n_probes, check_count(max_candidates, "max_candidates", 1)

    # -- hashing ------------------------------------------------------------------------------
    @overload
    def hash(self, X: Tensor, *, n_threads: int | None = None) -> Tensor: ...
    @overload
    def hash(self, X: ArrayLike, *, n_threads: int | None = None) -> NDArray[np.uint64]: ...

    @reads
    def hash(self, X: ArrayLike | Tensor, *, n_threads: int | None = None
             ) -> NDArray[np.uint64] | Tensor:
        """The code of each vector in each table.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (m, dim)
            Finite values; all-zero rows are allowed here. Converted to
            :attr:`dtype` first, so a vector gets the code it is stored under.
        n_threads : int or None
            Threads for the numpy path (None: OpenMP's default).

        Returns
        -------
        codes : numpy.ndarray of uint64, or torch.Tensor of int64, shape (m, n_tables)
            kmeans: the leaf of each tree (``0 <= code < 2**n_bits``). Random
            cosine: the ``n_bits`` sign bits packed into an integer (bit ``j``
            set where the projection on hyperplane ``j`` is >= 0), so the
            Hamming distance between codes estimates the angle. Random l2: the
            bucket key, a 64-bit mix of the slot indices (equal keys mean the
            same bucket). A torch tensor, CUDA included, is hashed with torch
            operations on its own device and gives int64 codes with the same
            bits (torch has no uint64 arithmetic): ``codes.numpy().view(np.uint64)``
            recovers the numpy codes (for kmeans, up to leaves whose centres
            are equidistant within float32 rounding).

        Raises
        ------
        ValueError
            If ``X`` has the wrong shape or a non-finite value, or if the hash
            functions are not set yet (kmeans, or random l2 with
            ``bucket_width="auto"``, before the first add).
        """
        if not self._family.ready:
            raise ValueError("the hash functions are set by the first add(): add data first"
                             + (" or pass bucket_width" if self._family.name == "random" else ""))
        if is_tensor(X):
            return self._hash_torch(X)
        n_threads = check_n_threads(n_threads)
        points = self._points(X, "X", allow_empty=True, allow_zero=True)
        return self._family.keys(points, n_threads, store_keys=False)

    def _hash_torch(self, X):
        return self._family.hash_torch(check_tensor_points(X, self._dim, self._dtype))

    # -- adding and removing ---------------------------------------------------------------------
    @writes
    def add(self, X: ArrayLike | Tensor, *, ids: ArrayLike | None = None,
            n_threads: int | None = None) -> None:
        """Store vectors (at any time; earlier ids are unaffected).

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (b, dim)
            At least one finite vector (non-zero for ``metric="cosine"``),
            stored in :attr:`dtype`. A CUDA tensor is copied to the host.
        ids : array-like of int, shape (b,), optional
            Non-negative, distinct, not already in the index. Default: the
            integers after the largest id ever given (0, 1, ... for a new
            index), so removed ids are not reused.
        n_threads : int or None
            Threads for fitting and hashing (None: OpenMP's default).

        Raises
        ------
        ValueError, TypeError
            On a bad ``X`` or ``ids``; nothing is stored then.
        """
        n_threads = check_n_threads(n_threads)
        points = self._points(X, "X", allow_empty=False)
        new_ids = self._new_ids(ids, points.shape[0])
        store = self._store
        if store.n_rows + points.shape[0] > MAX_ROWS:
            raise ValueError(f"an LSHIndex holds at most {MAX_ROWS} vectors, got "
                             f"{store.n_rows + points.shape[0]}")
        family = self._family
        if isinstance(family, TreeFamily) and family.needs_refit(store.n_alive + points.shape[0]):
            # Grown 8-fold since the fit: new trees on a sample of everything, new tables.
            everything = np.concatenate([store.vectors[store.live_rows()], points])
            family = family.fitted(everything, n_threads)
            store = store.rekey(lambda v: family.keys(v, n_threads), n_threads,
                                family.sketch_basis())
        elif not family.ready:
            # The first add fits the hash functions (and the sketches' directions).
            family = family.prepared(points, n_threads)
            store = store.rekey(lambda v: family.keys(v, n_threads), n_threads,
                                family.sketch_basis())
        keys = family.keys(points, n_threads)
        # Everything is checked and computed: from here on the index changes.
        self._family, self._store = family, store
        store.append(points, new_ids, keys, n_threads)
        self._next_id = max(self._next_id, int(new_ids.max()) + 1)

    def _new_ids(self, ids, b: int) -> np.ndarray:
        return check_new_ids(ids, b, self._next_id, self._store)

    @writes
    def remove(self, ids: ArrayLike) -> None:
        """Remove the vectors with these ids.

        Parameters
        ----------
        ids : int or array-like of int
            Ids in the index, each at most once.

        Raises
        ------
        ValueError
            If an id is not in the index (the message names it) or repeats;
            nothing is removed then.
        """
        rows = check_known_rows(ids, self._store)
        if rows.size == 0:
            return
        if self._store.remove_rows(rows):
            self._store = self._store.compacted()

    # -- queries ----------------------------------------------------------------------------------
    def _search(self, points, k, n_probes, max_candidates, n_threads):
        """(distances, ids, counts) of the k nearest candidates; counts per query:
        buckets looked up, candidates, exact distances."""
        m = points.shape[0]
        dist = np.full((m, k), np.inf, dtype=self._dtype)
        found = np.full((m, k), -1, dtype=np.int64)
        counts = np.zeros((m, 3), dtype=np.int64)
        kk = min(k, self._store.n_alive)
        if kk and m:
            d_out = np.empty((m, kk), dtype=self._dtype)
            i_out = np.empty((m, kk), dtype=np.int64)
            _lsh_query.query(self._store.kernel_args(), self._family.kernel_args(n_probes),
                             self._store.vectors, points, n_probes,
                             max_candidates, d_out, i_out, counts, n_threads)
            dist[:, :kk], found[:, :kk] = d_out, i_out
        return dist, found, counts

    def _exact(self, points, k, n_threads):
        """The exact k nearest stored vectors (ids), ties by insertion order."""
        m, kk = points.shape[0], min(k, self._store.n_alive)
        d_out = np.empty((m, kk), dtype=self._dtype)
        i_out = np.empty((m, kk), dtype=np.int64)
        rows = np.flatnonzero(self._store.alive[:self._store.n_rows]).astype(np.int32)
        # The probed answer seeds each query's k best: most rows then fail the bound.
        _lsh_query.exact(self._store.kernel_args(), self._family.kernel_args(self._n_probes),
                         self._store.vectors, points, rows, self._n_probes, d_out, i_out,
                         n_threads)
        return d_out, i_out

    @overload
    def query(self, X: Tensor, k: int = 10, *, n_probes: int | None = None,
              max_candidates: int | None = None,
              n_threads: int | None = None) -> tuple[Tensor, Tensor]: ...
    @overload
    def query(self, X: ArrayLike, k: int = 10, *, n_probes: int | None = None,
              max_candidates: int | None = None,
              n_threads: int | None = None) -> tuple[FloatingArray, IntArray]: ...

    @reads
    def query(self, X: ArrayLike | Tensor, k: int = 10, *, n_probes: int | None = None,
              max_candidates: int | None = None, n_threads: int | None = None
              ) -> tuple[FloatingArray | Tensor, IntArray | Tensor]:
        """The ``k`` nearest stored vectors among each query's candidates.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (m, dim)
            Finite queries (non-zero for ``metric="cosine"``), rounded to
            :attr:`dtype` like the stored vectors.
        k : int, default 10
            Neighbours per query, at least 1. Fewer than ``k`` candidates (or
            stored vectors) leave the rest of a row padded.
        n_probes : int, optional
            Buckets looked up beyond each table's own bucket of the query, in all
            (0 to 2**20): the most promising first, over all tables together.
            Default: :attr:`n_probes`.
        max_candidates : int, optional
            Stop looking up buckets once this many candidates are found.
            Default: :attr:`max_candidates`.
        n_threads : int or None
            Threads (None: OpenMP's default). The result does not depend on it.

        Returns
        -------
        distances : array of :attr:`dtype`, shape (m, k)
            Exact distances (``1 - cos`` or Euclidean), ascending; ``inf`` padding.
        ids : array of int64, shape (m, k)
            Ids of the neighbours (equal distances by insertion order); ``-1``
            padding. Tensors in, tensors out (on the input's device).

        Raises
        ------
        ValueError, TypeError
            On a bad argument (named in the message).
        """
        k = check_count(k, "k", 1)
        n_probes, max_candidates = self._settings(n_probes, max_candidates)
        n_threads = check_n_threads(n_threads)
        points = self._points(X, "X", allow_empty=True)
        check_alloc(points.shape[0] * k, 16, "k")
        dist, found, _ = self._search(points, k, n_probes, max_candidates, n_threads)
        return like_input(dist, X), like_input(found, X)

    @overload
    def candidates(self, X: Tensor, *, n_probes: int | None = None,
                   max_candidates: int | None = None,
                   n_threads: int | None = None) -> tuple[Tensor, Tensor]: ...
    @overload
    def candidates(self, X: ArrayLike, *, n_probes: int | None = None,
                   max_candidates: int | None = None,
                   n_threads: int | None = None) -> tuple[IntArray, IntArray]: ...

    @reads
    def candidates(self, X: ArrayLike | Tensor, *, n_probes: int | None = None,
                   max_candidates: int | None = None, n_threads: int | None = None
                   ) -> tuple[IntArray | Tensor, IntArray | Tensor]:
        """The ids found in the probed buckets of each query, before re-ranking.

        Parameters
        ----------
        X, n_probes, max_candidates, n_threads
            As in :meth:`query`.

        Returns
        -------
        ids : array of int64, shape (offsets[-1],)
            The candidates of all queries, each query's without repeats, in the
            order found (own buckets first, then the others by score).
        offsets : array of int64, shape (m + 1,)
            Query ``i``'s candidates are ``ids[offsets[i]:offsets[i + 1]]``;
            :func:`dlkernels.neighbors.split_csr` splits them into a list.
        """
        n_probes, max_candidates = self._settings(n_probes, max_candidates)
        n_threads = check_n_threads(n_threads)
        points = self._points(X, "X", allow_empty=True)
        m = points.shape[0]
        counts = np.zeros(m, dtype=np.int64)
        offsets = np.zeros(m + 1, dtype=np.int64)
        flat = np.empty(0, dtype=np.int64)
        if self._store.n_alive and m:
            args = (self._store.kernel_args(), self._family.kernel_args(n_probes), points,
                    n_probes, max_candidates)
            # Two passes: count, then fill at the running offsets (no per-query lists).
            _lsh_query.candidates(*args, counts, offsets, flat, n_threads)
            np.cumsum(counts, out=offsets[1:])
            flat = np.empty(int(offsets[-1]), dtype=np.int64)
            if flat.size:
                _lsh_query.candidates(*args, counts, offsets, flat, n_threads)
        return like_input(flat, X), like_input(offsets, X)

    @writes
    def tune(self, X: ArrayLike | Tensor, k: int = 10, *, target_recall: float = 0.95,
             n_threads: int | None = None) -> dict[str, Any]:
        """Pick the query settings that reach ``target_recall`` on sample queries, cheapest.

        The exact ``k`` nearest neighbours of the queries are computed first
        (one exact scan of the index per query, at most 500 queries, evenly
        spaced through ``X``). Then :attr:`n_probes` and :attr:`max_candidates`
        are searched over: the choice is the setting of the lowest estimated
        query cost (buckets looked up, candidates bounded, exact distances,
        hashing: a fixed model, so the same data give the same choice) whose
        recall@k on the queries is at least ``target_recall``. It becomes the
        default of :meth:`query`.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (m, dim)
            Sample queries, like those the index will serve (not stored vectors:
            those find themselves).
        k : int, default 10
            Neighbours per query the recall is measured at.
        target_recall : float, default 0.95
            In (0, 1].
        n_threads : int or None
            Threads (None: OpenMP's default). The choice does not depend on it.

        Returns
        -------
        dict
            ``n_probes``, ``max_candidates`` (None: no limit), ``recall`` (on
            the queries), ``candidates`` (mean per query), ``cost`` (model units).

        Warns
        -----
        UserWarning
            If no setting reaches the target (the best recall found is kept).
        """
        k = check_count(k, "k", 1)
        target = check_real(target_recall, "target_recall", low=0.0, high=1.0, low_open=True)
        n_threads = check_n_threads(n_threads)
        points = self._points(X, "X", allow_empty=False)
        if not self._store.n_alive:
            raise ValueError("tune() needs stored vectors: add data first")
        if points.shape[0] > 500:
            points = points[np.linspace(0, points.shape[0] - 1, 500).astype(np.int64)]
        best = tune_settings(self, points, k, target, n_threads)
        if best["recall"] < target:
            warnings.warn(f"no setting reaches recall {target} (the best found: "
                          f"{best['recall']:.4f} with n_probes={best['n_probes']})", UserWarning,
                          stacklevel=3)  # the caller of the locking wrapper
        self._n_probes, self._max_candidates = best["n_probes"], best["max_candidates"] or 0
        return best

    # -- persistence ------------------------------------------------------------------------------
    @reads
    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        fresh = load_index(LSHIndex, state).__dict__
        fresh.pop("_rwlock", None)  # this object keeps its own lock
        self.__dict__.update(fresh)

    @reads
    def save(self, path: PathLike) -> None:
        """Write the index to an ``.npz`` file (loading it never runs code).

        The hash functions, the query settings, the vectors and their ids are
        stored; :meth:`load` rebuilds the tables from them.
        """
        from dlkernels.neighbors._lsh_persist import save_index

        save_index(self, path)

    @classmethod
    def load(cls, path: PathLike) -> LSHIndex:
        """Read an index written by :meth:`save` (this version or an earlier one).

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or invalid contents.
        """
        from dlkernels.neighbors._lsh_persist import read_index

        return read_index(cls, path)
