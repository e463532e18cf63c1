# Arithmetic shared by the two compiled halves of LSHIndex (_lsh_hash: codes of
# stored vectors; _lsh_query: codes and probes of queries). A query must land in
# exactly the bucket its stored copy was put in, so both call these same inline
# functions.

from libc.math cimport floor, sqrt
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint64_t

# (its C definitions come first: the kernels below use dlkernels_prefetch)
from dlkernels._lib._prefetch cimport prefetch  # noqa: F401
from dlkernels._lib._random cimport mix64

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    /* x86-64 wheels target the baseline (SSE2). The few loops that dominate a
       query are compiled twice and the AVX2 copy is picked at load time where
       the CPU has it (GCC function multi-versioning). Both copies sum in the
       same order (no FMA contraction in ISO C mode), so they agree bit for bit. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
        #define DLK_LSH_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
    #else
        #define DLK_LSH_CLONES
    #endif

    /* out[j] = c_j . x for n rows c_j of dimension d: eight partial sums over the
       first d - d % 8 terms, added pairwise in a fixed order, then the rest one by
       one. Four rows go at once, so that four independent chains of additions keep
       the SIMD units busy (one chain waits on the latency of every addition). */
    #if defined(__GNUC__) || defined(__clang__)
    typedef float dlk_v8 __attribute__((vector_size(32)));
    static inline dlk_v8 dlk_load8(const float *p) {
        dlk_v8 v;
        __builtin_memcpy(&v, p, sizeof v);
        return v;
    }
    #define DLK_ZERO8 ((dlk_v8){0, 0, 0, 0, 0, 0, 0, 0})
    #define DLK_SUM8(a) ((((a)[0] + (a)[4]) + ((a)[1] + (a)[5])) \
                         + (((a)[2] + (a)[6]) + ((a)[3] + (a)[7])))
    #define DLK_MADD8(acc, c, x) ((acc) += dlk_load8(c) * dlk_load8(x))
    #else
    typedef struct { float v[8]; } dlk_v8;
    static dlk_v8 dlk_zero8(void) { dlk_v8 z = {{0, 0, 0, 0, 0, 0, 0, 0}}; return z; }
    #define DLK_ZERO8 dlk_zero8()
    #define DLK_SUM8(a) ((((a).v[0] + (a).v[4]) + ((a).v[1] + (a).v[5])) \
                         + (((a).v[2] + (a).v[6]) + ((a).v[3] + (a).v[7])))
    #define DLK_MADD8(acc, c, x) do { for (int l_ = 0; l_ < 8; l_++) \
        (acc).v[l_] += (c)[l_] * (x)[l_]; } while (0)
    #endif

    DLK_LSH_CLONES
    static void dlk_lsh_dots(const float *rows, int64_t n, const float *x, int64_t d,
                             float *out) {
        const int64_t d8 = d - d % 8;
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) {
            const float *c0 = rows + j * d, *c1 = c0 + d, *c2 = c1 + d, *c3 = c2 + d;
            dlk_v8 a0 = DLK_ZERO8, a1 = DLK_ZERO8, a2 = DLK_ZERO8, a3 = DLK_ZERO8;
            for (int64_t i = 0; i < d8; i += 8) {
                DLK_MADD8(a0, c0 + i, x + i);
                DLK_MADD8(a1, c1 + i, x + i);
                DLK_MADD8(a2, c2 + i, x + i);
                DLK_MADD8(a3, c3 + i, x + i);
            }
            float s0 = DLK_SUM8(a0), s1 = DLK_SUM8(a1), s2 = DLK_SUM8(a2), s3 = DLK_SUM8(a3);
            for (int64_t i = d8; i < d; i++) {
                s0 += c0[i] * x[i];
                s1 += c1[i] * x[i];
                s2 += c2[i] * x[i];
                s3 += c3[i] * x[i];
            }
            out[j] = s0;
            out[j + 1] = s1;
            out[j + 2] = s2;
            out[j + 3] = s3;
        }
        for (; j < n; j++) {
            const float *c = rows + j * d;
            dlk_v8 a = DLK_ZERO8;
            for (int64_t i = 0; i < d8; i += 8) DLK_MADD8(a, c + i, x + i);
            float sum = DLK_SUM8(a);
            for (int64_t i = d8; i < d; i++) sum += c[i] * x[i];
            out[j] = sum;
        }
    }

    /* out[j] = |c_j|^2 - 2 c_j . x: the squared distance to x up to |x|^2. */
    static void dlk_lsh_centroid_scores(const float *cent, const float *norms, int64_t n,
                                        const float *x, int64_t d, float *out) {
        dlk_lsh_dots(cent, n, x, d, out);
        for (int64_t j = 0; j < n; j++) out[j] = norms[j] - 2.0f * out[j];
    }

    /* What the bounds on the distances from a query to n stored rows need, from
       their sketches (see _lsh_query.pyx): a record is 8 float32 (lo, step,
       |z^|^2, err, rho, |code|, |u|, unused) and s 8-bit codes; p holds the
       prepared query (scale, qerr, |z_q|^2, sum z_q, rho_q, |u_q|, |mean|, ...).
       Out, four arrays of n floats: a, a lower estimate of |z_q - z^|^2 (also the
       key that picks the shortlist); err; r, a lower bound on the length of the
       residuals' difference; and w, the rounding margin of the row. No square
       root here: the comparisons with the k-th distance are made squared. */
    #define DLK_LSH_HEAD 32
    #define DLK_LSH_AHEAD 8

    DLK_LSH_CLONES __attribute__((unused))  /* only the query module calls it */
    static void dlk_lsh_bounds(const uint8_t *sketch, int64_t stride, int64_t s,
                               const int32_t *rows, int64_t n, const int16_t *q16,
                               const double *p, float *out) {
        const float scale = (float)p[0], qerr = (float)p[1], zzq = (float)p[2];
        const float sumz = (float)p[3], rhoq = (float)p[4], nq = (float)p[5];
        float *a_out = out, *e_out = out + n, *r_out = out + 2 * n, *w_out = out + 3 * n;
        for (int64_t i = 0; i < n; i++) {
            if (i + DLK_LSH_AHEAD < n) {
                const char *next = (const char *)(sketch + (int64_t)rows[i + DLK_LSH_AHEAD] * stride);
                for (int64_t c = 0; c < stride; c += 64) dlkernels_prefetch(next + c);
            }
            const uint8_t *rec = sketch + (int64_t)rows[i] * stride;
            const float *h = (const float *)rec;
            const uint8_t *code = rec + DLK_LSH_HEAD;
            int32_t acc = 0;
            for (int64_t j = 0; j < s; j++) acc += (int32_t)q16[j] * (int32_t)code[j];
            /* z_q . z^ = lo sum(z_q) + step (scale (q16 . code) + e . code), with
               |e . code| <= qerr |code|; then float rounding, far below distance gaps. */
            float lo = h[0], st = h[1], zz = h[2];
            float qx = lo * sumz + st * scale * (float)acc;
            a_out[i] = zzq - 2.0f * qx + zz - 2.0f * st * qerr * h[5]
                       - 1e-6f * (zzq + zz + 2.0f * fabsf(lo * sumz));
            e_out[i] = h[3];
            /* |r_q - r_x| >= |rho_q - rho_x|, rho known to 1e-3 of the norms. */
            float r = fabsf(rhoq - h[4]) - 1e-3f * (nq + h[6]);
            r_out[i] = r > 0.0f ? r : 0.0f;
            w_out[i] = 1e-6f * h[6];
        }
    }
    """
    void dots "dlk_lsh_dots"(const float *rows, int64_t n, const float *x, int64_t d,
                             float *out) noexcept nogil
    void centroid_scores "dlk_lsh_centroid_scores"(
        const float *cent, const float *norms, int64_t n, const float *x, int64_t d,
        float *out) noexcept nogil
    void sketch_bounds "dlk_lsh_bounds"(
        const uint8_t *sketch, int64_t stride, int64_t s, const int32_t *rows, int64_t n,
        const int16_t *q16, const double *p, float *out) noexcept nogil


cdef inline int64_t bucket_of(double v) noexcept nogil:
    # floor(v) clipped to +-2**62 before the cast to int64 (casting an out-of-range
    # double is undefined behaviour in C); the torch path clips the same.
    cdef double f = floor(v)
    if f < -4611686018427387904.0:
        f = -4611686018427387904.0
    elif f > 4611686018427387904.0:
        f = 4611686018427387904.0
    return <int64_t> f


cdef inline uint64_t sign_code(const double *v, int n_bits) noexcept nogil:
    # SimHash: bit j is set where the projection on hyperplane j is >= 0.
    cdef uint64_t code = 0
    cdef int j
    for j in range(n_bits):
        if v[j] >= 0:
            code |= (<uint64_t> 1) << j
    return code


cdef inline uint64_t linear_code(const double *v, const uint64_t *mult, int n_bits) noexcept nogil:
    # p-stable: sum_j floor(v_j) * mult_j modulo 2**64 with odd random multipliers
    # (universal hashing of the integer vector). Linear, so a +-1 probe on one
    # component is one addition.
    cdef uint64_t lin = 0
    cdef int j
    for j in range(n_bits):
        lin += (<uint64_t> bucket_of(v[j])) * mult[j]
    return lin


cdef inline double dot_planes(const double *plane, const double *x, Py_ssize_t d) noexcept nogil:
    # Four partial sums in float64, in a fixed order: a point's projections, hence
    # its codes, are the same in every call and thread.
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= d:
        s0 = s0 + plane[i] * x[i]
        s1 = s1 + plane[i + 1] * x[i + 1]
        s2 = s2 + plane[i + 2] * x[i + 2]
        s3 = s3 + plane[i + 3] * x[i + 3]
        i += 4
    while i < d:
        s0 = s0 + plane[i] * x[i]
        i += 1
    return (s0 + s2) + (s1 + s3)


cdef inline void project(const double *planes, const double *shifts, double width, bint l2,
                         Py_ssize_t n_planes, const double *x, Py_ssize_t d,
                         double *v) noexcept nogil:
    """Random family: ``a . x`` (cosine) or ``(a . x) / w + u`` (l2) for every plane."""
    cdef Py_ssize_t p
    for p in range(n_planes):
        v[p] = dot_planes(planes + p * d, x, d)
        if l2:
            v[p] = v[p] / width + shifts[p]


cdef inline void tree_input(const double *x, Py_ssize_t d, bint normalize, const float *mean,
                            const float *basis, Py_ssize_t r, float *buf,
                            float *out) noexcept nogil:
    """The r-dimensional float32 vector a k-means tree hashes: the coordinates of
    ``x`` (or ``x / |x|`` for cosine) less ``mean`` in the tree's principal
    directions ``basis`` (r, d); ``buf`` holds d floats."""
    cdef double norm = 0.0, scale = 1.0
    cdef Py_ssize_t i
    if normalize:
        for i in range(d):
            norm += x[i] * x[i]
        scale = 1.0 / sqrt(norm) if norm > 0 else 0.0
    for i in range(d):
        buf[i] = <float> (x[i] * scale) - mean[i]
    dots(basis, r, buf, d, out)


cdef inline Py_ssize_t argmin(const float *score, Py_ssize_t n) noexcept nogil:
    # The first smallest: ties go to the lower index.
    cdef Py_ssize_t j, best = 0
    for j in range(1, n):
        if score[j] < score[best]:
            best = j
    return best


cdef inline int64_t tree_leaf(const float *coarse, const float *coarse_norms, const float *fine,
                              const float *fine_norms, const int64_t *offsets, Py_ssize_t c1,
                              const float *x, Py_ssize_t d, float *score) noexcept nogil:
    """Leaf of ``x`` in one two-level k-means tree: its nearest coarse centre ``a``,
    then the nearest of that cell's leaf centres ``offsets[a]:offsets[a + 1]``
    (``score`` holds as many floats as the largest cell's leaves, and ``c1``)."""
    cdef Py_ssize_t a, lo
    centroid_scores(coarse, coarse_norms, c1, x, d, score)
    a = argmin(score, c1)
    lo = offsets[a]
    centroid_scores(fine + lo * d, fine_norms + lo, offsets[a + 1] - lo, x, d, score)
    return lo + argmin(score, offsets[a + 1] - lo)
