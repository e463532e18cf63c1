"""Compiled core of dlkernels.graph: per-node alias tables and node2vec walks.

Second-order steps use rejection sampling (KnightKing: Yang et al., "KnightKing:
a fast distributed graph random walk engine", SOSP 2019) so that memory stays
O(V + E): from the current node ``v`` (previous node ``u``) propose ``y`` from the
first-order distribution of ``v`` (edge weights), and accept it with probability
``bias(u, y) / M``, where bias is 1/p for the return edge (y == u), 1 if ``y`` is an
out-neighbour of ``u`` and 1/q otherwise, and ``M`` bounds the bias. The accepted
``y`` is distributed exactly as node2vec's ``w(v, y) * bias(u, y)``, normalised.

When 1/p is the largest bias (p < 1 and p < q), the return edge is an "outlier"
(KnightKing's term): bounding every edge by 1/p would reject most proposals.
Instead the envelope is ``M = max(1, 1/q)`` on every edge plus an extra block of
mass ``w(v, u) * (1/p - M)`` that sits on the return edge alone and is always
accepted. Drawing from the envelope is a coin between the block and a proposal,
so the return edge is handled without inflating the bound.

Each walk draws from its own counter-based random stream keyed by the walk's
row, so the walks do not depend on the number of threads.
"""

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc

from dlkernels._lib._alias_table cimport AliasEntry, build_alias
from dlkernels._lib._openmp cimport threads_for
from dlkernels._lib._prefetch cimport prefetch
from dlkernels._lib._random cimport (next_below, next_below_and_fraction, next_double,
                                   stream_start)

cdef enum:
    # Walks per unit of parallel work. Each walk owns its random stream, so this
    # only sets the scheduling grain.
    WALK_CHUNK = 256
    # Rows per unit of work when building the per-node alias tables.
    ROW_CHUNK = 4096
    # Rejected proposals before a step switches to an exact draw over the row
    # (reached only for extreme p and q, where acceptance is tiny): no step can
    # take unbounded time.
    MAX_REJECTIONS = 64
    # Walks a thread advances together, so that their memory reads overlap.
    GROUP = 16


cdef struct CSR:
    const int64_t *indptr
    const int32_t *indices
    const double *weights   # NULL: unweighted
    const AliasEntry *table  # per-row alias tables over the weights; NULL: unweighted
    const double *totals    # per-row weight sums; NULL: unweighted (the degree)


cdef struct Bias:
    # Raw biases of the node2vec formula.
    double ret, inside, outside
    # Acceptance probabilities: the biases divided by the envelope height M.
    double a_ret, a_in, a_out, a_low, a_high
    # The biases divided by the largest one, for the exact fallback: masses
    # weight * bias then never exceed the weight (no overflow for any weights).
    double s_ret, s_in, s_out
    double height           # M
    bint outlier            # the return edge is handled as an outlier block
    bint keep_weight        # walks remember the weight of their last edge (for the block)
    bint first_order        # p == q == 1: no rejection at all


# -- building -----------------------------------------------------------------------

cdef int build_rows(const int64_t *indptr, const double *weights, AliasEntry *table,
                    double *totals, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t v, i, deg, max_deg = 0
    cdef double s
    for v in range(start, stop):
        max_deg = max(max_deg, <Py_ssize_t>(indptr[v + 1] - indptr[v]))
    cdef double *q = <double *> malloc(max(max_deg, 1) * sizeof(double))
    cdef int64_t *small = <int64_t *> malloc(max(max_deg, 1) * sizeof(int64_t))
    cdef int64_t *large = <int64_t *> malloc(max(max_deg, 1) * sizeof(int64_t))
    if q == NULL or small == NULL or large == NULL:
        free(q); free(small); free(large)
        return -1
    for v in range(start, stop):
        deg = indptr[v + 1] - indptr[v]
        s = 0.0
        for i in range(indptr[v], indptr[v + 1]):
            s = s + weights[i]
        totals[v] = s
        if deg > 0:
            build_alias(weights + indptr[v], deg, table + indptr[v], q, small, large)
    free(q); free(small); free(large)
    return 0


def build_tables(const int64_t[::1] indptr, const double[::1] weights, AliasEntry[::1] table,
                 double[::1] totals, int n_threads):
    """Per-row alias tables over ``weights`` (finite, > 0) and per-row weight sums."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, n_chunks = (n + ROW_CHUNK - 1) // ROW_CHUNK, c
    cdef int failed = 0
    if weights.shape[0] == 0:
        totals[:] = 0.0
        return
    for c in prange(n_chunks, nogil=True, schedule="static",
                    num_threads=threads_for(n_threads, n_chunks, 1)):
        if build_rows(&indptr[0], &weights[0], &table[0], &totals[0],
                      c * ROW_CHUNK, min(n, (c + 1) * ROW_CHUNK)) != 0:
            failed = 1
    if failed:
        raise MemoryError()


# -- stepping -----------------------------------------------------------------------

cdef inline int64_t row_find(const int32_t *row, int64_t n, int32_t x) noexcept nogil:
    # Position of x in a sorted row, or -1: the "is x a neighbour" test. A
    # branch-free binary search (the half is picked by arithmetic, not a jump):
    # rows are short and which way each comparison goes is unpredictable.
    cdef const int32_t *first = row
    cdef int64_t half
    if n <= 0:
        return -1
    while n > 1:
        half = n >> 1
        first += half * (first[half] <= x)
        n -= half
    return first - row if first[0] == x else -1


cdef inline bint row_contains(const int32_t *row, int64_t n, int32_t x) noexcept nogil:
    return row_find(row, n, x) >= 0


cdef inline double scaled_bias(const CSR *g, const Bias *b, int32_t u, int32_t y) noexcept nogil:
    if y == u:
        return b.s_ret
    if row_contains(g.indices + g.indptr[u], g.indptr[u + 1] - g.indptr[u], y):
        return b.s_in
    return b.s_out


cdef int64_t exact_step(const CSR *g, const Bias *b, int32_t u, int64_t base, int64_t deg,
                        uint64_t *state) noexcept nogil:
    # Inverse-CDF draw over the whole row: O(deg(v) log deg(u)), exact, bounded
    # time. Returns the chosen edge position.
    cdef int64_t i, last = base
    cdef double total = 0.0, target, mass
    for i in range(base, base + deg):
        total += (g.weights[i] if g.weights != NULL else 1.0) * scaled_bias(g, b, u, g.indices[i])
    target = next_double(state) * total
    for i in range(base, base + deg):
        mass = (g.weights[i] if g.weights != NULL else 1.0) * scaled_bias(g, b, u, g.indices[i])
        if mass > 0:
            last = i
            target -= mass
            if target < 0:
                return i
    return last  # rounding left a sliver of mass past the end


# -- walking --------------------------------------------------------------------------
#
# A step reads places in memory that depend on each other: the row pointer of
# the current node, the proposed alias-table entry (weighted graphs), the
# proposed entry of its row, and (for the neighbour test) the row of the
# previous node. On a graph larger than the cache each is a miss. So each
# thread advances a group of walks in turn, one stage of one step per visit,
# and prefetches what the walk's next stage will read: the misses of
# different walks overlap instead of queueing. Every walk still draws only from
# its own random stream, so the walks do not depend on the grouping.

cdef struct Walker:
    uint64_t state
    int32_t *out
    Py_ssize_t t            # next column to fill
    int32_t u, v            # previous and current node
    int64_t base, deg       # row of v
    int64_t pos             # the proposed edge position (while proposing)
    double alias_coin       # the coin of a weighted proposal, read with its table entry
    double last_w           # weight of the edge u -> v just taken (if b.keep_weight)
    double block            # probability that the envelope's draw is the return edge's outlier block
    int attempts
    int stage               # what the next visit does: AT_NODE, ALIAS or PROPOSED
    bint free               # the proposal is accepted as is (first step or first order)


cdef enum:
    AT_NODE = 0   # read the row of v, start a step
    ALIAS = 1     # read the proposed alias-table entry
    PROPOSED = 2  # read the proposed neighbour, accept or reject it


cdef inline double edge_weight(const CSR *g, int64_t pos) noexcept nogil:
    return g.weights[pos] if g.weights != NULL else 1.0


cdef inline void move(const CSR *g, const Bias *b, Walker *w, int64_t pos) noexcept nogil:
    # Take the edge at `pos` (in the row of w.v).
    cdef int32_t y = g.indices[pos]
    w.out[w.t] = y
    w.t += 1
    w.u = w.v
    w.v = y
    w.last_w = g.weights[pos] if b.keep_weight else 1.0
    w.stage = AT_NODE
    prefetch(&g.indptr[y])


cdef inline void move_back(const CSR *g, Walker *w) noexcept nogil:
    # Take the return edge v -> u. last_w stays: it is read only for undirected
    # graphs, where the edge back weighs what the edge there did.
    cdef int32_t y = w.u
    w.out[w.t] = y
    w.t += 1
    w.u = w.v
    w.v = y
    w.stage = AT_NODE
    prefetch(&g.indptr[y])


cdef inline void proposed(const CSR *g, const Bias *b, Walker *w) noexcept nogil:
    # The proposal's edge position is known: load it for the next visit.
    prefetch(&g.indices[w.pos])
    if b.keep_weight:
        prefetch(&g.weights[w.pos])
    w.stage = PROPOSED


cdef inline void draw(const CSR *g, const Bias *b, Walker *w) noexcept nogil:
    # Start an attempt: either the outlier block (the return edge, accepted) or a
    # proposal from the edge weights, to be decided on the next visit.
    if w.block > 0 and next_double(&w.state) < w.block:
        move_back(g, w)
        return
    if g.table == NULL:
        w.pos = w.base + <int64_t> next_below(&w.state, <uint64_t> w.deg)
        proposed(g, b, w)
    else:
        # An alias draw (see _alias_table.pxd) in two visits: a row and a coin
        # now, the entry that decides between the row and its alias next time.
        w.pos = w.base + <int64_t> next_below_and_fraction(&w.state, <uint64_t> w.deg,
                                                           &w.alias_coin)
        prefetch(&g.table[w.pos])
        w.stage = ALIAS


cdef inline void resolve_alias(const CSR *g, const Bias *b, Walker *w) noexcept nogil:
    if not w.alias_coin < g.table[w.pos].prob:
        w.pos = w.base + g.table[w.pos].alias
    proposed(g, b, w)


cdef bint at_node(const CSR *g, const Bias *b, Walker *w, Py_ssize_t length,
                  bint directed) noexcept nogil:
    # First stage of a step: read the row of v and make the first proposal.
    # Returns True when the walk is complete.
    cdef Py_ssize_t rest
    cdef int64_t pos
    cdef double w_ret = 0.0
    if w.t >= length:
        return True
    w.base = g.indptr[w.v]
    w.deg = g.indptr[w.v + 1] - w.base
    if w.deg == 0:
        # A dead end: the walk stops here, padded with -1.
        for rest in range(w.t, length):
            w.out[rest] = -1
        return True
    w.free = w.t == 1 or b.first_order
    w.attempts = 0
    w.block = 0.0
    if not w.free:
        if b.outlier:
            if not directed:
                w_ret = w.last_w
            else:
                pos = row_find(g.indices + w.base, w.deg, w.u)
                if pos >= 0:
                    w_ret = edge_weight(g, w.base + pos)
            if w_ret > 0:
                # The block's mass w_ret * (1/p - M) over the envelope's M * total +
                # that mass, as 1 / (1 + ...): finite for any weights (a ratio that
                # overflows only makes the block's probability 0, its limit).
                w.block = 1.0 / (1.0 + b.height / (b.ret - b.height) *
                                 ((g.totals[w.v] if g.totals != NULL else <double> w.deg) / w_ret))
        if b.a_low < b.a_high:
            # The neighbour test will search the row of u: start loading its ends
            # and middle (all of a row of up to 32 neighbours, in 1 to 3 cache lines).
            prefetch(&g.indices[g.indptr[w.u]])
            prefetch(&g.indices[(g.indptr[w.u] + g.indptr[w.u + 1]) >> 1])
            prefetch(&g.indices[g.indptr[w.u + 1] - 1])
    draw(g, b, w)
    return False


cdef void decide(const CSR *g, const Bias *b, Walker *w) noexcept nogil:
    # Second stage: accept or reject the proposal at w.pos.
    cdef int32_t y = g.indices[w.pos]
    cdef double coin, accept
    if w.free:
        move(g, b, w, w.pos)
        return
    coin = next_double(&w.state)
    if y == w.u:
        # Under the outlier envelope the return edge's proposal mass is exactly
        # M * w: always accepted.
        accept = 1.0 if b.outlier else b.a_ret
    elif coin < b.a_low:
        accept = 1.0  # accepted whichever kind y is: no neighbour test needed
    elif coin >= b.a_high:
        accept = 0.0
    elif row_contains(g.indices + g.indptr[w.u], g.indptr[w.u + 1] - g.indptr[w.u], y):
        accept = b.a_in
    else:
        accept = b.a_out
    if coin < accept:
        move(g, b, w, w.pos)
        return
    w.attempts += 1
    if w.attempts >= MAX_REJECTIONS:
        move(g, b, w, exact_step(g, b, w.u, w.base, w.deg, &w.state))
        return
    draw(g, b, w)


cdef inline void begin(const CSR *g, Walker *w, int32_t start, int32_t *out,
                       uint64_t key, uint64_t stream) noexcept nogil:
    w.state = stream_start(key, stream)
    w.out = out
    out[0] = start
    w.t = 1
    w.u = start
    w.v = start
    w.last_w = 0.0
    w.stage = AT_NODE
    prefetch(&g.indptr[start])


cdef void walk_chunk(const CSR *g, const Bias *b, bint directed, const int64_t *starts,
                     int32_t *out, Py_ssize_t length, Py_ssize_t row_start,
                     Py_ssize_t row_stop, uint64_t key, uint64_t first_row) noexcept nogil:
    cdef Walker ws[GROUP]
    cdef bint busy[GROUP]
    cdef Py_ssize_t i, next_row = row_start, active = 0
    for i in range(GROUP):
        busy[i] = next_row < row_stop
        if busy[i]:
            begin(g, &ws[i], <int32_t> starts[next_row], out + next_row * length, key,
                  first_row + <uint64_t> next_row)
            next_row += 1
            active += 1
    while active > 0:
        for i in range(GROUP):
            if not busy[i]:
                continue
            if ws[i].stage == PROPOSED:
                decide(g, b, &ws[i])
            elif ws[i].stage == ALIAS:
                resolve_alias(g, b, &ws[i])
            elif at_node(g, b, &ws[i], length, directed):
                # Done: the slot takes the next walk of the chunk.
                if next_row < row_stop:
                    begin(g, &ws[i], <int32_t> starts[next_row], out + next_row * length, key,
                          first_row + <uint64_t> next_row)
                    next_row += 1
                else:
                    busy[i] = False
                    active -= 1


def random_walks(const int64_t[::1] indptr, const int32_t[::1] indices,
                 const double[::1] weights, const AliasEntry[::1] table,
                 const double[::1] totals, bint directed, const int64_t[::1] starts,
                 int32_t[:, ::1] out, double p, double q, uint64_t key, uint64_t first_row,
                 int n_threads):
    """Fill row ``r`` of ``out`` with a walk from ``starts[r]``.

    Walk ``r`` draws from stream ``first_row + r`` of ``key``: a batch of rows
    from a longer run gives the same walks as the run in one call.

    ``weights``, ``table`` and ``totals`` are empty for an unweighted graph. The
    caller has checked the graph, ``p, q`` in ``[1e-9, 1e9]`` and the start nodes.
    """
    cdef Py_ssize_t rows = out.shape[0], length = out.shape[1], c
    cdef Py_ssize_t n_chunks = (rows + WALK_CHUNK - 1) // WALK_CHUNK
    cdef CSR g
    cdef Bias b
    cdef double top
    if rows == 0 or length == 0:
        return
    g.indptr = &indptr[0]
    g.indices = &indices[0] if indices.shape[0] > 0 else NULL
    g.weights = &weights[0] if weights.shape[0] > 0 else NULL
    g.table = &table[0] if table.shape[0] > 0 else NULL
    g.totals = &totals[0] if totals.shape[0] > 0 else NULL
    b.ret = 1.0 / p
    b.inside = 1.0
    b.outside = 1.0 / q
    b.first_order = p == 1.0 and q == 1.0
    b.outlier = b.ret > max(b.inside, b.outside)
    b.keep_weight = b.outlier and not b.first_order and not directed and g.weights != NULL
    b.height = max(b.inside, b.outside) if b.outlier else max(b.ret, max(b.inside, b.outside))
    b.a_ret = b.ret / b.height
    b.a_in = b.inside / b.height
    b.a_out = b.outside / b.height
    b.a_low = min(b.a_in, b.a_out)
    b.a_high = max(b.a_in, b.a_out)
    top = max(b.ret, max(b.inside, b.outside))
    b.s_ret = b.ret / top
    b.s_in = b.inside / top
    b.s_out = b.outside / top
    for c in prange(n_chunks, nogil=True, schedule="dynamic",
                    num_threads=threads_for(n_threads, n_chunks, 1)):
        walk_chunk(&g, &b, directed, &starts[0], &out[0, 0], length, c * WALK_CHUNK,
                   min(rows, (c + 1) * WALK_CHUNK), key, first_row)
