"""Compiled core of dlkernels.sampling.AliasSampler and NegativeSampler.

The alias table (Walker 1977; Vose, IEEE TSE 1991) is one array of packed
``(prob, alias)`` rows so a draw costs one random access: pick a row ``j``
uniformly, keep ``j`` with probability ``prob[j]``, else take ``alias[j]``.
"""

from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

from dlkernels._lib._alias_table cimport AliasEntry, alias_draw, build_alias
from dlkernels._lib._openmp cimport threads_for
from dlkernels._lib._prefetch cimport prefetch
from dlkernels._lib._random cimport next_below_and_fraction, next_double, stream_start

cdef enum:
    # Draws (or rows, when excluding) per random stream: fixed, so results do not
    # depend on the thread count.
    CHUNK = 65536
    # Draws whose table rows are prefetched together (CHUNK is a multiple of it).
    BATCH = 16
    ROW_CHUNK = 256
    # Rejections of an excluded id before a row switches to exact sampling of
    # the renormalised remainder (reached only when the excluded ids hold most
    # of the mass, so rejection would crawl).
    MAX_REJECTIONS = 64


def build_table(const double[::1] weights, AliasEntry[::1] table):
    """Vose's O(n) construction (see dlkernels/_lib/_alias_table.pxd).

    ``weights`` are finite, >= 0, with a positive one.
    """
    cdef Py_ssize_t n = weights.shape[0]
    cdef double *q = <double *> malloc(n * sizeof(double))
    cdef int64_t *small = <int64_t *> malloc(n * sizeof(int64_t))
    cdef int64_t *large = <int64_t *> malloc(n * sizeof(int64_t))
    if q == NULL or small == NULL or large == NULL:
        free(q); free(small); free(large)
        raise MemoryError()
    with nogil:
        build_alias(&weights[0], n, &table[0], q, small, large)
    free(q); free(small); free(large)


cdef void sample_chunk(const AliasEntry *table, uint64_t n, int64_t *out,
                       Py_ssize_t start, Py_ssize_t stop, uint64_t key) noexcept nogil:
    # Rows are drawn BATCH at a time and prefetched before any is read: a large
    # table's rows are cache misses, and this lets them overlap.
    cdef uint64_t state = stream_start(key, <uint64_t>(start // CHUNK))
    cdef int64_t rows[BATCH]
    cdef double coins[BATCH]
    cdef Py_ssize_t k = start, i, b
    cdef int64_t j
    while k < stop:
        b = min(<Py_ssize_t> BATCH, stop - k)
        for i in range(b):
            rows[i] = <int64_t> next_below_and_fraction(&state, n, &coins[i])
            prefetch(&table[rows[i]])
        for i in range(b):
            j = rows[i]
            out[k + i] = j if coins[i] < table[j].prob else table[j].alias
        k += b


def sample(const AliasEntry[::1] table, int64_t[::1] out, uint64_t key, int n_threads):
    """Fill ``out`` with independent draws."""
    cdef Py_ssize_t size = out.shape[0], n_chunks = (size + CHUNK - 1) // CHUNK, c
    cdef uint64_t n = table.shape[0]
    cdef const AliasEntry *tab = &table[0]
    for c in prange(n_chunks, nogil=True, schedule="static",
                    num_threads=threads_for(n_threads, n_chunks, 1)):
        sample_chunk(tab, n, &out[0], c * CHUNK, min(size, (c + 1) * CHUNK), key)


cdef inline bint contains(const int64_t *ids, Py_ssize_t m, int64_t x) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(m):
        if ids[i] == x:
            return True
    return False


cdef int64_t draw_renormalised(const double *probs, Py_ssize_t n, const int64_t *excluded,
                               Py_ssize_t m, uint64_t *state) noexcept nogil:
    # Exact inverse-CDF draw over the ids not excluded: O(n * m), used only as a
    # fallback when rejection would take too long.
    cdef Py_ssize_t i, last = -1
    cdef double remaining = 0.0, target
    for i in range(n):
        if probs[i] > 0 and not contains(excluded, m, i):
            remaining += probs[i]
    target = next_double(state) * remaining
    for i in range(n):
        if probs[i] > 0 and not contains(excluded, m, i):
            last = i
            target -= probs[i]
            if target < 0:
                return i
    return last  # rounding left a sliver of mass past the end


cdef void sample_rows(const AliasEntry *table, const double *probs, Py_ssize_t n,
                      const int64_t[:, ::1] exclude, int64_t[:, ::1] out,
                      Py_ssize_t row_start, Py_ssize_t row_stop, uint64_t key) noexcept nogil:
    cdef uint64_t state = stream_start(key, <uint64_t>(row_start // ROW_CHUNK))
    cdef Py_ssize_t r, j, m = exclude.shape[1], cols = out.shape[1], rejections
    cdef const int64_t *excluded
    cdef int64_t x
    cdef bint crawling
    for r in range(row_start, row_stop):
        excluded = &exclude[r, 0] if m > 0 else NULL
        crawling = False
        for j in range(cols):
            rejections = 0
            while True:
                if crawling:
                    x = draw_renormalised(probs, n, excluded, m, &state)
                    break
                x = alias_draw(table, <uint64_t> n, &state)
                if not contains(excluded, m, x):
                    break
                rejections += 1
                crawling = rejections >= MAX_REJECTIONS
            out[r, j] = x


def sample_excluding(const AliasEntry[::1] table, const double[::1] probs,
                     const int64_t[:, ::1] exclude, int64_t[:, ::1] out, uint64_t key,
                     int n_threads):
    """Fill row ``r`` of ``out`` with draws that avoid the ids in ``exclude[r]``.

    The caller guarantees every row keeps some mass outside its excluded ids
    (entries of -1 are padding and exclude nothing).
    """
    cdef Py_ssize_t rows = out.shape[0], n_chunks = (rows + ROW_CHUNK - 1) // ROW_CHUNK, c
    cdef const AliasEntry *tab = &table[0]
    cdef const double *p = &probs[0]
    cdef Py_ssize_t n = table.shape[0]
    if out.shape[1] == 0:
        return
    for c in prange(n_chunks, nogil=True, schedule="static",
                    num_threads=threads_for(n_threads, n_chunks, 1)):
        sample_rows(tab, p, n, exclude, out, c * ROW_CHUNK, min(rows, (c + 1) * ROW_CHUNK), key)
