"""Compiled core of fastdl.neighbors.LSHIndex.

The facade computes the projections of a block of points with one BLAS matmul
(float64, so that hash codes do not depend on the summation order of a BLAS
library); everything per point after that runs here, without the GIL.

Bucket store. Each table holds one entry ``(key, row)`` per stored vector,
kept in *runs*: run ``r`` covers the rows ``[run_starts[r], run_starts[r+1])``
and, in each table, holds their entries sorted by key at the same positions. A
run of ``s`` entries has a directory of ``2**B + 1`` offsets over the top ``B``
bits of the key (``B = floor(log2 s)``): keys are outputs of a 64-bit mixer, so
slots hold about one entry each and a bucket is found with one directory read
and a binary search over a few entries, whatever the data's clustering.

Query. Per query: the home bucket of every table, then the buckets of the
query-directed multiprobe sequence of Lv et al., "Multi-probe LSH" (VLDB 2007),
taken over all tables together in increasing order of their score; candidate
rows are deduplicated with a per-thread stamp array, re-ranked with exact
distances, and the ``k`` best kept in a bounded max-heap ordered by
``(distance, id)``.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, floor, sqrt
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from cython cimport floating

from fastdl._lib._openmp cimport omp_get_thread_num
from fastdl._lib._prefetch cimport prefetch
from fastdl._lib._random cimport mix64

cdef enum:
    # Queries per parallel work unit. Each query's result depends on nothing but
    # the query, so the result is the same at any thread count; chunks only keep
    # scheduling overhead low.
    CHUNK = 4
    # Candidates whose vectors are prefetched ahead of the one being re-ranked.
    AHEAD = 4

# Hash components are clipped to +-2**62 before the cast to int64 (a cast of an
# out-of-range double is undefined behaviour in C); the torch path clips the same.
cdef double CLIP = 4611686018427387904.0


cdef inline int64_t bucket_of(double v) noexcept nogil:
    cdef double f = floor(v)
    if f < -CLIP:
        f = -CLIP
    elif f > CLIP:
        f = CLIP
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
    # p-stable: sum_j floor(v_j) * mult_j modulo 2**64, with odd random multipliers
    # (universal hashing of the integer vector). Linear, so a +-1 probe on one
    # component is one addition.
    cdef uint64_t lin = 0
    cdef int j
    for j in range(n_bits):
        lin += (<uint64_t> bucket_of(v[j])) * mult[j]
    return lin


def hash_codes(const double[:, ::1] proj, int n_tables, int n_bits, bint l2,
               const uint64_t[:, ::1] mult, bint store_keys, uint64_t[:, ::1] out,
               int n_threads):
    """Codes of each point in each table from its projections ``proj`` (n, L*K).

    Cosine: the packed sign bits (``store_keys``: their 64-bit mix, the key the
    bucket store sorts by). L2: the mixed linear combination of the bucket
    indices, which is both the public code and the store key.
    """
    cdef Py_ssize_t n = proj.shape[0], i
    cdef int t
    cdef uint64_t c
    if n == 0:
        return
    for i in prange(n, nogil=True, schedule="static", num_threads=max(1, n_threads)):
        for t in range(n_tables):
            if l2:
                out[i, t] = mix64(linear_code(&proj[i, t * n_bits], &mult[t, 0], n_bits))
            else:
                c = sign_code(&proj[i, t * n_bits], n_bits)
                out[i, t] = mix64(c) if store_keys else c


def directory(const uint64_t[::1] keys, int bits, uint32_t[::1] out):
    """Offsets of the first key of each of the ``2**bits`` top-bit slots of sorted ``keys``."""
    cdef Py_ssize_t n = keys.shape[0], i
    cdef uint64_t slot, next_slot = 0, n_slots = (<uint64_t> 1) << bits
    with nogil:
        for i in range(n):
            slot = keys[i] >> (64 - bits) if bits > 0 else 0
            while next_slot <= slot:
                out[next_slot] = <uint32_t> i
                next_slot += 1
        while next_slot <= n_slots:
            out[next_slot] = <uint32_t> n
            next_slot += 1


# -- query -------------------------------------------------------------------------

cdef struct Tables:
    int n_tables
    int n_bits
    bint l2
    Py_ssize_t dim
    Py_ssize_t n_runs
    Py_ssize_t n_rows       # stored rows, live and removed
    Py_ssize_t stride       # row stride of keys / rows (their capacity)
    Py_ssize_t dstride      # row stride of dirs
    const uint64_t *keys
    const int32_t *rows
    const int64_t *run_starts
    const int32_t *dir_bits
    const int64_t *dir_offsets
    const uint32_t *dirs
    const uint8_t *alive
    const uint64_t *mult
    const int64_t *row_ids
    const double *inv_norms


cdef struct Probe:
    uint64_t key
    int32_t table


cdef struct Perturbation:
    # A set of positions in one table's sorted list of single perturbations
    # (bit flips, or +-1 steps of a component), as a 128-bit mask.
    double score
    uint64_t lo
    uint64_t hi
    int32_t table
    int32_t top             # largest position in the set


cdef struct Scratch:
    uint32_t *stamp
    uint32_t current
    int32_t *cand
    Probe *probes
    Perturbation *heap
    double *score           # (L, P) single-perturbation scores, ascending per table
    int32_t *coord          # (L, P) the bit / component each position perturbs
    int8_t *step            # (L, P) L2: the +-1 step of that position
    uint64_t *base          # (L,) the query's own code (cosine) or linear sum (L2)
    double *best_dist       # (k,) max-heap of the k best so far
    int64_t *best_id
    int32_t *best_row
    double *tmp             # (2 * n_bits,) sort keys


cdef inline bint has(uint64_t lo, uint64_t hi, int i) noexcept nogil:
    return ((lo >> i) & 1) if i < 64 else ((hi >> (i - 64)) & 1)


cdef inline void put(uint64_t *lo, uint64_t *hi, int i) noexcept nogil:
    if i < 64:
        lo[0] |= (<uint64_t> 1) << i
    else:
        hi[0] |= (<uint64_t> 1) << (i - 64)


cdef inline void drop(uint64_t *lo, uint64_t *hi, int i) noexcept nogil:
    if i < 64:
        lo[0] &= ~((<uint64_t> 1) << i)
    else:
        hi[0] &= ~((<uint64_t> 1) << (i - 64))


cdef inline void heap_push(Perturbation *heap, Py_ssize_t *size, Perturbation e) noexcept nogil:
    cdef Py_ssize_t i = size[0], parent
    size[0] += 1
    while i > 0:
        parent = (i - 1) >> 1
        if heap[parent].score <= e.score:
            break
        heap[i] = heap[parent]
        i = parent
    heap[i] = e


cdef inline Perturbation heap_pop(Perturbation *heap, Py_ssize_t *size) noexcept nogil:
    cdef Perturbation top = heap[0], last
    cdef Py_ssize_t i = 0, child, n
    size[0] -= 1
    n = size[0]
    if n > 0:
        last = heap[n]
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and heap[child + 1].score < heap[child].score:
                child += 1
            if heap[child].score >= last.score:
                break
            heap[i] = heap[child]
            i = child
        heap[i] = last
    return top


cdef void sort_positions(double *score, int32_t *coord, Py_ssize_t n) noexcept nogil:
    # Insertion sort by (score, coord): n <= 64 and mostly a few dozen.
    cdef Py_ssize_t i, j
    cdef double s
    cdef int32_t c
    for i in range(1, n):
        s = score[i]
        c = coord[i]
        j = i - 1
        while j >= 0 and (score[j] > s or (score[j] == s and coord[j] > c)):
            score[j + 1] = score[j]
            coord[j + 1] = coord[j]
            j -= 1
        score[j + 1] = s
        coord[j + 1] = c


cdef uint64_t probe_key(const Tables *tab, Scratch *s, int t, uint64_t lo, uint64_t hi,
                        int top) noexcept nogil:
    cdef int P = 2 * tab.n_bits if tab.l2 else tab.n_bits, i
    cdef uint64_t code = s.base[t]
    for i in range(top + 1):
        if has(lo, hi, i):
            if tab.l2:
                code += (<uint64_t> (<int64_t> s.step[t * P + i])) * tab.mult[t * tab.n_bits + s.coord[t * P + i]]
            else:
                code ^= (<uint64_t> 1) << s.coord[t * P + i]
    return mix64(code)


cdef Py_ssize_t make_probes(const Tables *tab, Scratch *s, const double *v,
                            Py_ssize_t n_extra) noexcept nogil:
    """Fill ``s.probes`` with the home bucket of every table, then ``n_extra`` more."""
    cdef int L = tab.n_tables, K = tab.n_bits, P = 2 * K if tab.l2 else K, t, j, i
    cdef Py_ssize_t n = 0, heap_size = 0, pops = 0, max_pops
    cdef const double *vt
    cdef double f, near
    cdef int32_t c
    cdef Perturbation e, child
    cdef bint valid
    for t in range(L):
        vt = v + t * K
        s.base[t] = linear_code(vt, tab.mult + t * K, K) if tab.l2 else sign_code(vt, K)
        s.probes[n].key = mix64(s.base[t])
        s.probes[n].table = t
        n += 1
    if n_extra <= 0:
        return n
    # Single perturbations of each table, cheapest first. Cosine: flipping bit j
    # moves the query across hyperplane j, at (squared) distance v_j**2 (rows of
    # the projection are unit vectors). L2: component j is at fraction f of its
    # slot; stepping down costs f**2 and up (1 - f)**2 (in units of the width).
    for t in range(L):
        vt = v + t * K
        if tab.l2:
            for j in range(K):
                f = vt[j] - <double> bucket_of(vt[j])
                s.tmp[j] = f if f < 1.0 - f else 1.0 - f
                s.coord[t * P + j] = j
            sort_positions(s.tmp, s.coord + t * P, K)
            # The K nearer boundaries ascending, then the K farther ones descending:
            # position i and 2K-1-i perturb the same component in opposite directions.
            for i in range(K):
                c = s.coord[t * P + i]
                near = s.tmp[i]
                f = vt[c] - <double> bucket_of(vt[c])
                s.score[t * P + i] = near * near
                s.step[t * P + i] = -1 if f < 1.0 - f else 1
                s.score[t * P + P - 1 - i] = (1.0 - near) * (1.0 - near)
                s.coord[t * P + P - 1 - i] = c
                s.step[t * P + P - 1 - i] = -s.step[t * P + i]
        else:
            for j in range(K):
                s.score[t * P + j] = vt[j] * vt[j]
                s.coord[t * P + j] = j
            sort_positions(s.score + t * P, s.coord + t * P, K)
        e.score = s.score[t * P]
        e.lo = 1
        e.hi = 0
        e.table = t
        e.top = 0
        heap_push(s.heap, &heap_size, e)
    # Lv et al.'s shift/expand generation yields every subset exactly once in
    # non-decreasing score. Sets holding both directions of one component are
    # skipped (L2); the pop budget bounds the work if most pops are skipped.
    max_pops = 4 * n_extra + 4 * L + 64
    while n_extra > 0 and heap_size > 0 and pops < max_pops:
        e = heap_pop(s.heap, &heap_size)
        pops += 1
        valid = True
        if tab.l2:
            for i in range(min(e.top + 1, K)):
                if has(e.lo, e.hi, i) and has(e.lo, e.hi, P - 1 - i):
                    valid = False
                    break
        if valid:
            s.probes[n].key = probe_key(tab, s, e.table, e.lo, e.hi, e.top)
            s.probes[n].table = e.table
            n += 1
            n_extra -= 1
        if e.top + 1 < P:
            t = e.table
            child = e
            put(&child.lo, &child.hi, e.top + 1)
            child.top = e.top + 1
            child.score = e.score + s.score[t * P + e.top + 1]
            heap_push(s.heap, &heap_size, child)           # expand
            drop(&child.lo, &child.hi, e.top)
            child.score = e.score - s.score[t * P + e.top] + s.score[t * P + e.top + 1]
            heap_push(s.heap, &heap_size, child)           # shift
    return n


cdef inline Py_ssize_t slot_of(uint64_t key, int bits) noexcept nogil:
    return <Py_ssize_t> (key >> (64 - bits)) if bits > 0 else 0


cdef Py_ssize_t gather(const Tables *tab, Scratch *s, Py_ssize_t n_probes) noexcept nogil:
    """Deduplicated live candidate rows of the probed buckets, into ``s.cand``."""
    cdef Py_ssize_t p, r, lo, hi, mid, start, nc = 0
    cdef const uint32_t *d
    cdef const uint64_t *keys
    cdef const int32_t *rows
    cdef uint64_t key
    cdef int32_t row
    cdef int t
    s.current += 1
    if s.current == 0:  # wrapped around after 2**32 queries: clear the old stamps
        memset(s.stamp, 0, tab.n_rows * sizeof(uint32_t))
        s.current = 1
    # Directory slots first, all prefetched, so their cache misses overlap.
    for p in range(n_probes):
        t = s.probes[p].table
        for r in range(tab.n_runs):
            prefetch(tab.dirs + t * tab.dstride + tab.dir_offsets[r]
                     + slot_of(s.probes[p].key, tab.dir_bits[r]))
    for p in range(n_probes):
        t = s.probes[p].table
        key = s.probes[p].key
        for r in range(tab.n_runs):
            d = tab.dirs + t * tab.dstride + tab.dir_offsets[r] + slot_of(key, tab.dir_bits[r])
            lo = d[0]
            hi = d[1]
            start = t * tab.stride + tab.run_starts[r]
            keys = tab.keys + start
            rows = tab.rows + start
            while lo < hi:  # first entry >= key in the slot
                mid = (lo + hi) >> 1
                if keys[mid] < key:
                    lo = mid + 1
                else:
                    hi = mid
            hi = d[1]
            while lo < hi and keys[lo] == key:
                row = rows[lo]
                if s.stamp[row] != s.current:
                    s.stamp[row] = s.current
                    if tab.alive[row]:
                        s.cand[nc] = row
                        nc += 1
                lo += 1
    return nc


# -- exact distances and the k best ------------------------------------------------

cdef inline double squared_l2(const floating *a, const floating *b, Py_ssize_t d) noexcept nogil:
    # Eight independent partial sums: the compiler can keep them in SIMD registers
    # (no -ffast-math needed), and the rounding error stays that of a pairwise sum.
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, x
    cdef Py_ssize_t i = 0
    while i + 8 <= d:
        x = a[i] - b[i]
        s0 = s0 + x * x
        x = a[i + 1] - b[i + 1]
        s1 = s1 + x * x
        x = a[i + 2] - b[i + 2]
        s2 = s2 + x * x
        x = a[i + 3] - b[i + 3]
        s3 = s3 + x * x
        x = a[i + 4] - b[i + 4]
        s4 = s4 + x * x
        x = a[i + 5] - b[i + 5]
        s5 = s5 + x * x
        x = a[i + 6] - b[i + 6]
        s6 = s6 + x * x
        x = a[i + 7] - b[i + 7]
        s7 = s7 + x * x
        i += 8
    while i < d:
        x = a[i] - b[i]
        s0 = s0 + x * x
        i += 1
    return <double> (((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)))


cdef inline double dot(const floating *a, const floating *b, Py_ssize_t d) noexcept nogil:
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= d:
        s0 = s0 + a[i] * b[i]
        s1 = s1 + a[i + 1] * b[i + 1]
        s2 = s2 + a[i + 2] * b[i + 2]
        s3 = s3 + a[i + 3] * b[i + 3]
        s4 = s4 + a[i + 4] * b[i + 4]
        s5 = s5 + a[i + 5] * b[i + 5]
        s6 = s6 + a[i + 6] * b[i + 6]
        s7 = s7 + a[i + 7] * b[i + 7]
        i += 8
    while i < d:
        s0 = s0 + a[i] * b[i]
        i += 1
    return <double> (((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)))


cdef inline bint worse(double da, int64_t ia, double db, int64_t ib) noexcept nogil:
    # Order of results: by distance, ties by id (so they do not depend on probe order).
    return da > db or (da == db and ia > ib)


cdef void best_sift_down(Scratch *s, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t child
    cdef double d = s.best_dist[i]
    cdef int64_t ident = s.best_id[i]
    cdef int32_t row = s.best_row[i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and worse(s.best_dist[child + 1], s.best_id[child + 1],
                                   s.best_dist[child], s.best_id[child]):
            child += 1
        if not worse(s.best_dist[child], s.best_id[child], d, ident):
            break
        s.best_dist[i] = s.best_dist[child]
        s.best_id[i] = s.best_id[child]
        s.best_row[i] = s.best_row[child]
        i = child
    s.best_dist[i] = d
    s.best_id[i] = ident
    s.best_row[i] = row


cdef inline void best_offer(Scratch *s, Py_ssize_t *size, Py_ssize_t k, double d,
                            int64_t ident, int32_t row) noexcept nogil:
    # A max-heap of the k best: the root is the worst kept.
    cdef Py_ssize_t i, parent
    if size[0] < k:
        i = size[0]
        size[0] += 1
        while i > 0:
            parent = (i - 1) >> 1
            if not worse(d, ident, s.best_dist[parent], s.best_id[parent]):
                break
            s.best_dist[i] = s.best_dist[parent]
            s.best_id[i] = s.best_id[parent]
            s.best_row[i] = s.best_row[parent]
            i = parent
        s.best_dist[i] = d
        s.best_id[i] = ident
        s.best_row[i] = row
    elif worse(s.best_dist[0], s.best_id[0], d, ident):
        s.best_dist[0] = d
        s.best_id[0] = ident
        s.best_row[0] = row
        best_sift_down(s, 0, k)


cdef inline void prefetch_row(const floating *x, Py_ssize_t dim) noexcept nogil:
    cdef Py_ssize_t b
    for b in range(0, dim * <Py_ssize_t> sizeof(floating), 64):
        prefetch((<const char *> x) + b)


cdef void query_one(const Tables *tab, Scratch *s, const floating *vectors,
                    const floating *q, const double *v, Py_ssize_t k, Py_ssize_t n_extra,
                    floating *out_dist, int64_t *out_id) noexcept nogil:
    cdef Py_ssize_t n_probes = make_probes(tab, s, v, n_extra)
    cdef Py_ssize_t nc = gather(tab, s, n_probes), i, size = 0, dim = tab.dim, kept
    cdef double d, inv_q = 0.0
    cdef int32_t row
    cdef int64_t tmp_id
    cdef int32_t tmp_row
    if not tab.l2:
        inv_q = 1.0 / sqrt(dot(q, q, dim))
    for i in range(min(nc, <Py_ssize_t> AHEAD)):
        prefetch_row(vectors + s.cand[i] * dim, dim)
    for i in range(nc):
        if i + AHEAD < nc:
            prefetch_row(vectors + s.cand[i + AHEAD] * dim, dim)
        row = s.cand[i]
        if tab.l2:
            d = sqrt(squared_l2(q, vectors + row * dim, dim))
        else:
            d = 1.0 - dot(q, vectors + row * dim, dim) * inv_q * tab.inv_norms[row]
            d = 0.0 if d < 0.0 else (2.0 if d > 2.0 else d)
        best_offer(s, &size, k, d, tab.row_ids[row], row)
    # Heap sort in place: ascending (distance, id).
    kept = size
    while size > 1:
        size -= 1
        d = s.best_dist[0]
        tmp_id = s.best_id[0]
        tmp_row = s.best_row[0]
        s.best_dist[0] = s.best_dist[size]
        s.best_id[0] = s.best_id[size]
        s.best_row[0] = s.best_row[size]
        s.best_dist[size] = d
        s.best_id[size] = tmp_id
        s.best_row[size] = tmp_row
        best_sift_down(s, 0, size)
    for i in range(kept):
        out_dist[i] = <floating> s.best_dist[i]
        out_id[i] = s.best_id[i]
    for i in range(kept, k):
        out_dist[i] = <floating> INFINITY
        out_id[i] = -1


# -- drivers --------------------------------------------------------------------------

cdef Tables make_tables(const uint64_t[:, ::1] keys, const int32_t[:, ::1] rows,
                        const int64_t[::1] run_starts, const int32_t[::1] dir_bits,
                        const int64_t[::1] dir_offsets, const uint32_t[:, ::1] dirs,
                        const uint8_t[::1] alive, const uint64_t[:, ::1] mult,
                        const int64_t[::1] row_ids, const double[::1] inv_norms,
                        bint l2, Py_ssize_t dim):
    cdef Tables tab
    tab.n_tables = keys.shape[0]
    tab.n_bits = mult.shape[1]
    tab.l2 = l2
    tab.dim = dim
    tab.n_runs = run_starts.shape[0] - 1
    tab.n_rows = run_starts[tab.n_runs]
    tab.stride = keys.shape[1]
    tab.dstride = dirs.shape[1]
    tab.keys = &keys[0, 0]
    tab.rows = &rows[0, 0]
    tab.run_starts = &run_starts[0]
    tab.dir_bits = &dir_bits[0]
    tab.dir_offsets = &dir_offsets[0]
    tab.dirs = &dirs[0, 0]
    tab.alive = &alive[0]
    tab.mult = &mult[0, 0]
    tab.row_ids = &row_ids[0]
    tab.inv_norms = &inv_norms[0]
    return tab


cdef void free_scratch(Scratch *s, int n) noexcept nogil:
    cdef int i
    if s == NULL:
        return
    for i in range(n):
        free(s[i].stamp)
        free(s[i].cand)
        free(s[i].probes)
        free(s[i].heap)
        free(s[i].score)
        free(s[i].coord)
        free(s[i].step)
        free(s[i].base)
        free(s[i].best_dist)
        free(s[i].best_id)
        free(s[i].best_row)
        free(s[i].tmp)
    free(s)


cdef Scratch *alloc_scratch(const Tables *tab, int n, Py_ssize_t n_extra, Py_ssize_t k) except NULL:
    """Per-thread buffers, all allocated before the parallel region (or MemoryError)."""
    cdef int i, L = tab.n_tables, P = 2 * tab.n_bits
    cdef Py_ssize_t rows = max(tab.n_rows, <Py_ssize_t> 1)
    cdef Py_ssize_t heap = L + 2 * (4 * n_extra + 4 * L + 64) + 2
    cdef Scratch *s = <Scratch *> calloc(n, sizeof(Scratch))
    cdef bint ok = s != NULL
    if ok:
        for i in range(n):
            s[i].stamp = <uint32_t *> calloc(rows, sizeof(uint32_t))
            s[i].current = 0
            s[i].cand = <int32_t *> malloc(rows * sizeof(int32_t))
            s[i].probes = <Probe *> malloc((L + n_extra) * sizeof(Probe))
            s[i].heap = <Perturbation *> malloc(heap * sizeof(Perturbation))
            s[i].score = <double *> malloc(L * P * sizeof(double))
            s[i].coord = <int32_t *> malloc(L * P * sizeof(int32_t))
            s[i].step = <int8_t *> malloc(L * P * sizeof(int8_t))
            s[i].base = <uint64_t *> malloc(L * sizeof(uint64_t))
            s[i].best_dist = <double *> malloc(max(k, 1) * sizeof(double))
            s[i].best_id = <int64_t *> malloc(max(k, 1) * sizeof(int64_t))
            s[i].best_row = <int32_t *> malloc(max(k, 1) * sizeof(int32_t))
            s[i].tmp = <double *> malloc(P * sizeof(double))
            ok = ok and not (s[i].stamp == NULL or s[i].cand == NULL or s[i].probes == NULL
                             or s[i].heap == NULL or s[i].score == NULL or s[i].coord == NULL
                             or s[i].step == NULL or s[i].base == NULL or s[i].best_dist == NULL
                             or s[i].best_id == NULL or s[i].best_row == NULL or s[i].tmp == NULL)
    if not ok:
        free_scratch(s, n)
        raise MemoryError("LSHIndex: no memory for the per-thread query buffers")
    return s


def query(const uint64_t[:, ::1] keys, const int32_t[:, ::1] rows,
          const int64_t[::1] run_starts, const int32_t[::1] dir_bits,
          const int64_t[::1] dir_offsets, const uint32_t[:, ::1] dirs,
          const uint8_t[::1] alive, const uint64_t[:, ::1] mult,
          const int64_t[::1] row_ids, const double[::1] inv_norms, bint l2,
          const floating[:, ::1] vectors, const floating[:, ::1] queries,
          const double[:, ::1] proj, Py_ssize_t n_extra,
          floating[:, ::1] out_dist, int64_t[:, ::1] out_ids, int n_threads):
    """The ``k = out_ids.shape[1]`` nearest candidates of each query, re-ranked exactly.

    ``n_extra`` multiprobe buckets per query (over all tables) besides the home
    bucket of each table. Rows with fewer candidates are padded with inf / -1.
    """
    cdef Tables tab = make_tables(keys, rows, run_starts, dir_bits, dir_offsets, dirs,
                                  alive, mult, row_ids, inv_norms, l2, vectors.shape[1])
    cdef Py_ssize_t m = queries.shape[0], k = out_ids.shape[1]
    cdef Py_ssize_t n_chunks = (m + CHUNK - 1) // CHUNK, c, q
    cdef int threads = max(1, min(n_threads, n_chunks))
    cdef Scratch *scratch
    cdef Scratch *s
    cdef Py_ssize_t width = proj.shape[1]
    if m == 0 or k == 0:
        return
    scratch = alloc_scratch(&tab, threads, n_extra, k)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=threads):
        s = &scratch[omp_get_thread_num()]
        for q in range(c * CHUNK, min(m, (c + 1) * CHUNK)):
            query_one(&tab, s, &vectors[0, 0], &queries[q, 0], &proj[q, 0], k, n_extra,
                      &out_dist[q, 0], &out_ids[q, 0])
    free_scratch(scratch, threads)


def candidates(const uint64_t[:, ::1] keys, const int32_t[:, ::1] rows,
               const int64_t[::1] run_starts, const int32_t[::1] dir_bits,
               const int64_t[::1] dir_offsets, const uint32_t[:, ::1] dirs,
               const uint8_t[::1] alive, const uint64_t[:, ::1] mult,
               const int64_t[::1] row_ids, const double[::1] inv_norms, bint l2,
               const double[:, ::1] proj, Py_ssize_t n_extra, int64_t[::1] counts, int64_t[::1] offsets,
               int64_t[::1] out, int n_threads):
    """Candidate ids of each query, in the order found (home buckets first).

    Called twice: with an empty ``out`` it only fills ``counts``; then, given the
    ``offsets`` of the running sum of counts, it writes the ids into ``out``.
    """
    cdef Tables tab
    cdef Py_ssize_t m = proj.shape[0], n_chunks = (m + CHUNK - 1) // CHUNK, c, q, i, nc, n_probes
    cdef int threads = max(1, min(n_threads, n_chunks))
    cdef Scratch *scratch
    cdef Scratch *s
    cdef bint fill = out.shape[0] > 0
    cdef int64_t *dest
    if m == 0:
        return
    tab = make_tables(keys, rows, run_starts, dir_bits, dir_offsets, dirs, alive, mult,
                      row_ids, inv_norms, l2, 0)
    scratch = alloc_scratch(&tab, threads, n_extra, 1)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=threads):
        s = &scratch[omp_get_thread_num()]
        for q in range(c * CHUNK, min(m, (c + 1) * CHUNK)):
            n_probes = make_probes(&tab, s, &proj[q, 0], n_extra)
            nc = gather(&tab, s, n_probes)
            if fill:
                dest = &out[offsets[q]]
                for i in range(nc):
                    dest[i] = tab.row_ids[s.cand[i]]
            else:
                counts[q] = nc
    free_scratch(scratch, threads)
