# Counter-based random numbers for parallel kernels.
#
# A kernel gets one 64-bit `key` from the caller's numpy Generator (see
# dlkernels/_lib/random.py). Work is cut into fixed-size chunks and chunk `c` draws
# from its own stream, started at `stream_start(key, c)`. Which thread runs a chunk
# does not change what it draws, so results are identical at any thread count.
#
# The stream itself is SplitMix64 (Steele, Lea & Flood, "Fast splittable
# pseudorandom number generators", OOPSLA 2014): a Weyl counter passed through a
# 64-bit finaliser. It passes BigCrush and costs a few cycles per number.
# Bounded integers use Lemire's multiply-and-reject method ("Fast random integer
# generation in an interval", ACM TOMACS 2019), which is exactly uniform.

from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #include <stdint.h>

    #define DLKERNELS_GOLDEN_GAMMA 0x9E3779B97F4A7C15ULL

    static inline uint64_t dlkernels_mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    static inline uint64_t dlkernels_stream_start(uint64_t key, uint64_t stream) {
        /* Two rounds of mixing so that neighbouring streams start far apart. */
        return dlkernels_mix64(key ^ dlkernels_mix64(stream * DLKERNELS_GOLDEN_GAMMA + 1));
    }

    static inline uint64_t dlkernels_next_u64(uint64_t *state) {
        *state += DLKERNELS_GOLDEN_GAMMA;
        return dlkernels_mix64(*state);
    }

    /* Uniform double in [0, 1) with 53 random bits. */
    static inline double dlkernels_next_double(uint64_t *state) {
        return (double)(dlkernels_next_u64(state) >> 11) * (1.0 / 9007199254740992.0);  /* 2**-53 */
    }

    /* High and low 64 bits of a 64x64-bit product. */
    static inline uint64_t dlkernels_mul128(uint64_t a, uint64_t b, uint64_t *lo) {
    #if defined(__SIZEOF_INT128__)
        __uint128_t p = (__uint128_t)a * b;
        *lo = (uint64_t)p;
        return (uint64_t)(p >> 64);
    #else
        uint64_t a_lo = a & 0xFFFFFFFFULL, a_hi = a >> 32;
        uint64_t b_lo = b & 0xFFFFFFFFULL, b_hi = b >> 32;
        uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
        uint64_t mid = (p0 >> 32) + (p1 & 0xFFFFFFFFULL) + (p2 & 0xFFFFFFFFULL);
        *lo = (mid << 32) | (p0 & 0xFFFFFFFFULL);
        return p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
    #endif
    }

    /* Lemire's method: an exactly uniform integer in [0, n), n >= 1, returned
       with the low word of the accepted product in *lo. */
    static inline uint64_t dlkernels_lemire(uint64_t *state, uint64_t n, uint64_t *lo) {
        uint64_t hi = dlkernels_mul128(dlkernels_next_u64(state), n, lo);
        if (*lo < n) {
            uint64_t threshold = (0 - n) % n;
            while (*lo < threshold) {
                hi = dlkernels_mul128(dlkernels_next_u64(state), n, lo);
            }
        }
        return hi;
    }

    static inline uint64_t dlkernels_next_below(uint64_t *state, uint64_t n) {
        uint64_t lo;
        return dlkernels_lemire(state, n, &lo);
    }

    /* One draw split in two: the integer in [0, n) and, from the low word of the
       product, a uniform fraction in [0, 1) on a grid of spacing n * 2**-64
       (independent of the integer). Saves a second draw where a row and a coin
       are both needed. */
    static inline uint64_t dlkernels_next_below_and_fraction(uint64_t *state, uint64_t n,
                                                          double *fraction) {
        uint64_t lo, hi = dlkernels_lemire(state, n, &lo);
        *fraction = (double)(lo >> 11) * (1.0 / 9007199254740992.0);
        return hi;
    }
    """
    # The finaliser alone: a bijective 64-bit integer mix (used as a hash, e.g. by LSH keys).
    uint64_t mix64 "dlkernels_mix64"(uint64_t z) noexcept nogil
    uint64_t stream_start "dlkernels_stream_start"(uint64_t key, uint64_t stream) noexcept nogil
    uint64_t next_u64 "dlkernels_next_u64"(uint64_t *state) noexcept nogil
    double next_double "dlkernels_next_double"(uint64_t *state) noexcept nogil
    uint64_t next_below "dlkernels_next_below"(uint64_t *state, uint64_t n) noexcept nogil
    uint64_t next_below_and_fraction "dlkernels_next_below_and_fraction"(
        uint64_t *state, uint64_t n, double *fraction) noexcept nogil
