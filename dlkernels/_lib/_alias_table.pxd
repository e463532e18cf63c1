# Vose's alias table (Walker 1977; Vose, IEEE TSE 1991), shared by every kernel
# that draws from a fixed discrete distribution: dlkernels.sampling.AliasSampler
# (one table) and dlkernels.graph (one table per node over its out-edges).
#
# A table is one array of packed (prob, alias) rows so a draw costs one random
# access: pick a row j uniformly, keep j with probability prob[j], else take
# alias[j]. `alias` is relative to the table start, so a table can live inside a
# larger array (a CSR row).

from libc.stdint cimport int64_t, uint64_t

from dlkernels._lib._random cimport next_below_and_fraction

cdef packed struct AliasEntry:
    double prob
    int64_t alias


cdef inline void build_alias(const double *weights, Py_ssize_t n, AliasEntry *table,
                             double *q, int64_t *small, int64_t *large) noexcept nogil:
    # O(n) construction. `weights` are finite, >= 0, with a positive one; q, small
    # and large are scratch space of n entries each.
    #
    # Weights are scaled by their maximum before summing so that ratios up to
    # 1e300 neither overflow nor lose the small weights. A zero weight gets prob 0
    # and an alias with positive weight, so it is never drawn.
    cdef Py_ssize_t i, small_top = 0, large_top = 0, l, g, any_positive = 0
    cdef double wmax = 0.0, total = 0.0, scale
    for i in range(n):
        if weights[i] > wmax:
            wmax = weights[i]
            any_positive = i
    for i in range(n):
        total += weights[i] / wmax
    scale = n / total
    for i in range(n):
        q[i] = weights[i] / wmax * scale
        if q[i] < 1.0:
            small[small_top] = i
            small_top += 1
        else:
            large[large_top] = i
            large_top += 1
    while small_top > 0 and large_top > 0:
        small_top -= 1
        l = small[small_top]
        g = large[large_top - 1]
        table[l].prob = q[l]
        table[l].alias = g
        # (q[g] + q[l]) - 1 loses less than q[g] - (1 - q[l]) (K. Schwarz's notes).
        q[g] = (q[g] + q[l]) - 1.0
        if q[g] < 1.0:
            large_top -= 1
            small[small_top] = g
            small_top += 1
    # What is left is within rounding of 1, except a zero weight, which must
    # stay undrawable.
    while large_top > 0:
        large_top -= 1
        g = large[large_top]
        table[g].prob = 1.0
        table[g].alias = g
    while small_top > 0:
        small_top -= 1
        l = small[small_top]
        table[l].prob = 1.0 if weights[l] > 0 else 0.0
        table[l].alias = l if weights[l] > 0 else any_positive


cdef inline int64_t alias_draw(const AliasEntry *table, uint64_t n, uint64_t *state) noexcept nogil:
    # One draw from a table of n >= 1 rows: a row and a coin from one random number.
    cdef double coin
    cdef int64_t j = <int64_t> next_below_and_fraction(state, n, &coin)
    return j if coin < table[j].prob else table[j].alias
