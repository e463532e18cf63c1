# The one bounded heap of the kernels that keep the k best of a stream of
# (key, id) pairs: a max-heap in two parallel arrays, ordered by key and then id,
# so that its root is the worst pair kept. A pair that does not beat the root
# costs one comparison; one that does costs O(log k). Equal keys are ordered by
# id (the smaller id is better), so which pairs are kept and the order they are
# sorted into never depend on the order they arrived in.
#
# Keys and ids are fused types: any of the four combinations compiles, and a
# call resolves them from its pointer arguments (the kd-tree uses float/double
# keys with int64 ids; LSH double keys with int32 ids).

from libc.stdint cimport int32_t, int64_t

ctypedef fused heap_key:
    float
    double

ctypedef fused heap_id:
    int32_t
    int64_t


cdef inline bint pair_before(heap_key ka, heap_id ia, heap_key kb, heap_id ib) noexcept nogil:
    """Whether (ka, ia) comes first: the smaller key, or at equal keys the smaller id."""
    return ka < kb or (ka == kb and ia < ib)


cdef inline void heap_sift_down(heap_key *keys, heap_id *ids, Py_ssize_t size, Py_ssize_t i,
                                heap_key k, heap_id t) noexcept nogil:
    """Put (k, t) at position ``i`` of a heap of ``size`` pairs and sift it down
    (``i = 0`` replaces the root: the worst pair kept makes way for a better one)."""
    cdef Py_ssize_t c
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and pair_before(keys[c], ids[c], keys[c + 1], ids[c + 1]):
            c += 1
        if not pair_before(k, t, keys[c], ids[c]):
            break
        keys[i] = keys[c]
        ids[i] = ids[c]
        i = c
    keys[i] = k
    ids[i] = t


cdef inline void heap_push(heap_key *keys, heap_id *ids, Py_ssize_t size, heap_key k,
                           heap_id t) noexcept nogil:
    """Add (k, t) to a heap of ``size`` pairs that has room for one more."""
    cdef Py_ssize_t i = size, parent
    while i > 0:
        parent = (i - 1) >> 1
        if not pair_before(keys[parent], ids[parent], k, t):
            break
        keys[i] = keys[parent]
        ids[i] = ids[parent]
        i = parent
    keys[i] = k
    ids[i] = t


cdef inline bint heap_offer(heap_key *keys, heap_id *ids, Py_ssize_t *size, Py_ssize_t capacity,
                            heap_key k, heap_id t) noexcept nogil:
    """Keep the ``capacity`` smallest pairs offered: fill the heap, then replace its
    root by any better pair. Returns whether (k, t) was kept."""
    if size[0] < capacity:
        heap_push(keys, ids, size[0], k, t)
        size[0] += 1
        return True
    if capacity > 0 and pair_before(k, t, keys[0], ids[0]):
        heap_sift_down(keys, ids, capacity, 0, k, t)
        return True
    return False


cdef inline void heap_sort(heap_key *keys, heap_id *ids, Py_ssize_t size) noexcept nogil:
    """Sort a heap of ``size`` pairs in place, ascending: the root goes to the end
    and the last pair sifts down from the root, ``size - 1`` times."""
    cdef heap_key k
    cdef heap_id t
    while size > 1:
        size -= 1
        k = keys[size]
        t = ids[size]
        keys[size] = keys[0]
        ids[size] = ids[0]
        heap_sift_down(keys, ids, size, 0, k, t)


cdef inline void insertion_sort_pairs(heap_key *keys, heap_id *ids, Py_ssize_t n) noexcept nogil:
    """Sort ``n`` pairs ascending by insertion: O(n) on pairs that are nearly in order
    already, O(n**2) at worst, so for short or nearly sorted runs only."""
    cdef Py_ssize_t i, j
    cdef heap_key k
    cdef heap_id t
    for i in range(1, n):
        k = keys[i]
        t = ids[i]
        j = i
        while j > 0 and pair_before(k, t, keys[j - 1], ids[j - 1]):
            keys[j] = keys[j - 1]
            ids[j] = ids[j - 1]
            j -= 1
        keys[j] = k
        ids[j] = t


cdef inline void sort_pairs(heap_key *keys, heap_id *ids, Py_ssize_t n) noexcept nogil:
    """Sort any ``n`` pairs ascending: by insertion when short, else heapify and
    :func:`heap_sort` (O(n log n) whatever the input)."""
    cdef Py_ssize_t i
    if n <= 32:
        insertion_sort_pairs(keys, ids, n)
        return
    i = n // 2
    while i > 0:
        i -= 1
        heap_sift_down(keys, ids, n, i, keys[i], ids[i])
    heap_sort(keys, ids, n)
