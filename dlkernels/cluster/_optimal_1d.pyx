"""Compiled core of kmeans_1d(method="optimal"): the exact optimum.

The input is the distinct values ``v`` of the data, sorted ascending and scaled
by a power of two (exactly) into [-1, 1], with their total weights ``w > 0``.
A clustering into nearest-centre groups is a partition into contiguous runs,
written as ``k + 1`` boundaries ``b[0] = 0 < b[1] < ... < b[k] = m``. The cost
of a run (_segment_cost.pxd) satisfies the quadrangle inequality (a Monge
array), which both methods below rely on.

* Layered: D_j(i) = min_l D_{j-1}(l) + cost(l, i) (Wang and Song, Ckmeans.1d.dp,
  R Journal 2011), each layer's row minima by SMAWK (Aggarwal, Klawe, Moran,
  Shor and Wilber 1987) in O(m), the boundaries recovered Hirschberg-style (the
  best split of a run into k1 + k2 clusters is where a forward programme of k1
  layers meets a backward one of k2; each side is solved again): O(k m) time,
  O(m) memory. Large row-minima problems are cut in two at their middle row and
  the halves solved on two threads (in Wilber's algorithm below too).
* Lagrangian (as Grønlund et al., "Fast exact k-means, k-medians and Bregman
  divergence clustering in 1D", 2017): for a price lam per cluster,
  F(i) = min_l F(l) + cost(l, i) + lam is one concave least-weight-subsequence
  problem, solved in O(m) by Wilber's algorithm (J. Algorithms 1988). The
  optimal inertia g(k) is convex in k, so searching lam over the chords of g
  finds either a lam whose optimum has exactly k clusters, or a lam at which
  optima with K < k and L > k clusters tie; then the two paths are spliced
  into one with exactly k clusters that is optimal too (the quadrangle
  inequality makes the exchange free). Some 10 to 30 O(m) passes, whatever k.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, exp, log, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from dlkernels._lib._openmp cimport threads_for
from dlkernels.cluster._segment_cost cimport (
    BLK, STRIDE, Cost, DBL_EPSILON, Summary, direct, merge, seg_cost,
)

cdef enum:
    # Below this many cells (clusters x values, some 3 ms of work) a layered
    # subproblem is solved on one thread: waking a second could cost more.
    PARALLEL_CELLS = 1 << 18
    # A row-minima problem of at least this many rows is cut at its middle row
    # into two halves, solved on two threads. The cut depends on the size only,
    # so the result is the same at any thread count.
    SPLIT_ROWS = 4096
    # Lagrangian passes before giving up on the search (it never needs so many)
    # and solving with the layered programme instead.
    MAX_PASSES = 200

# A fast-path result is kept when its worst-case error, about 32 eps times the
# total second moment, is below this share of its inertia; otherwise the
# accurate mode runs, whose every cost is within ACCURATE_REL of the truth.
cdef double FAST_REL = 1e-9
cdef double ACCURATE_REL = 1e-10


# -- costs -------------------------------------------------------------------------------------

cdef inline void two_sum(double a, double b, double *s, double *e) noexcept nogil:
    cdef double x = a + b, z = x - a
    s[0] = x
    e[0] = (a - (x - z)) + (b - z)


cdef double build_prefix(const double *v, const double *w, Py_ssize_t m, double shift,
                         double *pre) noexcept nogil:
    # Compensated prefix sums of w, w u, w u**2 (u = v - shift), each as hi + lo.
    # Returns the total of w u**2 (the scale of the fast path's rounding).
    cdef Py_ssize_t i, q
    cdef double term[3]
    cdef double hi[3]
    cdef double lo[3]
    cdef double u, s, e
    for q in range(3):
        hi[q] = 0.0
        lo[q] = 0.0
        pre[2 * q] = 0.0
        pre[2 * q + 1] = 0.0
    for i in range(m):
        u = v[i] - shift
        term[0] = w[i]
        term[1] = w[i] * u
        term[2] = w[i] * u * u
        for q in range(3):
            two_sum(hi[q], term[q], &s, &e)
            e = e + lo[q]
            two_sum(s, e, &hi[q], &lo[q])
            pre[STRIDE * (i + 1) + 2 * q] = hi[q]
            pre[STRIDE * (i + 1) + 2 * q + 1] = lo[q]
    return hi[2]


cdef Summary *build_blocks(const Cost *c, Py_ssize_t *nb_out, Py_ssize_t *levels_out) noexcept nogil:
    # Block summaries (level 0) and the disjoint sparse table over them.
    cdef Py_ssize_t m = c.m, nb = m // BLK, levels = 1, h, s, mid, end, t, half
    cdef Summary *tab
    while (<Py_ssize_t> 1 << (levels - 1)) < nb:
        levels += 1
    tab = <Summary *> malloc(max(nb, 1) * levels * sizeof(Summary))
    if tab == NULL:
        return NULL
    for t in range(nb):
        tab[t] = direct(c, t * BLK, (t + 1) * BLK)
    for h in range(1, levels):
        half = <Py_ssize_t> 1 << (h - 1)
        s = 0
        while s + half < nb:
            mid = s + half
            end = min(s + 2 * half, nb)
            tab[h * nb + mid - 1] = tab[mid - 1]
            for t in range(mid - 2, s - 1, -1):
                tab[h * nb + t] = merge(c.v, tab[t], tab[h * nb + t + 1])
            tab[h * nb + mid] = tab[mid]
            for t in range(mid + 1, end):
                tab[h * nb + t] = merge(c.v, tab[h * nb + t - 1], tab[t])
            s += 2 * half
    nb_out[0] = nb
    levels_out[0] = levels
    return tab


cdef double path_cost(const Cost *c, const int64_t *b, Py_ssize_t k) noexcept nogil:
    # Inertia of a partition, each run summed directly (no prefix differences).
    cdef Py_ssize_t j
    cdef double total = 0.0
    for j in range(k):
        total += direct(c, b[j], b[j + 1]).m2
    return total


# -- SMAWK ---------------------------------------------------------------------------------

cdef struct Segment:
    # The values [lo, hi) of the global arrays, read forwards or (rev) backwards;
    # positions a, b below are local prefix lengths.
    const Cost *cost
    Py_ssize_t lo
    Py_ssize_t hi
    bint rev


cdef inline double run_cost(const Segment *s, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    if s.rev:
        return seg_cost(s.cost, s.hi - b, s.hi - a)
    return seg_cost(s.cost, s.lo + a, s.lo + b)


cdef struct Layer:
    const Segment *seg
    const double *prev     # D_{j-1}, or the Lagrangian's path costs, by local prefix length
    const Py_ssize_t *pcnt # Lagrangian: runs of those paths (NULL in the layered programme)
    double lam             # Lagrangian: the price of a run
    double *cur            # minima, written for the rows
    Py_ssize_t *ccnt       # Lagrangian: their runs
    Py_ssize_t *arg        # argmin column of each row, indexed by row
    double *top            # REDUCE's stack: the entry of each kept column in its row
    Py_ssize_t *topn


cdef struct Entry:
    double v               # cost of the path: prefix l, then the run [l, i)
    Py_ssize_t n           # its runs (Lagrangian only)


cdef inline Entry entry(const Layer *L, Py_ssize_t i, Py_ssize_t l) noexcept nogil:
    # The DP matrix: prefix i split as (prefix l) + run [l, i).
    cdef Entry e
    if l >= i:
        e.v = INFINITY
        e.n = 0
        return e
    e.v = L.prev[l] + run_cost(L.seg, l, i)
    e.n = L.pcnt[l] + 1 if L.pcnt != NULL else 0
    return e


cdef inline bint less(const Layer *L, Entry a, Entry b) noexcept nogil:
    # a.v + lam a.n < b.v + lam b.n, without forming the sums: the price of the
    # runs may dwarf the costs, which must not be lost to rounding.
    if L.pcnt == NULL or a.n == b.n:
        return a.v < b.v
    return a.v - b.v < L.lam * (b.n - a.n)


cdef void smawk(const Layer *L, const Py_ssize_t *rows, Py_ssize_t nr,
                const Py_ssize_t *cols, Py_ssize_t nc, Py_ssize_t *work) noexcept nogil:
    # Row minima of a totally monotone matrix (leftmost on ties). `work` has room
    # for 2 * nr entries at this level plus what the recursion below needs.
    cdef Py_ssize_t *alive = work
    cdef Py_ssize_t *odd = work + nr
    cdef Py_ssize_t na = 0, t, c, r, start, stop, q, best
    cdef Entry bv, val, top
    if nr == 0:
        return
    # REDUCE: drop columns that cannot hold any row's minimum, leaving <= nr.
    # The entry of each kept column in its own row is remembered (L.top), so a
    # comparison costs one new entry instead of two.
    for t in range(nc):
        c = cols[t]
        while na > 0:
            top.v = L.top[na - 1]
            top.n = L.topn[na - 1]
            if not less(L, entry(L, rows[na - 1], c), top):
                break
            na -= 1
        if na < nr:
            alive[na] = c
            val = entry(L, rows[na], c)
            L.top[na] = val.v
            L.topn[na] = val.n
            na += 1
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
            if less(L, val, bv):
                bv = val
                best = alive[q]
        L.arg[r] = best
        L.cur[r] = bv.v
        if L.ccnt != NULL:
            L.ccnt[r] = bv.n
        start = stop


cdef void row_minimum(Layer *L, Py_ssize_t r, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    # The leftmost minimum of row r over the columns [c0, c1), by a scan (the
    # entries at columns >= r are infinite).
    cdef Py_ssize_t c, best = c0
    cdef Entry bv = entry(L, r, c0), val
    for c in range(c0 + 1, min(c1, r)):
        val = entry(L, r, c)
        if less(L, val, bv):
            bv = val
            best = c
    L.arg[r] = best
    L.cur[r] = bv.v
    if L.ccnt != NULL:
        L.ccnt[r] = bv.n


cdef void minima(Layer *L, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1,
                 Py_ssize_t *idx, Py_ssize_t *work, int n_threads) noexcept nogil:
    # Row minima for the rows [r0, r1) over the columns [c0, c1). A large
    # problem is cut at its middle row: the leftmost minima are monotone, so the
    # rows above it need only the columns up to its argmin, those below only the
    # columns from it. The halves share nothing they write (each has its own
    # rows, scratch and REDUCE stack).
    cdef Py_ssize_t i, q, mid, a, nr = r1 - r0
    cdef Layer half[2]
    cdef Py_ssize_t lo[2]
    cdef Py_ssize_t hi[2]
    cdef Py_ssize_t first[2]
    cdef Py_ssize_t last[2]
    cdef Py_ssize_t *rows[2]
    cdef Py_ssize_t *cols[2]
    cdef Py_ssize_t *scratch[2]
    if nr < SPLIT_ROWS:
        for i in range(nr):
            idx[i] = r0 + i
        for i in range(c1 - c0):
            idx[nr + i] = c0 + i
        smawk(L, idx, nr, idx + nr, c1 - c0, work)
        return
    mid = r0 + nr // 2
    row_minimum(L, mid, c0, c1)
    a = L.arg[mid]
    lo[0] = r0
    hi[0] = mid
    first[0] = c0
    last[0] = a + 1
    lo[1] = mid + 1
    hi[1] = r1
    first[1] = a
    last[1] = c1
    rows[0] = idx
    cols[0] = idx + (mid - r0)
    rows[1] = cols[0] + (a + 1 - c0)
    cols[1] = rows[1] + (r1 - mid - 1)
    scratch[0] = work
    scratch[1] = work + 3 * (mid - r0) + 4     # smawk needs at most 3 per row
    for q in range(2):
        half[q] = L[0]
        for i in range(hi[q] - lo[q]):
            rows[q][i] = lo[q] + i
        for i in range(last[q] - first[q]):
            cols[q][i] = first[q] + i
    half[1].top = L.top + (mid - r0)
    half[1].topn = L.topn + (mid - r0)
    for q in prange(2, schedule="static", num_threads=threads_for(n_threads, 2, 1)):
        smawk(&half[q], rows[q], hi[q] - lo[q], cols[q], last[q] - first[q], scratch[q])


cdef struct Workspace:
    double *a
    double *b
    double *top
    Py_ssize_t *topn
    Py_ssize_t *arg
    Py_ssize_t *cnt
    Py_ssize_t *idx
    Py_ssize_t *work


cdef int ws_alloc(Workspace *ws, Py_ssize_t m, bint full) noexcept nogil:
    # A full workspace, or (not full) only the argmins and run counts: all the
    # Lagrangian needs of its second one.
    ws.arg = <Py_ssize_t *> malloc((m + 1) * sizeof(Py_ssize_t))
    ws.cnt = <Py_ssize_t *> malloc((m + 1) * sizeof(Py_ssize_t))
    ws.a = <double *> malloc((m + 1) * sizeof(double)) if full else NULL
    ws.b = <double *> malloc((m + 1) * sizeof(double)) if full else NULL
    ws.top = <double *> malloc((m + 1) * sizeof(double)) if full else NULL
    ws.topn = <Py_ssize_t *> malloc((m + 1) * sizeof(Py_ssize_t)) if full else NULL
    ws.idx = <Py_ssize_t *> malloc(2 * (m + 1) * sizeof(Py_ssize_t)) if full else NULL
    ws.work = <Py_ssize_t *> malloc(4 * (m + 2) * sizeof(Py_ssize_t)) if full else NULL
    return ws.arg != NULL and ws.cnt != NULL and (not full or (
        ws.a != NULL and ws.b != NULL and ws.top != NULL and ws.topn != NULL and ws.idx != NULL
        and ws.work != NULL))


cdef void ws_free(Workspace *ws) noexcept nogil:
    free(ws.a)
    free(ws.b)
    free(ws.top)
    free(ws.topn)
    free(ws.arg)
    free(ws.cnt)
    free(ws.idx)
    free(ws.work)


# -- layered programme -----------------------------------------------------------------------

cdef void dp_layers(const Segment *seg, Py_ssize_t n_layers, Py_ssize_t reserve,
                    Workspace *ws, double **out, int n_threads) noexcept nogil:
    # D_{n_layers}(i) for the local prefixes i in [n_layers, N - reserve], where
    # `reserve` values are kept for the clusters on the other side. *out is set
    # to whichever of ws.a, ws.b holds the last layer.
    cdef Py_ssize_t N = seg.hi - seg.lo, i, j, top
    cdef double *prev = ws.a
    cdef double *cur = ws.b
    cdef double *tmp
    cdef Layer L
    top = N - reserve - (n_layers - 1)
    for i in prange(1, top + 1, schedule="static", num_threads=n_threads):
        prev[i] = run_cost(seg, 0, i)
    L.seg = seg
    L.arg = ws.arg
    L.top = ws.top
    L.topn = ws.topn
    L.pcnt = NULL
    L.ccnt = NULL
    L.lam = 0.0
    for j in range(2, n_layers + 1):
        top = N - reserve - (n_layers - j)
        L.prev = prev
        L.cur = cur
        minima(&L, j, top + 1, j - 1, top, ws.idx, ws.work, n_threads)
        tmp = prev
        prev = cur
        cur = tmp
    out[0] = prev


cdef void best_split(const Cost *cost, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t k1, Py_ssize_t k2,
                     Workspace *ws, int n_threads, Py_ssize_t *split) noexcept nogil:
    # The first boundary after the k1-th cluster in an optimal (k1 + k2)-clustering
    # of [lo, hi): where forward and backward costs sum to the least.
    cdef Segment segs[2]
    cdef double *res[2]
    cdef Py_ssize_t side, N = hi - lo, i, best = k1
    cdef double total, bv = INFINITY
    cdef int threads = n_threads if (k1 + k2) * N >= PARALLEL_CELLS else 1
    for side in range(2):
        segs[side].cost = cost
        segs[side].lo = lo
        segs[side].hi = hi
        segs[side].rev = side == 1
    for side in range(2):  # one after the other, each parallel within: they can be far from equal
        dp_layers(&segs[side], k1 if side == 0 else k2, k2 if side == 0 else k1, &ws[side],
                  &res[side], threads)
    for i in range(k1, N - k2 + 1):
        total = res[0][i] + res[1][N - i]
        if total < bv:
            bv = total
            best = i
    split[0] = lo + best


cdef void layered(const Cost *cost, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t first, Py_ssize_t k,
                  int64_t *bounds, Workspace *ws, int n_threads) noexcept nogil:
    # Boundaries first+1 .. first+k-1 of an optimal k-clustering of [lo, hi).
    cdef Py_ssize_t j, k1, split
    if k <= 1:
        return
    if k == hi - lo:
        for j in range(1, k):
            bounds[first + j] = lo + j
        return
    k1 = k // 2
    best_split(cost, lo, hi, k1, k - k1, ws, n_threads, &split)
    bounds[first + k1] = split
    layered(cost, lo, split, first, k1, bounds, ws, n_threads)
    layered(cost, split, hi, first + k1, k - k1, bounds, ws, n_threads)


# -- Lagrangian ------------------------------------------------------------------------------

cdef Py_ssize_t wilber(const Segment *seg, double lam, Workspace *ws, int n_threads) noexcept nogil:
    # The path minimising cost + lam * runs to each prefix j = 1..m: its cost in
    # ws[0].a, runs in ws[0].cnt and last boundary in ws[0].arg; returns the
    # runs of the whole path. Wilber's algorithm: the rows known so far, [r, c],
    # give tentative minima for the next block of columns (c, p]; the block's
    # own rows are then tried on the block, and at the first column where one of
    # them wins, everything before it is final and the rows up to c are never
    # needed again. Blocks double while the old rows keep winning. Ties go to
    # the earlier row.
    cdef Py_ssize_t m = seg.hi - seg.lo, c = 0, r = 0, p, j
    cdef double *F = ws[0].a
    cdef double *G = ws[0].b
    cdef Py_ssize_t *A = ws[0].arg
    cdef Py_ssize_t *N = ws[0].cnt
    cdef Py_ssize_t *Ag = ws[1].arg        # the second workspace is idle here
    cdef Py_ssize_t *Gn = ws[1].cnt
    cdef Layer L
    cdef Entry e, g
    cdef bint moved
    L.seg = seg
    L.prev = F
    L.pcnt = N
    L.lam = lam
    L.top = ws[0].top
    L.topn = ws[0].topn
    F[0] = 0.0
    N[0] = 0
    A[0] = 0
    while c < m:
        p = min(2 * c - r + 1, m)
        L.cur = F
        L.ccnt = N
        L.arg = A
        minima(&L, c + 1, p + 1, r, c + 1, ws[0].idx, ws[0].work, n_threads)
        moved = False
        if p >= c + 2:
            L.cur = G
            L.ccnt = Gn
            L.arg = Ag
            minima(&L, c + 2, p + 1, c + 1, p, ws[0].idx, ws[0].work, n_threads)
            for j in range(c + 2, p + 1):
                g.v = G[j]
                g.n = Gn[j]
                e.v = F[j]
                e.n = N[j]
                if less(&L, g, e):
                    F[j] = G[j]
                    N[j] = Gn[j]
                    A[j] = Ag[j]
                    r = c + 1
                    c = j
                    moved = True
                    break
        if not moved:
            c = p
    return N[m]


cdef void read_path(const Py_ssize_t *A, Py_ssize_t m, Py_ssize_t count, int64_t *out) noexcept nogil:
    cdef Py_ssize_t j = m, t = count
    while t >= 0:
        out[t] = j
        j = A[j]
        t -= 1


cdef void splice(const int64_t *a, Py_ssize_t K, const int64_t *b, Py_ssize_t L, Py_ssize_t k,
                 int64_t *out) noexcept nogil:
    # a: an optimal path of K runs, b: one of L runs, optimal at the same lam,
    # K < k < L. With d = k - K - 1, the first j whose run [a[j-1], a[j]) holds
    # b's run [b[j+d], b[j+d+1]) gives b[0..j+d] + a[j..K], of k runs: exchanging
    # a nested pair of runs for a crossing pair never costs more (quadrangle
    # inequality), and the other half of the exchange has K + L - k runs, so
    # both halves are optimal at lam too.
    cdef Py_ssize_t d = k - K - 1, j = 1, t
    while j < K and b[j + d + 1] > a[j]:
        j += 1
    for t in range(j + d + 1):
        out[t] = b[t]
    for t in range(j, K + 1):
        out[t + d + 1] = a[t]


cdef int lagrangian(const Cost *cost, Py_ssize_t k, double tol_abs, double tol_rel,
                    Workspace *ws, int64_t *bounds, int64_t *pk, int64_t *pl,
                    int n_threads) noexcept nogil:
    # Exact k-clustering of all m values into bounds; 1 if found, 0 if the search
    # ran out of passes. pk, pl: room for m + 1 boundaries each.
    cdef Py_ssize_t m = cost.m, K = 1, L = m, t, i, passes, t0 = 0, t1 = 0
    cdef double CK, CL = 0.0, lamK, lamL = 0.0, lam, V, slope, lam0 = 0.0, lam1 = 0.0
    cdef Segment seg
    cdef bint chord, stuck = False
    seg.cost = cost
    seg.lo = 0
    seg.hi = m
    seg.rev = False
    # The ends of the hull: one cluster (optimal for lam >= its cost) and one
    # per value (cost 0, optimal at lam = 0).
    CK = seg_cost(cost, 0, m)
    lamK = CK
    pk[0] = 0
    pk[1] = m
    for i in range(m + 1):
        pl[i] = i
    for passes in range(MAX_PASSES):
        chord = False
        if passes == 0:
            # A first guess from uniform data: g(t) ~ g(1) / t^2, lam = -g'(k).
            lam = 4.0 * CK / (<double> k * k * k)
        elif K > 1 and L < m and (stuck or L - K <= 2):
            # Both sides found, and the last step made no progress: the chord.
            lam = (CK - CL) / (L - K)
            chord = True
        else:
            # A secant of log lam against log t through the last two passes
            # (lam ~ t^-3 for smooth data when there is only one).
            slope = -3.0
            if passes > 1 and t0 != t1:
                slope = log(lam0 / lam1) / log(<double> t0 / t1)
            lam = lam1 * exp(slope * log(<double> k / t1))
            if not (lamL < lam < lamK):
                lam = sqrt(lamK * lamL) if lamL > 0.0 else 0.5 * lamK
        t = wilber(&seg, lam, ws, n_threads)
        V = ws[0].a[m]                     # the cost of t's path, without its price
        if t == k:
            read_path(ws[0].arg, m, t, bounds)
            return 1
        # t's path lies on the chord through K and L (all three optimal at lam)
        # unless it is below it: V + lam t < CK + lam K, compared as differences.
        if chord and (t <= K or t >= L or (V - CK) - lam * (K - t)
                      >= -(tol_abs + tol_rel * (V + CK + lam * (t - K)))):
            if K < t < k:
                read_path(ws[0].arg, m, t, pk)
                K = t
            elif k < t < L:
                read_path(ws[0].arg, m, t, pl)
                L = t
            splice(pk, K, pl, L, k, bounds)
            return 1
        stuck = t <= K or t >= L
        if K <= t < k and (t > K or lam < lamK):
            read_path(ws[0].arg, m, t, pk)
            K = t
            CK = V
            lamK = lam
        elif k < t <= L and (t < L or lam > lamL):
            read_path(ws[0].arg, m, t, pl)
            L = t
            CL = V
            lamL = lam
        lam0 = lam1
        t0 = t1
        lam1 = lam
        t1 = t
    return 0


# -- entry point -----------------------------------------------------------------------------

cdef int solve(Cost *cost, Py_ssize_t k, int algorithm, double total, int n_threads,
               int64_t *bounds, Workspace *ws, int64_t *pk, int64_t *pl) noexcept nogil:
    # One attempt in the cost's mode; 1 on success.
    cdef Py_ssize_t m = cost.m
    cdef double tol_abs = 0.0 if cost.accurate else 32.0 * DBL_EPSILON * total
    cdef double tol_rel = 8.0 * (ACCURATE_REL if cost.accurate else DBL_EPSILON)
    bounds[0] = 0
    bounds[k] = m
    if algorithm == 2 and 1 < k < m:
        if lagrangian(cost, k, tol_abs, tol_rel, ws, bounds, pk, pl, n_threads):
            return 1
    if ws[1].a == NULL and 1 < k < m:
        # The layered programme needs the second workspace in full.
        ws_free(&ws[1])
        if not ws_alloc(&ws[1], m, True):
            return 0
    layered(cost, 0, m, 0, k, bounds, ws, n_threads)
    return 1


def optimal(const double[::1] v, const double[::1] w, double shift, int64_t[::1] bounds,
            int n_threads, int algorithm=0, int mode=0):
    """Boundaries of an optimal clustering into ``k = len(bounds) - 1`` runs.

    ``v``: sorted distinct values in [-1, 1] (scaled by a power of two only);
    ``w``: their weights (> 0); ``shift``: about their weighted mean, subtracted
    in the fast path's prefix sums. ``algorithm``: 0 automatic, 1 layered, 2
    Lagrangian. ``mode``: 0 automatic (fast, then accurate if the fast result
    cannot be vouched for), 1 fast only, 2 accurate only. Returns the mode that
    produced the result (1 or 2).
    """
    cdef Py_ssize_t m = v.shape[0], k = bounds.shape[0] - 1
    cdef Workspace ws[2]
    cdef Cost cost
    cdef double *pre = NULL
    cdef Summary *blocks = NULL
    cdef int64_t *pk = NULL
    cdef int64_t *pl = NULL
    cdef int ok, used = 0
    cdef double total, found
    if algorithm == 0:
        # The layered programme costs about 2 k SMAWK passes over the values,
        # the Lagrangian search one to a few Wilber passes (each about three
        # SMAWK passes) at any k: the layered one is faster only up to k = 3.
        algorithm = 1 if k <= 3 else 2
    with nogil:
        pre = <double *> malloc(STRIDE * (m + 1) * sizeof(double))
        pk = <int64_t *> malloc((m + 1) * sizeof(int64_t))
        pl = <int64_t *> malloc((m + 1) * sizeof(int64_t))
        ok = ws_alloc(&ws[0], m, True)
        ok = ws_alloc(&ws[1], m, algorithm == 1) and ok and pre != NULL and pk != NULL and pl != NULL
        if ok:
            total = build_prefix(&v[0], &w[0], m, shift, pre)
            cost.pre = pre
            cost.v = &v[0]
            cost.w = &w[0]
            cost.m = m
            cost.accurate = mode == 2
            cost.kappa = 4.0 * DBL_EPSILON / ACCURATE_REL
            cost.blocks = NULL
            cost.nb = 0
            cost.levels = 0
            used = 2 if mode == 2 else 1
            if mode != 2:
                ok = solve(&cost, k, algorithm, total, n_threads, &bounds[0], ws, pk, pl)
                found = path_cost(&cost, &bounds[0], k) if ok else 0.0
                if ok and mode == 0 and 1 < k < m and 32.0 * DBL_EPSILON * total > FAST_REL * found:
                    used = 2
                    cost.accurate = True
            if used == 2:
                blocks = build_blocks(&cost, &cost.nb, &cost.levels)
                ok = blocks != NULL
                cost.blocks = blocks
                if ok:
                    ok = solve(&cost, k, algorithm, total, n_threads, &bounds[0], ws, pk, pl)
        free(pre)
        free(pk)
        free(pl)
        free(blocks)
        ws_free(&ws[0])
        ws_free(&ws[1])
    if not ok:
        raise MemoryError()
    return used
