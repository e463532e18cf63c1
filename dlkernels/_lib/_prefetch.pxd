# Software prefetch: start loading a cache line we will read a few steps later, so
# that independent random reads overlap instead of waiting for memory one by one.

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
        #define dlkernels_prefetch(p) __builtin_prefetch((const void *)(p))
    #elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
        #include <xmmintrin.h>
        #define dlkernels_prefetch(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
    #else
        #define dlkernels_prefetch(p) ((void)0)
    #endif
    """
    void prefetch "dlkernels_prefetch"(const void *p) noexcept nogil


cdef inline void prefetch_span(const void *p, Py_ssize_t nbytes) noexcept nogil:
    # Every 64-byte cache line of [p, p + nbytes): a row or record read soon.
    cdef Py_ssize_t b
    for b in range(0, nbytes, 64):
        prefetch((<const char *> p) + b)
