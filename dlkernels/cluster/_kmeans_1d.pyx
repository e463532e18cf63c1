"""Compiled core of dlkernels.cluster.kmeans_1d.

Everything here works on the distinct values ``v`` of the data, sorted
ascending and centred (the weighted mean subtracted, so that the prefix sums of
``w * v**2`` lose little to cancellation), with their total weights ``w > 0``.
A clustering of sorted 1-D data into nearest-centre groups is a partition into
contiguous runs, described by ``k + 1`` boundaries ``b[0] = 0 < b[1] < ... <
b[k] = m``: cluster ``j`` holds ``v[b[j]:b[j + 1]]``.

Prefix sums ``p0, p1, p2`` (of ``w``, ``w v``, ``w v**2``; length ``m + 1``)
give the sum of squared deviations of any run in O(1).

Exact optimum: the dynamic programme D_j(i) = min_l D_{j-1}(l) + cost(l, i)
over prefixes (Wang and Song, "Ckmeans.1d.dp", R Journal 2011). The cost is a
Monge array (the quadrangle inequality holds for squared deviations), so each
layer's row minima are found with SMAWK (Aggarwal, Klawe, Moran, Shor and
Wilber, Algorithmica 1987) in O(m). The argmin table of all k layers would take
k * m integers (2 GB at m = 2e6, k = 256), so the boundaries are recovered
Hirschberg-style instead: the best split of a run into k1 + k2 clusters is
where a forward DP with k1 layers and a backward DP with k2 layers meet, and
each side is solved again recursively. That costs about twice the forward DP
and O(m) memory; the forward and backward halves run on two threads.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

from dlkernels._lib._openmp cimport threads_for
from dlkernels._lib._random cimport next_double, stream_start

cdef enum:
    # Below this many cells (clusters x values, some 10 ms of work) a subproblem
    # is solved on one thread: waking a second one could cost more than it saves.
    PARALLEL_CELLS = 1 << 20


def prefix_sums(const double[::1] v, const double[::1] w, double[::1] p0, double[::1] p1,
                double[::1] p2):
    """Fill the prefix sums of ``w``, ``w v`` and ``w v**2`` (length ``m + 1``)."""
    cdef Py_ssize_t i, m = v.shape[0]
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, wv
    with nogil:
        p0[0] = 0.0
        p1[0] = 0.0
        p2[0] = 0.0
        for i in range(m):
            wv = w[i] * v[i]
            s0 += w[i]
            s1 += wv
            s2 += wv * v[i]
            p0[i + 1] = s0
            p1[i + 1] = s1
            p2[i + 1] = s2


# -- exact optimum ------------------------------------------------------------------------

cdef struct Segment:
    # The runs of one subproblem, [lo, hi) of the global arrays, read forwards
    # or (rev) backwards; positions a, b below are local prefix lengths.
    const double *p0
    const double *p1
    const double *p2
    Py_ssize_t lo
    Py_ssize_t hi
    bint rev


cdef inline double run_cost(const Segment *s, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # Sum of squared deviations of local values [a, b) (a < b): Q - S^2 / W.
    cdef Py_ssize_t ga, gb
    cdef double W, S, Q, c
    if s.rev:
        ga = s.hi - b
        gb = s.hi - a
    else:
        ga = s.lo + a
        gb = s.lo + b
    W = s.p0[gb] - s.p0[ga]
    S = s.p1[gb] - s.p1[ga]
    Q = s.p2[gb] - s.p2[ga]
    c = Q - S * S / W
    return c if c > 0.0 else 0.0


cdef struct Layer:
    const Segment *seg
    const double *prev     # D_{j-1}, indexed by local prefix length
    double *cur            # D_j, written for the rows
    Py_ssize_t *arg        # argmin column of each row, indexed by row
    double *top            # REDUCE's stack: the entry of each kept column in its row


cdef inline double entry(const Layer *L, Py_ssize_t i, Py_ssize_t l) noexcept nogil:
    # The DP matrix: prefix i split as (prefix l in j-1 clusters) + run [l, i).
    if l >= i:
        return INFINITY
    return L.prev[l] + run_cost(L.seg, l, i)


cdef void smawk(const Layer *L, const Py_ssize_t *rows, Py_ssize_t nr,
                const Py_ssize_t *cols, Py_ssize_t nc, Py_ssize_t *work) noexcept nogil:
    # Row minima of a totally monotone matrix (leftmost on ties). `work` has room
    # for 2 * nr entries at this level plus what the recursion below needs.
    cdef Py_ssize_t *alive = work
    cdef Py_ssize_t *odd = work + nr
    cdef Py_ssize_t na = 0, t, c, r, start, stop, q, best
    cdef double bv, val
    if nr == 0:
        return
    # REDUCE: drop columns that cannot hold any row's minimum, leaving <= nr.
    # The entry of each kept column in its own row is remembered (L.top), so a
    # comparison costs one new entry instead of two.
    for t in range(nc):
        c = cols[t]
        while na > 0 and L.top[na - 1] > entry(L, rows[na - 1], c):
            na -= 1
        if na < nr:
            alive[na] = c
            L.top[na] = entry(L, rows[na], c)
            na += 1
    # The odd rows, recursively.
    for t in range(nr // 2):
        odd[t] = rows[2 * t + 1]
    smawk(L, odd, nr // 2, alive, na, work + nr + nr // 2)
    # The even rows: each minimum lies between its neighbours' (monotone argmins).
    start = 0
    for t in range(0, nr, 2):
        r = rows[t]
        if t + 1 < nr:
            stop = start
            while alive[stop] != L.arg[rows[t + 1]]:
                stop += 1
        else:
            stop = na - 1
        best = alive[start]
        bv = entry(L, r, best)
        for q in range(start + 1, stop + 1):
            val = entry(L, r, alive[q])
            if val < bv:
                bv = val
                best = alive[q]
        L.arg[r] = best
        L.cur[r] = bv
        start = stop


cdef void dp_layers(const Segment *seg, Py_ssize_t n_layers, Py_ssize_t reserve,
                    double *a, double *b, double *stack, Py_ssize_t *arg, Py_ssize_t *idx,
                    Py_ssize_t *work, double **out) noexcept nogil:
    # D_{n_layers}(i) for the local prefixes i in [n_layers, N - reserve], where
    # `reserve` values are kept for the clusters on the other side. `a`, `b`,
    # `stack` and `arg` hold N + 1 entries, `idx` 2 (N + 1), `work` 4 (N + 1). *out is set to
    # whichever of a, b holds the last layer.
    cdef Py_ssize_t N = seg.hi - seg.lo, i, j, top, nr, nc
    cdef double *prev = a
    cdef double *cur = b
    cdef double *tmp
    cdef Layer L
    cdef Py_ssize_t *rows = idx
    cdef Py_ssize_t *cols = idx + N + 1
    # Layer 1: one run from the start.
    top = N - reserve - (n_layers - 1)
    for i in range(1, top + 1):
        prev[i] = run_cost(seg, 0, i)
    L.seg = seg
    L.arg = arg
    L.top = stack
    for j in range(2, n_layers + 1):
        top = N - reserve - (n_layers - j)
        L.prev = prev
        L.cur = cur
        nr = top - j + 1
        nc = top - j + 1           # columns j-1 .. top-1
        for i in range(nr):
            rows[i] = j + i
            cols[i] = j - 1 + i
        smawk(&L, rows, nr, cols, nc, work)
        tmp = prev
        prev = cur
        cur = tmp
    out[0] = prev


cdef struct Workspace:
    double *a
    double *b
    double *top
    Py_ssize_t *arg
    Py_ssize_t *idx
    Py_ssize_t *work


cdef int ws_alloc(Workspace *ws, Py_ssize_t m) noexcept nogil:
    ws.a = <double *> malloc((m + 1) * sizeof(double))
    ws.b = <double *> malloc((m + 1) * sizeof(double))
    ws.top = <double *> malloc((m + 1) * sizeof(double))
    ws.arg = <Py_ssize_t *> malloc((m + 1) * sizeof(Py_ssize_t))
    ws.idx = <Py_ssize_t *> malloc(2 * (m + 1) * sizeof(Py_ssize_t))
    ws.work = <Py_ssize_t *> malloc(4 * (m + 2) * sizeof(Py_ssize_t))
    return ws.a != NULL and ws.b != NULL and ws.top != NULL and ws.arg != NULL and ws.idx != NULL and ws.work != NULL


cdef void ws_free(Workspace *ws) noexcept nogil:
    free(ws.a)
    free(ws.b)
    free(ws.top)
    free(ws.arg)
    free(ws.idx)
    free(ws.work)


cdef void best_split(const double *p0, const double *p1, const double *p2,
                     Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t k1, Py_ssize_t k2,
                     Workspace *ws, int n_threads, Py_ssize_t *split) noexcept nogil:
    # The first boundary after the k1-th cluster in an optimal (k1 + k2)-clustering
    # of [lo, hi): where forward and backward costs sum to the least.
    cdef Segment segs[2]
    cdef double *res[2]
    cdef Py_ssize_t side, N = hi - lo, i, best = k1
    cdef double total, bv = INFINITY
    cdef int threads = n_threads if (k1 + k2) * N >= PARALLEL_CELLS else 1
    for side in range(2):
        segs[side].p0 = p0
        segs[side].p1 = p1
        segs[side].p2 = p2
        segs[side].lo = lo
        segs[side].hi = hi
        segs[side].rev = side == 1
    for side in prange(2, schedule="static", num_threads=min(threads, 2)):
        dp_layers(&segs[side], k1 if side == 0 else k2, k2 if side == 0 else k1,
                  ws[side].a, ws[side].b, ws[side].top, ws[side].arg, ws[side].idx,
                  ws[side].work, &res[side])
    for i in range(k1, N - k2 + 1):
        total = res[0][i] + res[1][N - i]
        if total < bv:
            bv = total
            best = i
    split[0] = lo + best


cdef void solve(const double *p0, const double *p1, const double *p2, Py_ssize_t lo,
                Py_ssize_t hi, Py_ssize_t first, Py_ssize_t k, int64_t *bounds,
                Workspace *ws, int n_threads) noexcept nogil:
    # Boundaries first+1 .. first+k-1 of an optimal k-clustering of [lo, hi).
    cdef Py_ssize_t j, k1, split
    if k <= 1:
        return
    if k == hi - lo:
        for j in range(1, k):
            bounds[first + j] = lo + j
        return
    k1 = k // 2
    best_split(p0, p1, p2, lo, hi, k1, k - k1, ws, n_threads, &split)
    bounds[first + k1] = split
    solve(p0, p1, p2, lo, split, first, k1, bounds, ws, n_threads)
    solve(p0, p1, p2, split, hi, first + k1, k - k1, bounds, ws, n_threads)


def optimal(const double[::1] p0, const double[::1] p1, const double[::1] p2,
            int64_t[::1] bounds, int n_threads):
    """Boundaries of an optimal clustering into ``k = len(bounds) - 1`` runs.

    ``1 <= k <= m`` where ``m = len(p0) - 1``; ``bounds[0]`` and ``bounds[k]``
    are set to 0 and m.
    """
    cdef Py_ssize_t m = p0.shape[0] - 1, k = bounds.shape[0] - 1
    cdef Workspace ws[2]
    cdef int ok
    with nogil:
        ok = ws_alloc(&ws[0], m)
        ok = ws_alloc(&ws[1], m) and ok
        if ok:
            bounds[0] = 0
            bounds[k] = m
            solve(&p0[0], &p1[0], &p2[0], 0, m, 0, k, &bounds[0], ws, n_threads)
        ws_free(&ws[0])
        ws_free(&ws[1])
    if not ok:
        raise MemoryError()


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


cdef void assign(const double *v, Py_ssize_t m, const double *c, Py_ssize_t k,
                 int64_t *bounds) noexcept nogil:
    # Nearest-centre runs of sorted centres: a value at a midpoint goes to the lower one.
    cdef Py_ssize_t j
    bounds[0] = 0
    for j in range(1, k):
        # Halves first: the sum of two centres near 1e308 would overflow.
        bounds[j] = upper_bound(v, bounds[j - 1], m, 0.5 * c[j - 1] + 0.5 * c[j])
    bounds[k] = m


def lloyd(const double[::1] v, const double[::1] p0, const double[::1] p1,
          double[::1] centers, int64_t[::1] bounds, Py_ssize_t max_iter):
    """Lloyd iterations from sorted ``centers`` until no boundary moves.

    One iteration is k - 1 binary searches and k divisions, O(k log m). A
    cluster left empty gets the value farthest from its own centre (an end of
    some run, as runs are contiguous), which takes it out of the cluster with
    the largest deviation, and the iterations go on. Returns the number of
    iterations; ``centers`` and ``bounds`` hold the result.
    """
    cdef Py_ssize_t m = v.shape[0], k = centers.shape[0], j, it = 0, far, t, empty
    cdef double *c = &centers[0]
    cdef int64_t *b = &bounds[0]
    cdef int64_t *old = <int64_t *> malloc((k + 1) * sizeof(int64_t))
    cdef double dist, fd, value
    cdef bint moved
    if old == NULL:
        raise MemoryError()
    with nogil:
        assign(&v[0], m, c, k, b)
        while it < max_iter:
            it += 1
            empty = -1
            for j in range(k):
                if b[j + 1] > b[j]:
                    c[j] = (p1[b[j + 1]] - p1[b[j]]) / (p0[b[j + 1]] - p0[b[j]])
                elif empty < 0:
                    empty = j
            if empty >= 0:
                # The value farthest from its centre is an end of some run.
                fd = -1.0
                far = 0
                for j in range(k):
                    if b[j + 1] > b[j]:
                        dist = (v[b[j]] - c[j]) * (v[b[j]] - c[j])
                        if dist > fd:
                            fd = dist
                            far = b[j]
                        dist = (v[b[j + 1] - 1] - c[j]) * (v[b[j + 1] - 1] - c[j])
                        if dist > fd:
                            fd = dist
                            far = b[j + 1] - 1
                # Move the empty centre there, keeping the centres sorted.
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
            moved = empty >= 0
            for j in range(k + 1):
                if old[j] != b[j]:
                    moved = True
                    break
            if not moved:
                break
    free(old)
    return it


def nearest(const double[::1] v, const double[::1] centers, int64_t[::1] bounds):
    """``bounds`` of the nearest-centre runs of sorted ``centers``."""
    with nogil:
        assign(&v[0], v.shape[0], &centers[0], centers.shape[0], &bounds[0])


def means(const double[::1] v, const double[::1] w, const int64_t[::1] bounds,
          double[::1] centers):
    """Weighted means of the runs, summed directly rather than from
    prefix-sum differences, which lose digits."""
    cdef Py_ssize_t k = centers.shape[0], j, i
    cdef double W, S
    with nogil:
        for j in range(k):
            W = 0.0
            S = 0.0
            for i in range(bounds[j], bounds[j + 1]):
                W += w[i]
                S += w[i] * v[i]
            if W > 0.0:  # an empty run (Lloyd stopped by max_iter) keeps its centre
                centers[j] = S / W


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


def label_values(const double[::1] x, double shift, const double[::1] mids, int64_t[::1] out,
                 int n_threads):
    """``out[i]`` = the number of ``mids`` below ``x[i] - shift``: the nearest of
    the sorted centres whose midpoints are ``mids`` (a value on a midpoint goes
    to the lower centre). A branch-free binary search, as the comparisons of
    random values are unpredictable; parallel, and the same at any thread count."""
    cdef Py_ssize_t n = x.shape[0], nm = mids.shape[0], i, base, length, half
    cdef double value
    cdef const double *m = &mids[0] if nm else NULL
    for i in prange(n, nogil=True, schedule="static",
                    num_threads=threads_for(n_threads, n // 65536 + 1, 1)):
        value = x[i] - shift
        base = 0
        length = nm
        while length > 1:
            half = length // 2
            base = base + half if m[base + half] < value else base
            length = length - half
        if length == 1 and m[base] < value:
            base = base + 1
        out[i] = base
