# Selecting the smallest probe scores for the LSHIndex query kernel (sorting and
# the bounded heaps of the k best are dlkernels._lib._heap's). Every order is total
# (ties broken by an id), so results never depend on the order things were found in.

from libc.stdint cimport int64_t


cdef inline bint before(double sa, int64_t ia, double sb, int64_t ib) noexcept nogil:
    return sa < sb or (sa == sb and ia < ib)


cdef inline void swap_pair(double *score, int64_t *ident, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef double s = score[a]
    cdef int64_t i = ident[a]
    score[a] = score[b]
    ident[a] = ident[b]
    score[b] = s
    ident[b] = i


cdef inline void select_smallest(double *score, int64_t *ident, Py_ssize_t n,
                                 Py_ssize_t m) noexcept nogil:
    """Reorder so that the first m pairs are the m smallest by (score, id) (quickselect)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j, mid
    cdef double ps
    cdef int64_t pid
    if m <= 0 or m >= n:
        return
    while lo < hi:
        # Median of three as pivot: sorted or constant input stays linear.
        mid = lo + (hi - lo) // 2
        if before(score[mid], ident[mid], score[lo], ident[lo]):
            swap_pair(score, ident, mid, lo)
        if before(score[hi], ident[hi], score[lo], ident[lo]):
            swap_pair(score, ident, hi, lo)
        if before(score[hi], ident[hi], score[mid], ident[mid]):
            swap_pair(score, ident, hi, mid)
        ps = score[mid]
        pid = ident[mid]
        i = lo
        j = hi
        while i <= j:
            while before(score[i], ident[i], ps, pid):
                i += 1
            while before(ps, pid, score[j], ident[j]):
                j -= 1
            if i <= j:
                swap_pair(score, ident, i, j)
                i += 1
                j -= 1
        if m - 1 <= j:
            hi = j
        elif m - 1 >= i:
            lo = i
        else:
            break
