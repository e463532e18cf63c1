"""Compiled core of fastdl.sampling.SumTree.

The tree is one float64 array ``nodes`` of shape ``(2 * P, 2)``, P a power of two
>= the capacity. Row ``i`` holds the sum and the smallest positive value of node
``i``'s subtree (+inf where the subtree holds no positive value); node 1 is the
root, the children of ``i`` are ``2i`` and ``2i + 1``, and leaf ``j`` is row
``P + j``. Keeping sum and min in one row means an update touches one cache
line per level, and a descent reads both children in one line.

Ancestors are always recomputed from their children, never adjusted by a
difference, so float64 sums do not drift however many updates are made.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, pow
from libc.stdint cimport int64_t, uint64_t

from fastdl._lib._random cimport next_double, stream_start

# Draws per random stream: fixed, so results do not depend on the thread count.
cdef enum:
    CHUNK = 256


cdef inline double positive_or_inf(double v) noexcept nogil:
    return v if v > 0 else INFINITY


cdef inline void pull(double *nodes, Py_ssize_t i) noexcept nogil:
    cdef double *left = nodes + 4 * i      # row 2i; row 2i + 1 follows it
    nodes[2 * i] = left[0] + left[2]
    nodes[2 * i + 1] = left[1] if left[1] < left[3] else left[3]


cdef inline int64_t descend(const double *nodes, Py_ssize_t P, double v) noexcept nogil:
    # Inverse-CDF walk from the root. Go right when v reaches the left sum, as
    # searchsorted(..., side="right") does, but never into a zero-mass subtree:
    # rounding can leave v a hair above a node's sum, and an empty leaf must
    # never come out.
    cdef Py_ssize_t node = 1
    cdef double left
    while node < P:
        node = 2 * node
        left = nodes[2 * node]
        if v >= left and nodes[2 * node + 2] > 0:
            v -= left
            node += 1
    return node - P


def build(double[:, ::1] nodes, const double[::1] leaves):
    """Fill ``nodes`` from ``leaves`` (padding leaves are zero) in O(P)."""
    cdef Py_ssize_t P = nodes.shape[0] // 2, n = leaves.shape[0], i
    cdef double *base = &nodes[0, 0]
    with nogil:
        for i in range(P):
            base[2 * (P + i)] = leaves[i] if i < n else 0.0
            base[2 * (P + i) + 1] = positive_or_inf(leaves[i]) if i < n else INFINITY
        for i in range(P - 1, 0, -1):
            pull(base, i)


def update(double[:, ::1] nodes, const int64_t[::1] indices, const double[::1] values):
    """Set leaves ``indices`` to ``values`` in order (the last of a repeated index wins)."""
    cdef Py_ssize_t P = nodes.shape[0] // 2, k, i
    cdef double *base = &nodes[0, 0]
    with nogil:
        for k in range(indices.shape[0]):
            i = P + indices[k]
            base[2 * i] = values[k]
            base[2 * i + 1] = positive_or_inf(values[k])
            i >>= 1
            while i >= 1:
                pull(base, i)
                i >>= 1


def find(const double[:, ::1] nodes, const double[::1] prefix_sums, int64_t[::1] out,
         int n_threads):
    """Leaf index for each prefix sum in ``[0, total)``."""
    cdef Py_ssize_t P = nodes.shape[0] // 2, n = prefix_sums.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, c, k
    cdef const double *base = &nodes[0, 0]
    for c in prange(n_chunks, nogil=True, schedule="static",
                    num_threads=max(1, min(n_threads, n_chunks))):
        for k in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            out[k] = descend(base, P, prefix_sums[k])


cdef void sample_chunk(const double *nodes, Py_ssize_t P, int64_t *out, double *weights,
                       Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n, uint64_t key,
                       bint stratified, double beta) noexcept nogil:
    cdef uint64_t state = stream_start(key, <uint64_t>(start // CHUNK))
    cdef double total = nodes[2], min_positive = nodes[3], u
    cdef Py_ssize_t k
    cdef int64_t leaf
    for k in range(start, stop):
        u = next_double(&state)
        leaf = descend(nodes, P, ((k + u) / n if stratified else u) * total)
        out[k] = leaf
        if weights != NULL:
            # (N * P(i))^-beta divided by its largest possible value (N * P_min)^-beta.
            weights[k] = pow(nodes[2 * (P + leaf)] / min_positive, -beta)


def sample(const double[:, ::1] nodes, int64_t[::1] out, uint64_t key, bint stratified,
           int n_threads, double[::1] weights=None, double beta=0.0):
    """Draw ``len(out)`` leaves with probability value / total (total must be > 0).

    With ``stratified`` draw ``k`` falls in the ``k``-th of ``len(out)`` equal slices
    of the mass. With ``weights`` also write normalised importance weights.
    """
    cdef Py_ssize_t P = nodes.shape[0] // 2, n = out.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, c
    cdef const double *base = &nodes[0, 0]
    cdef double *w = &weights[0] if weights is not None and n > 0 else NULL
    for c in prange(n_chunks, nogil=True, schedule="static",
                    num_threads=max(1, min(n_threads, n_chunks))):
        sample_chunk(base, P, &out[0], w, c * CHUNK, min(n, (c + 1) * CHUNK), n, key,
                     stratified, beta)
