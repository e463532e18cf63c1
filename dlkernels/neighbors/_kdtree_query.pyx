"""Compiled core of dlkernels.neighbors.KDTree: k-nearest and radius search.

The trees searched here are built by ``_kdtree_build``, whose docstring
describes their layout. A query searches every tree of a forest in turn,
depth-first, nearer child first, sharing one bound between the trees.

Distances are computed in the tree's precision (float32 or float64), summed
over dimensions in order, as ``sum((x - y)**2)`` for ``p=2``, ``sum(|x - y|)``
for ``p=1`` and ``max(|x - y|)`` for ``p=inf``. Internally a "reduced" distance
is used (the square for ``p=2``); the square root is taken once per result.
The k best so far are kept in the bounded heap of ``dlkernels._lib._heap``.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc, realloc

from dlkernels._lib._heap cimport heap_sift_down, heap_sort, insertion_sort_pairs, sort_pairs

ctypedef fused floating:
    float
    double

cdef enum:
    # Queries per parallel work item: fixed, so the work split does not depend on
    # the thread count (results never do: each query is computed on its own).
    QUERY_CHUNK = 64
    # k above which the k best are kept in a max-heap instead of a sorted array.
    HEAP_K = 48

# p codes passed from Python.
cdef enum:
    P_INF = 0
    P_ONE = 1
    P_TWO = 2


cdef struct TreeView:
    const void *points
    const int64_t *perm
    const int32_t *dims
    const void *vals
    const void *boxes
    const int64_t *leaf_start
    Py_ssize_t n_internal
    int64_t id_offset


cdef struct Search:
    # One query's working state (the pointers are to the type of the tree).
    const void *x          # the query point (d)
    void *off              # per-dimension offset of x from the current cell (d)
    void *acc              # reduced distances of one leaf's points (max leaf size)
    void *kd               # k best reduced distances, or the radius results
    int64_t *ki            # their ids
    Py_ssize_t d
    Py_ssize_t k
    int p
    bint heap
    double shrink          # 1 - relative rounding slack of the incremental bounds
    double tiny            # absolute slack, for bounds that underflow to subnormals
    # radius search: the radius, and a growable result buffer (kd, ki)
    bint radius
    double r
    Py_ssize_t count
    Py_ssize_t capacity
    bint failed


cdef inline floating absval(floating t) noexcept nogil:
    return t if t >= 0 else -t


cdef inline floating combine(floating rd, floating old, floating new, int p) noexcept nogil:
    """Reduced distance to a cell after its offset along one dimension grows old -> new."""
    if p == P_TWO:
        return rd + (new - old) * (new + old)
    if p == P_ONE:
        return rd + (new - old)
    return rd if rd >= new else new


cdef inline floating box_distance(const floating *box, const floating *x, Py_ssize_t d,
                                  int p) noexcept nogil:
    """Reduced distance from x to a box, computed as the point distances are (so it is
    never above the computed distance of a point inside the box)."""
    cdef Py_ssize_t j
    cdef floating rd = 0, t, u
    for j in range(d):
        t = box[j] - x[j]
        u = x[j] - box[d + j]
        if u > t:
            t = u
        if t < 0:
            t = 0
        if p == P_TWO:
            rd = rd + t * t
        elif p == P_ONE:
            rd = rd + t
        elif t > rd:
            rd = t
    return rd


cdef inline void leaf_distances(const floating *blk, Py_ssize_t m, const floating *x,
                                Py_ssize_t d, int p, floating *acc) noexcept nogil:
    """Reduced distances from x to the m points of a transposed leaf block."""
    cdef Py_ssize_t i, j
    cdef floating xj, t
    cdef const floating *col
    for i in range(m):
        acc[i] = 0
    if p == P_TWO:
        for j in range(d):
            xj = x[j]
            col = blk + j * m
            for i in range(m):
                t = col[i] - xj
                acc[i] = acc[i] + t * t
    elif p == P_ONE:
        for j in range(d):
            xj = x[j]
            col = blk + j * m
            for i in range(m):
                acc[i] = acc[i] + absval(col[i] - xj)
    else:
        for j in range(d):
            xj = x[j]
            col = blk + j * m
            for i in range(m):
                t = absval(col[i] - xj)
                acc[i] = t if t > acc[i] else acc[i]


cdef inline floating kth(const floating *kd, Py_ssize_t k, bint heap) noexcept nogil:
    return kd[0] if heap else kd[k - 1]


cdef void knn_leaf(const TreeView *t, Search *s, Py_ssize_t leaf, floating rd) noexcept nogil:
    cdef const floating *x = <const floating *> s.x
    cdef floating *kd = <floating *> s.kd
    cdef floating *acc = <floating *> s.acc
    cdef int64_t *ki = s.ki
    cdef Py_ssize_t k = s.k, d = s.d, lo, m, i, j
    cdef floating bound = kth(kd, k, s.heap)
    cdef floating dist
    cdef int64_t idx, last
    cdef const floating *box = (<const floating *> t.boxes) + leaf * 2 * d
    # A point as far as the k-th best still enters when its id is lower (ties are
    # broken by id), so only a leaf strictly beyond the bound is skipped.
    if box_distance(box, x, d, s.p) > bound:
        return
    lo = t.leaf_start[leaf]
    m = t.leaf_start[leaf + 1] - lo
    leaf_distances((<const floating *> t.points) + lo * d, m, x, d, s.p, acc)
    for i in range(m):
        dist = acc[i]
        if dist > bound:
            continue
        idx = t.perm[lo + i] + t.id_offset
        last = ki[0] if s.heap else ki[k - 1]
        # Padding is (bound, -1): a point at exactly the caller's strict bound never enters.
        if dist == bound and (last < 0 or idx > last):
            continue
        if s.heap:
            # The root (the k-th best so far) makes way for a better point.
            heap_sift_down(kd, ki, k, 0, dist, idx)
            bound = kd[0]
        else:
            j = k - 1
            while j > 0 and (kd[j - 1] > dist or (kd[j - 1] == dist and ki[j - 1] > idx)):
                kd[j] = kd[j - 1]
                ki[j] = ki[j - 1]
                j -= 1
            kd[j] = dist
            ki[j] = idx
            bound = kd[k - 1]


cdef inline bint may_hold(Search *s, floating rd) noexcept nogil:
    """Whether a cell at reduced distance ``rd`` (a lower bound, see rounding_slack)
    may hold a result: closer than the k-th best, or within the radius."""
    cdef floating low = rd * <floating> s.shrink - <floating> s.tiny
    if s.radius:
        return low <= <floating> s.r
    # <=: a cell at exactly the k-th distance may hold a tie with a lower id.
    return low <= kth(<floating *> s.kd, s.k, s.heap)


cdef void search_node(const TreeView *t, Search *s, Py_ssize_t node, floating rd) noexcept nogil:
    """Depth-first search below ``node``, nearer child first, with the incremental
    distance of Arya & Mount: ``off[j]`` is the query's offset from the current
    cell along coordinate ``j``, and a child's cell differs from its parent's in
    one coordinate only, so its reduced distance ``rd`` is updated in O(1)."""
    cdef const floating *x = <const floating *> s.x
    cdef floating *off = <floating *> s.off
    cdef const floating *vals = <const floating *> t.vals
    cdef Py_ssize_t dim, near, far
    cdef floating xv, old, gap_near, gap_far, nw, rd_child
    if node >= t.n_internal:
        if s.radius:
            radius_leaf(t, s, node - t.n_internal, rd)
        else:
            knn_leaf(t, s, node - t.n_internal, rd)
        return
    if s.failed:
        return
    dim = t.dims[node]
    xv = x[dim]
    old = off[dim]
    gap_near = xv - vals[2 * node]          # beyond the left side's largest value
    gap_far = vals[2 * node + 1] - xv       # before the right side's smallest value
    if gap_near <= gap_far:
        near = 2 * node + 1
        far = 2 * node + 2
    else:
        near = 2 * node + 2
        far = 2 * node + 1
        gap_near, gap_far = gap_far, gap_near
    nw = gap_near if gap_near > old else old
    rd_child = combine(rd, old, nw, s.p)
    if may_hold(s, rd_child):
        off[dim] = nw
        search_node(t, s, near, rd_child)
    nw = gap_far if gap_far > old else old
    rd_child = combine(rd, old, nw, s.p)
    if may_hold(s, rd_child):
        off[dim] = nw
        search_node(t, s, far, rd_child)
    off[dim] = old


cdef void finish_knn(Search *s, floating *out_d, int64_t *out_i,
                     Py_ssize_t width) noexcept nogil:
    """Turn reduced distances into distances, sort by (distance, id), and write a row
    of ``width >= s.k`` results, padded with inf / -1."""
    cdef floating *kd = <floating *> s.kd
    cdef int64_t *ki = s.ki
    cdef Py_ssize_t k = s.k, i
    if s.heap:
        heap_sort(kd, ki, k)  # padding (bound, -1) sorts last: real results are < bound
    for i in range(k):
        if ki[i] < 0:
            kd[i] = INFINITY
        elif s.p == P_TWO:
            kd[i] = sqrt(kd[i])
    # Order by (distance, id). The array is sorted by distance already (the square
    # root keeps the order but may round distinct values together), so insertion
    # only orders ties, in O(k) when there are few.
    insertion_sort_pairs(kd, ki, k)
    for i in range(k):
        out_d[i] = kd[i]
        out_i[i] = ki[i]
    for i in range(k, width):
        out_d[i] = INFINITY
        out_i[i] = -1


cdef inline Py_ssize_t descend(const TreeView *t, const floating *x) noexcept nogil:
    """The leaf whose cell holds x (ties to the nearer side, as the search goes)."""
    cdef Py_ssize_t node = 0
    cdef const floating *vals = <const floating *> t.vals
    cdef floating xv
    while node < t.n_internal:
        xv = x[t.dims[node]]
        if xv - vals[2 * node] <= vals[2 * node + 1] - xv:
            node = 2 * node + 1
        else:
            node = 2 * node + 2
    return node - t.n_internal


cdef int64_t *spatial_order(const TreeView *t, const floating *x, Py_ssize_t m, Py_ssize_t d,
                            int n_threads) noexcept nogil:
    """Query order grouped by the leaf each query falls in (counting sort), so that
    consecutive queries touch the same nodes and leaves: a cache-friendly order.
    Returns NULL on allocation failure (the caller then keeps the given order)."""
    cdef Py_ssize_t n_leaves = t.n_internal + 1, i, l
    cdef int64_t *order = <int64_t *> malloc(m * sizeof(int64_t))
    cdef int64_t *leaf_of = <int64_t *> malloc(m * sizeof(int64_t))
    cdef int64_t *start = <int64_t *> malloc((n_leaves + 1) * sizeof(int64_t))
    cdef int64_t total = 0, c
    if order == NULL or leaf_of == NULL or start == NULL:
        free(order)
        free(leaf_of)
        free(start)
        return NULL
    for i in prange(m, schedule="static", num_threads=max(1, min(n_threads, m // QUERY_CHUNK))):
        leaf_of[i] = descend(t, x + i * d)
    for l in range(n_leaves + 1):
        start[l] = 0
    for i in range(m):
        start[leaf_of[i]] += 1
    for l in range(n_leaves):
        c = start[l]
        start[l] = total
        total += c
    for i in range(m):
        order[start[leaf_of[i]]] = i
        start[leaf_of[i]] += 1
    free(leaf_of)
    free(start)
    return order


cdef TreeView *tree_views(list trees, floating dummy) except NULL:
    """C views of the trees of a forest (each a tuple of arrays and sizes)."""
    cdef Py_ssize_t i, n_trees = len(trees)
    cdef TreeView *views = <TreeView *> malloc(max(1, n_trees) * sizeof(TreeView))
    cdef const floating[::1] points, vals, boxes
    cdef const int64_t[::1] perm, leaf_start
    cdef const int32_t[::1] dims
    if views == NULL:
        raise MemoryError()
    for i in range(n_trees):
        points, perm, dims, vals, boxes, leaf_start, offset = trees[i]
        views[i].points = &points[0]
        views[i].perm = &perm[0]
        views[i].n_internal = leaf_start.shape[0] - 2
        views[i].dims = &dims[0] if views[i].n_internal > 0 else NULL
        views[i].vals = &vals[0] if views[i].n_internal > 0 else NULL
        views[i].boxes = &boxes[0]
        views[i].leaf_start = &leaf_start[0]
        views[i].id_offset = offset
    return views


cdef double rounding_slack(floating dummy, Py_ssize_t max_depth, Py_ssize_t d):
    # The incremental bounds add and subtract per level: each step may round by
    # one unit in the last place of a value no larger than the final bound, and a
    # point's own distance may round down by one unit per coordinate. Shrink the
    # bounds by a few times that before comparing, so that rounding never prunes
    # a point whose computed distance would qualify.
    cdef double eps = 1.1920929e-07 if floating is float else 2.220446049250313e-16
    return 1.0 - 4.0 * (max_depth + d + 4) * eps


cdef double underflow_slack(floating dummy, Py_ssize_t max_depth, Py_ssize_t d):
    # Below the normal range rounding errors are absolute (units of the smallest
    # subnormal), which a relative slack cannot cover.
    cdef double unit = 1.401298464324817e-45 if floating is float else 4.9406564584124654e-324
    return 4.0 * (max_depth + d + 4) * unit


def knn(list trees, const floating[:, ::1] x, Py_ssize_t k, int p, double bound,
        floating[:, ::1] out_d, int64_t[:, ::1] out_i, Py_ssize_t max_depth,
        Py_ssize_t max_leaf, int n_threads):
    """k nearest neighbours of each row of ``x`` over all trees of a forest.

    ``bound`` is the reduced distance upper bound (strict); results are sorted by
    distance (then id) and padded with inf / -1. However large ``k``, no query
    keeps more candidates than the forest has points.
    """
    cdef Py_ssize_t m = x.shape[0], d = x.shape[1], n_trees = len(trees)
    cdef Py_ssize_t n_chunks = (m + QUERY_CHUNK - 1) // QUERY_CHUNK, c, t, n_points = 0
    cdef TreeView *views
    cdef int64_t *order = NULL
    cdef double shrink = rounding_slack(<floating> 0, max_depth, d)
    cdef double tiny = underflow_slack(<floating> 0, max_depth, d)
    cdef int failed = 0
    cdef floating fbound = <floating> bound
    if m == 0 or n_trees == 0:
        return
    views = tree_views(trees, <floating> 0)
    for t in range(n_trees):
        n_points += views[t].leaf_start[views[t].n_internal + 1]
    with nogil:
        if m >= 4 * QUERY_CHUNK and views[0].n_internal > 0:
            order = spatial_order(&views[0], &x[0, 0], m, d, n_threads)
        for c in prange(n_chunks, schedule="dynamic",
                        num_threads=max(1, min(n_threads, n_chunks))):
            failed += not knn_chunk(views, n_trees, &x[0, 0], m, d, min(k, n_points), k, p,
                                    fbound, shrink, tiny, max_leaf, order, c * QUERY_CHUNK,
                                    min(m, (c + 1) * QUERY_CHUNK), &out_d[0, 0], &out_i[0, 0])
    free(order)
    free(views)
    if failed:
        raise MemoryError()


cdef void start_search(Search *s, Py_ssize_t d, int p, double shrink, double tiny, void *off,
                       void *acc, bint radius) noexcept nogil:
    s.d = d
    s.p = p
    s.shrink = shrink
    s.tiny = tiny
    s.off = off
    s.acc = acc
    s.radius = radius
    s.failed = False
    s.kd = NULL
    s.ki = NULL
    s.k = 0
    s.heap = False
    s.count = 0
    s.capacity = 0


cdef bint knn_chunk(const TreeView *views, Py_ssize_t n_trees, const floating *x,
                    Py_ssize_t m, Py_ssize_t d, Py_ssize_t k, Py_ssize_t width, int p,
                    floating bound, double shrink, double tiny, Py_ssize_t max_leaf,
                    const int64_t *order, Py_ssize_t start, Py_ssize_t stop, floating *out_d,
                    int64_t *out_i) noexcept nogil:
    # k best kept per query (k <= width, the row length of the output)
    cdef Search s
    cdef Py_ssize_t pos, q, j, t
    cdef floating *off = <floating *> malloc(d * sizeof(floating))
    cdef floating *acc = <floating *> malloc(max_leaf * sizeof(floating))
    cdef floating *kd = <floating *> malloc(k * sizeof(floating))
    cdef int64_t *ki = <int64_t *> malloc(k * sizeof(int64_t))
    if off == NULL or acc == NULL or kd == NULL or ki == NULL:
        free(off)
        free(acc)
        free(kd)
        free(ki)
        return False
    start_search(&s, d, p, shrink, tiny, off, acc, False)
    s.kd = kd
    s.ki = ki
    s.k = k
    s.heap = k > HEAP_K
    for pos in range(start, stop):
        q = order[pos] if order != NULL else pos
        s.x = x + q * d
        for j in range(k):
            kd[j] = bound
            ki[j] = -1
        for t in range(n_trees):
            for j in range(d):
                off[j] = 0
            search_node(&views[t], &s, 0, <floating> 0)
        finish_knn(&s, out_d + q * width, out_i + q * width, width)
    free(off)
    free(acc)
    free(kd)
    free(ki)
    return True


# ---------------------------------------------------------------------------------------
# Radius queries
# ---------------------------------------------------------------------------------------

cdef void push_result(Search *s, floating dist, int64_t idx) noexcept nogil:
    cdef Py_ssize_t cap
    cdef void *grown_d
    cdef void *grown_i
    if s.count == s.capacity:
        cap = 2 * s.capacity + 64
        grown_d = realloc(s.kd, cap * sizeof(floating))
        if grown_d == NULL:
            s.failed = True
            return
        s.kd = grown_d
        grown_i = realloc(s.ki, cap * sizeof(int64_t))
        if grown_i == NULL:
            s.failed = True
            return
        s.ki = <int64_t *> grown_i
        s.capacity = cap
    (<floating *> s.kd)[s.count] = dist
    s.ki[s.count] = idx
    s.count += 1


cdef void radius_leaf(const TreeView *t, Search *s, Py_ssize_t leaf, floating rd) noexcept nogil:
    cdef const floating *x = <const floating *> s.x
    cdef floating *acc = <floating *> s.acc
    cdef floating r = <floating> s.r
    cdef Py_ssize_t lo, m, i, d = s.d
    if box_distance((<const floating *> t.boxes) + leaf * 2 * d, x, d, s.p) > r:
        return
    lo = t.leaf_start[leaf]
    m = t.leaf_start[leaf + 1] - lo
    leaf_distances((<const floating *> t.points) + lo * d, m, x, d, s.p, acc)
    for i in range(m):
        if acc[i] <= r:
            push_result(s, acc[i], t.perm[lo + i] + t.id_offset)


cdef struct ChunkResult:
    void *dist
    int64_t *ids
    Py_ssize_t count


cdef bint radius_chunk(const TreeView *views, Py_ssize_t n_trees, const floating *x,
                       Py_ssize_t d, int p, const double *r, bint sort_results,
                       double shrink, double tiny, Py_ssize_t max_leaf, const int64_t *order,
                       Py_ssize_t start, Py_ssize_t stop, int64_t *q_start, int64_t *q_count,
                       ChunkResult *out) noexcept nogil:
    cdef Search s
    cdef Py_ssize_t pos, q, j, t, first
    cdef floating *off = <floating *> malloc(d * sizeof(floating))
    cdef floating *acc = <floating *> malloc(max_leaf * sizeof(floating))
    start_search(&s, d, p, shrink, tiny, off, acc, True)
    s.failed = off == NULL or acc == NULL
    pos = start
    while pos < stop and not s.failed:
        q = order[pos] if order != NULL else pos
        s.x = x + q * d
        s.r = r[q]
        first = s.count
        for t in range(n_trees):
            for j in range(d):
                off[j] = 0
            search_node(&views[t], &s, 0, <floating> 0)
        if p == P_TWO and not s.failed:
            for j in range(first, s.count):
                (<floating *> s.kd)[j] = sqrt((<floating *> s.kd)[j])
        if sort_results and not s.failed:
            sort_pairs((<floating *> s.kd) + first, s.ki + first, s.count - first)
        q_start[q] = first
        q_count[q] = s.count - first
        pos += 1
    free(off)
    free(acc)
    out.dist = s.kd
    out.ids = s.ki
    out.count = s.count
    return not s.failed


def radius(list trees, const floating[:, ::1] x, int p, const double[::1] r, bint sort_results,
           Py_ssize_t max_depth, Py_ssize_t max_leaf, int n_threads):
    """Points within reduced distance ``r[q]`` (inclusive) of each row of ``x``.

    Returns ``(ids, distances, offsets)``: query ``q``'s results are
    ``[offsets[q], offsets[q + 1])``, in tree order, or by (distance, id) if
    ``sort_results``.
    """
    import numpy as np

    cdef Py_ssize_t m = x.shape[0], d = x.shape[1], n_trees = len(trees)
    cdef Py_ssize_t n_chunks = (m + QUERY_CHUNK - 1) // QUERY_CHUNK, c, q, pos, i, total = 0
    cdef TreeView *views
    cdef int64_t *order = NULL
    cdef double shrink = rounding_slack(<floating> 0, max_depth, d)
    cdef double tiny = underflow_slack(<floating> 0, max_depth, d)
    cdef int failed = 0
    cdef ChunkResult *chunks
    cdef int64_t[::1] q_start = np.zeros(m, dtype=np.int64)
    cdef int64_t[::1] q_count = np.zeros(m, dtype=np.int64)
    cdef int64_t[::1] offsets = np.zeros(m + 1, dtype=np.int64)
    cdef int64_t[::1] ids
    cdef floating[::1] dist
    cdef const floating *src_d
    cdef const int64_t *src_i
    if m == 0 or n_trees == 0:
        dtype = np.float32 if floating is float else np.float64
        return np.zeros(0, np.int64), np.zeros(0, dtype), np.asarray(offsets)
    views = tree_views(trees, <floating> 0)
    chunks = <ChunkResult *> malloc(n_chunks * sizeof(ChunkResult))
    if chunks == NULL:
        free(views)
        raise MemoryError()
    with nogil:
        if m >= 4 * QUERY_CHUNK and views[0].n_internal > 0:
            order = spatial_order(&views[0], &x[0, 0], m, d, n_threads)
        for c in prange(n_chunks, schedule="dynamic",
                        num_threads=max(1, min(n_threads, n_chunks))):
            failed += not radius_chunk(views, n_trees, &x[0, 0], d, p, &r[0], sort_results,
                                       shrink, tiny, max_leaf, order, c * QUERY_CHUNK,
                                       min(m, (c + 1) * QUERY_CHUNK), &q_start[0],
                                       &q_count[0], &chunks[c])
        for q in range(m):
            offsets[q + 1] = offsets[q] + q_count[q]
        total = offsets[m]
    free(views)
    try:
        if failed:
            raise MemoryError()
        ids = np.empty(total, dtype=np.int64)
        dist = np.empty(total, dtype=np.float32 if floating is float else np.float64)
        # Gather each query's results from its chunk's buffer into query order.
        with nogil:
            for pos in prange(m, schedule="static", num_threads=max(1, min(n_threads, n_chunks))):
                q = order[pos] if order != NULL else pos
                src_d = (<const floating *> chunks[pos // QUERY_CHUNK].dist) + q_start[q]
                src_i = chunks[pos // QUERY_CHUNK].ids + q_start[q]
                for i in range(q_count[q]):
                    dist[offsets[q] + i] = src_d[i]
                    ids[offsets[q] + i] = src_i[i]
    finally:
        for c in range(n_chunks):
            free(chunks[c].dist)
            free(chunks[c].ids)
        free(chunks)
        free(order)
    return np.asarray(ids), np.asarray(dist), np.asarray(offsets)

