# The cost of a run of sorted 1-D values: its weighted sum of squared deviations
# from its mean. Shared by the exact methods of _optimal_1d.pyx.
#
# Fast path: prefix sums of w, w u, w u**2 (u the values centred on their mean),
# each kept as an unevaluated sum of two doubles (hi + lo), so a difference of
# two prefixes is accurate to the run's own terms and not to the whole prefix.
# Its error is then about eps * (Q + S**2 / W) for the run: small next to the
# cost except for runs far from the centre with a tiny spread. The accurate mode
# checks that bound on every evaluation and recomputes the runs that fail it
# from summaries anchored at a value of the run (differences of stored values,
# merged with Chan, Golub and LeVeque's pairwise update), whose error is
# relative to the run's own cost at any scale.

from libc.float cimport DBL_EPSILON

cdef enum:
    # Values per block of the anchored summaries; runs this short or a little
    # longer are summed directly.
    BLK = 32
    # Doubles per prefix entry: w, w u and w u**2, each hi and lo.
    STRIDE = 6


cdef struct Summary:
    double w          # total weight
    double off        # mean minus v[anchor]
    double m2         # sum of w (x - mean)**2
    Py_ssize_t anchor


cdef struct Cost:
    const double *pre     # STRIDE * (m + 1) interleaved prefix sums
    const double *v       # the values, scaled by a power of two only (exact)
    const double *w
    Py_ssize_t m
    bint accurate
    double kappa          # accurate mode: the fast value is kept if cost > kappa * (Q + S**2 / W)
    const Summary *blocks # nb block summaries, then the disjoint sparse table
    Py_ssize_t nb
    Py_ssize_t levels


cdef inline Summary direct(const Cost *c, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # Two passes over [a, b): the mean as an offset from v[a], then the squares.
    cdef Summary s
    cdef Py_ssize_t i
    cdef double W = 0.0, S = 0.0, M = 0.0, d, va = c.v[a]
    for i in range(a, b):
        W += c.w[i]
        S += c.w[i] * (c.v[i] - va)
    s.w = W
    s.anchor = a
    s.off = S / W if W > 0.0 else 0.0
    for i in range(a, b):
        d = (c.v[i] - va) - s.off
        M += c.w[i] * d * d
    s.m2 = M
    return s


cdef inline Summary merge(const double *v, Summary x, Summary y) noexcept nogil:
    # x holds values left of y's. The gap of the means is the gap of the anchors
    # (one rounding) plus the offsets: no large numbers cancel.
    cdef Summary r
    cdef double W, d
    if x.w == 0.0:
        return y
    if y.w == 0.0:
        return x
    W = x.w + y.w
    d = (v[y.anchor] - v[x.anchor]) + (y.off - x.off)
    r.w = W
    r.anchor = x.anchor
    r.off = x.off + d * (y.w / W)
    r.m2 = x.m2 + y.m2 + d * d * (x.w * (y.w / W))
    return r


cdef inline Summary block_range(const Cost *c, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # Summary of blocks a..b (inclusive) from the disjoint sparse table: level h
    # holds, for each aligned range of 2**h blocks, the suffixes of its left half
    # and the prefixes of its right half.
    cdef Py_ssize_t h, x
    if a == b:
        return c.blocks[a]
    x = a ^ b
    h = 0
    while x:
        h += 1
        x >>= 1
    return merge(c.v, c.blocks[h * c.nb + a], c.blocks[h * c.nb + b])


cdef inline double anchored_cost(const Cost *c, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t first, last
    cdef Summary s
    if b - a <= 2 * BLK:
        return direct(c, a, b).m2
    first = (a + BLK - 1) // BLK      # first whole block
    last = b // BLK - 1               # last whole block
    s = block_range(c, first, last)
    if a < first * BLK:
        s = merge(c.v, direct(c, a, first * BLK), s)
    if (last + 1) * BLK < b:
        s = merge(c.v, s, direct(c, (last + 1) * BLK, b))
    return s.m2


cdef inline double seg_cost(const Cost *c, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # Cost of the values [a, b), a < b.
    cdef const double *A = c.pre + STRIDE * a
    cdef const double *B = c.pre + STRIDE * b
    cdef double W = (B[0] - A[0]) + (B[1] - A[1])
    cdef double S = (B[2] - A[2]) + (B[3] - A[3])
    cdef double Q = (B[4] - A[4]) + (B[5] - A[5])
    cdef double t = S * S / W
    cdef double r = Q - t
    if c.accurate and r <= c.kappa * (Q + t):
        return anchored_cost(c, a, b)
    return r if r > 0.0 else 0.0
