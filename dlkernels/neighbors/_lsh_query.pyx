"""Compiled queries of dlkernels.neighbors.LSHIndex: re-ranking and the drivers.

The probes and candidates of a query are in _lsh_probe.pxd, the shared state in
_lsh_state.pxd, the arithmetic shared with hashing in _lsh_kernels.pxd.

Re-ranking is bound by memory traffic: a candidate's float32 vector is several
cache lines from a random place. So each row also has a *sketch*: the
coordinates z of the row (of the unit vector for cosine), less a mean, in the
leading principal directions of the data (k-means trees; the coordinates
themselves for random hashing), quantized to 8 bits between the row's own
extremes, with a float32 header (``lo, step, |z^|^2, err, rho, |code|, |u|``:
``z^ = lo + step * code`` is the rounded z, ``err = |z - z^|`` rounded up, and
``rho`` the length of what the directions leave out). The query's z is
quantized to 16-bit integers once, so ``z_q . code`` is an exact integer dot
product. With it, ``|q - x|^2 >= (|z_q - z^| - err)^2 + (rho_q - rho_x)^2`` up to
float rounding, which is accounted for. The exact distance is computed for the
candidates of smallest estimate first, then only for those whose bound does not
exceed the k-th best exact distance so far: the result is exactly the k nearest
candidates, as if every one had been re-ranked.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, floor, sqrt
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from cython cimport floating

from dlkernels._lib._openmp cimport omp_get_thread_num, threads_for
from dlkernels._lib._prefetch cimport prefetch_span
from dlkernels.neighbors._lsh_kernels cimport dots, sketch_bounds
from dlkernels.neighbors._lsh_probe cimport forget, gather, make_probes
from dlkernels._lib._heap cimport heap_offer, heap_sort
from dlkernels.neighbors._lsh_state cimport (
    BATCH,
    BLOCK,
    RAW,
    RANDOM,
    TREE,
    Family,
    Probe,
    Scratch,
    Span,
    Store,
)

cdef enum:
    # Queries per parallel work unit. Each query's result depends on nothing but
    # the query, so the result is the same at any thread count.
    CHUNK = 4
    # Candidates whose vectors are prefetched ahead of the one being re-ranked.
    AHEAD = 4
    # Partial sums of the exact distance loops.
    LANES = 8
    # Candidates re-ranked exactly before the bounds prune the rest: k and this many.
    SHORTLIST = 6
    # Rows per pass of the exact scan (their sketches stay in cache for the block).
    SCAN_CHUNK = 2048


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


cdef inline double exact_distance(const Store *st, const floating *q, const floating *x,
                                  double inv_q, double inv_x) noexcept nogil:
    # Rounded to the output dtype before ranking, so that two rows reported
    # with equal distances are always ranked by insertion order.
    cdef double d
    if st.l2:
        return <double> <floating> sqrt(squared_l2(q, x, st.dim))
    d = 1.0 - dot(q, x, st.dim) * inv_q * inv_x
    return 0.0 if d < 0.0 else (2.0 if d > 2.0 else <double> <floating> d)


cdef void prepare(const Store *st, const floating *q, Scratch *s, int16_t *q16,
                  double *p) noexcept nogil:
    """The query's sketch coordinates z quantized to 16 bits (q16) and what the
    bounds need: p = (scale, qerr, |z|^2, sum z, rho, |u|, |mean|, cosine, 1 / |q|),
    where z = scale * q16 + e, |e| = qerr."""
    cdef Py_ssize_t i, dim = st.dim, ns = st.s
    cdef double d, qabs = 0.0, qmax, scale, qerr = 0.0, norm = 0.0, ww = 0.0, zz = 0.0
    cdef double zsum = 0.0, unit = 1.0
    cdef float *w = s.qz
    cdef float *z = s.qz + dim
    for i in range(dim):
        norm += <double> q[i] * <double> q[i]
    if st.normalize:
        unit = 1.0 / sqrt(norm) if norm > 0 else 0.0
    for i in range(dim):
        w[i] = <float> (<double> q[i] * unit) - st.mean[i]
        ww += <double> w[i] * <double> w[i]
    if st.basis != NULL:
        dots(st.basis, ns, w, dim, z)
    else:
        for i in range(dim):
            z[i] = w[i]
    for i in range(ns):
        zz += <double> z[i] * <double> z[i]
        zsum += <double> z[i]
        d = <double> z[i] if z[i] >= 0 else -<double> z[i]
        qabs = d if d > qabs else qabs
    # |q16| <= qmax, where s * qmax * 255 < 2**31: the integer dot cannot overflow.
    qmax = min(32767.0, floor(2147483647.0 / (255.0 * ns)))
    scale = qabs / qmax if qabs > 0 else 1.0
    for i in range(ns):
        q16[i] = <int16_t> floor(<double> z[i] / scale + 0.5)
        d = <double> z[i] - scale * q16[i]
        qerr += d * d
    p[0] = scale
    p[1] = sqrt(qerr) * (1.0 + 1e-6)
    p[2] = zz
    p[3] = zsum
    p[4] = sqrt(ww - zz) if ww > zz else 0.0
    p[5] = sqrt(norm) * unit
    p[6] = st.mean_norm
    p[7] = 0.0 if st.l2 else 1.0
    p[8] = 0.0 if st.l2 else unit


cdef inline int64_t row_tag(const Store *st, int32_t row) noexcept nogil:
    # The heaps of the k best break distance ties by tag: the row's insertion order
    # above its number, so equal distances rank by insertion order and the row
    # comes back from the low 32 bits. seq < 2**31: the store numbers its rows
    # 0, 1, ... again when it compacts, so seq < n_rows <= MAX_ROWS.
    return (st.seq[row] << 32) | row


cdef inline int32_t tag_row(int64_t tag) noexcept nogil:
    return <int32_t> (tag & <int64_t> 0xFFFFFFFF)


cdef inline double tau_of(const double *key, Py_ssize_t size, Py_ssize_t k) noexcept nogil:
    # Candidates whose bound exceeds this cannot enter the k best (rounding margin).
    return key[0] * (1.0 + 1e-6) + 1e-12 if size == k else INFINITY


cdef inline double reach(const Store *st, const double *p, double tau) noexcept nogil:
    """The k-th distance ``tau`` as a length between sketch vectors, widened by the
    rounding margins common to every row: a row can only beat ``tau`` if its
    bound length is at most this plus its own margin w."""
    if tau == INFINITY:
        return INFINITY
    if not st.l2:
        tau = sqrt(2.0 * tau)   # 1 - cos = |u_q - u_x|^2 / 2 between unit vectors
    return (tau + 1e-6 * (p[5] + 2.0 * p[6])) / (1.0 - 1e-5)


cdef inline bint may_beat(const float *sk, Py_ssize_t n, Py_ssize_t i, double t) noexcept nogil:
    """Whether row ``i`` of the sketch bounds ``sk`` (a, err, r, w arrays of n) can be
    within ``t`` (see reach): sqrt(d^2 + r^2) <= t + w with d = sqrt(a) - err, made
    square-root free by relaxing sqrt(T^2 - r^2) to T - r^2 / (2 T), which is larger."""
    cdef double big_t = t + sk[3 * n + i], r = sk[2 * n + i], thr
    if big_t == INFINITY:
        return True
    thr = big_t - r * r / (2.0 * big_t) + sk[n + i]
    return thr >= 0.0 and sk[i] <= thr * thr


cdef void write_best(const Store *st, double *key, int64_t *tag, Py_ssize_t size,
                     Py_ssize_t k, floating *out_dist, int64_t *out_id) noexcept nogil:
    cdef Py_ssize_t i
    heap_sort(key, tag, size)
    for i in range(size):
        out_dist[i] = <floating> key[i]
        out_id[i] = st.row_ids[tag_row(tag[i])]
    for i in range(size, k):
        out_dist[i] = <floating> INFINITY
        out_id[i] = -1


cdef Py_ssize_t rerank(const Store *st, Scratch *s, const floating *vectors, const floating *q,
                       Py_ssize_t k, const int32_t *cand, Py_ssize_t nc,
                       Py_ssize_t *size) noexcept nogil:
    """The k nearest of the ``nc`` candidate rows ``cand``, exactly, into ``s.best_key``/``best_tag``
    (``size`` of them); returns the number of exact distances computed."""
    cdef Py_ssize_t i, j, m, dim = st.dim, n_exact, n_short = 0
    cdef double d, t
    cdef int32_t row
    size[0] = 0
    if nc == 0:
        return 0
    # 1. What bounds every candidate's distance, from its sketch.
    prepare(st, q, s, s.q16, s.qp)
    sketch_bounds(st.sketch, st.sketch_stride, st.s, cand, nc, s.q16, s.qp, s.sk)
    # 2. Exact distances of the shortlist, the candidates of smallest estimate (a
    #    bounded max-heap: most candidates fail one comparison with its root).
    m = min(nc, k + SHORTLIST)
    for i in range(nc):
        heap_offer(s.short_key, s.short_pos, &n_short, m, <double> s.sk[i], <int32_t> i)
    for j in range(min(m, <Py_ssize_t> AHEAD)):
        prefetch_span(vectors + cand[s.short_pos[j]] * dim, dim * sizeof(floating))
    for j in range(m):
        if j + AHEAD < m:
            prefetch_span(vectors + cand[s.short_pos[j + AHEAD]] * dim,
                          dim * sizeof(floating))
        i = s.short_pos[j]
        row = cand[i]
        d = exact_distance(st, q, vectors + row * dim, s.qp[8], st.inv_norms[row])
        heap_offer(s.best_key, s.best_tag, size, k, d, row_tag(st, row))
        s.sk[i] = INFINITY      # done
    n_exact = m
    # 3. Exact distances of the others whose bound does not rule them out. (With
    #    fewer than k found, every candidate was in the shortlist: none is left.)
    t = reach(st, s.qp, tau_of(s.best_key, size[0], k))
    for i in range(nc):
        if s.sk[i] != INFINITY and may_beat(s.sk, nc, i, t):
            row = cand[i]
            d = exact_distance(st, q, vectors + row * dim, s.qp[8], st.inv_norms[row])
            n_exact += 1
            heap_offer(s.best_key, s.best_tag, size, k, d, row_tag(st, row))
            t = reach(st, s.qp, tau_of(s.best_key, size[0], k))
    return n_exact


cdef void scan_block(const Store *st, Scratch *s, const floating *vectors,
                     const floating *queries, Py_ssize_t n_queries, Py_ssize_t k,
                     const int32_t *rows, Py_ssize_t n_rows) noexcept nogil:
    """Complete the k best of ``n_queries`` consecutive queries (their heaps
    ``s.block_key``/``block_tag``, seeded by a probed query, rows marked in their bitsets) over
    every row. Rows go in chunks that stay in cache while each query of the block
    bounds them."""
    cdef Py_ssize_t b, i, c0, nchunk, dim = st.dim, words = (st.n_rows + 63) // 64
    cdef double t
    cdef int32_t row
    cdef const floating *q
    for b in range(n_queries):
        prepare(st, queries + b * dim, s, s.block_q16 + b * st.s, s.block_qp[b])
    c0 = 0
    while c0 < n_rows:
        nchunk = min(n_rows - c0, <Py_ssize_t> SCAN_CHUNK)
        for b in range(n_queries):
            q = queries + b * dim
            sketch_bounds(st.sketch, st.sketch_stride, st.s, rows + c0, nchunk,
                          s.block_q16 + b * st.s, s.block_qp[b], s.sk)
            t = reach(st, s.block_qp[b], tau_of(s.block_key[b], s.block_size[b], k))
            for i in range(nchunk):
                row = rows[c0 + i]
                if may_beat(s.sk, nchunk, i, t) and not (
                        s.block_seen[b * words + (row >> 6)] & ((<uint64_t> 1) << (row & 63))):
                    heap_offer(s.block_key[b], s.block_tag[b], &s.block_size[b], k,
                               exact_distance(st, q, vectors + row * dim, s.block_qp[b][8],
                                              st.inv_norms[row]),
                               row_tag(st, row))
                    t = reach(st, s.block_qp[b], tau_of(s.block_key[b], s.block_size[b], k))
        c0 += nchunk


cdef inline Py_ssize_t candidates_of(const Store *st, const Family *f, Scratch *s,
                                    const floating *q, Py_ssize_t n_extra,
                                    Py_ssize_t max_candidates) noexcept nogil:
    """Probe the buckets of query ``q`` and gather its candidates into ``s.cand``
    (``s.n_used`` buckets looked up); returns their number."""
    cdef Py_ssize_t i
    for i in range(st.dim):
        s.qd[i] = <double> q[i]
    return gather(st, s, make_probes(f, s, st.dim, n_extra), max_candidates, &s.n_used)


# -- drivers --------------------------------------------------------------------

cdef Store make_store(const uint64_t[:, ::1] entries, const int64_t[::1] run_starts,
                      const int32_t[::1] dir_bits, const int64_t[::1] dir_offsets,
                      const uint32_t[:, ::1] dirs, const uint8_t[::1] alive,
                      const int64_t[::1] row_ids, const int64_t[::1] seq,
                      const double[::1] inv_norms, const uint8_t[:, ::1] sketch,
                      const float[::1] mean, const float[:, ::1] basis, bint normalize, bint l2):
    cdef Store st
    cdef Py_ssize_t i
    st.n_tables = entries.shape[0]
    st.dim = mean.shape[0]
    st.l2 = l2
    st.n_runs = run_starts.shape[0] - 1
    st.n_rows = run_starts[st.n_runs]
    st.stride = entries.shape[1]
    st.dstride = dirs.shape[1]
    st.entries = &entries[0, 0]
    st.run_starts = &run_starts[0]
    st.dir_bits = &dir_bits[0]
    st.dir_offsets = &dir_offsets[0]
    st.dirs = &dirs[0, 0]
    st.alive = &alive[0]
    st.row_ids = &row_ids[0]
    st.seq = &seq[0]
    st.inv_norms = &inv_norms[0]
    st.sketch = &sketch[0, 0]
    st.sketch_stride = sketch.shape[1]
    st.s = basis.shape[0] if basis.shape[0] else st.dim
    st.basis = &basis[0, 0] if basis.shape[0] else NULL
    st.mean = &mean[0]
    st.mean_norm = 0.0
    for i in range(st.dim):
        st.mean_norm += <double> mean[i] * <double> mean[i]
    st.mean_norm = sqrt(st.mean_norm)
    st.normalize = normalize
    return st


cdef Family random_family(const double[:, ::1] planes, const double[::1] shifts, double width,
                          const uint64_t[:, ::1] mult, const int32_t[::1] tmpl_pos,
                          const int32_t[::1] tmpl_off, bint l2):
    cdef Family f
    f.kind = RANDOM
    f.n_tables = mult.shape[0]
    f.l2 = l2
    f.n_bits = mult.shape[1]
    f.planes = &planes[0, 0]
    f.shifts = &shifts[0]
    f.width = width
    f.mult = &mult[0, 0]
    f.tmpl_pos = &tmpl_pos[0]
    f.tmpl_off = &tmpl_off[0]
    f.n_tmpl = tmpl_off.shape[0] - 1
    f.c1 = f.n_leaves = f.widest = f.p1 = f.max_offer = f.r = f.n_dim = 0
    return f


cdef Family tree_family(const float[::1] mean, const float[:, ::1] basis,
                        const float[:, :, ::1] coarse, const float[:, ::1] coarse_norms,
                        const float[:, :, ::1] fine, const float[:, ::1] fine_norms,
                        const int64_t[:, ::1] offsets, bint normalize, Py_ssize_t p1,
                        Py_ssize_t widest, Py_ssize_t max_offer):
    cdef Family f
    f.kind = TREE
    f.n_tables = coarse.shape[0]
    f.n_bits = 0
    f.n_tmpl = 0
    f.r = basis.shape[0]
    f.n_dim = basis.shape[1]
    f.mean = &mean[0]
    f.basis = &basis[0, 0]
    f.c1 = coarse.shape[1]
    f.n_leaves = fine.shape[1]
    f.widest = widest
    f.p1 = max(1, min(p1, f.c1))
    f.max_offer = max_offer
    f.coarse = &coarse[0, 0, 0]
    f.coarse_norms = &coarse_norms[0, 0]
    f.fine = &fine[0, 0, 0]
    f.fine_norms = &fine_norms[0, 0]
    f.offsets = &offsets[0, 0]
    f.normalize = normalize
    return f


cdef Family make_family(tuple family):
    if family[0] == "tree":
        return tree_family(family[1], family[2], family[3], family[4], family[5], family[6],
                           family[7], family[8], family[9], family[10], family[11])
    return random_family(family[1], family[2], family[3], family[4], family[5], family[6],
                         family[7])


cdef Store unpack_store(tuple store):
    return make_store(store[0], store[1], store[2], store[3], store[4], store[5], store[6],
                      store[7], store[8], store[9], store[10], store[11], store[12], store[13])


cdef Py_ssize_t n_on_offer(const Family *f) noexcept nogil:
    if f.kind == TREE:
        return f.n_tables * f.max_offer
    return f.n_tables * f.n_tmpl


cdef void free_scratch(Scratch *s, int n) noexcept nogil:
    cdef int i, b
    if s == NULL:
        return
    for i in range(n):
        free(s[i].seen)
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
        free(s[i].xf)
        free(s[i].cscore)
        free(s[i].cells)
        free(s[i].cell_score)
        free(s[i].q16)
        free(s[i].qd)
        free(s[i].sk)
        free(s[i].short_key)
        free(s[i].short_pos)
        free(s[i].qz)
        free(s[i].best_key)
        free(s[i].best_tag)
        free(s[i].tmp)
        free(s[i].block_q16)
        free(s[i].block_seen)
        for b in range(BLOCK):
            free(s[i].block_key[b])
            free(s[i].block_tag[b])
    free(s)


cdef Scratch *alloc_scratch(const Store *st, const Family *f, int n, Py_ssize_t n_extra,
                            Py_ssize_t k, bint blocks) except NULL:
    """Per-thread buffers, all allocated before the parallel region (or MemoryError);
    ``blocks``: those of the exact scan too."""
    cdef int i, b
    cdef Py_ssize_t words = (max(st.n_rows, <Py_ssize_t> 1) + 63) // 64
    cdef Py_ssize_t L = f.n_tables, P = 2 * f.n_bits, dim = max(st.dim, <Py_ssize_t> 1)
    cdef Py_ssize_t rows = max(st.n_rows, <Py_ssize_t> 1)
    cdef Py_ssize_t n_sets = max(n_on_offer(f), <Py_ssize_t> 1)
    cdef Py_ssize_t n_probes = L + min(n_extra, n_sets)
    cdef Py_ssize_t chunk = max(rows, <Py_ssize_t> SCAN_CHUNK) if blocks else rows
    cdef Py_ssize_t cells = max(f.c1, <Py_ssize_t> 1)
    cdef Scratch *s = <Scratch *> calloc(n, sizeof(Scratch))
    cdef bint ok = s != NULL
    if ok:
        for i in range(n):
            s[i].seen = <uint64_t *> calloc((rows + 63) // 64, sizeof(uint64_t))
            s[i].cand = <int32_t *> malloc(rows * sizeof(int32_t))
            s[i].probes = <Probe *> malloc(n_probes * sizeof(Probe))
            s[i].set_score = <double *> malloc(n_sets * sizeof(double))
            s[i].set_id = <int64_t *> malloc(n_sets * sizeof(int64_t))
            s[i].score = <double *> malloc(max(L * P, <Py_ssize_t> 1) * sizeof(double))
            s[i].coord = <int32_t *> malloc(max(L * P, <Py_ssize_t> 1) * sizeof(int32_t))
            s[i].step = <int8_t *> malloc(max(L * P, <Py_ssize_t> 1) * sizeof(int8_t))
            s[i].base = <uint64_t *> malloc(L * sizeof(uint64_t))
            s[i].spans = <Span *> malloc(max(st.n_runs, <Py_ssize_t> 1) * BATCH * sizeof(Span))
            s[i].raw = <int32_t *> malloc(RAW * sizeof(int32_t))
            s[i].proj = <double *> malloc(max(L * f.n_bits, <Py_ssize_t> 1) * sizeof(double))
            s[i].xf = <float *> malloc((f.r + dim + max(f.c1, f.widest) + 1) * sizeof(float))
            s[i].cscore = <float *> malloc(cells * sizeof(float))
            s[i].cells = <int64_t *> malloc(cells * sizeof(int64_t))
            s[i].cell_score = <double *> malloc(cells * sizeof(double))
            s[i].q16 = <int16_t *> malloc(st.s * sizeof(int16_t))
            s[i].qz = <float *> malloc((dim + st.s) * sizeof(float))
            s[i].short_key = <double *> malloc((k + SHORTLIST) * sizeof(double))
            s[i].short_pos = <int32_t *> malloc((k + SHORTLIST) * sizeof(int32_t))
            s[i].qd = <double *> malloc(dim * sizeof(double))
            s[i].sk = <float *> malloc(4 * chunk * sizeof(float))
            s[i].best_key = <double *> malloc(max(k, 1) * sizeof(double))
            s[i].best_tag = <int64_t *> malloc(max(k, 1) * sizeof(int64_t))
            s[i].tmp = <double *> malloc(max(P, <Py_ssize_t> 1) * sizeof(double))
            ok = ok and not (
                s[i].seen == NULL or s[i].cand == NULL or s[i].probes == NULL
                or s[i].set_score == NULL or s[i].set_id == NULL or s[i].score == NULL
                or s[i].coord == NULL or s[i].step == NULL or s[i].base == NULL
                or s[i].spans == NULL or s[i].raw == NULL or s[i].proj == NULL
                or s[i].xf == NULL or s[i].cscore == NULL or s[i].cells == NULL
                or s[i].cell_score == NULL
                or s[i].q16 == NULL or s[i].qd == NULL or s[i].sk == NULL or s[i].tmp == NULL
                or s[i].short_key == NULL or s[i].short_pos == NULL or s[i].qz == NULL
                or s[i].best_key == NULL or s[i].best_tag == NULL)
            if blocks:
                s[i].block_q16 = <int16_t *> malloc(BLOCK * st.s * sizeof(int16_t))
                s[i].block_seen = <uint64_t *> calloc(BLOCK * words, sizeof(uint64_t))
                ok = ok and s[i].block_q16 != NULL and s[i].block_seen != NULL
                for b in range(BLOCK):
                    s[i].block_key[b] = <double *> malloc(max(k, 1) * sizeof(double))
                    s[i].block_tag[b] = <int64_t *> malloc(max(k, 1) * sizeof(int64_t))
                    ok = ok and s[i].block_key[b] != NULL and s[i].block_tag[b] != NULL
    if not ok:
        free_scratch(s, n)
        raise MemoryError("LSHIndex: no memory for the per-thread query buffers")
    return s


def query(tuple store, tuple family, const floating[:, ::1] vectors,
          const floating[:, ::1] queries, Py_ssize_t n_extra, Py_ssize_t max_candidates,
          floating[:, ::1] out_dist, int64_t[:, ::1] out_ids, int64_t[:, ::1] counts,
          int n_threads):
    """The ``k = out_ids.shape[1]`` nearest candidates of each query, re-ranked exactly.

    ``store`` and ``family`` are the arrays of the bucket store and of the hash
    family (see lsh.py). ``n_extra`` buckets beyond the home bucket of each
    table; ``max_candidates > 0`` stops gathering at that many. ``counts`` gets,
    per query, the buckets looked up, the candidates and the exact distances.
    Rows with fewer candidates are padded with inf / -1.
    """
    cdef Store st = unpack_store(store)
    cdef Family f = make_family(family)
    cdef Py_ssize_t m = queries.shape[0], k = out_ids.shape[1]
    cdef Py_ssize_t n_chunks = (m + CHUNK - 1) // CHUNK, c, q, nc
    cdef int threads = threads_for(n_threads, n_chunks, 1)
    cdef Scratch *scratch
    cdef Scratch *s
    if m == 0 or k == 0:
        return
    scratch = alloc_scratch(&st, &f, threads, n_extra, k, False)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=threads):
        s = &scratch[omp_get_thread_num()]
        for q in range(c * CHUNK, min(m, (c + 1) * CHUNK)):
            nc = candidates_of(&st, &f, s, &queries[q, 0], n_extra, max_candidates)
            counts[q, 0] = s.n_used
            counts[q, 1] = nc
            counts[q, 2] = rerank(&st, s, &vectors[0, 0], &queries[q, 0], k, s.cand, nc,
                                  &s.n_best)
            write_best(&st, s.best_key, s.best_tag, s.n_best, k, &out_dist[q, 0],
                       &out_ids[q, 0])
            forget(s, s.cand, nc)
    free_scratch(scratch, threads)


def exact(tuple store, tuple family, const floating[:, ::1] vectors,
          const floating[:, ::1] queries, const int32_t[::1] rows, Py_ssize_t n_extra,
          floating[:, ::1] out_dist, int64_t[:, ::1] out_ids, int n_threads):
    """The exact ``k`` nearest of ``rows`` (every live row) for each query.

    Each query is first answered with ``n_extra`` probes, which gives a tight
    k-th distance; then every row's sketch bound is compared with it, blocks of
    queries sharing each read of a sketch row.
    """
    cdef Store st = unpack_store(store)
    cdef Family f = make_family(family)
    cdef Py_ssize_t m = queries.shape[0], k = out_ids.shape[1]
    cdef Py_ssize_t words = (st.n_rows + 63) // 64
    cdef Py_ssize_t n_blocks = (m + BLOCK - 1) // BLOCK, c, q, b, i, nc, nb
    cdef int threads = threads_for(n_threads, n_blocks, 1)
    cdef int32_t row
    cdef Scratch *scratch
    cdef Scratch *s
    if m == 0 or k == 0 or rows.shape[0] == 0:
        return
    scratch = alloc_scratch(&st, &f, threads, n_extra, k, True)
    for c in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=threads):
        s = &scratch[omp_get_thread_num()]
        nb = min(m, (c + 1) * BLOCK) - c * BLOCK
        for b in range(nb):
            q = c * BLOCK + b
            nc = candidates_of(&st, &f, s, &queries[q, 0], n_extra, 0)
            rerank(&st, s, &vectors[0, 0], &queries[q, 0], k, s.cand, nc, &s.block_size[b])
            forget(s, s.cand, nc)
            for i in range(s.block_size[b]):
                row = tag_row(s.best_tag[i])
                s.block_key[b][i] = s.best_key[i]
                s.block_tag[b][i] = s.best_tag[i]
                s.block_seen[b * words + (row >> 6)] |= (<uint64_t> 1) << (row & 63)
        scan_block(&st, s, &vectors[0, 0], &queries[c * BLOCK, 0], nb, k, &rows[0],
                   rows.shape[0])
        for b in range(nb):
            q = c * BLOCK + b
            write_best(&st, s.block_key[b], s.block_tag[b], s.block_size[b], k, &out_dist[q, 0],
                       &out_ids[q, 0])
        # The heaps changed during the scan: clear the whole bitsets of the block.
        memset(s.block_seen, 0, nb * words * sizeof(uint64_t))
    free_scratch(scratch, threads)


def candidates(tuple store, tuple family, const floating[:, ::1] queries, Py_ssize_t n_extra,
               Py_ssize_t max_candidates, int64_t[::1] counts, int64_t[::1] offsets,
               int64_t[::1] out, int n_threads):
    """Candidate ids of each query, in the order found (home buckets first).

    Called twice: with an empty ``out`` it only fills ``counts``; then, given the
    ``offsets`` of the running sum of counts, it writes the ids into ``out``.
    """
    cdef Store st = unpack_store(store)
    cdef Family f = make_family(family)
    cdef Py_ssize_t m = queries.shape[0]
    cdef Py_ssize_t n_chunks = (m + CHUNK - 1) // CHUNK, c, q, i, nc
    cdef int threads = threads_for(n_threads, n_chunks, 1)
    cdef Scratch *scratch
    cdef Scratch *s
    cdef bint fill = out.shape[0] > 0
    cdef int64_t *dest
    if m == 0:
        return
    scratch = alloc_scratch(&st, &f, threads, n_extra, 1, False)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=threads):
        s = &scratch[omp_get_thread_num()]
        for q in range(c * CHUNK, min(m, (c + 1) * CHUNK)):
            nc = candidates_of(&st, &f, s, &queries[q, 0], n_extra, max_candidates)
            if fill:
                dest = &out[offsets[q]]
                for i in range(nc):
                    dest[i] = st.row_ids[s.cand[i]]
            else:
                counts[q] = nc
            forget(s, s.cand, nc)
    free_scratch(scratch, threads)
