"""The bucket store of LSHIndex: stored rows and, per table, sorted runs of keys.

Rows hold the vectors, their 8-bit sketches, ids, insertion order and a live
flag. They are appended in *runs*; a new run is merged into the one before it
while it is at least 1/MERGE_RATIO of that one's size (as in a log-structured
merge tree), so there are at most about log_4(n) runs and each row is re-sorted
O(log n) times. Within a run the rows are ordered by their key in table 0 (a
bucket of table 0 is a contiguous block of rows: re-ranking reads it
sequentially), and each table has the run's entries sorted by its own key plus
a directory over the top bits of the key (see _lsh_query.pyx).
"""

from __future__ import annotations

import numpy as np

from dlkernels.neighbors import _lsh_hash

# A new run is merged into the one before it while it is at least 1/MERGE_RATIO
# of that one's size.
MERGE_RATIO = 4
SKETCH_HEADER = 32  # bytes of float32 header before the 8-bit codes (see _lsh_query.pyx)
# Rows are int32 in the kernels.
MAX_ROWS = 2**31 - 1


class BucketStore:
    """Rows and tables of one index; every method assumes checked input."""

    def __init__(self, dim: int, dtype: np.dtype, n_tables: int, l2: bool, sketch: tuple,
                 capacity: int = 0):
        self.dim, self.dtype, self.n_tables, self.l2 = dim, np.dtype(dtype), n_tables, l2
        # What the sketches are taken in: (mean (dim,), directions (s, dim) or none
        # (0, dim): the coordinates themselves; normalise first (cosine)).
        self.sketch_basis = sketch
        width = sketch[1].shape[0] or dim
        self.n_rows = 0         # stored rows, live or removed
        self.n_alive = 0
        self.next_seq = 0
        cap = max(capacity, 1)  # never empty: kernels take the address of row 0
        self.vectors = np.zeros((cap, dim), dtype=self.dtype)
        self.inv_norms = np.zeros(cap, dtype=np.float64)   # 1 / |x| (cosine)
        self.sketch = np.zeros((cap, SKETCH_HEADER + width), dtype=np.uint8)
        self.row_ids = np.zeros(cap, dtype=np.int64)
        self.seq = np.zeros(cap, dtype=np.int64)           # insertion order of each row
        self.alive = np.zeros(cap, dtype=np.uint8)
        self.row_keys = np.zeros((cap, n_tables), dtype=np.uint64)
        # Per table, sorted by key within each run: fingerprint << 32 | row.
        self.entries = np.zeros((n_tables, cap), dtype=np.uint64)
        self.id_sorted = np.zeros(cap, dtype=np.int64)     # ids sorted within each run
        self.id_rows = np.zeros(cap, dtype=np.int32)
        self.run_starts = np.zeros(1, dtype=np.int64)
        self.dir_bits = np.zeros(0, dtype=np.int32)
        self.dir_offsets = np.zeros(1, dtype=np.int64)
        self.dirs = np.zeros((n_tables, 1), dtype=np.uint32)

    # -- what kernels and the facade read ------------------------------------------------
    def kernel_args(self) -> tuple:
        mean, basis, normalize = self.sketch_basis
        return (self.entries, self.run_starts, self.dir_bits, self.dir_offsets, self.dirs,
                self.alive, self.row_ids, self.seq, self.inv_norms, self.sketch, mean, basis,
                normalize, self.l2)

    def live_rows(self) -> np.ndarray:
        """Rows of the live vectors, in insertion order."""
        n = self.n_rows
        live = np.flatnonzero(self.alive[:n])
        return live[np.argsort(self.seq[live], kind="stable")]

    def find_rows(self, ids: np.ndarray) -> np.ndarray:
        """The live row of each id, or -1."""
        found = np.full(ids.shape[0], -1, dtype=np.int64)
        starts = self.run_starts
        for r in range(starts.shape[0] - 1):
            seg = self.id_sorted[starts[r]:starts[r + 1]]
            lo = np.searchsorted(seg, ids, side="left")
            hi = np.searchsorted(seg, ids, side="right")
            # A removed id may be stored again: several entries, at most one live.
            for j in range(int((hi - lo).max(initial=0))):
                has = hi - lo > j
                rows = self.id_rows[starts[r] + lo[has] + j]
                live = self.alive[rows].astype(bool)
                found[np.flatnonzero(has)[live]] = rows[live]
        return found

    # -- writing -------------------------------------------------------------------------
    def append(self, points: np.ndarray, ids: np.ndarray, keys: np.ndarray,
               n_threads: int = 1) -> None:
        """Store rows and their (b, L) keys as a new run, then merge runs as needed."""
        b, a = points.shape[0], self.n_rows
        self._reserve(a + b)
        c = a + b
        # The new run goes in already ordered by table 0's key (then insertion order).
        order = np.argsort(keys[:, 0], kind="stable")
        np.take(points, order, axis=0, out=self.vectors[a:c])
        mean, basis, normalize = self.sketch_basis
        _lsh_hash.sketch(self.vectors[a:c], mean, basis, normalize, self.sketch[a:c], n_threads)
        if self.l2:
            self.inv_norms[a:c] = 0.0
        else:
            p64 = self.vectors[a:c].astype(np.float64)
            self.inv_norms[a:c] = 1.0 / np.sqrt(np.einsum("ij,ij->i", p64, p64))
        self.row_ids[a:c] = ids[order]
        self.seq[a:c] = self.next_seq + order
        self.next_seq += b
        self.alive[a:c] = 1
        self.row_keys[a:c] = keys[order]
        self.n_rows, self.n_alive = c, self.n_alive + b
        starts = list(self.run_starts)
        first_changed = len(starts) - 1
        starts.append(c)
        # Merge the new run into its predecessors while it is not much smaller.
        while len(starts) >= 3 and (starts[-1] - starts[-2]) * MERGE_RATIO >= starts[-2] - starts[-3]:
            del starts[-2]
            first_changed = min(first_changed, len(starts) - 2)
        self.run_starts = np.asarray(starts, dtype=np.int64)
        self._sort_runs(first_changed)

    def remove_rows(self, rows: np.ndarray) -> bool:
        """Mark rows removed; True when over half the stored rows are (time to compact)."""
        self.alive[rows] = 0
        self.n_alive -= rows.shape[0]
        return self.n_rows - self.n_alive > self.n_alive

    def rekey(self, keys_of, n_threads: int, sketch: tuple | None = None) -> BucketStore:
        """A new store of the live rows, in insertion order, keyed by ``keys_of(vectors)``
        (and sketched in ``sketch``, by default as here)."""
        live = self.live_rows()
        out = BucketStore(self.dim, self.dtype, self.n_tables, self.l2,
                          sketch or self.sketch_basis, live.shape[0])
        if live.shape[0]:
            vectors = self.vectors[live]
            out.append(vectors, self.row_ids[live], keys_of(vectors), n_threads)
        out.next_seq = out.n_rows
        return out

    def compacted(self) -> BucketStore:
        """The live rows, in insertion order, as one run with their keys kept."""
        return self.rekey(lambda vectors: self.row_keys[self.live_rows()], 1)

    def _reserve(self, need: int) -> None:
        cap = self.vectors.shape[0]
        if need <= cap:
            return
        cap = max(need, cap + cap // 2, 16)   # 1.5x: amortised O(1) copies per row
        n = self.n_rows

        def grown(arr, axis_last=False):
            shape = (arr.shape[0], cap) if axis_last else (cap,) + arr.shape[1:]
            out = np.zeros(shape, dtype=arr.dtype)
            if axis_last:
                out[:, :n] = arr[:, :n]
            else:
                out[:n] = arr[:n]
            return out

        for name in ("vectors", "sketch", "inv_norms", "row_ids", "seq", "alive", "row_keys",
                     "id_sorted", "id_rows"):
            setattr(self, name, grown(getattr(self, name)))
        self.entries = grown(self.entries, axis_last=True)

    def _sort_runs(self, first: int) -> None:
        """Order the rows of runs ``first``, ``first + 1``, ... by table 0's key (then
        insertion order), sort every table's entries and rebuild the directories."""
        starts = self.run_starts
        n_runs = starts.shape[0] - 1
        bits = np.array([int(s).bit_length() - 1 for s in np.diff(starts)], dtype=np.int32)
        offsets = np.zeros(n_runs + 1, dtype=np.int64)
        offsets[1:] = np.cumsum((np.int64(1) << bits.astype(np.int64)) + 1)
        dirs = np.empty((self.n_tables, int(offsets[-1])), dtype=np.uint32)
        keep = int(offsets[first])   # the directories of the runs before ``first`` stay
        dirs[:, :keep] = self.dirs[:, :keep]
        for r in range(first, n_runs):
            a, c = int(starts[r]), int(starts[r + 1])
            # The merged runs are each sorted by (key, insertion order) and follow
            # each other in insertion order: a stable sort merges them in linear time.
            order = np.argsort(self.row_keys[a:c, 0], kind="stable")
            if (np.diff(order) != 1).any():     # a lone new run is in order already
                for name in ("vectors", "sketch", "inv_norms", "row_ids", "seq", "alive",
                             "row_keys"):
                    arr = getattr(self, name)
                    arr[a:c] = arr[a:c][order]
            for t in range(self.n_tables):
                order = np.arange(c - a) if t == 0 else \
                    np.argsort(self.row_keys[a:c, t], kind="stable")
                keys = self.row_keys[a:c, t][order]
                fingerprints = (keys << np.uint64(bits[r])) >> np.uint64(32)
                self.entries[t, a:c] = (fingerprints << np.uint64(32)) | \
                    (order + a).astype(np.uint64)
                _lsh_hash.directory(np.ascontiguousarray(keys), int(bits[r]),
                                    dirs[t, offsets[r]:offsets[r + 1]])
            order = np.argsort(self.row_ids[a:c], kind="stable")
            self.id_sorted[a:c] = self.row_ids[a:c][order]
            self.id_rows[a:c] = (order + a).astype(np.int32)
        self.dir_bits, self.dir_offsets, self.dirs = bits, offsets, dirs
