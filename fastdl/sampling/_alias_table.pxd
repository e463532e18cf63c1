# The alias table row and its one-draw lookup, shared at the C level by every
# kernel that draws from an AliasSampler table (fastdl.sampling._alias, and the
# negatives of fastdl.embed._skipgram), so the layout lives in one place.

from libc.stdint cimport int64_t, uint64_t

from fastdl._lib._random cimport next_below_and_fraction

cdef packed struct AliasEntry:
    double prob
    int64_t alias


cdef inline int64_t alias_draw(const AliasEntry *table, uint64_t n, uint64_t *state) noexcept nogil:
    # Row j uniformly, kept with probability prob[j], else its alias: one random
    # number (its high word picks j, its low word is the coin).
    cdef double coin
    cdef int64_t j = <int64_t> next_below_and_fraction(state, n, &coin)
    return j if coin < table[j].prob else table[j].alias
