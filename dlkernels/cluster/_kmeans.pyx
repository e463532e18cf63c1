"""Compiled core of dlkernels.cluster.kmeans (n-D Lloyd and k-means++ seeding).

The distance kernel scores a block of points against all centres with the
squared-norm trick, ``|c|^2 - 2 x.c`` (``|x|^2`` is the same for every centre
of a point, so the argmin does not need it). The centres are stored transposed
and padded to a multiple of the tile width, and each tile of 4 points by W
centres is accumulated in registers over all coordinates: one load of a centre
row feeds four points. The kernel is compiled twice, for plain x86-64/any CPU
and with AVX2+FMA, and the AVX2 copy is chosen at run time where the CPU has it
(dlkernels/_lib/_cpu_dispatch.pxd).

Every parallel loop runs over fixed-size chunks of points (or over clusters),
and anything summed across chunks is summed in chunk order afterwards, so
results do not depend on the number of threads.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

from dlkernels._lib._cpu_dispatch cimport dlk_cpu_avx2_fma
from dlkernels._lib._openmp cimport omp_get_thread_num, threads_for
from dlkernels._lib._random cimport next_double, stream_start

ctypedef fused real:
    float
    double

cdef extern from *:
    """
    #include <math.h>
    #include <stddef.h>

    /* out[p * ldo + j] = cn[j] - 2 * dot(x_p, c_j) for np points (rows of x, d
       coordinates) and kw centres stored transposed in ct[t * ldc + j]; kw is a
       multiple of W. Four points by W centres are accumulated in registers.
       One body per dtype, compiled twice by DLK_DISPATCH_VOID (_cpu_dispatch.pxd). */
    #define DLKERNELS_KM_SCORES(T, W, NAME, MADD)                                        \
    DLK_ALWAYS_INLINE void NAME##_body(int fused, const T *x, ptrdiff_t np, ptrdiff_t d, \
                                       const T *ct, ptrdiff_t ldc, const T *cn,        \
                                       ptrdiff_t kw, T *out, ptrdiff_t ldo) {          \
        for (ptrdiff_t p0 = 0; p0 < np; p0 += 4) {                                   \
            const T *r0 = x + p0 * d;                                                \
            const T *r1 = x + (p0 + 1 < np ? p0 + 1 : p0) * d;                       \
            const T *r2 = x + (p0 + 2 < np ? p0 + 2 : p0) * d;                       \
            const T *r3 = x + (p0 + 3 < np ? p0 + 3 : p0) * d;                       \
            for (ptrdiff_t j0 = 0; j0 < kw; j0 += W) {                               \
                T a0[W], a1[W], a2[W], a3[W];                                        \
                for (int j = 0; j < W; j++) { a0[j] = 0; a1[j] = 0; a2[j] = 0; a3[j] = 0; } \
                for (ptrdiff_t t = 0; t < d; t++) {                                  \
                    const T *c = ct + t * ldc + j0;                                  \
                    T x0 = r0[t], x1 = r1[t], x2 = r2[t], x3 = r3[t];                \
                    for (int j = 0; j < W; j++) {                                    \
                        a0[j] = MADD(fused, x0, c[j], a0[j]);                        \
                        a1[j] = MADD(fused, x1, c[j], a1[j]);                        \
                        a2[j] = MADD(fused, x2, c[j], a2[j]);                        \
                        a3[j] = MADD(fused, x3, c[j], a3[j]);                        \
                    }                                                                \
                }                                                                    \
                T *o = out + p0 * ldo + j0;                                           \
                const T *n = cn + j0;                                                \
                for (int j = 0; j < W; j++) o[j] = n[j] - 2 * a0[j];                 \
                if (p0 + 1 < np) for (int j = 0; j < W; j++) o[ldo + j] = n[j] - 2 * a1[j];     \
                if (p0 + 2 < np) for (int j = 0; j < W; j++) o[2 * ldo + j] = n[j] - 2 * a2[j]; \
                if (p0 + 3 < np) for (int j = 0; j < W; j++) o[3 * ldo + j] = n[j] - 2 * a3[j]; \
            }                                                                        \
        }                                                                            \
    }

    DLKERNELS_KM_SCORES(float, 16, dlkernels_km_scores_f32, DLK_MADDF)
    DLKERNELS_KM_SCORES(double, 8, dlkernels_km_scores_f64, DLK_MADD)
    /* The least of s[0..n) (+inf if n == 0), in eight independent lanes so the
       compiler keeps them in one vector register (a min per lane, no branch). */
    #define DLKERNELS_KM_MIN(T, NAME)                                                \
    DLK_ALWAYS_INLINE T NAME(const T *s, ptrdiff_t n) {                              \
        T lo = (T) INFINITY;                                                         \
        ptrdiff_t j = 0;                                                             \
        if (n >= 8) {                                                                \
            T m[8];                                                                  \
            for (int l = 0; l < 8; l++) m[l] = s[l];                                 \
            for (j = 8; j + 8 <= n; j += 8)                                          \
                for (int l = 0; l < 8; l++) m[l] = s[j + l] < m[l] ? s[j + l] : m[l]; \
            for (int l = 0; l < 8; l++) lo = m[l] < lo ? m[l] : lo;                  \
        }                                                                            \
        for (; j < n; j++) lo = s[j] < lo ? s[j] : lo;                               \
        return lo;                                                                   \
    }
    /* The nearest of k scores (the first on ties), its score and the runner-up's:
       a branchy one-pass scan mispredicts on every new minimum and serialises
       on it; three vector passes cost less than the distance tile itself. */
    #define DLKERNELS_KM_TOP2(T, NAME, MIN)                                          \
    DLK_ALWAYS_INLINE void NAME##_body(int fused, const T *s, ptrdiff_t k,          \
                                       ptrdiff_t *best, T *b1, T *b2) {            \
        (void) fused;                                                                \
        T lo = MIN(s, k), a, b;                                                      \
        ptrdiff_t j = 0;                                                             \
        while (s[j] != lo) j++;                                                      \
        a = MIN(s, j);                                                               \
        b = MIN(s + j + 1, k - j - 1);                                               \
        *best = j;                                                                   \
        *b1 = lo;                                                                    \
        *b2 = a < b ? a : b;                                                         \
    }
    DLKERNELS_KM_MIN(float, dlkernels_km_min_f32)
    DLKERNELS_KM_MIN(double, dlkernels_km_min_f64)
    DLKERNELS_KM_TOP2(float, dlkernels_km_top2_f32, dlkernels_km_min_f32)
    DLKERNELS_KM_TOP2(double, dlkernels_km_top2_f64, dlkernels_km_min_f64)
    DLK_DISPATCH_VOID(dlkernels_km_top2_f32, (const float *s, ptrdiff_t k, ptrdiff_t *best,
                      float *b1, float *b2), s, k, best, b1, b2)
    DLK_DISPATCH_VOID(dlkernels_km_top2_f64, (const double *s, ptrdiff_t k, ptrdiff_t *best,
                      double *b1, double *b2), s, k, best, b1, b2)
    DLK_DISPATCH_VOID(dlkernels_km_scores_f32,
                      (const float *x, ptrdiff_t np, ptrdiff_t d, const float *ct, ptrdiff_t ldc,
                       const float *cn, ptrdiff_t kw, float *out, ptrdiff_t ldo),
                      x, np, d, ct, ldc, cn, kw, out, ldo)
    DLK_DISPATCH_VOID(dlkernels_km_scores_f64,
                      (const double *x, ptrdiff_t np, ptrdiff_t d, const double *ct, ptrdiff_t ldc,
                       const double *cn, ptrdiff_t kw, double *out, ptrdiff_t ldo),
                      x, np, d, ct, ldc, cn, kw, out, ldo)
    """
    void top2_f32 "dlkernels_km_top2_f32"(const float *s, Py_ssize_t k, Py_ssize_t *best,
                                         float *b1, float *b2) noexcept nogil
    void top2_f64 "dlkernels_km_top2_f64"(const double *s, Py_ssize_t k, Py_ssize_t *best,
                                         double *b1, double *b2) noexcept nogil
    void scores_f32 "dlkernels_km_scores_f32"(const float *x, Py_ssize_t np, Py_ssize_t d,
                                          const float *ct, Py_ssize_t ldc, const float *cn,
                                          Py_ssize_t kw, float *out, Py_ssize_t ldo) noexcept nogil
    void scores_f64 "dlkernels_km_scores_f64"(const double *x, Py_ssize_t np, Py_ssize_t d,
                                          const double *ct, Py_ssize_t ldc, const double *cn,
                                          Py_ssize_t kw, double *out, Py_ssize_t ldo) noexcept nogil

cdef enum:
    # Points per parallel work item (fixed: partial results are per chunk).
    CHUNK = 256
    # Points scored together: BLOCK x (padded k) scores stay in L1/L2.
    BLOCK = 32
    # Centre padding: a multiple of every tile width.
    PAD = 16
    # Most k-means++ candidates scored together (scikit-learn's 2 + log k is 8 at k = 403).
    MAX_TRIALS = 32

AVX2 = bool(dlk_cpu_avx2_fma())


cdef inline int threads_by_work(int n_threads, Py_ssize_t n_items, double item_flops) noexcept nogil:
    # Threads for a loop over n_items of about item_flops each: every thread gets
    # at least ~1e7 flops (a millisecond), since waking a thread costs up to a
    # scheduler time slice when its core is busy. Results never depend on this.
    cdef double per = 1e7 / max(item_flops, 1.0)
    return threads_for(n_threads, n_items, <Py_ssize_t> max(1.0, min(per, 1e9)))


def padded(Py_ssize_t k):
    """Number of centre slots the kernels use: k rounded up to the tile width."""
    return (k + PAD - 1) // PAD * PAD


def transpose_centers(const real[:, ::1] centers, real[:, ::1] ct, real[::1] cn):
    """``ct`` (d, kp): the centres transposed and zero-padded; ``cn`` (kp): their
    squared norms, +inf in the padding, so that a padding slot never wins."""
    cdef Py_ssize_t k = centers.shape[0], d = centers.shape[1], kp = ct.shape[1], j, t
    cdef double s
    with nogil:
        for j in range(kp):
            s = 0.0
            for t in range(d):
                if j < k:
                    ct[t, j] = centers[j, t]
                    s += <double> centers[j, t] * centers[j, t]
                else:
                    ct[t, j] = 0
            cn[j] = <real> s if j < k else <real> INFINITY


cdef inline void score_block(const real *x, Py_ssize_t np, Py_ssize_t d, const real *ct,
                             Py_ssize_t ldc, const real *cn, Py_ssize_t kw, real *out,
                             Py_ssize_t ldo) noexcept nogil:
    if real is float:
        scores_f32(x, np, d, ct, ldc, cn, kw, out, ldo)
    else:
        scores_f64(x, np, d, ct, ldc, cn, kw, out, ldo)


def row_norms(const real[:, ::1] X, real[::1] out, int n_threads):
    """Squared norms of the rows, summed in float64."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, t
    cdef double s
    for i in prange(n, nogil=True, schedule="static",
                    num_threads=threads_by_work(n_threads, n, 2.0 * d)):
        s = 0.0
        for t in range(d):
            s = s + <double> X[i, t] * X[i, t]
        out[i] = <real> s


cdef inline double rounding(double xn, double cmax, Py_ssize_t d, bint single) noexcept nogil:
    # A bound on the rounding error of |x|^2 + |c|^2 - 2 x.c, accumulated over d
    # coordinates in float32 or float64: bounds are widened by it, never trusted
    # closer than rounding.
    return (d + 8) * (6.0e-8 if single else 1.2e-16) * (xn + cmax)


cdef void full_scan(const real *g, const Py_ssize_t *rows, Py_ssize_t cnt, Py_ssize_t d,
                    const real *ct, const real *cn, Py_ssize_t k, Py_ssize_t kp,
                    const real *xnorm, double cmax, real *buf, int64_t *labels,
                    double *upper, double *lower) noexcept nogil:
    # Score `cnt` gathered rows against every centre; keep the nearest (first on
    # ties) and bound the distances to it (upper) and to the runner-up (lower).
    cdef Py_ssize_t i, best, r
    cdef real b1, b2
    cdef double err, xn
    score_block(g, cnt, d, ct, kp, cn, kp, buf, kp)
    for i in range(cnt):
        r = rows[i]
        if real is float:
            top2_f32(buf + i * kp, k, &best, &b1, &b2)
        else:
            top2_f64(buf + i * kp, k, &best, &b1, &b2)
        labels[r] = best
        xn = xnorm[r]
        err = rounding(xn, cmax, d, real is float)
        upper[r] = sqrt(max(xn + b1 + err, 0.0))
        lower[r] = sqrt(max(xn + b2 - err, 0.0)) if k > 1 else INFINITY


def assign_bounded(const real[:, ::1] X, const real[::1] xnorm, const real[:, ::1] centers,
                   const real[:, ::1] ct, const real[::1] cn, int64_t[::1] labels,
                   double[::1] upper, double[::1] lower, const double[::1] shift,
                   const double[::1] half_gap, bint first, int n_threads):
    """Nearest centres with Hamerly's bounds (SIAM SDM 2010), which skip most
    distance computations once the centres move little.

    Each point keeps an upper bound on the distance to its centre and a lower
    bound on the distance to any other; after the centres moved by ``shift``
    the bounds are loosened by it, and a point whose upper bound is below both
    its lower bound and half the gap from its centre to the nearest other
    centre (``half_gap``) keeps its label without any distance computed. The
    rest get their upper bound tightened by one exact distance and, if still
    in doubt, a full scan with the tiled kernel. With ``first`` every point is
    scanned. Bounds are widened by the kernel's rounding error, so a label can
    differ from a full scan's only between centres equidistant to rounding.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0], kp = ct.shape[1]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, c, i, j, t, cnt, a, far = 0
    cdef double max1 = 0.0, max2 = 0.0, cmax = 0.0, bound, diff, dist
    # Costed as full scans: the first call and early iterations are.
    cdef int nt = threads_by_work(n_threads, n_chunks, 2.0 * CHUNK * kp * d)
    cdef real *bufs = <real *> malloc(nt * BLOCK * kp * sizeof(real))
    cdef real *gs = <real *> malloc(nt * BLOCK * d * sizeof(real))
    cdef Py_ssize_t *idx = <Py_ssize_t *> malloc(nt * BLOCK * sizeof(Py_ssize_t))
    cdef real *buf
    cdef real *g
    cdef Py_ssize_t *rows
    if bufs == NULL or gs == NULL or idx == NULL:
        free(bufs); free(gs); free(idx)
        raise MemoryError()
    # The two largest moves: a point's own centre is excluded from its lower bound.
    for j in range(k):
        if shift[j] > max1:
            max2 = max1
            max1 = shift[j]
            far = j
        elif shift[j] > max2:
            max2 = shift[j]
        if cn[j] > cmax:
            cmax = cn[j]
    with nogil, parallel(num_threads=nt):
        buf = bufs + omp_get_thread_num() * BLOCK * kp
        g = gs + omp_get_thread_num() * BLOCK * d
        rows = idx + omp_get_thread_num() * BLOCK
        for c in prange(n_chunks, schedule="static"):
            cnt = 0
            for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
                if not first:
                    a = labels[i]
                    upper[i] = upper[i] + shift[a]
                    lower[i] = lower[i] - (max2 if a == far else max1)
                    bound = max(lower[i], half_gap[a])
                    if upper[i] <= bound:
                        continue
                    # Tighten the upper bound with one exact distance.
                    dist = 0.0
                    for t in range(d):
                        diff = <double> X[i, t] - centers[a, t]
                        dist = dist + diff * diff
                    upper[i] = sqrt(dist) * (1.0 + 1e-12)
                    if upper[i] <= bound:
                        continue
                for t in range(d):
                    g[cnt * d + t] = X[i, t]
                rows[cnt] = i
                cnt = cnt + 1
                if cnt == BLOCK:
                    full_scan(g, rows, cnt, d, &ct[0, 0], &cn[0], k, kp, &xnorm[0], cmax, buf,
                              &labels[0], &upper[0], &lower[0])
                    cnt = 0
            if cnt > 0:
                full_scan(g, rows, cnt, d, &ct[0, 0], &cn[0], k, kp, &xnorm[0], cmax, buf,
                          &labels[0], &upper[0], &lower[0])
    free(bufs); free(gs); free(idx)


def half_gaps(const real[:, ::1] centers, double[::1] out, int n_threads):
    """Half the distance from each centre to its nearest other centre (direct
    differences in float64, rounded down): a point closer than that to its own
    centre cannot be nearer to another. Computed here rather than with a BLAS
    product, whose idle threads would spin against the kernels' threads."""
    cdef Py_ssize_t k = centers.shape[0], d = centers.shape[1], j, q, t
    cdef double best, s, diff
    for j in prange(k, nogil=True, schedule="static",
                    num_threads=threads_by_work(n_threads, k, 3.0 * k * d)):
        best = INFINITY
        for q in range(k):
            if q != j:
                s = 0.0
                for t in range(d):
                    diff = <double> centers[j, t] - centers[q, t]
                    s = s + diff * diff
                if s < best:
                    best = s
        out[j] = 0.5 * sqrt(best) * (1.0 - 1e-12)


def sq_distances(const real[:, ::1] X, const real[:, ::1] centers, const int64_t[::1] labels,
                 double[::1] out, int n_threads):
    """Exact squared distance of each point to its assigned centre (float64)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, t
    cdef double s, diff
    for i in prange(n, nogil=True, schedule="static",
                    num_threads=threads_by_work(n_threads, n, 3.0 * d)):
        s = 0.0
        for t in range(d):
            diff = <double> X[i, t] - centers[labels[i], t]
            s = s + diff * diff
        out[i] = s


def update(const real[:, ::1] X, const int64_t[::1] labels, double[:, ::1] sums,
           int64_t[::1] counts, int n_threads):
    """Per-cluster sums of the points (float64) and counts, each cluster summed
    in point order, clusters in parallel: identical at any thread count."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = sums.shape[0], i, j, t, q, row
    cdef int64_t *start = <int64_t *> malloc((k + 1) * sizeof(int64_t))
    cdef int64_t *order = <int64_t *> malloc(max(n, 1) * sizeof(int64_t))
    cdef int64_t *fill = <int64_t *> malloc((k + 1) * sizeof(int64_t))
    if start == NULL or order == NULL or fill == NULL:
        free(start); free(order); free(fill)
        raise MemoryError()
    with nogil:
        # Counting sort of the points by cluster, keeping point order.
        for j in range(k + 1):
            start[j] = 0
        for i in range(n):
            start[labels[i] + 1] += 1
        for j in range(k):
            start[j + 1] += start[j]
            fill[j] = start[j]
        for i in range(n):
            order[fill[labels[i]]] = i
            fill[labels[i]] += 1
        for j in prange(k, schedule="dynamic",
                        num_threads=threads_by_work(n_threads, k, <double> n * d / k)):
            counts[j] = start[j + 1] - start[j]
            for t in range(d):
                sums[j, t] = 0.0
            for q in range(start[j], start[j + 1]):
                row = order[q]
                for t in range(d):
                    sums[j, t] += X[row, t]
    free(start); free(order); free(fill)


def inertia(const real[:, ::1] X, const real[:, ::1] centers, const int64_t[::1] labels,
            int n_threads):
    """Sum of squared distances to the assigned centres, directly (no norm
    trick) and in float64, summed per chunk and then in chunk order."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c, i, t
    cdef double s, diff, total = 0.0
    cdef double *part = <double *> malloc(max(n_chunks, 1) * sizeof(double))
    if part == NULL:
        raise MemoryError()
    for c in prange(n_chunks, nogil=True, schedule="static",
                    num_threads=threads_by_work(n_threads, n_chunks, 3.0 * CHUNK * d)):
        s = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            for t in range(d):
                diff = <double> X[i, t] - centers[labels[i], t]
                s = s + diff * diff
        part[c] = s
    for c in range(n_chunks):
        total += part[c]
    free(part)
    return total


cdef Py_ssize_t pick(const double *cum, Py_ssize_t n, double target) noexcept nogil:
    # First i with cum[i] > target (cum is the inclusive prefix sum), within [0, n).
    cdef Py_ssize_t lo = 0, hi = n - 1, mid
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if cum[mid] > target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def kmeans_plus_plus(const real[:, ::1] X, const real[::1] xnorm, real[:, ::1] centers,
                     Py_ssize_t n_trials, uint64_t key, int n_threads):
    """Greedy D^2 seeding: each step draws ``n_trials`` (<= 32) candidates in
    proportion to the squared distance to the nearest centre so far and keeps
    the one that lowers the total the most (Arthur and Vassilvitskii, SODA 2007;
    the greedy variant as scikit-learn runs it).

    The few candidates are the kernel's "points" and the data its "centres":
    the data are transposed once, so every step runs full-width tiles."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, npad = n_chunks * CHUNK
    cdef Py_ssize_t c, j, q, i, t, b, w, m, best_q, first
    cdef uint64_t state = stream_start(key, 0)
    cdef double total = 0.0, best_pot, acc, v
    cdef int nt = threads_by_work(n_threads, n_chunks, 2.0 * CHUNK * max(n_trials, 8) * d)
    cdef real *buf
    cdef Py_ssize_t cand[MAX_TRIALS]
    n_trials = max(1, min(n_trials, <Py_ssize_t> MAX_TRIALS))
    cdef real *bufs = <real *> malloc(nt * MAX_TRIALS * CHUNK * sizeof(real))
    cdef real *xt = <real *> malloc(d * npad * sizeof(real))
    cdef real *xn = <real *> malloc(npad * sizeof(real))
    cdef real *cx = <real *> malloc(MAX_TRIALS * d * sizeof(real))
    cdef double *closest = <double *> malloc(n * sizeof(double))
    cdef double *cum = <double *> malloc(n * sizeof(double))
    cdef double *cand_d = <double *> malloc(n_trials * n * sizeof(double))
    cdef double *part = <double *> malloc(n_chunks * MAX_TRIALS * sizeof(double))
    if (closest == NULL or cum == NULL or cand_d == NULL or part == NULL or xt == NULL
            or xn == NULL or cx == NULL or bufs == NULL):
        free(closest); free(cum); free(cand_d); free(part); free(xt); free(xn); free(cx)
        free(bufs)
        raise MemoryError()
    with nogil:
        for i in range(npad):
            for t in range(d):
                xt[t * npad + i] = X[i, t] if i < n else 0
            xn[i] = xnorm[i] if i < n else 0
        first = <Py_ssize_t> (next_double(&state) * n)
        if first >= n:
            first = n - 1
        for j in range(k):
            if j == 0:
                m = 1
                cand[0] = first
            else:
                # Candidates by inverse CDF on the running prefix sum of `closest`.
                m = n_trials
                for q in range(m):
                    cand[q] = pick(cum, n, next_double(&state) * total)
            for q in range(m):
                for t in range(d):
                    cx[q * d + t] = X[cand[q], t]
            # Squared distance of every point to every candidate, and per chunk the
            # potential (sum of min(closest, distance)) each candidate would leave.
            with parallel(num_threads=nt):
                buf = bufs + omp_get_thread_num() * MAX_TRIALS * CHUNK
                for c in prange(n_chunks, schedule="static"):
                    b = c * CHUNK
                    w = min(n, b + CHUNK) - b
                    score_block(cx, m, d, xt + b, npad, xn + b, CHUNK, buf, CHUNK)
                    for q in range(m):
                        acc = 0.0
                        for i in range(w):
                            v = <double> xnorm[cand[q]] + buf[q * CHUNK + i]
                            if v < 0:
                                v = 0
                            cand_d[q * n + b + i] = v
                            if j > 0 and closest[b + i] < v:
                                v = closest[b + i]
                            acc = acc + v
                        part[c * MAX_TRIALS + q] = acc
            best_q = 0
            best_pot = INFINITY
            for q in range(m):
                acc = 0.0
                for c in range(n_chunks):
                    acc += part[c * MAX_TRIALS + q]
                if acc < best_pot:
                    best_pot = acc
                    best_q = q
            for t in range(d):
                centers[j, t] = X[cand[best_q], t]
            total = 0.0
            for i in range(n):
                v = cand_d[best_q * n + i]
                if j == 0 or v < closest[i]:
                    closest[i] = v
                total += closest[i]
                cum[i] = total
    free(closest); free(cum); free(cand_d); free(part); free(xt); free(xn); free(cx); free(bufs)
