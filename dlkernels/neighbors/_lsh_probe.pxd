# Probes and candidates of an LSHIndex query (used by _lsh_query.pyx only).
#
# Bucket store. Each table holds one entry per stored vector, kept in *runs*:
# run r covers the rows [run_starts[r], run_starts[r+1]) and, in each table,
# holds their entries sorted by 64-bit key at the same positions (the rows
# themselves are in the order of table 0's keys, so a bucket of table 0 is a
# contiguous block of rows). A run of s entries has a directory of 2**B + 1
# offsets over the top B bits of the key (B = floor(log2 s)): keys are outputs of
# a 64-bit mixer, so a bucket is found with one directory read and a binary
# search over a few entries, whatever the data's clustering. An entry is one
# 64-bit word, fingerprint << 32 | row, the fingerprint being the 32 key bits
# after the top B: sorted by key means sorted by fingerprint within a slot. (Two
# keys sharing slot and fingerprint, odds 2**-32, merge into one bucket: extra
# candidates, never a missed one.)
#
# Probes: every table's own bucket of the query, then the n_extra most promising
# other buckets over all tables together, in order of their score:
# * k-means trees: the leaves of the p1 coarse cells nearest the query, scored
#   by the squared distance from the query to the leaf's centre;
# * random families: query-directed multiprobe (Lv et al., VLDB 2007). A probe
#   perturbs a set of a table's hash components; its score is the sum of the
#   squared distances from the query's projections to the slot boundaries it
#   crosses. A template of candidate sets (the first sets in order of their
#   expected score, built once per call by Lv et al.'s shift/expand heap) is
#   scored with the query's actual values in every table.
# Candidates are deduplicated with one bitset per thread across all tables, and
# gathering stops early once max_candidates rows are found.

from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from dlkernels._lib._heap cimport insertion_sort_pairs, sort_pairs
from dlkernels._lib._prefetch cimport prefetch
from dlkernels._lib._random cimport mix64
from dlkernels.neighbors._lsh_kernels cimport (
    argmin,
    bucket_of,
    centroid_scores,
    linear_code,
    project,
    sign_code,
    tree_input,
)
from dlkernels.neighbors._lsh_rank cimport select_smallest
from dlkernels.neighbors._lsh_state cimport (
    BATCH,
    RAW,
    TREE,
    Family,
    Scratch,
    Span,
    Store,
)

# -- probes ----------------------------------------------------------------------

cdef inline Py_ssize_t offer_random(const Family *f, Scratch *s, const double *v) noexcept nogil:
    """Homes of the random family into ``s.probes``; the template sets on offer into
    ``s.set_score`` / ``s.set_id`` (id ``t * n_tmpl + j``). Returns how many are on offer."""
    cdef int L = f.n_tables, K = f.n_bits, P = 2 * K if f.l2 else K, t, j, i
    cdef Py_ssize_t n_sets = 0, a, T = f.n_tmpl
    cdef const double *vt
    cdef const double *sc
    cdef double g, near, total
    cdef int32_t c
    for t in range(L):
        vt = v + t * K
        s.base[t] = linear_code(vt, f.mult + t * K, K) if f.l2 else sign_code(vt, K)
        s.probes[t].key = mix64(s.base[t])
        s.probes[t].table = t
    if T == 0:
        return 0
    # Single perturbations of each table, cheapest first. Cosine: flipping bit j
    # moves the query across hyperplane j, at (squared) distance v_j**2 (rows of
    # the projection are unit vectors). L2: component j is at fraction g of its
    # slot; stepping down costs g**2 and up (1 - g)**2 (in units of the width).
    for t in range(L):
        vt = v + t * K
        if f.l2:
            for j in range(K):
                g = vt[j] - <double> bucket_of(vt[j])
                s.tmp[j] = g if g < 1.0 - g else 1.0 - g
                s.coord[t * P + j] = j
            insertion_sort_pairs(s.tmp, s.coord + t * P, K)
            # The K nearer boundaries ascending, then the K farther ones descending:
            # position i and 2K-1-i perturb the same component in opposite directions.
            for i in range(K):
                c = s.coord[t * P + i]
                near = s.tmp[i]
                g = vt[c] - <double> bucket_of(vt[c])
                s.score[t * P + i] = near * near
                s.step[t * P + i] = -1 if g < 1.0 - g else 1
                s.score[t * P + P - 1 - i] = (1.0 - near) * (1.0 - near)
                s.coord[t * P + P - 1 - i] = c
                s.step[t * P + P - 1 - i] = -s.step[t * P + i]
        else:
            for j in range(K):
                s.score[t * P + j] = vt[j] * vt[j]
                s.coord[t * P + j] = j
            insertion_sort_pairs(s.score + t * P, s.coord + t * P, K)
        sc = s.score + t * P
        for j in range(T):
            total = 0.0
            for a in range(f.tmpl_off[j], f.tmpl_off[j + 1]):
                total = total + sc[f.tmpl_pos[a]]
            s.set_score[n_sets] = total
            s.set_id[n_sets] = t * T + j
            n_sets += 1
    return n_sets


cdef inline uint64_t random_probe_key(const Family *f, Scratch *s, int64_t ident) noexcept nogil:
    cdef int K = f.n_bits, P = 2 * K if f.l2 else K, i
    cdef Py_ssize_t t = ident // f.n_tmpl, j = ident - t * f.n_tmpl, a
    cdef uint64_t code = s.base[t]
    for a in range(f.tmpl_off[j], f.tmpl_off[j + 1]):
        i = t * P + f.tmpl_pos[a]
        if f.l2:
            code += (<uint64_t> (<int64_t> s.step[i])) * f.mult[t * K + s.coord[i]]
        else:
            code ^= (<uint64_t> 1) << s.coord[i]
    return mix64(code)


cdef inline Py_ssize_t offer_tree(const Family *f, Scratch *s, Py_ssize_t dim) noexcept nogil:
    # ``dim`` is the trees' (projected) dimension r; s.xf holds the projected query.
    """Homes of the k-means trees into ``s.probes``; the other leaves of each tree's
    ``p1`` nearest coarse cells on offer (id ``t * n_leaves + leaf``)."""
    cdef Py_ssize_t L = f.n_tables, c1 = f.c1, t, j, b, e, cell, home, lo, width
    cdef Py_ssize_t n_sets = 0, p1 = min(f.p1, c1)
    cdef const float *fine
    cdef const float *fine_norms
    cdef const int64_t *off
    cdef float *fs = s.xf + dim + f.n_dim
    for t in range(L):
        fine = f.fine + t * f.n_leaves * dim
        fine_norms = f.fine_norms + t * f.n_leaves
        off = f.offsets + t * (c1 + 1)
        centroid_scores(f.coarse + t * c1 * dim, f.coarse_norms + t * c1, c1, s.xf, dim,
                        s.cscore)
        for j in range(c1):
            s.cell_score[j] = s.cscore[j]
            s.cells[j] = j
        # The home cell is the first smallest, as tree_leaf finds it for a stored
        # vector; sorted by (score, cell), it comes first.
        home = argmin(s.cscore, c1)
        select_smallest(s.cell_score, s.cells, c1, p1)
        sort_pairs(s.cell_score, s.cells, p1)
        for e in range(p1):
            cell = s.cells[e]
            lo = off[cell]
            width = off[cell + 1] - lo
            centroid_scores(fine + lo * dim, fine_norms + lo, width, s.xf, dim, fs)
            if cell == home:
                b = argmin(fs, width)
                s.probes[t].key = mix64(<uint64_t> (lo + b))
                s.probes[t].table = <int32_t> t
                fs[b] = INFINITY   # not on offer a second time
            for j in range(width):
                if fs[j] < INFINITY:
                    s.set_score[n_sets] = fs[j]
                    s.set_id[n_sets] = t * f.n_leaves + lo + j
                    n_sets += 1
    return n_sets


cdef inline Py_ssize_t make_probes(const Family *f, Scratch *s, Py_ssize_t dim,
                            Py_ssize_t n_extra) noexcept nogil:
    """Fill ``s.probes``: the home bucket of every table, then up to ``n_extra``
    more, ascending by score over all tables."""
    cdef Py_ssize_t L = f.n_tables, n_sets, e, t
    cdef int64_t ident
    if f.kind == TREE:
        tree_input(s.qd, dim, f.normalize, f.mean, f.basis, f.r, s.xf + f.r, s.xf)
        n_sets = offer_tree(f, s, f.r)
    else:
        project(f.planes, f.shifts, f.width, f.l2, f.n_tables * f.n_bits, s.qd, dim, s.proj)
        n_sets = offer_random(f, s, s.proj)
    if n_extra <= 0 or n_sets == 0:
        return L
    if n_extra > n_sets:
        n_extra = n_sets
    select_smallest(s.set_score, s.set_id, n_sets, n_extra)
    sort_pairs(s.set_score, s.set_id, n_extra)
    for e in range(n_extra):
        ident = s.set_id[e]
        if f.kind == TREE:
            t = ident // f.n_leaves
            s.probes[L + e].key = mix64(<uint64_t> (ident - t * f.n_leaves))
        else:
            t = ident // f.n_tmpl
            s.probes[L + e].key = random_probe_key(f, s, ident)
        s.probes[L + e].table = <int32_t> t
    return L + n_extra


# -- candidates ------------------------------------------------------------------

cdef inline Py_ssize_t dedup(const Store *st, Scratch *s, Py_ssize_t n_raw,
                            Py_ssize_t nc) noexcept nogil:
    cdef Py_ssize_t i
    cdef int32_t row
    cdef uint64_t bit
    for i in range(n_raw):
        row = s.raw[i]
        bit = (<uint64_t> 1) << (row & 63)
        if not (s.seen[row >> 6] & bit) and st.alive[row]:
            s.seen[row >> 6] |= bit
            s.cand[nc] = row
            nc += 1
    return nc


cdef inline Py_ssize_t gather(const Store *st, Scratch *s, Py_ssize_t n_probes, Py_ssize_t cap,
                       Py_ssize_t *used) noexcept nogil:
    """Deduplicated live candidate rows of the probed buckets, into ``s.cand``.

    Probes go in batches, each in three passes that prefetch what the next one
    reads (directory slots, then bucket entries), so the cache misses of
    different probes overlap. With ``cap > 0`` no batch starts once ``cap``
    rows are found; ``used`` gets the number of probes looked up.
    """
    cdef Py_ssize_t p0, p, r, n_spans, i, lo, hi, mid, start, n_raw = 0, nc = 0
    cdef const uint64_t *entries = st.entries
    cdef uint64_t key
    cdef uint32_t fp
    cdef int bits
    cdef Span *sp
    p0 = 0
    while p0 < n_probes and (cap <= 0 or nc < cap):
        n_spans = 0
        for p in range(p0, min(n_probes, p0 + BATCH)):
            key = s.probes[p].key
            for r in range(st.n_runs):
                bits = st.dir_bits[r]
                sp = &s.spans[n_spans]
                n_spans += 1
                sp.at = (s.probes[p].table * st.dstride + st.dir_offsets[r]
                         + (<Py_ssize_t> (key >> (64 - bits)) if bits > 0 else 0))
                sp.end = s.probes[p].table * st.stride + st.run_starts[r]  # entries of the run
                sp.fingerprint = <uint32_t> ((key << bits) >> 32)
                prefetch(st.dirs + sp.at)
        p0 = min(n_probes, p0 + BATCH)
        for i in range(n_spans):
            sp = &s.spans[i]
            start = sp.end
            lo = st.dirs[sp.at]
            hi = st.dirs[sp.at + 1]
            sp.at = start + lo
            sp.end = start + hi
            if lo < hi:
                prefetch(entries + sp.at)
        for i in range(n_spans):
            sp = &s.spans[i]
            lo = sp.at
            hi = sp.end
            fp = sp.fingerprint
            while lo < hi:  # first entry of the slot with fingerprint >= fp
                mid = (lo + hi) >> 1
                if <uint32_t> (entries[mid] >> 32) < fp:
                    lo = mid + 1
                else:
                    hi = mid
            while lo < sp.end and <uint32_t> (entries[lo] >> 32) == fp:
                s.raw[n_raw] = <int32_t> (entries[lo] & (<uint64_t> 0xFFFFFFFF))  # the row
                n_raw += 1
                lo += 1
                if n_raw == RAW:
                    nc = dedup(st, s, n_raw, nc)
                    n_raw = 0
        nc = dedup(st, s, n_raw, nc)
        n_raw = 0
    used[0] = p0
    return nc


cdef inline void forget(Scratch *s, const int32_t *cand, Py_ssize_t nc) noexcept nogil:
    # Clear the bits of this query's candidates: the bitset is empty for the next.
    cdef Py_ssize_t i
    for i in range(nc):
        s.seen[cand[i] >> 6] = 0
