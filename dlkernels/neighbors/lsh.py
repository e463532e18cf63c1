"""Locality-sensitive hashing: approximate nearest neighbours, re-ranked exactly."""

from __future__ import annotations

import functools
import heapq
import numbers

import numpy as np

from dlkernels._lib.arrays import is_tensor, like_input
from dlkernels._lib.locks import reads, writes
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.random import check_rng
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import as_array, check_alloc, check_choice, check_count, check_real
from dlkernels.neighbors import _lsh

__all__ = ["LSHIndex"]

METRICS = ("cosine", "l2")
# The kernel's 16-bit query sketch needs dim * qmax * 255 < 2**31 with qmax >= 2.
MAX_DIM = 2**22
# Far beyond any useful index; keeps the hash functions' allocation sane.
MAX_TABLES = 2**16
DTYPES = {"float32": np.float32, "float64": np.float64}
# A new run is merged into the one before it while it is at least 1/MERGE_RATIO
# of that one's size: at most about log_4(n) runs, each point merged O(log n) times.
MERGE_RATIO = 4
# Multiprobe buckets per table on average, at most: the scored template of
# perturbation sets grows with it (2 * n_probes + 8 sets per table).
MAX_PROBES = 4096
# bucket_width="auto": this many times the median distance from a sample of the
# first batch to its AUTO_K-th nearest neighbour (see _auto_width).
AUTO_SAMPLE, AUTO_K, AUTO_FACTOR = 256, 10, 3.0
# int64 bucket indices are clipped here (as in the kernel) before they are mixed.
CLIP = 2.0**62
# The 64-bit finaliser of dlkernels's SplitMix64 (dlkernels/_lib/_random.pxd), for torch.
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _check_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def _signed(u: int) -> int:
    """A uint64 constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return u - (1 << 64) if u >= 1 << 63 else u


class LSHIndex:
    """Approximate nearest-neighbour search by locality-sensitive hashing.

    Each of ``n_tables`` hash tables maps a vector to a 64-bit code made of
    ``n_bits`` hash functions; a query looks up its own bucket in every table
    plus the nearest buckets of a multiprobe sequence, and re-ranks the
    candidates found with exact distances.

    * ``metric="cosine"``: random-hyperplane hashing (SimHash; Charikar, STOC
      2002): bit ``j`` of a code is the sign of the projection on a random
      hyperplane. Two vectors at angle ``theta`` agree on a bit with
      probability ``1 - theta / pi``. Distance ``1 - cos(x, q)``.
    * ``metric="l2"``: p-stable hashing (Datar et al., SoCG 2004): each of the
      ``n_bits`` components is ``floor((a . x + b) / w)`` with Gaussian ``a`` and
      ``b`` uniform in ``[0, w)``; the components are combined into one 64-bit
      key by a random linear hash followed by a 64-bit mixer. Euclidean distance.

    Tables are compact sorted stores (no Python object per bucket), so vectors
    can be added at any time at amortised O(log n) sorting cost each, and
    removed (marked, then compacted once half the store is removed).

    Parameters
    ----------
    dim : int
        Dimension of the vectors.
    metric : {"cosine", "l2"}
        Distance to search by.
    n_tables : int, default 16
        Number of hash tables. More tables: higher recall, more memory
        (about 20 bytes per vector per table, besides the vectors and
        their 8-bit sketches) and more candidates to re-rank.
    n_bits : int, default 12
        Hash functions per table, 1 to 64. More bits: smaller buckets, fewer
        but closer candidates per probe.
    bucket_width : float or "auto", default "auto"
        Only for ``metric="l2"``: the width ``w`` of a p-stable slot, in the
        units of the data. ``"auto"`` sets it at the first :meth:`add`, to the
        median distance from a sample of that batch to its 10th nearest
        neighbour within the batch (a representative first batch gives a good
        width; see the user guide to tune it).
    dtype : {"float32", "float64"}, default "float32"
        Precision the vectors are stored and re-ranked in. float32 halves the
        memory and the memory traffic of re-ranking, and is enough for
        embeddings; the returned distances are exact in this precision
        (float64 accumulation of the hash projections keeps codes independent
        of it).
    rng : None, int or numpy.random.Generator
        Draws the hash functions. The same ``rng`` gives the same index.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.neighbors import LSHIndex
    >>> X = np.random.default_rng(0).standard_normal((1000, 32))
    >>> index = LSHIndex(32, metric="cosine", rng=0)
    >>> index.add(X)
    >>> dist, ids = index.query(X[:2], k=3)
    >>> ids[:, 0].tolist()  # each point is its own nearest neighbour
    [0, 1]
    """

    def __init__(self, dim: int, *, metric: str = "cosine", n_tables: int = 16, n_bits: int = 12,
                 bucket_width="auto", dtype="float32", rng=None):
        dim = _check_int(dim, "dim", 1, MAX_DIM)
        if not isinstance(metric, str):
            raise TypeError(f"metric must be a str, one of {METRICS}, got {type(metric).__name__}")
        check_choice(metric, "metric", METRICS)
        n_tables = _check_int(n_tables, "n_tables", 1, MAX_TABLES)
        n_bits = _check_int(n_bits, "n_bits", 1, 64)
        check_alloc(n_tables * n_bits * dim, 8, "n_tables")
        width = None
        if bucket_width is None or (isinstance(bucket_width, str) and bucket_width == "auto"):
            width = None
        elif metric != "l2":
            raise ValueError(f"bucket_width applies to metric='l2' only, got {bucket_width!r} "
                             f"with metric={metric!r}")
        else:
            width = check_real(bucket_width, "bucket_width", low=0.0, low_open=True)
        try:
            dtype = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        rng = check_rng(rng)
        planes = rng.standard_normal((n_tables * n_bits, dim))
        if metric == "cosine":
            # Unit normals: a projection is then the signed distance to the
            # hyperplane, which is what multiprobe scores compare across tables.
            planes /= np.linalg.norm(planes, axis=1, keepdims=True)
        shifts = rng.random(n_tables * n_bits)
        mult = rng.integers(0, 2**64, size=(n_tables, n_bits), dtype=np.uint64, endpoint=False)
        mult |= np.uint64(1)
        self._setup(dim, metric, n_tables, n_bits, width, dtype, planes, shifts, mult)

    def _setup(self, dim, metric, n_tables, n_bits, width, dtype, planes, shifts, mult):
        self._dim, self._metric, self._l2 = dim, metric, metric == "l2"
        self._n_tables, self._n_bits, self._width = n_tables, n_bits, width
        self._dtype = np.dtype(dtype)
        self._planes = np.ascontiguousarray(planes, dtype=np.float64)
        self._shifts = np.ascontiguousarray(shifts, dtype=np.float64)
        self._mult = np.ascontiguousarray(mult, dtype=np.uint64)
        self._clear()

    def _clear(self, capacity: int = 0):
        L = self._n_tables
        self._n_rows = 0          # stored rows, live or removed
        self._n_alive = 0
        self._next_id = 0
        self._vectors = np.empty((capacity, self._dim), dtype=self._dtype)
        self._inv_norms = np.empty(capacity, dtype=np.float64)   # 1 / |x| (cosine)
        # 8-bit sketch of each row for the re-ranking bounds (see _lsh.pyx).
        self._sketch = np.empty((capacity, _sketch_stride(self._dim)), dtype=np.uint8)
        self._row_ids = np.empty(capacity, dtype=np.int64)
        self._alive = np.empty(capacity, dtype=np.uint8)
        # Per table, sorted by key within each run: the full keys (read by merges),
        # and the words queries read, fingerprint << 32 | row (see _lsh.pyx).
        self._keys = np.empty((L, capacity), dtype=np.uint64)
        self._entries = np.empty((L, capacity), dtype=np.uint64)
        self._id_sorted = np.empty(capacity, dtype=np.int64)   # ids sorted within each run
        self._id_rows = np.empty(capacity, dtype=np.int32)
        self._run_starts = np.zeros(1, dtype=np.int64)
        self._dir_bits = np.zeros(0, dtype=np.int32)
        self._dir_offsets = np.zeros(1, dtype=np.int64)
        self._dirs = np.empty((L, 0), dtype=np.uint32)

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
    def n_tables(self) -> int:
        """Number of hash tables."""
        return self._n_tables

    @property
    def n_bits(self) -> int:
        """Hash functions per table."""
        return self._n_bits

    @property
    def bucket_width(self):
        """The p-stable slot width (``metric="l2"``); ``"auto"`` until the first add, None for cosine."""
        if not self._l2:
            return None
        return "auto" if self._width is None else self._width

    @property
    def dtype(self) -> np.dtype:
        """Precision of the stored vectors and of the returned distances."""
        return self._dtype

    def __len__(self) -> int:
        return self._n_alive

    @property
    @reads
    def ids(self) -> np.ndarray:
        """Ids of the stored vectors, in the order they were added (a copy)."""
        return self._row_ids[:self._n_rows][self._alive[:self._n_rows].astype(bool)]

    @property
    @reads
    def vectors(self) -> np.ndarray:
        """The stored vectors, row ``i`` for ``ids[i]`` (a copy, in :attr:`dtype`)."""
        return self._vectors[:self._n_rows][self._alive[:self._n_rows].astype(bool)]

    def __repr__(self) -> str:
        width = "" if not self._l2 else f", bucket_width={self.bucket_width!r}"
        return (f"LSHIndex(dim={self._dim}, metric={self._metric!r}, n_tables={self._n_tables}, "
                f"n_bits={self._n_bits}{width}, n={len(self)})")

    # -- input checks -----------------------------------------------------------------------
    def _points(self, x, name: str, *, allow_empty: bool, allow_zero: bool = False) -> np.ndarray:
        """``x`` as a C-contiguous (m, dim) array of :attr:`dtype`, every value finite."""
        arr = as_array(x, name)
        if arr.dtype.kind not in "biuf":
            what = "real" if arr.dtype.kind == "c" else "numeric"
            raise TypeError(f"{name} must be {what}, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[1] != self._dim:
            raise ValueError(f"{name} must have shape (m, {self._dim}) for this index of "
                             f"dim={self._dim}, got shape {arr.shape}")
        if arr.shape[0] == 0 and not allow_empty:
            raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
        with np.errstate(over="ignore"):  # a float64 beyond float32's range turns inf: refused below
            out = np.ascontiguousarray(arr, dtype=self._dtype)
        bad = ~np.isfinite(out)
        if bad.any():
            pos = np.unravel_index(int(np.argmax(bad)), out.shape)
            raise ValueError(f"{name} must be finite (and within {self._dtype} range), got "
                             f"{arr[pos]} at row {pos[0]}, column {pos[1]}")
        if self._metric == "cosine" and not allow_zero and out.shape[0]:
            zero = ~np.any(out != 0, axis=1)
            if zero.any():
                raise ValueError(f"{name} has an all-zero row {int(np.argmax(zero))}: the cosine "
                                 f"distance is undefined for it")
        return out

    def _width_or_raise(self) -> float:
        if self._width is None:
            raise ValueError("bucket_width is 'auto' and is set by the first add(); add data or "
                             "pass bucket_width to LSHIndex first")
        return self._width

    # -- hashing ------------------------------------------------------------------------------
    def _codes(self, X: np.ndarray, store_keys: bool, n_threads: int, width=None) -> np.ndarray:
        out = np.empty((X.shape[0], self._n_tables), dtype=np.uint64)
        width = (self._width or 1.0) if width is None else width
        _lsh.hash_codes(X, self._planes, self._shifts, width, self._l2, self._mult,
                        store_keys, out, n_threads)
        return out

    @reads
    def hash(self, X, *, n_threads: int | None = None):
        """The code of each vector in each table.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (m, dim)
            Finite values; all-zero rows are allowed here (their cosine code
            has every bit set). Converted to :attr:`dtype` first, so a vector
            gets the code it is stored under.
        n_threads : int or None
            Threads for the numpy path (None: OpenMP's default).

        Returns
        -------
        codes : numpy.ndarray of uint64, or torch.Tensor of int64, shape (m, n_tables)
            Cosine: the ``n_bits`` sign bits packed into an integer (bit ``j``
            set where the projection on hyperplane ``j`` is >= 0), so the
            Hamming distance between codes estimates the angle. L2: the
            bucket key, a 64-bit mix of the ``n_bits`` slot indices (equal
            keys mean the same bucket). A torch tensor, CUDA included, is
            hashed with torch operations on its own device and gives int64
            codes with the same bits (torch has no uint64 arithmetic):
            ``codes.numpy().view(np.uint64)`` recovers the numpy codes.

        Raises
        ------
        ValueError
            If ``X`` has the wrong shape or a non-finite value, or if
            ``bucket_width`` is still ``"auto"`` (l2 before the first add).
        """
        if self._l2:
            self._width_or_raise()
        if is_tensor(X):
            return self._hash_torch(X)
        n_threads = check_n_threads(n_threads)
        points = self._points(X, "X", allow_empty=True, allow_zero=True)
        return self._codes(points, False, n_threads)

    def _hash_torch(self, X):
        import torch

        ints = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
        if not (X.dtype.is_floating_point or X.dtype in ints):
            raise TypeError(f"X must be a real tensor, got dtype {X.dtype}")
        if X.ndim != 2 or X.shape[1] != self._dim:
            raise ValueError(f"X must have shape (m, {self._dim}) for this index of "
                             f"dim={self._dim}, got shape {tuple(X.shape)}")
        store = torch.float32 if self._dtype == np.float32 else torch.float64
        x = X.detach().to(store)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"X must be finite (and within {self._dtype} range)")
        device = x.device
        planes = torch.from_numpy(self._planes).to(device)
        proj = x.to(torch.float64) @ planes.T
        m, L, K = x.shape[0], self._n_tables, self._n_bits
        if not self._l2:
            bits = (proj >= 0).to(torch.int64).reshape(m, L, K)
            powers = torch.ones(K, dtype=torch.int64, device=device) << torch.arange(
                K, dtype=torch.int64, device=device)
            return (bits * powers).sum(dim=2)
        proj = proj / self._width + torch.from_numpy(self._shifts).to(device)
        slots = torch.floor(proj).clamp(-CLIP, CLIP).to(torch.int64).reshape(m, L, K)
        mult = torch.from_numpy(self._mult.view(np.int64)).to(device)
        # Integer products and sums wrap modulo 2**64, as the uint64 ones in C.
        return _mix64_torch((slots * mult).sum(dim=2))

    # -- adding and removing ---------------------------------------------------------------------
    @writes
    def add(self, X, *, ids=None, n_threads: int | None = None) -> None:
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
            Threads for hashing (None: OpenMP's default).

        Raises
        ------
        ValueError, TypeError
            On a bad ``X`` or ``ids``; nothing is stored then.
        """
        n_threads = check_n_threads(n_threads)
        points = self._points(X, "X", allow_empty=False)
        b = points.shape[0]
        new_ids = self._new_ids(ids, b)
        width = self._width
        if self._l2 and width is None:
            width = _auto_width(points)
        keys = self._codes(points, True, n_threads, width)
        # Everything is checked and computed: from here on the index changes.
        self._width = width
        self._append(points, new_ids, keys, n_threads)

    def _new_ids(self, ids, b: int) -> np.ndarray:
        if ids is None:
            return np.arange(self._next_id, self._next_id + b, dtype=np.int64)
        arr = as_array(ids, "ids")
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1 or arr.shape[0] != b:
            raise ValueError(f"ids must have shape ({b},), one per row of X, got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids must hold integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"ids must fit in int64, got {arr.max()}")
        arr = arr.astype(np.int64)
        if arr.size and arr.min() < 0:
            raise ValueError(f"ids must be non-negative, got {arr.min()} at position "
                             f"{int(np.argmin(arr))}")
        if arr.max() == np.iinfo(np.int64).max:
            raise ValueError(f"ids must be below {np.iinfo(np.int64).max}, got {arr.max()}")
        order = np.argsort(arr, kind="stable")
        dup = np.flatnonzero(np.diff(arr[order]) == 0)
        if dup.size:
            raise ValueError(f"ids must be distinct, got {arr[order[dup[0]]]} twice")
        present = self._find_rows(arr) >= 0
        if present.any():
            raise ValueError(f"ids must be new, but id {arr[int(np.argmax(present))]} is already "
                             f"in the index")
        return arr

    def _find_rows(self, ids: np.ndarray) -> np.ndarray:
        """The live row of each id, or -1."""
        found = np.full(ids.shape[0], -1, dtype=np.int64)
        starts = self._run_starts
        for r in range(starts.shape[0] - 1):
            seg = self._id_sorted[starts[r]:starts[r + 1]]
            lo = np.searchsorted(seg, ids, side="left")
            hi = np.searchsorted(seg, ids, side="right")
            # A removed id may be stored again: several entries, at most one live.
            for j in range(int((hi - lo).max(initial=0))):
                has = hi - lo > j
                rows = self._id_rows[starts[r] + lo[has] + j]
                live = self._alive[rows].astype(bool)
                found[np.flatnonzero(has)[live]] = rows[live]
        return found

    def _reserve(self, need: int) -> None:
        cap = self._vectors.shape[0]
        if need <= cap:
            return
        cap = max(need, 2 * cap, 16)
        n = self._n_rows

        def grown(arr, axis_last=False):
            shape = (arr.shape[0], cap) if axis_last else (cap,) + arr.shape[1:]
            out = np.empty(shape, dtype=arr.dtype)
            if axis_last:
                out[:, :n] = arr[:, :n]
            else:
                out[:n] = arr[:n]
            return out

        self._vectors = grown(self._vectors)
        self._sketch = grown(self._sketch)
        self._inv_norms = grown(self._inv_norms)
        self._row_ids = grown(self._row_ids)
        self._alive = grown(self._alive)
        self._id_sorted = grown(self._id_sorted)
        self._id_rows = grown(self._id_rows)
        self._keys = grown(self._keys, axis_last=True)
        self._entries = grown(self._entries, axis_last=True)

    def _append(self, points: np.ndarray, ids: np.ndarray, keys: np.ndarray,
                n_threads: int = 1) -> None:
        """Store rows and their (b, L) keys as a new run, then merge runs as needed."""
        b, a = points.shape[0], self._n_rows
        if a + b >= 2**31:
            raise ValueError(f"an LSHIndex holds at most 2**31 - 1 vectors, got {a + b}")
        self._reserve(a + b)
        c = a + b
        self._vectors[a:c] = points
        _lsh.sketch(points, self._sketch[a:c], n_threads)
        if self._l2:
            self._inv_norms[a:c] = 0.0
        else:
            p64 = points.astype(np.float64)
            self._inv_norms[a:c] = 1.0 / np.sqrt(np.einsum("ij,ij->i", p64, p64))
        self._row_ids[a:c] = ids
        self._alive[a:c] = 1
        self._keys[:, a:c] = keys.T
        self._entries[:, a:c] = np.arange(a, c, dtype=np.uint64)
        self._id_sorted[a:c] = ids
        self._id_rows[a:c] = np.arange(a, c, dtype=np.int32)
        self._n_rows, self._n_alive = c, self._n_alive + b
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        starts = list(self._run_starts)
        first_changed = len(starts) - 1
        starts.append(c)
        # Merge the new run into its predecessors while it is not much smaller.
        while len(starts) >= 3 and (starts[-1] - starts[-2]) * MERGE_RATIO >= starts[-2] - starts[-3]:
            del starts[-2]
            first_changed = min(first_changed, len(starts) - 2)
        self._run_starts = np.asarray(starts, dtype=np.int64)
        self._sort_runs(first_changed)

    def _sort_runs(self, first: int) -> None:
        """Sort the entries of runs ``first``, ``first + 1``, ... and rebuild their directories."""
        starts = self._run_starts
        n_runs = starts.shape[0] - 1
        bits = np.array([int(s).bit_length() - 1 for s in np.diff(starts)], dtype=np.int32)
        low = np.uint64(0xFFFFFFFF)
        for r in range(first, n_runs):
            a, c = int(starts[r]), int(starts[r + 1])
            for t in range(self._n_tables):
                # Stable: timsort merges the already sorted runs in linear time.
                order = np.argsort(self._keys[t, a:c], kind="stable")
                keys = self._keys[t, a:c][order]
                rows = self._entries[t, a:c][order] & low
                self._keys[t, a:c] = keys
                fingerprints = (keys << np.uint64(bits[r])) >> np.uint64(32)
                self._entries[t, a:c] = (fingerprints << np.uint64(32)) | rows
            order = np.argsort(self._id_sorted[a:c], kind="stable")
            self._id_sorted[a:c] = self._id_sorted[a:c][order]
            self._id_rows[a:c] = self._id_rows[a:c][order]
        offsets = np.zeros(n_runs + 1, dtype=np.int64)
        offsets[1:] = np.cumsum((np.int64(1) << bits.astype(np.int64)) + 1)
        dirs = np.empty((self._n_tables, int(offsets[-1])), dtype=np.uint32)
        keep = int(self._dir_offsets[first]) if first < self._dir_offsets.shape[0] else 0
        keep = min(keep, int(offsets[first]))
        dirs[:, :keep] = self._dirs[:, :keep]
        for r in range(first, n_runs):
            a, c = int(starts[r]), int(starts[r + 1])
            for t in range(self._n_tables):
                _lsh.directory(self._keys[t, a:c], int(bits[r]),
                               dirs[t, offsets[r]:offsets[r + 1]])
        self._dir_bits, self._dir_offsets, self._dirs = bits, offsets, dirs

    @writes
    def remove(self, ids) -> None:
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
        arr = as_array(ids, "ids")
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"ids must be an int or 1-dimensional, got shape {arr.shape}")
        if arr.size == 0:
            return
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids must hold integers, got dtype {arr.dtype}")
        signed = arr.astype(np.int64)
        rows = self._find_rows(signed)
        missing = (rows < 0) | (signed != arr)  # a uint64 beyond int64 is unknown too
        if missing.any():
            raise ValueError(f"ids holds {arr[int(np.argmax(missing))]}, which is not in the index")
        if np.unique(rows).shape[0] != rows.shape[0]:
            order = np.argsort(signed, kind="stable")
            dup = signed[order][np.flatnonzero(np.diff(signed[order]) == 0)[0]]
            raise ValueError(f"ids holds {dup} twice")
        self._alive[rows] = 0
        self._n_alive -= rows.shape[0]
        if self._n_rows - self._n_alive > self._n_alive:
            self._compact()

    def _compact(self) -> None:
        """Drop removed rows: the live ones, renumbered in order, become one run."""
        n = self._n_rows
        live = np.flatnonzero(self._alive[:n])
        keys_by_row = np.empty((n, self._n_tables), dtype=np.uint64)
        for t in range(self._n_tables):
            keys_by_row[self._entries[t, :n] & np.uint64(0xFFFFFFFF), t] = self._keys[t, :n]
        self._rebuild(self._vectors[live], self._row_ids[live], keys_by_row[live], self._next_id)

    def _rebuild(self, vectors, ids, keys, next_id) -> None:
        self._clear(vectors.shape[0])
        if vectors.shape[0]:
            self._append(vectors, ids, keys)
        self._next_id = next_id

    # -- queries ----------------------------------------------------------------------------------
    def _tables(self, n_probes: int):
        pos, off = _probe_template(self._n_bits, self._l2, n_probes)
        return (self._entries, self._run_starts, self._dir_bits, self._dir_offsets,
                self._dirs, self._alive, self._mult, self._row_ids, self._inv_norms, self._sketch,
                self._planes, self._shifts, self._width or 1.0, pos, off, self._l2)

    def _query_args(self, X, n_probes, n_threads):
        points = self._points(X, "X", allow_empty=True)
        n_probes = check_count(n_probes, "n_probes")
        if n_probes > MAX_PROBES:
            raise ValueError(f"n_probes must be at most {MAX_PROBES}, got {n_probes}")
        n_threads = check_n_threads(n_threads)
        return points, n_probes, n_threads

    @reads
    def query(self, X, k: int = 10, *, n_probes: int = 16, n_threads: int | None = None):
        """The ``k`` nearest stored vectors among each query's candidates.

        Parameters
        ----------
        X : array-like or torch.Tensor, shape (m, dim)
            Finite queries (non-zero for ``metric="cosine"``), rounded to
            :attr:`dtype` like the stored vectors.
        k : int, default 10
            Neighbours per query, at least 1. Fewer than ``k`` candidates (or
            stored vectors) leave the rest of a row padded.
        n_probes : int, default 16
            Extra buckets looked up per table on average (0 to 4096), beyond
            the query's own bucket: ``n_probes * n_tables`` buckets in all, the most likely
            first over all tables (query-directed multiprobe, Lv et al. 2007).
        n_threads : int or None
            Threads (None: OpenMP's default). The result does not depend on it.

        Returns
        -------
        distances : array of :attr:`dtype`, shape (m, k)
            Exact distances (``1 - cos`` or Euclidean), ascending; ``inf`` padding.
        ids : array of int64, shape (m, k)
            Ids of the neighbours (ties by ascending id); ``-1`` padding.
            Tensors in, tensors out (on the input's device).

        Raises
        ------
        ValueError, TypeError
            On a bad argument (named in the message).
        """
        k = _check_int(k, "k", 1)
        points, n_probes, n_threads = self._query_args(X, n_probes, n_threads)
        m = points.shape[0]
        check_alloc(m * k, 16, "k")
        kk = min(k, self._n_alive)
        dist = np.full((m, k), np.inf, dtype=self._dtype)
        found = np.full((m, k), -1, dtype=np.int64)
        if kk and m:
            d_out = np.empty((m, kk), dtype=self._dtype)
            i_out = np.empty((m, kk), dtype=np.int64)
            _lsh.query(*self._tables(n_probes), self._vectors, points, n_probes * self._n_tables,
                       d_out, i_out, n_threads)
            dist[:, :kk], found[:, :kk] = d_out, i_out
        return like_input(dist, X), like_input(found, X)

    @reads
    def candidates(self, X, *, n_probes: int = 16, n_threads: int | None = None):
        """The ids found in the probed buckets of each query, before re-ranking.

        Parameters
        ----------
        X, n_probes, n_threads
            As in :meth:`query`.

        Returns
        -------
        ids : array of int64, shape (offsets[-1],)
            The candidates of all queries, each query's without repeats, in the
            order found (own buckets first, then multiprobe buckets).
        offsets : array of int64, shape (m + 1,)
            Query ``i``'s candidates are ``ids[offsets[i]:offsets[i + 1]]``;
            :func:`dlkernels.neighbors.split_csr` splits them into a list.
        """
        points, n_probes, n_threads = self._query_args(X, n_probes, n_threads)
        m = points.shape[0]
        counts = np.zeros(m, dtype=np.int64)
        offsets = np.zeros(m + 1, dtype=np.int64)
        flat = np.empty(0, dtype=np.int64)
        if self._n_alive and m:
            args = self._tables(n_probes) + (points, n_probes * self._n_tables)
            # Two passes: count, then fill at the running offsets (no per-query lists).
            _lsh.candidates(*args, counts, offsets, flat, n_threads)
            np.cumsum(counts, out=offsets[1:])
            flat = np.empty(int(offsets[-1]), dtype=np.int64)
            if flat.size:
                _lsh.candidates(*args, counts, offsets, flat, n_threads)
        return like_input(flat, X), like_input(offsets, X)

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict:
        live = self._alive[:self._n_rows].astype(bool)
        return {"dim": self._dim, "metric": self._metric, "n_tables": self._n_tables,
                "n_bits": self._n_bits,
                "bucket_width": np.nan if self._width is None else self._width,
                "dtype": self._dtype.name, "planes": self._planes, "shifts": self._shifts,
                "mult": self._mult, "vectors": self._vectors[:self._n_rows][live],
                "ids": self._row_ids[:self._n_rows][live], "next_id": self._next_id}

    @classmethod
    def _from_state(cls, state: dict) -> LSHIndex:
        try:
            dim, n_tables, n_bits = (int(state[k]) for k in ("dim", "n_tables", "n_bits"))
            metric, dtype = str(state["metric"]), str(state["dtype"])
            width = float(state["bucket_width"])
            planes, shifts, mult = state["planes"], state["shifts"], state["mult"]
            vectors, ids, next_id = state["vectors"], state["ids"], int(state["next_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a valid LSHIndex state: {exc}") from None
        index = cls.__new__(cls)
        problems = []
        if metric not in METRICS or dtype not in DTYPES or dim < 1 or n_tables < 1 \
                or not 1 <= n_bits <= 64:
            problems.append("parameters out of range")
        if np.shape(planes) != (n_tables * n_bits, dim) or np.shape(shifts) != (n_tables * n_bits,) \
                or np.shape(mult) != (n_tables, n_bits) or np.asarray(mult).dtype != np.uint64:
            problems.append("hash functions of the wrong shape")
        if not (np.isnan(width) or (width > 0 and np.isfinite(1.0 / width))):
            problems.append(f"bucket width {width}")
        elif not (np.isfinite(planes).all() and np.isfinite(shifts).all()
                  and ((0 <= shifts) & (shifts < 1)).all() and (np.asarray(mult) & 1).all()):
            # Finite planes and shifts in [0, 1), odd multipliers: as the constructor draws them.
            problems.append("invalid hash functions")
        if problems:
            raise ValueError(f"not a valid LSHIndex state: {', '.join(problems)}")
        index._setup(dim, metric, n_tables, n_bits, None if np.isnan(width) else width, dtype,
                     planes, shifts, mult)
        points = index._points(vectors, "vectors", allow_empty=True)
        ids = np.asarray(ids)
        if ids.shape != (points.shape[0],) or ids.dtype.kind not in "iu":
            raise ValueError("not a valid LSHIndex state: ids do not match the vectors")
        if points.shape[0]:
            ids = index._new_ids(ids, points.shape[0])
            index._rebuild(points, ids, index._codes(points, True, check_n_threads(None)),
                           max(next_id, int(ids.max()) + 1))
        else:
            index._next_id = max(next_id, 0)
        return index

    @reads
    def __getstate__(self) -> dict:
        return self._state()

    def __setstate__(self, state: dict) -> None:
        fresh = LSHIndex._from_state(state).__dict__
        fresh.pop("_rwlock", None)  # this object keeps its own lock
        self.__dict__.update(fresh)

    @reads
    def save(self, path) -> None:
        """Write the index to an ``.npz`` file (loading it never runs code).

        The hash functions and the vectors are stored; :meth:`load` rebuilds
        the tables from them.
        """
        save_arrays(path, "LSHIndex", **self._state())

    @classmethod
    def load(cls, path) -> LSHIndex:
        """Read an index written by :meth:`save`.

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or invalid contents.
        """
        with read_archive(path, "LSHIndex") as archive:
            archive.expect(["dim", "metric", "n_tables", "n_bits", "bucket_width", "dtype",
                            "planes", "shifts", "mult", "vectors", "ids", "next_id"])
            dim = archive.scalar("dim", int, low=1, high=MAX_DIM)
            n_tables = archive.scalar("n_tables", int, low=1, high=MAX_TABLES)
            n_bits = archive.scalar("n_bits", int, low=1, high=64)
            dtype = archive.scalar("dtype", str)
            if dtype not in DTYPES:
                raise ValueError(f"dtype is {dtype!r}, expected one of {DTYPES}")
            state = {"dim": dim, "n_tables": n_tables, "n_bits": n_bits, "dtype": dtype,
                     "metric": archive.scalar("metric", str),
                     "bucket_width": archive.array("bucket_width", "float64", ()),
                     "planes": archive.array("planes", "float64", (n_tables * n_bits, dim)),
                     "shifts": archive.array("shifts", "float64", (n_tables * n_bits,)),
                     "mult": archive.array("mult", "uint64", (n_tables, n_bits)),
                     "vectors": archive.array("vectors", dtype, (None, dim)),
                     "next_id": archive.scalar("next_id", int, low=0)}
            state["ids"] = archive.array("ids", "int64", (state["vectors"].shape[0],))
            return cls._from_state(state)


def _mix64_torch(z):
    """dlkernels's 64-bit mixer on int64 tensors (logical shifts emulated by masking)."""
    import torch

    def shr(x, s):
        return (x >> s) & ((1 << (64 - s)) - 1)

    z = (z ^ shr(z, 30)) * torch.tensor(_signed(MIX1), dtype=torch.int64, device=z.device)
    z = (z ^ shr(z, 27)) * torch.tensor(_signed(MIX2), dtype=torch.int64, device=z.device)
    return z ^ shr(z, 31)


SKETCH_HEADER = 32  # bytes: float32 lo, step, |x^|^2, err, 1/|x|, |code|, then 2 unused


def _sketch_stride(dim: int) -> int:
    return SKETCH_HEADER + dim




@functools.lru_cache(maxsize=64)
def _probe_template(n_bits: int, l2: bool, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
    """The perturbation sets a query scores in each table (see _lsh.pyx), as (positions, offsets).

    Lv et al.'s shift/expand heap over the *expected* scores of the sorted
    single perturbations, keeping the first ``2 * n_probes + 8`` valid sets.
    L2: position ``i < K`` is the i-th nearest boundary, expected at distance
    ``(i + 1) / (2 (K + 1))`` of a slot, and ``2K - 1 - i`` the opposite step of
    the same component; a set holding both is invalid. Cosine: the i-th
    smallest of K half-normal projections, at the matching quantile.
    """
    want = 2 * n_probes + 8 if n_probes > 0 else 0
    K = n_bits
    if l2:
        P = 2 * K
        near = (np.arange(K) + 1) / (2 * (K + 1))
        expected = np.concatenate([near ** 2, ((1 - near) ** 2)[::-1]])
    else:
        from statistics import NormalDist

        P = K
        expected = np.array([NormalDist().inv_cdf(0.5 + 0.5 * (i + 1) / (K + 1)) ** 2
                             for i in range(K)])
    sets: list[tuple[int, ...]] = []
    heap = [(float(expected[0]), (0,))] if want else []
    while heap and len(sets) < want:
        score, members = heapq.heappop(heap)
        if not (l2 and any(P - 1 - i in members for i in members)):
            sets.append(members)
        top = members[-1]
        if top + 1 < P:
            heapq.heappush(heap, (score + expected[top + 1], members + (top + 1,)))
            heapq.heappush(heap, (score - expected[top] + expected[top + 1],
                                  members[:-1] + (top + 1,)))
    offsets = np.zeros(len(sets) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(m) for m in sets])
    positions = np.array([i for m in sets for i in m], dtype=np.int32)
    return (positions if positions.size else np.zeros(1, dtype=np.int32)), offsets


def _auto_width(points: np.ndarray) -> float:
    """``AUTO_FACTOR`` times the median distance of a sample to its ``AUTO_K``-th neighbour."""
    n = points.shape[0]
    x = points.astype(np.float64)
    if n >= 2:
        sample = x[np.linspace(0, n - 1, min(n, AUTO_SAMPLE)).astype(np.int64)]
        k = min(AUTO_K, n - 1)
        sq_norms = np.einsum("ij,ij->i", x, x)
        kth = np.empty(sample.shape[0])
        for start in range(0, sample.shape[0], 64):
            s = sample[start:start + 64]
            d2 = sq_norms[None, :] - 2.0 * (s @ x.T) + np.einsum("ij,ij->i", s, s)[:, None]
            # k-th smallest excluding the point itself (its distance ~0 is the smallest).
            kth[start:start + 64] = np.partition(np.maximum(d2, 0.0), k, axis=1)[:, k]
        width = AUTO_FACTOR * float(np.median(np.sqrt(kth)))
        if width > 0 and np.isfinite(width):
            return width
        spread = float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()))
        if spread > 0 and np.isfinite(spread):
            return spread
    scale = float(np.abs(x).max())
    return scale if scale > 0 and np.isfinite(scale) else 1.0
