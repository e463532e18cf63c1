"""Compiled core of dlkernels.sampling.SumTree: an 8-ary sum tree with a min tree beside it.

Layout. Level 0 holds the leaves, padded with zeros to a multiple of 8; level
``l + 1`` holds one entry per 8 entries of level ``l`` (again padded to 8), up to
a top level of exactly 8 entries whose sum is the total. All levels sit in one
float64 array ``sums`` at offsets ``offsets[l]``. The children of entry ``j`` of
level ``l + 1`` are entries ``8j .. 8j + 7`` of level ``l``: one 64-byte cache
line. With 2**20 leaves that is 7 levels, and only the bottom two miss the cache,
where a binary tree has 20 levels and misses on about ten of them.

``mins`` mirrors levels 1 and up (``mins[offsets[l] - offsets[1] + j]``) with the
smallest positive value below each entry, +inf where there is none.

Every entry is recomputed from its children in a fixed order on each update,
never adjusted by a difference, so float64 sums do not drift and the same
values always give the same tree.
"""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport INFINITY, NAN, exp, isfinite, log, pow
from libc.stdint cimport int64_t, uint64_t

from dlkernels._lib._openmp cimport threads_for
from dlkernels._lib._prefetch cimport prefetch
from dlkernels._lib._random cimport next_double, stream_start

cdef enum:
    FANOUT = 8
    # Draws per random stream: fixed, so results do not depend on the thread count.
    CHUNK = 256
    # A chunk of descents takes ~30 us: a thread is woken for two or more (on an idle
    # machine that halves a 1024-draw batch; on a busy one waking it can cost more).
    MIN_CHUNKS_PER_THREAD = 2
    # Descents walked in lockstep so that their cache misses overlap (divides CHUNK).
    GROUP = 8
    # How many updates ahead the lines an update touches are prefetched.
    LOOKAHEAD = 8
    # A level with at most this many entries per update is recomputed whole.
    FULL_REFRESH = 4


def level_sizes(Py_ssize_t capacity):
    """Sizes of the levels for ``capacity`` leaves, bottom first."""
    cdef Py_ssize_t size = ((capacity + FANOUT - 1) // FANOUT) * FANOUT
    sizes = [size]
    while size > FANOUT:
        size = ((size // FANOUT + FANOUT - 1) // FANOUT) * FANOUT
        sizes.append(size)
    return sizes


cdef inline double positive_or_inf(double v) noexcept nogil:
    return v if v > 0 else INFINITY


cdef inline double sum8(const double *c) noexcept nogil:
    return ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7]))


cdef inline double min2(double a, double b) noexcept nogil:
    return a if a < b else b


cdef inline double min8(const double *c) noexcept nogil:
    return min2(min2(min2(c[0], c[1]), min2(c[2], c[3])), min2(min2(c[4], c[5]), min2(c[6], c[7])))


cdef inline double min8_positive(const double *c) noexcept nogil:
    # Zeros count as +inf. A tree of comparisons without branches: a chain of
    # eight would make each refresh wait out eight latencies.
    cdef double a = min2(positive_or_inf(c[0]), positive_or_inf(c[1]))
    cdef double b = min2(positive_or_inf(c[2]), positive_or_inf(c[3]))
    cdef double d = min2(positive_or_inf(c[4]), positive_or_inf(c[5]))
    cdef double e = min2(positive_or_inf(c[6]), positive_or_inf(c[7]))
    return min2(min2(a, b), min2(d, e))


cdef inline void refresh_parent(double *sums, double *mins, const int64_t *offsets,
                                int level, int64_t j) noexcept nogil:
    # Recompute entry j of `level` (>= 1) from its 8 children.
    cdef const double *children = sums + offsets[level - 1] + FANOUT * j
    cdef int64_t m_off = offsets[1]
    sums[offsets[level] + j] = sum8(children)
    if level == 1:
        mins[offsets[level] - m_off + j] = min8_positive(children)
    else:
        mins[offsets[level] - m_off + j] = min8(mins + offsets[level - 1] - m_off + FANOUT * j)


cdef inline void descend(const double *sums, const int64_t *offsets, int n_levels,
                         double *v, int64_t *leaf, int count) noexcept nogil:
    # Inverse-CDF walks from the top for `count` (<= GROUP) values of v at once,
    # level by level, prefetching each walk's next node while the others are
    # decided. Within a node, take the first child whose mass exceeds what is
    # left of v (so v on a boundary goes right, as searchsorted(..., side="right")
    # does). Zero-mass children are never taken: if rounding leaves v a hair past
    # the node's mass, take the last child that has mass.
    cdef int level, c, chosen, i
    cdef const double *node
    for i in range(count):
        leaf[i] = 0
    for level in range(n_levels - 1, -1, -1):
        for i in range(count):
            node = sums + offsets[level] + FANOUT * leaf[i]
            chosen = -1
            for c in range(FANOUT):
                if node[c] > 0:
                    chosen = c
                    if v[i] < node[c]:
                        break
                    v[i] -= node[c]
            else:
                # v ran past the node's mass: stay at the far end of the last child
                # with mass all the way down, not at its start.
                v[i] = node[chosen]
            leaf[i] = FANOUT * leaf[i] + chosen
            if level > 0:
                prefetch(sums + offsets[level - 1] + FANOUT * leaf[i])


cdef inline double tree_total(const double *sums, const int64_t *offsets, int n_levels) noexcept nogil:
    return sum8(sums + offsets[n_levels - 1])


cdef inline double tree_min(const double *sums, const double *mins, const int64_t *offsets,
                            int n_levels) noexcept nogil:
    if n_levels == 1:
        return min8_positive(sums)
    return min8(mins + offsets[n_levels - 1] - offsets[1])


def build(double[::1] sums, double[::1] mins, const int64_t[::1] offsets,
          const double[::1] leaves):
    """Fill every level from ``leaves`` (the padding stays zero) in O(N)."""
    cdef int n_levels = offsets.shape[0] - 1, level
    cdef Py_ssize_t i, j
    cdef double *m = &mins[0] if mins.shape[0] else NULL
    with nogil:
        for i in range(offsets[1]):
            sums[i] = leaves[i] if i < leaves.shape[0] else 0.0
        for level in range(1, n_levels):
            # Entries past the last real parent are padding: no children, sum 0, min +inf.
            for j in range((offsets[level] - offsets[level - 1]) // FANOUT):
                refresh_parent(&sums[0], m, &offsets[0], level, j)


def update(double[::1] sums, double[::1] mins, const int64_t[::1] offsets,
           const int64_t[::1] indices, const double[::1] values, double power=1.0,
           bint check_total=True):
    """Set leaf ``indices[k]`` to ``values[k] ** power`` (0 for 0) in order (the last repeat wins).

    ``values`` must be finite and non-negative. Returns the largest of ``values``
    (0 for none), or NaN, with nothing written, when ``check_total`` is set and a
    quick bound cannot rule out that the new total overflows float64; the caller
    then decides exactly and calls again with ``check_total=False``.
    """
    cdef Py_ssize_t n = indices.shape[0]
    cdef double largest = 0.0
    if n == 0:
        return largest
    with nogil:
        largest = checked_update(&sums[0], &mins[0] if mins.shape[0] else NULL, &offsets[0],
                                 offsets.shape[0] - 1, &indices[0], &values[0], n, power,
                                 check_total)
    return largest


cdef double checked_update(double *sums, double *mins, const int64_t *offsets, int n_levels,
                           const int64_t *indices, const double *values, Py_ssize_t n,
                           double power, bint check_total) noexcept nogil:
    cdef double largest = 0.0, bound
    cdef Py_ssize_t k
    cdef int level
    for k in range(n):
        largest = values[k] if values[k] > largest else largest
    if check_total:
        bound = pow(largest, power) if largest > 0 else 0.0
        if not isfinite(tree_total(sums, offsets, n_levels) + bound * n):
            return NAN
    write_leaves(sums, indices, values, n, power)
    for level in range(1, n_levels):
        refresh_level(sums, mins, offsets, level, indices, n)
    return largest


cdef void write_leaves(double *sums, const int64_t *indices, const double *values,
                       Py_ssize_t n, double power) noexcept nogil:
    # All leaves first, in order, so a repeated index keeps its last value and the
    # refreshes below never wait on one another. The stores miss the cache but do
    # not stall; pow's arithmetic runs while they drain.
    cdef Py_ssize_t k
    for k in range(n):
        if k + LOOKAHEAD < n:
            prefetch(sums + indices[k + LOOKAHEAD])
        if power == 1.0:
            sums[indices[k]] = values[k]
        else:
            # 0 stays 0 even for power 0: a slot with no priority is never drawn.
            sums[indices[k]] = pow(values[k], power) if values[k] > 0 else 0.0


cdef void refresh_level(double *sums, double *mins, const int64_t *offsets, int level,
                        const int64_t *indices, Py_ssize_t n) noexcept nogil:
    # Recompute every entry of `level` above an updated leaf. The refreshes are
    # independent (the level below is final), so their misses overlap. A small
    # level is recomputed whole, in memory order, which costs less than visiting
    # its entries many times over.
    cdef int shift = 3 * level
    cdef Py_ssize_t n_parents = (offsets[level] - offsets[level - 1]) // FANOUT, k
    if n_parents <= FULL_REFRESH * n:
        for k in range(n_parents):
            refresh_parent(sums, mins, offsets, level, k)
        return
    for k in range(n):
        if k + LOOKAHEAD < n:
            prefetch(sums + offsets[level] + (indices[k + LOOKAHEAD] >> shift))
        refresh_parent(sums, mins, offsets, level, indices[k] >> shift)


def total(const double[::1] sums, const int64_t[::1] offsets):
    return tree_total(&sums[0], &offsets[0], offsets.shape[0] - 1)


def minimum(const double[::1] sums, const double[::1] mins, const int64_t[::1] offsets):
    """Smallest positive leaf (+inf if none)."""
    return tree_min(&sums[0], &mins[0] if mins.shape[0] else NULL, &offsets[0],
                    offsets.shape[0] - 1)


def find(const double[::1] sums, const int64_t[::1] offsets, const double[::1] prefix_sums,
         int64_t[::1] out, int n_threads):
    """Leaf index for each prefix sum in ``[0, total)``."""
    cdef Py_ssize_t n = prefix_sums.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, c
    cdef int n_levels = offsets.shape[0] - 1
    for c in prange(n_chunks, nogil=True, schedule="static",
                    num_threads=threads_for(n_threads, n_chunks, MIN_CHUNKS_PER_THREAD)):
        find_chunk(&sums[0], &offsets[0], n_levels, &prefix_sums[0], &out[0],
                   c * CHUNK, min(n, (c + 1) * CHUNK))


cdef void find_chunk(const double *sums, const int64_t *offsets, int n_levels,
                     const double *prefix_sums, int64_t *out, Py_ssize_t start,
                     Py_ssize_t stop) noexcept nogil:
    cdef double v[GROUP]
    cdef Py_ssize_t k = start, i, count
    while k < stop:
        count = min(<Py_ssize_t> GROUP, stop - k)
        for i in range(count):
            v[i] = prefix_sums[k + i]
        descend(sums, offsets, n_levels, v, out + k, count)
        k += count


cdef void sample_chunk(const double *sums, const int64_t *offsets, int n_levels,
                       int64_t *out, double *weights, Py_ssize_t start, Py_ssize_t stop,
                       Py_ssize_t n, uint64_t key, bint stratified, double total,
                       double log_min_positive, double beta) noexcept nogil:
    cdef uint64_t state = stream_start(key, <uint64_t>(start // CHUNK))
    cdef double v[GROUP]
    cdef Py_ssize_t k = start, i, count
    while k < stop:
        count = min(<Py_ssize_t> GROUP, stop - k)
        for i in range(count):
            v[i] = ((k + i + next_double(&state)) / n if stratified else next_double(&state)) * total
        descend(sums, offsets, n_levels, v, out + k, count)
        if weights != NULL:
            for i in range(k, k + count):
                # (N * P(i))^-beta divided by its largest possible value (N * P_min)^-beta,
                # in logs: the ratio of two values may overflow (1e300 / 1e-300).
                weights[i] = exp(-beta * (log(sums[out[i]]) - log_min_positive))
        k += count


def sample(const double[::1] sums, const double[::1] mins, const int64_t[::1] offsets,
           int64_t[::1] out, uint64_t key, bint stratified, int n_threads,
           double[::1] weights=None, double beta=0.0):
    """Draw ``len(out)`` leaves with probability value / total (total must be > 0).

    With ``stratified`` draw ``k`` falls in the ``k``-th of ``len(out)`` equal slices
    of the mass. With ``weights`` also write normalised importance weights.
    """
    cdef Py_ssize_t n = out.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, c
    cdef int n_levels = offsets.shape[0] - 1
    cdef const double *s = &sums[0]
    cdef const int64_t *off = &offsets[0]
    cdef double *w = &weights[0] if weights is not None and n > 0 else NULL
    cdef double tot = tree_total(s, off, n_levels)
    cdef double log_smallest = log(tree_min(s, &mins[0] if mins.shape[0] else NULL, off,
                                            n_levels))
    for c in prange(n_chunks, nogil=True, schedule="static",
                    num_threads=threads_for(n_threads, n_chunks, MIN_CHUNKS_PER_THREAD)):
        sample_chunk(s, off, n_levels, &out[0], w, c * CHUNK, min(n, (c + 1) * CHUNK), n,
                     key, stratified, tot, log_smallest, beta)
