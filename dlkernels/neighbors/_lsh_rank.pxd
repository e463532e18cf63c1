# Ordering helpers of the LSHIndex query kernel: selecting and sorting probe
# scores, and the bounded max-heap that keeps the k best candidates. Every order is
# total (ties broken by an id), so results never depend on the order things were
# found in.

from libc.stdint cimport int32_t, int64_t


cdef struct Heap:
    double *key
    int32_t *tag


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


cdef inline void sift_pairs(double *score, int64_t *ident, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t child
    while True:
        child = 2 * i + 1
        if child >= n:
            return
        if child + 1 < n and before(score[child], ident[child], score[child + 1], ident[child + 1]):
            child += 1
        if not before(score[i], ident[i], score[child], ident[child]):
            return
        swap_pair(score, ident, i, child)
        i = child


cdef inline void sort_pairs(double *score, int64_t *ident, Py_ssize_t n) noexcept nogil:
    """Sort ascending by (score, id): heapsort, O(n log n) and in place."""
    cdef Py_ssize_t i
    for i in range(n // 2 - 1, -1, -1):
        sift_pairs(score, ident, i, n)
    for i in range(n - 1, 0, -1):
        swap_pair(score, ident, 0, i)
        sift_pairs(score, ident, 0, i)


cdef inline bint worse(double ka, int32_t ta, double kb, int32_t tb,
                       const int64_t *seq) noexcept nogil:
    # Heap order: by key, ties by tag, or by seq[tag] where given. For results the
    # key is the distance and seq the insertion order of the row, so equal
    # distances rank by insertion order whatever order they were found in.
    if ka != kb:
        return ka > kb
    if seq != NULL:
        return seq[ta] > seq[tb]
    return ta > tb


cdef inline void heap_sift_down(Heap h, Py_ssize_t i, Py_ssize_t n, const int64_t *seq) noexcept nogil:
    cdef Py_ssize_t child
    cdef double key = h.key[i]
    cdef int32_t tag = h.tag[i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and worse(h.key[child + 1], h.tag[child + 1], h.key[child],
                                   h.tag[child], seq):
            child += 1
        if not worse(h.key[child], h.tag[child], key, tag, seq):
            break
        h.key[i] = h.key[child]
        h.tag[i] = h.tag[child]
        i = child
    h.key[i] = key
    h.tag[i] = tag


cdef inline void heap_offer(Heap h, Py_ssize_t *size, Py_ssize_t capacity, double key,
                            int32_t tag, const int64_t *seq) noexcept nogil:
    """Keep the ``capacity`` smallest (key, tag) pairs: a max-heap, its root the worst kept."""
    cdef Py_ssize_t i, parent
    if size[0] < capacity:
        i = size[0]
        size[0] += 1
        while i > 0:
            parent = (i - 1) >> 1
            if not worse(key, tag, h.key[parent], h.tag[parent], seq):
                break
            h.key[i] = h.key[parent]
            h.tag[i] = h.tag[parent]
            i = parent
        h.key[i] = key
        h.tag[i] = tag
    elif worse(h.key[0], h.tag[0], key, tag, seq):
        h.key[0] = key
        h.tag[0] = tag
        heap_sift_down(h, 0, capacity, seq)


cdef inline Py_ssize_t heap_sort(Heap h, Py_ssize_t size, const int64_t *seq) noexcept nogil:
    """Sort the heap's pairs ascending in place; returns their number."""
    cdef Py_ssize_t kept = size
    cdef double key
    cdef int32_t tag
    while size > 1:
        size -= 1
        key = h.key[0]
        tag = h.tag[0]
        h.key[0] = h.key[size]
        h.tag[0] = h.tag[size]
        h.key[size] = key
        h.tag[size] = tag
        heap_sift_down(h, 0, size, seq)
    return kept
