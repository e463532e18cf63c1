"""Compiled core of dlkernels.neighbors.LSHIndex.

The facade computes the projections of a block of points with one BLAS matmul
(float64, so that hash codes do not depend on the summation order of a BLAS
library); everything per point after that runs here, without the GIL.

Bucket store. Each table holds one entry per stored vector, kept in *runs*:
run ``r`` covers the rows ``[run_starts[r], run_starts[r+1])`` and, in each
table, holds their entries sorted by 64-bit key at the same positions. A run of
``s`` entries has a directory of ``2**B + 1`` offsets over the top ``B`` bits of
the key (``B = floor(log2 s)``): keys are outputs of a 64-bit mixer, so slots
hold about one entry each and a bucket is found with one directory read and a
binary search over a few entries, whatever the data's clustering. The entry a
query reads is one 64-bit word, ``fingerprint << 32 | row``, where the
fingerprint is the 32 key bits after the top ``B``: sorted by key means sorted
by fingerprint within a slot, and a probe costs two cache misses (directory,
entries), which ``gather`` overlaps across probes with prefetches. (Two keys
sharing slot and fingerprint, odds 2**-32, merge into one bucket: extra
candidates, never a missed one. The full keys stay in a separate array, read
only when runs are merged.)

Query. Per query: the home bucket of every table, then more buckets by
query-directed multiprobe (Lv et al., "Multi-probe LSH", VLDB 2007). A probe
perturbs a set of a table's hash components; its score is the sum of the
squared distances from the query's projections to the slot boundaries it
crosses. Lv et al. generate the sets of a table in increasing score with a
heap; here a *template* of candidate sets (positions in the table's sorted list
of single perturbations, the first sets in order of their expected score, built
once per call by that same heap algorithm) is scored with the query's actual
values in every table, and the ``n_extra`` best over all tables are probed:
the same query-directed choice within the template, without a heap operation
per probe. Candidate rows are deduplicated with a per-thread stamp array, re-ranked with exact
distances, and the ``k`` best kept in a bounded max-heap ordered by
``(distance, row)``.

Re-ranking is bound by memory traffic: a candidate's float32 vector is eight
cache lines from a random place, and a float dot product of 128 terms costs
more than the fetch. So each row also has a *sketch*: its values quantized to
8 bits between the row's own min and max, plus a header (float32 ``lo, step,
|x^|^2, err, 1/|x|, |code|`` where ``x^ = lo + step * code`` and ``err`` is
``|x - x^|``, rounded up). The query is quantized to 16-bit integers once, so
``q . code`` is an exact integer dot product (SSE2 ``pmaddwd``, 8 products an
instruction) over three cache lines. From it comes a lower bound on the true
distance (``|q - x| >= |q - x^| - err``, the query's own rounding and float
rounding accounted for). The exact distance is computed for the candidates
with the smallest bounds first, then only for those whose bound does not
exceed the k-th best exact distance so far: the result is exactly the k
nearest candidates, as if every one had been re-ranked, at about half the
cost.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, floor, nextafterf, sqrt
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from cython cimport floating

from dlkernels._lib._openmp cimport omp_get_thread_num
from dlkernels._lib._prefetch cimport prefetch, prefetch_span
from dlkernels._lib._random cimport mix64

cdef enum:
    # Queries per parallel work unit. Each query's result depends on nothing but
    # the query, so the result is the same at any thread count; chunks only keep
    # scheduling overhead low.
    CHUNK = 4
    # Candidates whose vectors are prefetched ahead of the one being re-ranked.
    AHEAD = 4
    # The same for sketch rows (three cache lines each): further ahead measured a
    # little faster than AHEAD, and no different at 16.
    SKETCH_AHEAD = 8
    # Rows read from buckets whose stamps are prefetched before they are checked.
    RAW = 256
    # Partial sums of the exact distance loops.
    LANES = 8
    # Bytes of the float32 header before the 8-bit codes of a sketch row.
    SKETCH_HEADER = 32
    # Candidates re-ranked exactly before the bounds prune the rest: at least
    # this many, and at least 2k.
    SHORTLIST = 32

# Hash components are clipped to +-2**62 before the cast to int64 (a cast of an
# out-of-range double is undefined behaviour in C); the torch path clips the same.
cdef double CLIP = 4611686018427387904.0
cdef uint64_t LOW32 = 0xFFFFFFFF


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


cdef inline double dot_planes(const double *plane, const double *x, Py_ssize_t d) noexcept nogil:
    # Four partial sums in float64 (SIMD-friendly; the order is fixed, so a point's
    # projections, hence its codes, are the same in every call and thread).
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


cdef void project(const double *planes, const double *shifts, double width, bint l2,
                  Py_ssize_t n_planes, const double *x, Py_ssize_t d, double *v) noexcept nogil:
    """Projections of one point (in float64, converted by the caller):
    ``a . x`` (cosine) or ``(a . x) / w + u`` (l2)."""
    cdef Py_ssize_t p
    for p in range(n_planes):
        v[p] = dot_planes(planes + p * d, x, d)
        if l2:
            v[p] = v[p] / width + shifts[p]


def hash_codes(const floating[:, ::1] points, const double[:, ::1] planes,
               const double[::1] shifts, double width, bint l2, const uint64_t[:, ::1] mult,
               bint store_keys, uint64_t[:, ::1] out, int n_threads):
    """Codes of each point in each table.

    Cosine: the packed sign bits (``store_keys``: their 64-bit mix, the key the
    bucket store sorts by). L2: the mixed linear combination of the bucket
    indices, which is both the public code and the store key.
    """
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], i, j
    cdef int n_tables = mult.shape[0], n_bits = mult.shape[1], t
    cdef Py_ssize_t n_planes = planes.shape[0]
    cdef uint64_t c
    cdef int threads = max(1, min(n_threads, (n + 255) // 256))
    cdef double *buf
    cdef double *v
    cdef double *xd
    if n == 0:
        return
    buf = <double *> malloc(threads * (n_planes + d) * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    for i in prange(n, nogil=True, schedule="static", num_threads=threads):
        v = buf + omp_get_thread_num() * (n_planes + d)
        xd = v + n_planes
        for j in range(d):  # once per point, not once per plane
            xd[j] = <double> points[i, j]
        project(&planes[0, 0], &shifts[0], width, l2, n_planes, xd, d, v)
        for t in range(n_tables):
            if l2:
                out[i, t] = mix64(linear_code(v + t * n_bits, &mult[t, 0], n_bits))
            else:
                c = sign_code(v + t * n_bits, n_bits)
                out[i, t] = mix64(c) if store_keys else c
    free(buf)


cdef void sketch_row(const floating *x, Py_ssize_t d, uint8_t *out) noexcept nogil:
    cdef float *head = <float *> out
    cdef uint8_t *codes = out + SKETCH_HEADER
    cdef double lo = x[0], hi = x[0], step, c, a, e, xx = 0.0, err = 0.0, norm = 0.0, cc = 0.0
    cdef float lo32, step32, err32
    cdef Py_ssize_t i
    for i in range(1, d):
        lo = x[i] if x[i] < lo else lo
        hi = x[i] if x[i] > hi else hi
    lo32 = <float> lo
    step32 = <float> ((hi - <double> lo32) / 255.0)
    step = step32
    for i in range(d):
        c = floor((<double> x[i] - <double> lo32) / step + 0.5) if step > 0 else 0.0
        c = 0.0 if c < 0.0 else (255.0 if c > 255.0 else c)
        codes[i] = <uint8_t> c
        a = <double> lo32 + step * c          # x^, exactly as the bound assumes it
        e = <double> x[i] - a
        xx += a * a
        err += e * e
        norm += <double> x[i] * <double> x[i]
        cc += c * c
    head[0] = lo32
    head[1] = step32
    head[2] = <float> xx
    # Rounded up, so that the bounds built on them stay valid.
    err32 = nextafterf(<float> sqrt(err), INFINITY)
    head[3] = err32 * <float> 1.000001
    head[4] = <float> (1.0 / sqrt(norm)) if norm > 0 else 0.0
    head[5] = nextafterf(<float> sqrt(cc), INFINITY)
    head[6] = 0.0
    head[7] = 0.0


def sketch(const floating[:, ::1] points, uint8_t[:, ::1] out, int n_threads):
    """The sketch rows of ``points`` (see the module docstring): header, then 8-bit codes."""
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], i
    if n == 0:
        return
    for i in prange(n, nogil=True, schedule="static",
                    num_threads=max(1, min(n_threads, (n + 255) // 256))):
        sketch_row(&points[i, 0], d, &out[i, 0])


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
    Py_ssize_t stride       # row stride of entries (their capacity)
    Py_ssize_t dstride      # row stride of dirs
    const uint64_t *entries # (L, stride): fingerprint << 32 | row, sorted within each run
    const int64_t *run_starts
    const int32_t *dir_bits
    const int64_t *dir_offsets
    const uint32_t *dirs
    const uint8_t *alive
    const uint64_t *mult
    const int64_t *row_ids
    const double *inv_norms # (n_rows,) 1 / |x| (cosine), for the exact distances
    const uint8_t *sketch   # (n_rows, sketch_stride): SKETCH_HEADER bytes of float32, then codes
    Py_ssize_t sketch_stride
    const double *planes    # (L*K, dim) hash projections
    const int32_t *tmpl_pos # template sets of perturbation positions, flattened
    const int32_t *tmpl_off # (n_tmpl + 1,) set j is tmpl_pos[tmpl_off[j]:tmpl_off[j+1]]
    Py_ssize_t n_tmpl
    const double *shifts    # (L*K,) l2 offsets, in units of the width
    double width

cdef struct Probe:
    uint64_t key
    int32_t table


cdef struct Heap:
    double *key
    int32_t *tag


cdef struct Span:
    Py_ssize_t at           # directory index, then entry offset of the slot
    Py_ssize_t end
    uint32_t fingerprint


cdef struct Scratch:
    uint32_t *stamp
    uint32_t current
    int32_t *cand
    Probe *probes
    double *set_score       # (L * n_tmpl,) the query's score of every template set
    int32_t *set_id         # t * n_tmpl + j
    double *score           # (L, P) single-perturbation scores, ascending per table
    int32_t *coord          # (L, P) the bit / component each position perturbs
    int8_t *step            # (L, P) L2: the +-1 step of that position
    uint64_t *base          # (L,) the query's own code (cosine) or linear sum (L2)
    Span *spans             # (n_probes * n_runs,) the directory slots of the probes
    int32_t *raw            # (RAW,) rows read from buckets, before deduplication
    double *proj            # (L*K,) the query's projections
    int16_t *q16            # (dim,) the query quantized, for the sketch dot products
    double *qd              # (dim,) the query in float64, for the projections
    double *bound           # (n_rows,) lower bound on the distance of each candidate
    Heap shortlist          # (shortlist,) the smallest bounds: (bound, candidate position)
    Heap best               # (k,) the k best so far: (distance, row)
    double *tmp             # (2 * n_bits,) sort keys


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


cdef void select_smallest(double *score, int32_t *ident, Py_ssize_t n,
                          Py_ssize_t m) noexcept nogil:
    """Reorder so that the first m entries are the m smallest by (score, id) (quickselect)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j
    cdef double ps, ts
    cdef int32_t pid, tid
    while lo < hi:
        # Median of three as pivot: sorted or constant input stays linear.
        i = lo + (hi - lo) // 2
        if score[i] < score[lo] or (score[i] == score[lo] and ident[i] < ident[lo]):
            i = lo
        elif not (score[i] < score[hi] or (score[i] == score[hi] and ident[i] < ident[hi])):
            i = hi
        ps = score[i]
        pid = ident[i]
        i = lo
        j = hi
        while i <= j:
            while score[i] < ps or (score[i] == ps and ident[i] < pid):
                i += 1
            while score[j] > ps or (score[j] == ps and ident[j] > pid):
                j -= 1
            if i <= j:
                ts = score[i]
                score[i] = score[j]
                score[j] = ts
                tid = ident[i]
                ident[i] = ident[j]
                ident[j] = tid
                i += 1
                j -= 1
        if m - 1 <= j:
            hi = j
        elif m - 1 >= i:
            lo = i
        else:
            break


cdef Py_ssize_t make_probes(const Tables *tab, Scratch *s, const double *v,
                            Py_ssize_t n_extra) noexcept nogil:
    """Fill ``s.probes`` with the home bucket of every table, then ``n_extra`` more."""
    cdef int L = tab.n_tables, K = tab.n_bits, P = 2 * K if tab.l2 else K, t, j, i
    cdef Py_ssize_t n = 0, n_sets, e, a, T = tab.n_tmpl
    cdef const double *vt
    cdef const double *sc
    cdef double f, near, total
    cdef int32_t c, ident
    cdef uint64_t code
    for t in range(L):
        vt = v + t * K
        s.base[t] = linear_code(vt, tab.mult + t * K, K) if tab.l2 else sign_code(vt, K)
        s.probes[n].key = mix64(s.base[t])
        s.probes[n].table = t
        n += 1
    if n_extra <= 0 or T == 0:
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
    # The query's score of every template set in every table; keep the best.
    n_sets = 0
    for t in range(L):
        sc = s.score + t * P
        for j in range(T):
            total = 0.0
            for a in range(tab.tmpl_off[j], tab.tmpl_off[j + 1]):
                total = total + sc[tab.tmpl_pos[a]]
            s.set_score[n_sets] = total
            s.set_id[n_sets] = <int32_t> (t * T + j)
            n_sets += 1
    if n_extra < n_sets:
        select_smallest(s.set_score, s.set_id, n_sets, n_extra)
    else:
        n_extra = n_sets
    for e in range(n_extra):
        ident = s.set_id[e]
        t = ident // T
        j = ident - t * T
        code = s.base[t]
        for a in range(tab.tmpl_off[j], tab.tmpl_off[j + 1]):
            i = t * P + tab.tmpl_pos[a]
            if tab.l2:
                code += (<uint64_t> (<int64_t> s.step[i])) * tab.mult[t * K + s.coord[i]]
            else:
                code ^= (<uint64_t> 1) << s.coord[i]
        s.probes[n].key = mix64(code)
        s.probes[n].table = t
        n += 1
    return n


cdef inline Py_ssize_t slot_of(uint64_t key, int bits) noexcept nogil:
    return <Py_ssize_t> (key >> (64 - bits)) if bits > 0 else 0


cdef inline Py_ssize_t dedup(const Tables *tab, Scratch *s, Py_ssize_t n_raw,
                            Py_ssize_t nc) noexcept nogil:
    cdef Py_ssize_t i
    cdef int32_t row
    for i in range(n_raw):
        row = s.raw[i]
        if s.stamp[row] != s.current:
            s.stamp[row] = s.current
            if tab.alive[row]:
                s.cand[nc] = row
                nc += 1
    return nc


cdef Py_ssize_t gather(const Tables *tab, Scratch *s, Py_ssize_t n_probes) noexcept nogil:
    """Deduplicated live candidate rows of the probed buckets, into ``s.cand``.

    Three passes over all probes, each prefetching what the next one reads
    (directory slots, then bucket entries, then stamps), so the cache misses of
    different probes overlap instead of queueing.
    """
    cdef Py_ssize_t p, r, n_spans = 0, i, lo, hi, mid, start, n_raw = 0, nc = 0
    cdef const uint64_t *entries
    cdef uint64_t key
    cdef uint32_t fp
    cdef int bits
    cdef Span *sp
    s.current += 1
    if s.current == 0:  # wrapped around after 2**32 queries: clear the old stamps
        memset(s.stamp, 0, tab.n_rows * sizeof(uint32_t))
        s.current = 1
    for p in range(n_probes):
        key = s.probes[p].key
        for r in range(tab.n_runs):
            bits = tab.dir_bits[r]
            sp = &s.spans[n_spans]
            n_spans += 1
            sp.at = (s.probes[p].table * tab.dstride + tab.dir_offsets[r]
                     + (<Py_ssize_t> (key >> (64 - bits)) if bits > 0 else 0))
            sp.end = s.probes[p].table * tab.stride + tab.run_starts[r]  # entries of the run
            sp.fingerprint = <uint32_t> ((key << bits) >> 32)
            prefetch(tab.dirs + sp.at)
    for i in range(n_spans):
        sp = &s.spans[i]
        start = sp.end
        lo = tab.dirs[sp.at]
        hi = tab.dirs[sp.at + 1]
        sp.at = start + lo
        sp.end = start + hi
        if lo < hi:
            prefetch(tab.entries + sp.at)
    for i in range(n_spans):
        sp = &s.spans[i]
        lo = sp.at
        hi = sp.end
        fp = sp.fingerprint
        entries = tab.entries
        while lo < hi:  # first entry of the slot with fingerprint >= fp
            mid = (lo + hi) >> 1
            if <uint32_t> (entries[mid] >> 32) < fp:
                lo = mid + 1
            else:
                hi = mid
        while lo < sp.end and <uint32_t> (entries[lo] >> 32) == fp:
            s.raw[n_raw] = <int32_t> (entries[lo] & LOW32)
            prefetch(s.stamp + s.raw[n_raw])
            n_raw += 1
            lo += 1
            if n_raw == RAW:
                nc = dedup(tab, s, n_raw, nc)
                n_raw = 0
    return dedup(tab, s, n_raw, nc)


# -- exact distances and the k best ------------------------------------------------

cdef inline double lanes_total(const floating *acc) noexcept nogil:
    # Pairwise, in a fixed order.
    return <double> (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])))


cdef inline double squared_l2(const floating *a, const floating *b, Py_ssize_t d) noexcept nogil:
    # LANES independent partial sums: the compiler keeps them in SIMD registers
    # (no -ffast-math needed), and the rounding error stays that of a pairwise sum.
    cdef floating acc[LANES]
    cdef floating x
    cdef Py_ssize_t i = 0, j
    for j in range(LANES):
        acc[j] = 0
    while i + LANES <= d:
        for j in range(LANES):
            x = a[i + j] - b[i + j]
            acc[j] = acc[j] + x * x
        i += LANES
    while i < d:
        x = a[i] - b[i]
        acc[0] = acc[0] + x * x
        i += 1
    return lanes_total(acc)


cdef inline double dot(const floating *a, const floating *b, Py_ssize_t d) noexcept nogil:
    cdef floating acc[LANES]
    cdef Py_ssize_t i = 0, j
    for j in range(LANES):
        acc[j] = 0
    while i + LANES <= d:
        for j in range(LANES):
            acc[j] = acc[j] + a[i + j] * b[i + j]
        i += LANES
    while i < d:
        acc[0] = acc[0] + a[i] * b[i]
        i += 1
    return lanes_total(acc)


cdef inline bint worse(double ka, int32_t ta, double kb, int32_t tb) noexcept nogil:
    # Heap order: by key, ties by tag. For results the key is the distance and the
    # tag the row (insertion order), so ties do not depend on the order found.
    return ka > kb or (ka == kb and ta > tb)


cdef void heap_sift_down(Heap h, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t child
    cdef double key = h.key[i]
    cdef int32_t tag = h.tag[i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and worse(h.key[child + 1], h.tag[child + 1], h.key[child], h.tag[child]):
            child += 1
        if not worse(h.key[child], h.tag[child], key, tag):
            break
        h.key[i] = h.key[child]
        h.tag[i] = h.tag[child]
        i = child
    h.key[i] = key
    h.tag[i] = tag


cdef inline void heap_offer(Heap h, Py_ssize_t *size, Py_ssize_t capacity, double key,
                            int32_t tag) noexcept nogil:
    """Keep the ``capacity`` smallest (key, tag) pairs: a max-heap, its root the worst kept."""
    cdef Py_ssize_t i, parent
    if size[0] < capacity:
        i = size[0]
        size[0] += 1
        while i > 0:
            parent = (i - 1) >> 1
            if not worse(key, tag, h.key[parent], h.tag[parent]):
                break
            h.key[i] = h.key[parent]
            h.tag[i] = h.tag[parent]
            i = parent
        h.key[i] = key
        h.tag[i] = tag
    elif worse(h.key[0], h.tag[0], key, tag):
        h.key[0] = key
        h.tag[0] = tag
        heap_sift_down(h, 0, capacity)


cdef inline int32_t dot_codes(const int16_t *q, const uint8_t *c, Py_ssize_t d) noexcept nogil:
    # Exact: the caller keeps |q| small enough that no partial sum overflows.
    # An integer reduction may be reordered, so compilers vectorize it (pmaddwd).
    cdef int32_t total = 0
    cdef Py_ssize_t i
    for i in range(d):
        total += <int32_t> q[i] * <int32_t> c[i]
    return total


cdef inline double exact_distance(const Tables *tab, const floating *q, const floating *x,
                                  double inv_q, double inv_x) noexcept nogil:
    # Rounded to the output dtype before ranking, so that two rows reported
    # with equal distances are always ranked by insertion order.
    cdef double d
    if tab.l2:
        return <double> <floating> sqrt(squared_l2(q, x, tab.dim))
    d = 1.0 - dot(q, x, tab.dim) * inv_q * inv_x
    return 0.0 if d < 0.0 else (2.0 if d > 2.0 else <double> <floating> d)


cdef void query_one(const Tables *tab, Scratch *s, const floating *vectors,
                    const floating *q, Py_ssize_t k, Py_ssize_t n_extra,
                    floating *out_dist, int64_t *out_id) noexcept nogil:
    cdef Py_ssize_t n_probes, nc, i, j, size = 0, n_short = 0, m, dim = tab.dim, kept
    cdef Py_ssize_t stride = tab.sketch_stride
    cdef double d, qq = 0.0, qsum = 0.0, qabs = 0.0, norm_q, inv_q = 0.0, lo, step, xx, err
    cdef double qx, slack, a2, bound, tau, qmax, scale, qerr
    cdef const float *head
    cdef int32_t row
    for i in range(dim):
        s.qd[i] = <double> q[i]
    project(tab.planes, tab.shifts, tab.width, tab.l2, tab.n_tables * tab.n_bits, s.qd, dim, s.proj)
    n_probes = make_probes(tab, s, s.proj, n_extra)
    nc = gather(tab, s, n_probes)
    for i in range(dim):
        qq += <double> q[i] * <double> q[i]
        qsum += <double> q[i]
        d = <double> q[i] if q[i] >= 0 else -<double> q[i]
        qabs = d if d > qabs else qabs
    # q = scale * q16 + e with |q16| <= qmax, where dim * qmax * 255 < 2**31.
    qmax = min(32767.0, floor(2147483647.0 / (255.0 * dim)))
    scale = qabs / qmax if qabs > 0 else 1.0
    qerr = 0.0
    for i in range(dim):
        s.q16[i] = <int16_t> floor(<double> q[i] / scale + 0.5)
        d = <double> q[i] - scale * s.q16[i]
        qerr += d * d
    qerr = sqrt(qerr)
    norm_q = sqrt(qq)
    if not tab.l2:
        inv_q = 1.0 / norm_q
    # 1. A lower bound on every candidate's distance from its sketch, keeping
    #    the shortlist of the smallest.
    m = max(2 * k, <Py_ssize_t> SHORTLIST)
    for i in range(min(nc, <Py_ssize_t> SKETCH_AHEAD)):
        prefetch_span(tab.sketch + s.cand[i] * stride, stride)
    for i in range(nc):
        if i + SKETCH_AHEAD < nc:
            prefetch_span(tab.sketch + s.cand[i + SKETCH_AHEAD] * stride, stride)
        row = s.cand[i]
        head = <const float *> (tab.sketch + row * stride)
        lo = head[0]
        step = head[1]
        xx = head[2]
        err = head[3]
        # q . x^ = lo * sum(q) + step * (scale * (q16 . code) + e . code), with
        # |e . code| <= |e| |code|; then slack for float rounding (float32 header
        # values, double sums), far above that error, far below distance gaps.
        qx = lo * qsum + step * scale * dot_codes(s.q16, <const uint8_t *> head + SKETCH_HEADER,
                                                  dim)
        slack = (step * qerr * head[5]
                 + 1e-6 * (qq + xx + (lo if lo >= 0 else -lo) * (qsum if qsum >= 0 else -qsum)))
        if tab.l2:
            a2 = qq - 2.0 * qx + xx - 2.0 * slack
            bound = (sqrt(a2) if a2 > 0 else 0.0) - err
        else:
            bound = 1.0 - (qx + slack + norm_q * err) * inv_q * head[4] - 1e-6
        s.bound[i] = bound
        heap_offer(s.shortlist, &n_short, m, bound, <int32_t> i)
    # 2. Exact distances of the shortlist.
    for j in range(min(n_short, <Py_ssize_t> AHEAD)):
        prefetch_span(vectors + s.cand[s.shortlist.tag[j]] * dim, dim * sizeof(floating))
    for j in range(n_short):
        if j + AHEAD < n_short:
            prefetch_span(vectors + s.cand[s.shortlist.tag[j + AHEAD]] * dim,
                          dim * sizeof(floating))
        i = s.shortlist.tag[j]
        row = s.cand[i]
        d = exact_distance(tab, q, vectors + row * dim, inv_q, tab.inv_norms[row])
        heap_offer(s.best, &size, k, d, row)
        s.bound[i] = INFINITY
    # 3. Exact distances of the others whose bound does not rule them out. (With
    #    fewer than k found, the shortlist held every candidate: none is left.)
    tau = s.best.key[0] * (1.0 + 1e-6) + 1e-12 if size == k else -INFINITY
    for i in range(nc):
        if s.bound[i] <= tau:
            row = s.cand[i]
            d = exact_distance(tab, q, vectors + row * dim, inv_q, tab.inv_norms[row])
            heap_offer(s.best, &size, k, d, row)
            if size == k:
                tau = s.best.key[0] * (1.0 + 1e-6) + 1e-12
    # Heap sort in place: ascending (distance, row).
    kept = size
    while size > 1:
        size -= 1
        d = s.best.key[0]
        row = s.best.tag[0]
        s.best.key[0] = s.best.key[size]
        s.best.tag[0] = s.best.tag[size]
        s.best.key[size] = d
        s.best.tag[size] = row
        heap_sift_down(s.best, 0, size)
    for i in range(kept):
        out_dist[i] = <floating> s.best.key[i]
        out_id[i] = tab.row_ids[s.best.tag[i]]
    for i in range(kept, k):
        out_dist[i] = <floating> INFINITY
        out_id[i] = -1


# -- drivers --------------------------------------------------------------------------

cdef Tables make_tables(const uint64_t[:, ::1] entries,
                        const int64_t[::1] run_starts, const int32_t[::1] dir_bits,
                        const int64_t[::1] dir_offsets, const uint32_t[:, ::1] dirs,
                        const uint8_t[::1] alive, const uint64_t[:, ::1] mult,
                        const int64_t[::1] row_ids, const double[::1] inv_norms,
                        const uint8_t[:, ::1] sketch, const double[:, ::1] planes,
                        const double[::1] shifts, double width,
                        const int32_t[::1] tmpl_pos, const int32_t[::1] tmpl_off, bint l2):
    cdef Tables tab
    tab.n_tables = entries.shape[0]
    tab.n_bits = mult.shape[1]
    tab.l2 = l2
    tab.dim = planes.shape[1]
    tab.n_runs = run_starts.shape[0] - 1
    tab.n_rows = run_starts[tab.n_runs]
    tab.stride = entries.shape[1]
    tab.dstride = dirs.shape[1]
    tab.entries = &entries[0, 0]
    tab.run_starts = &run_starts[0]
    tab.dir_bits = &dir_bits[0]
    tab.dir_offsets = &dir_offsets[0]
    tab.dirs = &dirs[0, 0]
    tab.alive = &alive[0]
    tab.mult = &mult[0, 0]
    tab.row_ids = &row_ids[0]
    tab.inv_norms = &inv_norms[0]
    tab.sketch = &sketch[0, 0]
    tab.sketch_stride = sketch.shape[1]
    tab.planes = &planes[0, 0]
    tab.shifts = &shifts[0]
    tab.width = width
    tab.tmpl_pos = &tmpl_pos[0]
    tab.tmpl_off = &tmpl_off[0]
    tab.n_tmpl = tmpl_off.shape[0] - 1
    return tab


cdef void free_scratch(Scratch *s, int n) noexcept nogil:
    cdef int i
    if s == NULL:
        return
    for i in range(n):
        free(s[i].stamp)
        free(s[i].cand)
        free(s[i].probes)
        free(s[i].set_score)
        free(s[i].set_id)
        free(s[i].score)
        free(s[i].coord)
        free(s[i].step)
        free(s[i].base)
        free(s[i].spans)
        free(s[i].raw)
        free(s[i].proj)
        free(s[i].q16)
        free(s[i].qd)
        free(s[i].bound)
        free(s[i].shortlist.key)
        free(s[i].shortlist.tag)
        free(s[i].best.key)
        free(s[i].best.tag)
        free(s[i].tmp)
    free(s)


cdef Scratch *alloc_scratch(const Tables *tab, int n, Py_ssize_t n_extra, Py_ssize_t k) except NULL:
    """Per-thread buffers, all allocated before the parallel region (or MemoryError)."""
    cdef int i, L = tab.n_tables, P = 2 * tab.n_bits
    cdef Py_ssize_t rows = max(tab.n_rows, <Py_ssize_t> 1)
    cdef Py_ssize_t n_sets = max(L * tab.n_tmpl, <Py_ssize_t> 1)
    cdef Py_ssize_t shortlist = max(2 * k, <Py_ssize_t> SHORTLIST)
    cdef Scratch *s = <Scratch *> calloc(n, sizeof(Scratch))
    cdef bint ok = s != NULL
    if ok:
        for i in range(n):
            s[i].stamp = <uint32_t *> calloc(rows, sizeof(uint32_t))
            s[i].current = 0
            s[i].cand = <int32_t *> malloc(rows * sizeof(int32_t))
            s[i].probes = <Probe *> malloc((L + min(n_extra, n_sets)) * sizeof(Probe))
            s[i].set_score = <double *> malloc(n_sets * sizeof(double))
            s[i].set_id = <int32_t *> malloc(n_sets * sizeof(int32_t))
            s[i].score = <double *> malloc(L * P * sizeof(double))
            s[i].coord = <int32_t *> malloc(L * P * sizeof(int32_t))
            s[i].step = <int8_t *> malloc(L * P * sizeof(int8_t))
            s[i].base = <uint64_t *> malloc(L * sizeof(uint64_t))
            s[i].spans = <Span *> malloc(max(tab.n_runs, <Py_ssize_t> 1) * (L + min(n_extra, n_sets))
                                         * sizeof(Span))
            s[i].raw = <int32_t *> malloc(RAW * sizeof(int32_t))
            s[i].proj = <double *> malloc(L * tab.n_bits * sizeof(double))
            s[i].q16 = <int16_t *> malloc(max(tab.dim, <Py_ssize_t> 1) * sizeof(int16_t))
            s[i].qd = <double *> malloc(max(tab.dim, <Py_ssize_t> 1) * sizeof(double))
            s[i].bound = <double *> malloc(rows * sizeof(double))
            s[i].shortlist.key = <double *> malloc(shortlist * sizeof(double))
            s[i].shortlist.tag = <int32_t *> malloc(shortlist * sizeof(int32_t))
            s[i].best.key = <double *> malloc(max(k, 1) * sizeof(double))
            s[i].best.tag = <int32_t *> malloc(max(k, 1) * sizeof(int32_t))
            s[i].tmp = <double *> malloc(P * sizeof(double))
            ok = ok and not (
                s[i].stamp == NULL or s[i].cand == NULL or s[i].probes == NULL
                or s[i].set_score == NULL or s[i].set_id == NULL or s[i].score == NULL
                or s[i].coord == NULL or s[i].step == NULL or s[i].base == NULL
                or s[i].spans == NULL or s[i].raw == NULL or s[i].proj == NULL
                or s[i].q16 == NULL or s[i].qd == NULL or s[i].bound == NULL or s[i].tmp == NULL
                or s[i].shortlist.key == NULL or s[i].shortlist.tag == NULL
                or s[i].best.key == NULL or s[i].best.tag == NULL)
    if not ok:
        free_scratch(s, n)
        raise MemoryError("LSHIndex: no memory for the per-thread query buffers")
    return s


def query(const uint64_t[:, ::1] entries,
          const int64_t[::1] run_starts, const int32_t[::1] dir_bits,
          const int64_t[::1] dir_offsets, const uint32_t[:, ::1] dirs,
          const uint8_t[::1] alive, const uint64_t[:, ::1] mult,
          const int64_t[::1] row_ids, const double[::1] inv_norms, const uint8_t[:, ::1] sketch,
          const double[:, ::1] planes, const double[::1] shifts, double width,
          const int32_t[::1] tmpl_pos, const int32_t[::1] tmpl_off, bint l2,
          const floating[:, ::1] vectors, const floating[:, ::1] queries, Py_ssize_t n_extra,
          floating[:, ::1] out_dist, int64_t[:, ::1] out_ids, int n_threads):
    """The ``k = out_ids.shape[1]`` nearest candidates of each query, re-ranked exactly.

    ``n_extra`` multiprobe buckets per query (the best over all tables of the
    template sets ``tmpl_pos`` / ``tmpl_off``) besides the home bucket of each table.
    Rows with fewer candidates are padded with inf / -1.
    """
    cdef Tables tab = make_tables(entries, run_starts, dir_bits, dir_offsets, dirs,
                                  alive, mult, row_ids, inv_norms, sketch, planes, shifts, width,
                                  tmpl_pos, tmpl_off, l2)
    cdef Py_ssize_t m = queries.shape[0], k = out_ids.shape[1]
    cdef Py_ssize_t n_chunks = (m + CHUNK - 1) // CHUNK, c, q
    cdef int threads = max(1, min(n_threads, n_chunks))
    cdef Scratch *scratch
    cdef Scratch *s
    if m == 0 or k == 0:
        return
    scratch = alloc_scratch(&tab, threads, n_extra, k)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=threads):
        s = &scratch[omp_get_thread_num()]
        for q in range(c * CHUNK, min(m, (c + 1) * CHUNK)):
            query_one(&tab, s, &vectors[0, 0], &queries[q, 0], k, n_extra,
                      &out_dist[q, 0], &out_ids[q, 0])
    free_scratch(scratch, threads)


def candidates(const uint64_t[:, ::1] entries,
               const int64_t[::1] run_starts, const int32_t[::1] dir_bits,
               const int64_t[::1] dir_offsets, const uint32_t[:, ::1] dirs,
               const uint8_t[::1] alive, const uint64_t[:, ::1] mult,
               const int64_t[::1] row_ids, const double[::1] inv_norms,
               const uint8_t[:, ::1] sketch,
               const double[:, ::1] planes, const double[::1] shifts, double width,
               const int32_t[::1] tmpl_pos, const int32_t[::1] tmpl_off, bint l2,
               const floating[:, ::1] queries, Py_ssize_t n_extra, int64_t[::1] counts, int64_t[::1] offsets,
               int64_t[::1] out, int n_threads):
    """Candidate ids of each query, in the order found (home buckets first).

    Called twice: with an empty ``out`` it only fills ``counts``; then, given the
    ``offsets`` of the running sum of counts, it writes the ids into ``out``.
    """
    cdef Tables tab
    cdef Py_ssize_t m = queries.shape[0], n_chunks = (m + CHUNK - 1) // CHUNK, c, q, i, nc, n_probes
    cdef int threads = max(1, min(n_threads, n_chunks))
    cdef Scratch *scratch
    cdef Scratch *s
    cdef bint fill = out.shape[0] > 0
    cdef int64_t *dest
    if m == 0:
        return
    tab = make_tables(entries, run_starts, dir_bits, dir_offsets, dirs, alive, mult,
                      row_ids, inv_norms, sketch, planes, shifts, width, tmpl_pos, tmpl_off, l2)
    scratch = alloc_scratch(&tab, threads, n_extra, 1)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=threads):
        s = &scratch[omp_get_thread_num()]
        for q in range(c * CHUNK, min(m, (c + 1) * CHUNK)):
            for i in range(tab.dim):
                s.qd[i] = <double> queries[q, i]
            project(tab.planes, tab.shifts, tab.width, tab.l2, tab.n_tables * tab.n_bits,
                    s.qd, tab.dim, s.proj)
            n_probes = make_probes(&tab, s, s.proj, n_extra)
            nc = gather(&tab, s, n_probes)
            if fill:
                dest = &out[offsets[q]]
                for i in range(nc):
                    dest[i] = tab.row_ids[s.cand[i]]
            else:
                counts[q] = nc
    free_scratch(scratch, threads)
