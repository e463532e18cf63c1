"""Compiled core of dlkernels.cluster.kmeans_1d: Lloyd on sorted values, seeding,
labels and sums (the exact method is _optimal_1d.pyx).

Everything here works on the distinct values ``v`` of the data, sorted
ascending, with their total weights ``w > 0``. A clustering of sorted 1-D data
into nearest-centre groups is a partition into contiguous runs, described by
``k + 1`` boundaries ``b[0] = 0 < b[1] < ... < b[k] = m``: cluster ``j`` holds
``v[b[j]:b[j + 1]]``. Prefix sums ``p0, p1`` (of ``w`` and ``w v``; length
``m + 1``) give the mean of any run in O(1).
"""

from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

from dlkernels._lib._openmp cimport threads_for
from dlkernels._lib._random cimport next_double, stream_start

def prefix_sums(const double[::1] v, const double[::1] w, double[::1] p0, double[::1] p1):
    """Fill the prefix sums of ``w`` and ``w v`` (length ``m + 1``)."""
    cdef Py_ssize_t i, m = v.shape[0]
    cdef double s0 = 0.0, s1 = 0.0
    with nogil:
        p0[0] = 0.0
        p1[0] = 0.0
        for i in range(m):
            s0 += w[i]
            s1 += w[i] * v[i]
            p0[i + 1] = s0
            p1[i + 1] = s1


# -- Lloyd on sorted values -----------------------------------------------------------------

cdef inline Py_ssize_t upper_bound(const double *v, Py_ssize_t lo, Py_ssize_t hi,
                                   double x) noexcept nogil:
    # First position in [lo, hi) whose value is > x (hi if none).
    cdef Py_ssize_t mid
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if v[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline bint nearer_upper(double x, double lo, double hi) noexcept nogil:
    # x strictly nearer the upper centre hi than the lower lo (a tie goes to lo).
    return x - lo > hi - x


cdef void assign(const double *v, Py_ssize_t m, const double *c, Py_ssize_t k,
                 int64_t *bounds) noexcept nogil:
    # Nearest-centre runs of sorted centres: a value at a midpoint goes to the lower one.
    cdef Py_ssize_t j, b
    bounds[0] = 0
    for j in range(1, k):
        # Halves first: the sum of two centres near 1e308 would overflow.
        b = upper_bound(v, bounds[j - 1], m, 0.5 * c[j - 1] + 0.5 * c[j])
        # The midpoint is rounded: a value equal to it (as when the centres are
        # one ulp apart) can land on the wrong side; the distances decide.
        while b > bounds[j - 1] and nearer_upper(v[b - 1], c[j - 1], c[j]):
            b -= 1
        while b < m and not nearer_upper(v[b], c[j - 1], c[j]):
            b += 1
        bounds[j] = b
    bounds[k] = m


def lloyd(const double[::1] v, const double[::1] p0, const double[::1] p1,
          double[::1] centers, int64_t[::1] bounds, Py_ssize_t max_iter):
    """Lloyd iterations from sorted ``centers`` until no boundary moves.

    One iteration is k - 1 binary searches and k divisions, O(k log m). A
    cluster left empty gets the value farthest from its own centre (an end of
    some run, as runs are contiguous), which takes it out of the cluster with
    the largest deviation, and the iterations go on. Returns the number of
    iterations and whether the last one moved nothing (converged); ``centers``
    and ``bounds`` hold the result. An empty cluster while no run holds two different
    values moves nothing: centring can merge values that differ only below the
    rounding of the shift, leaving fewer distinct values than clusters.
    """
    cdef Py_ssize_t m = v.shape[0], k = centers.shape[0], j, it = 0, far, t, empty
    cdef double *c = &centers[0]
    cdef int64_t *b = &bounds[0]
    cdef int64_t *old = <int64_t *> malloc((k + 1) * sizeof(int64_t))
    cdef double dist, fd, value
    cdef bint moved = True
    if old == NULL:
        raise MemoryError()
    with nogil:
        assign(&v[0], m, c, k, b)
        while it < max_iter:
            it += 1
            empty = -1
            fd = -1.0
            for j in range(k):
                if b[j + 1] > b[j]:
                    c[j] = (p1[b[j + 1]] - p1[b[j]]) / (p0[b[j + 1]] - p0[b[j]])
                elif empty < 0:
                    empty = j
            if empty >= 0:
                # The value farthest from its centre is an end of some run that
                # holds two different values (only such a run can be split).
                far = 0
                for j in range(k):
                    if b[j + 1] > b[j] and v[b[j]] < v[b[j + 1] - 1]:
                        dist = (v[b[j]] - c[j]) * (v[b[j]] - c[j])
                        if dist > fd:
                            fd = dist
                            far = b[j]
                        dist = (v[b[j + 1] - 1] - c[j]) * (v[b[j + 1] - 1] - c[j])
                        if dist > fd:
                            fd = dist
                            far = b[j + 1] - 1
            if fd >= 0.0:
                # Move the empty centre there, keeping the centres sorted. When no
                # run can be split it stays put: it lies between its neighbours'
                # cells, so the centres stay sorted.
                value = v[far]
                t = empty
                while t > 0 and c[t - 1] > value:
                    c[t] = c[t - 1]
                    t -= 1
                while t < k - 1 and c[t + 1] < value:
                    c[t] = c[t + 1]
                    t += 1
                c[t] = value
            for j in range(k + 1):
                old[j] = b[j]
            assign(&v[0], m, c, k, b)
            moved = fd >= 0.0
            for j in range(k + 1):
                if old[j] != b[j]:
                    moved = True
                    break
            if not moved:
                break
    free(old)
    return it, not moved


def nearest(const double[::1] v, const double[::1] centers, int64_t[::1] bounds):
    """``bounds`` of the nearest-centre runs of sorted ``centers``."""
    with nogil:
        assign(&v[0], v.shape[0], &centers[0], centers.shape[0], &bounds[0])


def means(const double[::1] v, const double[::1] w, const int64_t[::1] bounds,
          double[::1] centers):
    """Weighted means of the runs, summed directly rather than from prefix-sum
    differences, which lose digits, and as offsets from the run's first value:
    a run of one value gives that value back exactly (``w v / w`` need not),
    and the mean stays within the run."""
    cdef Py_ssize_t k = centers.shape[0], j, i, lo, hi
    cdef double W, S
    with nogil:
        for j in range(k):
            lo = bounds[j]
            hi = bounds[j + 1]
            if hi <= lo:  # an empty run (Lloyd stopped by max_iter) keeps its centre
                continue
            W = 0.0
            S = 0.0
            for i in range(lo, hi):
                W += w[i]
                S += w[i] * (v[i] - v[lo])
            centers[j] = min(max(v[lo] + S / W, v[lo]), v[hi - 1])


def inertia(const double[::1] v, const double[::1] w, const int64_t[::1] bounds,
            const double[::1] centers):
    """Weighted sum of squared distances of each run to its centre."""
    cdef Py_ssize_t k = centers.shape[0], j, i
    cdef double d, total = 0.0
    with nogil:
        for j in range(k):
            for i in range(bounds[j], bounds[j + 1]):
                d = v[i] - centers[j]
                total += w[i] * d * d
    return total


cdef enum:
    # Values per block of the k-means++ sampling sums.
    SEED_BLOCK = 1024


cdef inline double block_sum(const double *w, const double *d2, Py_ssize_t lo,
                             Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0.0
    for i in range(lo, hi):
        s += w[i] * d2[i]
    return s


def kmeans_plus_plus(const double[::1] v, const double[::1] w, double[::1] centers,
                     uint64_t key):
    """D^2 seeding (Arthur and Vassilvitskii, SODA 2007) on sorted weighted values.

    Each new centre is drawn with probability proportional to ``w * d**2``,
    ``d`` the distance to the nearest centre so far; the first in proportion to
    ``w``. On sorted values a new centre is nearest only to values between its
    two chosen neighbours, so only that stretch is updated, and draws walk
    per-block sums (blocks of 1024 values, recomputed where they changed): about
    m log k + k m / 1024 operations instead of k m. One random stream.
    """
    cdef Py_ssize_t m = v.shape[0], k = centers.shape[0], nb = (m + SEED_BLOCK - 1) // SEED_BLOCK
    cdef Py_ssize_t i, j, q, blk, pos, lo, hi, n_chosen = 0
    cdef double *d2 = <double *> malloc(m * sizeof(double))
    cdef double *bsum = <double *> malloc(nb * sizeof(double))
    cdef Py_ssize_t *chosen = <Py_ssize_t *> malloc((k + 2) * sizeof(Py_ssize_t))
    cdef uint64_t state = stream_start(key, 0)
    cdef double total, target, dd, c
    if d2 == NULL or bsum == NULL or chosen == NULL:
        free(d2); free(bsum); free(chosen)
        raise MemoryError()
    with nogil:
        for i in range(m):
            d2[i] = 1.0
        for blk in range(nb):
            bsum[blk] = block_sum(&w[0], d2, blk * SEED_BLOCK, min(m, (blk + 1) * SEED_BLOCK))
        for j in range(k):
            total = 0.0
            for blk in range(nb):
                total += bsum[blk]
            # Walk the blocks, then the values of one block; rounding that runs
            # past the end falls back to the last value with positive mass.
            target = next_double(&state) * total
            pos = -1
            for blk in range(nb):
                if target < bsum[blk] and bsum[blk] > 0.0:
                    for i in range(blk * SEED_BLOCK, min(m, (blk + 1) * SEED_BLOCK)):
                        target -= w[i] * d2[i]
                        if target < 0.0 and d2[i] > 0.0:
                            pos = i
                            break
                    if pos >= 0:
                        break
                target -= bsum[blk]
            if pos < 0:
                pos = m - 1
                while pos > 0 and d2[pos] == 0.0:
                    pos -= 1
            c = v[pos]
            centers[j] = c
            # Insert pos among the chosen positions (sorted); its neighbours bound
            # the stretch of values that may now be nearest to it.
            q = n_chosen
            while q > 0 and chosen[q - 1] > pos:
                chosen[q] = chosen[q - 1]
                q -= 1
            chosen[q] = pos
            n_chosen += 1
            lo = chosen[q - 1] + 1 if q > 0 else 0
            hi = chosen[q + 1] if q + 1 < n_chosen else m
            for i in range(lo, hi):
                dd = (v[i] - c) * (v[i] - c)
                if j == 0 or dd < d2[i]:
                    d2[i] = dd
            for blk in range(lo // SEED_BLOCK, (hi + SEED_BLOCK - 1) // SEED_BLOCK):
                bsum[blk] = block_sum(&w[0], d2, blk * SEED_BLOCK, min(m, (blk + 1) * SEED_BLOCK))
    free(d2); free(bsum); free(chosen)


def label_values(const double[::1] x, const double[::1] mids, const double[::1] centers,
                 int64_t[::1] out, int n_threads):
    """``out[i]``: the nearest of the sorted ``centers`` to ``x[i]`` (a tie goes
    to the lower one), found as the number of their ``mids`` below ``x[i]``. A
    branch-free binary search, as the comparisons of random values are
    unpredictable, then the distances to the centres beside it decide (a
    rounded midpoint can put a value equal to it on the wrong side); parallel,
    and the same at any thread count."""
    cdef Py_ssize_t n = x.shape[0], nm = mids.shape[0], i, base, length, half
    cdef double value
    cdef const double *m = &mids[0] if nm else NULL
    cdef const double *c = &centers[0]
    for i in prange(n, nogil=True, schedule="static",
                    num_threads=threads_for(n_threads, n // 65536 + 1, 1)):
        value = x[i]
        base = 0
        length = nm
        while length > 1:
            half = length // 2
            base = base + half if m[base + half] < value else base
            length = length - half
        if length == 1 and m[base] < value:
            base = base + 1
        while base < nm and nearer_upper(value, c[base], c[base + 1]):
            base = base + 1
        while base > 0 and not nearer_upper(value, c[base - 1], c[base]):
            base = base - 1
        out[i] = base
