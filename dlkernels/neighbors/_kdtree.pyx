"""Compiled core of dlkernels.neighbors.KDTree.

Layout of one static tree over ``n`` points in ``d`` dimensions
----------------------------------------------------------------
The tree is complete and balanced: ``L = 2**D`` leaves, where ``D`` is the least
depth at which no leaf holds more than ``leafsize`` points (and ``L <= n``, so no
leaf is empty). Nodes are numbered in heap order (node ``i`` has children
``2i+1`` and ``2i+2``); the ``L - 1`` internal nodes come first, then leaf ``l``
is node ``L - 1 + l``. Leaf ``l`` holds tree positions
``[leaf_start[l], leaf_start[l + 1])`` with ``leaf_start[l] = l * n // L``, so
every node's range follows from its number: the layout never depends on the
data or on the thread count, which lets subtrees be built in parallel in place.

Each internal node splits its points by rank (the ``mid``-th smallest along the
dimension of widest spread goes right) and records the dimension and two
values: the largest coordinate on the left and the smallest on the right. The
gap between them is empty space that queries use to prune (the Arya & Mount
incremental distance, tightened by the gap).

``points`` holds the coordinates copied in tree order. Each leaf's block of
``m`` rows is stored transposed (``d`` runs of ``m`` values), so the leaf scan is
a tight loop over contiguous memory that the compiler vectorises. ``perm`` maps a
tree position back to the point's id. ``boxes`` holds the tight bounding box of
every leaf (``lo[d]`` then ``hi[d]``), used to skip leaves whose box is beyond
the current search radius.

Distances are computed in the tree's precision (float32 or float64), summed
over dimensions in order, as ``sum((x - y)**2)`` for ``p=2``, ``sum(|x - y|)``
for ``p=1`` and ``max(|x - y|)`` for ``p=inf``. Internally a "reduced" distance
is used (the square for ``p=2``); the square root is taken once per result.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

ctypedef fused floating:
    float
    double

cdef enum:
    # Queries per parallel work item: fixed, so the work split does not depend on
    # the thread count (results never do: each query is computed on its own).
    QUERY_CHUNK = 64
    # Levels built breadth-first with one node per thread before the subtrees
    # below them are built depth-first, one subtree per work item.
    TOP_LEVELS = 6
    # Rows below which selection finishes with an insertion sort.
    SMALL_SELECT = 4
    # Largest pivot sample (odd), and rows per block of the block partition.
    PIVOT_SAMPLE = 63
    PARTITION_BLOCK = 64
    # A node's box is recomputed from its points every this many levels.
    TIGHT_EVERY = 3
    # Points below which a tree is built on one thread.
    PARALLEL_BUILD = 32768
    # k above which the k best are kept in a max-heap instead of a sorted array.
    HEAP_K = 48

# p codes passed from Python.
cdef enum:
    P_INF = 0
    P_ONE = 1
    P_TWO = 2


# ---------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------

def layout(Py_ssize_t n, Py_ssize_t leafsize):
    """Depth ``D`` of the tree over ``n >= 1`` points with leaves of at most ``leafsize``."""
    cdef Py_ssize_t depth = 0
    while (n + (1 << depth) - 1) >> depth > leafsize and (2 << depth) <= n:
        depth += 1
    return depth


cdef inline void swap_rows(floating *pts, int64_t *perm, Py_ssize_t d,
                           Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating t
    cdef int64_t ti
    cdef floating *ra = pts + a * d
    cdef floating *rb = pts + b * d
    for j in range(d):
        t = ra[j]
        ra[j] = rb[j]
        rb[j] = t
    ti = perm[a]
    perm[a] = perm[b]
    perm[b] = ti


cdef void sift_down(floating *pts, int64_t *perm, Py_ssize_t d, Py_ssize_t dim,
                    Py_ssize_t base, Py_ssize_t root, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t child
    while True:
        child = 2 * root + 1
        if child >= size:
            return
        if child + 1 < size and pts[(base + child + 1) * d + dim] > pts[(base + child) * d + dim]:
            child += 1
        if pts[(base + root) * d + dim] >= pts[(base + child) * d + dim]:
            return
        swap_rows(pts, perm, d, base + root, base + child)
        root = child


cdef void heapsort_rows(floating *pts, int64_t *perm, Py_ssize_t d, Py_ssize_t dim,
                        Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    # The worst-case fallback of select_rows: O(m log m) whatever the data.
    cdef Py_ssize_t size = hi - lo, i
    i = size // 2
    while i > 0:
        i -= 1
        sift_down(pts, perm, d, dim, lo, i, size)
    i = size
    while i > 1:
        i -= 1
        swap_rows(pts, perm, d, lo, lo + i)
        sift_down(pts, perm, d, dim, lo, 0, i)


cdef floating sample_pivot(const floating *pts, Py_ssize_t d, Py_ssize_t dim, Py_ssize_t lo,
                           Py_ssize_t hi, Py_ssize_t kth) noexcept nogil:
    """A pivot near rank ``kth``: that quantile of a sorted evenly spaced sample, so one
    partition leaves ``kth`` close to the edge of its side (Floyd & Rivest's idea)."""
    cdef floating sample[PIVOT_SAMPLE]
    cdef Py_ssize_t m = hi - lo, s = 3, i, j
    cdef floating v
    while s < PIVOT_SAMPLE and s * s * 16 < m:
        s = 2 * s + 1
    for i in range(s):
        v = pts[(lo + (2 * i + 1) * m // (2 * s)) * d + dim]
        j = i
        while j > 0 and sample[j - 1] > v:
            sample[j] = sample[j - 1]
            j -= 1
        sample[j] = v
    return sample[(kth - lo) * s // m]


cdef Py_ssize_t partition(floating *pts, int64_t *perm, Py_ssize_t d, Py_ssize_t dim,
                          Py_ssize_t lo, Py_ssize_t hi, floating pivot,
                          bint or_equal) noexcept nogil:
    """Reorder rows ``[lo, hi)`` so that those whose key is below ``pivot`` (or equal to
    it, if ``or_equal``) come first; return where the others start.

    Block partitioning (Edelkamp & Weiss, "BlockQuicksort", ESA 2016): the keys of a
    block are classified without branches, recording the offsets of misplaced rows,
    and only those are swapped. Random data would make the branches of a classic
    partition mispredict on every other row.
    """
    cdef unsigned char off_l[PARTITION_BLOCK]
    cdef unsigned char off_r[PARTITION_BLOCK]
    cdef Py_ssize_t l = lo, r = hi, n_l = 0, n_r = 0, s_l = 0, s_r = 0, num, i, t
    cdef floating key
    cdef int eq = or_equal
    while r - l > 2 * PARTITION_BLOCK:
        if n_l == 0:
            s_l = 0
            for i in range(PARTITION_BLOCK):
                key = pts[(l + i) * d + dim]
                off_l[n_l] = <unsigned char> i
                # misplaced on the left: not (key < pivot or (eq and key == pivot))
                n_l += 1 - ((key < pivot) | (eq & (key == pivot)))
        if n_r == 0:
            s_r = 0
            for i in range(PARTITION_BLOCK):
                key = pts[(r - 1 - i) * d + dim]
                off_r[n_r] = <unsigned char> i
                n_r += (key < pivot) | (eq & (key == pivot))
        num = n_l if n_l < n_r else n_r
        for t in range(num):
            swap_rows(pts, perm, d, l + off_l[s_l + t], r - 1 - off_r[s_r + t])
        n_l -= num
        n_r -= num
        s_l += num
        s_r += num
        if n_l == 0:
            l += PARTITION_BLOCK
        if n_r == 0:
            r -= PARTITION_BLOCK
    # [lo, l) all go left, [r, hi) all go right: finish the rest the classic way.
    i = l
    t = r - 1
    while True:
        while i <= t and ((pts[i * d + dim] < pivot) or (eq and pts[i * d + dim] == pivot)):
            i += 1
        while i <= t and not ((pts[t * d + dim] < pivot) or (eq and pts[t * d + dim] == pivot)):
            t -= 1
        if i >= t:
            return i
        swap_rows(pts, perm, d, i, t)
        i += 1
        t -= 1


cdef void select_rows(floating *pts, int64_t *perm, Py_ssize_t d, Py_ssize_t dim,
                      Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t kth) noexcept nogil:
    """Reorder rows ``[lo, hi)`` so that row ``kth`` holds the value of its rank along
    ``dim``, rows before it are ``<=`` and rows after it ``>=``.

    Quickselect with sampled pivots and block partitions, O(m) expected; if the
    partitions stop shrinking (adversarial data), heapsort finishes in O(m log m).
    """
    cdef Py_ssize_t budget = 16, m = hi - lo, p, i, j
    cdef floating pivot, key
    while m > 1:
        m >>= 1
        budget += 2
    while hi - lo > SMALL_SELECT:
        budget -= 1
        if budget == 0:
            heapsort_rows(pts, perm, d, dim, lo, hi)
            return
        pivot = sample_pivot(pts, d, dim, lo, hi, kth)
        p = partition(pts, perm, d, dim, lo, hi, pivot, False)
        if kth < p:
            hi = p      # the pivot itself lies in [p, hi): progress
        elif p > lo:
            lo = p
        else:
            # Every key is >= pivot: split off the rows equal to it (at least one).
            p = partition(pts, perm, d, dim, lo, hi, pivot, True)
            if kth < p:
                return  # row kth and all before it equal the pivot, all after are >=
            lo = p
    for i in range(lo + 1, hi):
        j = i
        key = pts[j * d + dim]
        while j > lo and pts[(j - 1) * d + dim] > key:
            swap_rows(pts, perm, d, j - 1, j)
            j -= 1


cdef void rows_box(const floating *pts, Py_ssize_t d, Py_ssize_t lo, Py_ssize_t hi,
                   floating *box) noexcept nogil:
    """Tight bounding box (``lo[d]`` then ``hi[d]``) of rows ``[lo, hi)``."""
    cdef Py_ssize_t i, j
    cdef floating v, a, b
    for j in range(d):
        # One coordinate at a time keeps the running min and max in registers.
        a = INFINITY
        b = -INFINITY
        for i in range(lo, hi):
            v = pts[i * d + j]
            a = v if v < a else a
            b = v if v > b else b
        box[j] = a
        box[d + j] = b


cdef void split_node(floating *pts, int64_t *perm, Py_ssize_t d, int32_t *dims,
                     floating *vals, floating *boxes, const int64_t *leaf_start,
                     Py_ssize_t depth, Py_ssize_t node) noexcept nogil:
    """Split internal ``node``: along the widest side of its box, at the median.

    ``boxes`` holds a box for every node (build scratch). The root's is tight; a
    child's box is its parent's with the split side cut to the child's extent,
    and every TIGHT_EVERY levels the box is recomputed from the node's points so
    that sides never split stay honest on clustered data.
    """
    cdef Py_ssize_t level = 0, first, i, j, dim = 0, lo, hi, mid, shift
    cdef floating spread = -1, s, lmax
    cdef floating *box = boxes + node * 2 * d
    cdef floating *left = boxes + (2 * node + 1) * 2 * d
    cdef floating *right = boxes + (2 * node + 2) * 2 * d
    while (2 << level) - 1 <= node:
        level += 1
    first = node - ((1 << level) - 1)          # position within its level
    shift = depth - level
    lo = leaf_start[first << shift]
    hi = leaf_start[(first + 1) << shift]
    mid = leaf_start[(2 * first + 1) << (shift - 1)]
    if level > 0 and level % TIGHT_EVERY == 0:
        rows_box(pts, d, lo, hi, box)
    for j in range(d):
        s = box[d + j] - box[j]
        if s > spread:
            spread = s
            dim = j
    select_rows(pts, perm, d, dim, lo, hi, mid)
    lmax = -INFINITY
    for i in range(lo, mid):
        s = pts[i * d + dim]
        lmax = s if s > lmax else lmax
    for j in range(2 * d):
        left[j] = box[j]
        right[j] = box[j]
    left[d + dim] = lmax
    right[dim] = pts[mid * d + dim]
    dims[node] = <int32_t> dim
    vals[2 * node] = lmax                     # left max
    vals[2 * node + 1] = pts[mid * d + dim]   # right min


cdef void build_subtree(floating *pts, int64_t *perm, Py_ssize_t d, int32_t *dims,
                        floating *vals, floating *boxes, const int64_t *leaf_start,
                        Py_ssize_t depth, Py_ssize_t node) noexcept nogil:
    cdef Py_ssize_t n_internal = (1 << depth) - 1
    if node >= n_internal:
        return
    split_node(pts, perm, d, dims, vals, boxes, leaf_start, depth, node)
    build_subtree(pts, perm, d, dims, vals, boxes, leaf_start, depth, 2 * node + 1)
    build_subtree(pts, perm, d, dims, vals, boxes, leaf_start, depth, 2 * node + 2)


cdef void finish_leaf(floating *pts, Py_ssize_t d, Py_ssize_t lo, Py_ssize_t hi,
                      floating *box, floating *tmp) noexcept nogil:
    """Tight box of a leaf, and its block transposed to one run per coordinate."""
    cdef Py_ssize_t m = hi - lo, i, j
    cdef floating *blk = pts + lo * d
    rows_box(pts, d, lo, hi, box)
    memcpy(tmp, blk, m * d * sizeof(floating))
    for i in range(m):
        for j in range(d):
            blk[j * m + i] = tmp[i * d + j]


def build(const floating[:, ::1] data, floating[::1] points, int64_t[::1] perm,
          int32_t[::1] dims, floating[::1] vals, floating[::1] boxes,
          const int64_t[::1] leaf_start, Py_ssize_t depth, int n_threads):
    """Fill the arrays of one tree (shapes set by the caller from ``layout``).

    ``points`` (n*d), ``perm`` (n), ``dims`` (max(L-1, 1)), ``vals`` (2 max(L-1, 1)),
    ``boxes`` (L*2d: the leaves' tight boxes), ``leaf_start`` (L+1, filled).
    """
    cdef Py_ssize_t n = data.shape[0], d = data.shape[1], i, level, width
    cdef Py_ssize_t n_leaves = 1 << depth, n_internal = n_leaves - 1, top, l, max_leaf = 0
    cdef floating *pts = &points[0]
    cdef int64_t *pm = &perm[0]
    cdef int32_t *dm = &dims[0]
    cdef floating *vl = &vals[0]
    cdef const int64_t *ls = &leaf_start[0]
    cdef floating *scratch
    cdef floating *tmp
    for l in range(n_leaves):
        max_leaf = max(max_leaf, ls[l + 1] - ls[l])
    if n < PARALLEL_BUILD:
        n_threads = 1  # waking threads would cost more than the whole build
    n_threads = max(1, min(n_threads, n_leaves))
    scratch = <floating *> malloc((2 * n_leaves - 1) * 2 * d * sizeof(floating))
    tmp = <floating *> malloc(max_leaf * d * sizeof(floating) * max(1, n_threads))
    if scratch == NULL or tmp == NULL:
        free(scratch)
        free(tmp)
        raise MemoryError()
    with nogil:
        memcpy(pts, &data[0, 0], n * d * sizeof(floating))
        for i in range(n):
            pm[i] = i
        rows_box(pts, d, 0, n, scratch)
        top = min(depth, <Py_ssize_t> TOP_LEVELS)
        # Top levels breadth-first, the nodes of a level in parallel.
        for level in range(top):
            width = 1 << level
            for i in prange(width, schedule="dynamic", num_threads=max(1, min(n_threads, width))):
                split_node(pts, pm, d, dm, vl, scratch, ls, depth, width - 1 + i)
        # Then one subtree per work item, depth-first (it soon fits in cache).
        width = 1 << top
        for i in prange(width, schedule="dynamic", num_threads=max(1, min(n_threads, width))):
            build_subtree(pts, pm, d, dm, vl, scratch, ls, depth, width - 1 + i)
        # Leaves: tight boxes and transposed blocks (a fixed range of leaves per thread).
        for i in prange(n_threads, schedule="static", num_threads=max(1, n_threads)):
            for l in range(i * n_leaves // n_threads, (i + 1) * n_leaves // n_threads):
                finish_leaf(pts, d, ls[l], ls[l + 1], &boxes[l * 2 * d], tmp + i * max_leaf * d)
    free(scratch)
    free(tmp)


def extract(const floating[::1] points, const int64_t[::1] perm, const int64_t[::1] leaf_start,
            floating[:, ::1] out):
    """Write the points back in id order: ``out[perm[i]] = row i`` (the inverse of build)."""
    cdef Py_ssize_t d = out.shape[1], n_leaves = leaf_start.shape[0] - 1, l, i, j, lo, m
    with nogil:
        for l in range(n_leaves):
            lo = leaf_start[l]
            m = leaf_start[l + 1] - lo
            for i in range(m):
                for j in range(d):
                    out[perm[lo + i], j] = points[lo * d + j * m + i]


def check_tree(const floating[::1] points, const int64_t[::1] perm, const int32_t[::1] dims,
               const floating[::1] vals, const floating[::1] boxes,
               const int64_t[::1] leaf_start, Py_ssize_t d):
    """Structural check of loaded arrays: an error message, or '' if consistent.

    Checks what the query kernels rely on to stay in bounds (dimensions in range,
    ``perm`` a permutation) and what they rely on to be exact (every point
    inside its leaf's box, every leaf box inside the gap bounds of its ancestors).
    """
    cdef Py_ssize_t n = perm.shape[0], n_leaves = leaf_start.shape[0] - 1
    cdef Py_ssize_t n_internal = n_leaves - 1, i, j, l, lo, m, node, parent
    cdef char *seen
    cdef floating v
    cdef const floating *box
    for i in range(n_internal):
        if dims[i] < 0 or dims[i] >= d:
            return f"split dimension {dims[i]} of node {i} is outside [0, {d})"
    seen = <char *> malloc(n)
    if seen == NULL:
        raise MemoryError()
    for i in range(n):
        seen[i] = 0
    for i in range(n):
        if perm[i] < 0 or perm[i] >= n or seen[perm[i]]:
            free(seen)
            return f"perm is not a permutation of range({n})"
        seen[perm[i]] = 1
    free(seen)
    for l in range(n_leaves):
        lo = leaf_start[l]
        m = leaf_start[l + 1] - lo
        box = &boxes[l * 2 * d]
        for i in range(m):
            for j in range(d):
                v = points[lo * d + j * m + i]
                if not (box[j] <= v <= box[d + j]):
                    return f"point at tree position {lo + i} lies outside its leaf's box"
        # Walk up: the leaf's box must respect each ancestor's split values.
        node = n_internal + l
        while node > 0:
            parent = (node - 1) >> 1
            j = dims[parent]
            if node == 2 * parent + 1:
                if box[d + j] > vals[2 * parent]:
                    return f"leaf {l} reaches past the left bound of node {parent}"
            elif box[j] < vals[2 * parent + 1]:
                return f"leaf {l} reaches past the right bound of node {parent}"
            node = parent
    return ""


def first_outside(const floating[::1] values, double bound):
    """First position whose value is NaN or infinite or beyond ``bound`` in absolute
    value, else -1 (``bound`` is a power of two, exact in float32 and float64)."""
    cdef Py_ssize_t i, found = -1
    cdef floating v, b = <floating> bound
    with nogil:
        for i in range(values.shape[0]):
            v = values[i]
            if not (-b <= v <= b):
                found = i
                break
    return found


# ---------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------

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


cdef inline bint pair_less(floating da, int64_t ia, floating db, int64_t ib) noexcept nogil:
    return da < db or (da == db and ia < ib)


cdef inline void sift_down_pairs(floating *kd, int64_t *ki, Py_ssize_t size, Py_ssize_t i,
                                 floating dist, int64_t idx) noexcept nogil:
    """Put (dist, idx) at ``i`` of a max-heap of (distance, id) pairs and sift it down."""
    cdef Py_ssize_t c
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and pair_less(kd[c], ki[c], kd[c + 1], ki[c + 1]):
            c += 1
        if not pair_less(dist, idx, kd[c], ki[c]):
            break
        kd[i] = kd[c]
        ki[i] = ki[c]
        i = c
    kd[i] = dist
    ki[i] = idx


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
    cdef const floating *box = (<const floating *> t.boxes) + leaf * 2 * d
    if box_distance(box, x, d, s.p) >= bound:
        return
    lo = t.leaf_start[leaf]
    m = t.leaf_start[leaf + 1] - lo
    leaf_distances((<const floating *> t.points) + lo * d, m, x, d, s.p, acc)
    for i in range(m):
        dist = acc[i]
        if dist < bound:
            if s.heap:
                # The root (the k-th best so far) makes way for a closer point.
                sift_down_pairs(kd, ki, k, 0, dist, t.perm[lo + i] + t.id_offset)
                bound = kd[0]
            else:
                j = k - 1
                while j > 0 and kd[j - 1] > dist:
                    kd[j] = kd[j - 1]
                    ki[j] = ki[j - 1]
                    j -= 1
                kd[j] = dist
                ki[j] = t.perm[lo + i] + t.id_offset
                bound = kd[k - 1]


cdef inline bint may_hold(Search *s, floating rd) noexcept nogil:
    """Whether a cell at reduced distance ``rd`` (a lower bound, see rounding_slack)
    may hold a result: closer than the k-th best, or within the radius."""
    cdef floating low = rd * <floating> s.shrink - <floating> s.tiny
    if s.radius:
        return low <= <floating> s.r
    return low < kth(<floating *> s.kd, s.k, s.heap)


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


cdef void finish_knn(Search *s, floating *out_d, int64_t *out_i) noexcept nogil:
    """Turn reduced distances into distances, sort by (distance, id), pad."""
    cdef floating *kd = <floating *> s.kd
    cdef int64_t *ki = s.ki
    cdef Py_ssize_t k = s.k, i, j
    cdef floating dv
    cdef int64_t iv
    if s.heap:
        sort_pairs(kd, ki, k)  # padding (bound, -1) sorts last: real results are < bound
    for i in range(k):
        if ki[i] < 0:
            kd[i] = INFINITY
        elif s.p == P_TWO:
            kd[i] = sqrt(kd[i])
    # Insertion sort by (distance, id). The array is sorted by distance already (the
    # square root keeps the order but may round distinct values together), so this
    # only orders ties, in O(k) when there are few.
    for i in range(1, k):
        dv = kd[i]
        iv = ki[i]
        j = i
        while j > 0 and (kd[j - 1] > dv or (kd[j - 1] == dv and ki[j - 1] > iv)):
            kd[j] = kd[j - 1]
            ki[j] = ki[j - 1]
            j -= 1
        kd[j] = dv
        ki[j] = iv
    for i in range(k):
        out_d[i] = kd[i]
        out_i[i] = ki[i]


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
    distance (then id) and padded with inf / -1.
    """
    cdef Py_ssize_t m = x.shape[0], d = x.shape[1], n_trees = len(trees)
    cdef Py_ssize_t n_chunks = (m + QUERY_CHUNK - 1) // QUERY_CHUNK, c
    cdef TreeView *views
    cdef int64_t *order = NULL
    cdef double shrink = rounding_slack(<floating> 0, max_depth, d)
    cdef double tiny = underflow_slack(<floating> 0, max_depth, d)
    cdef int failed = 0
    cdef floating fbound = <floating> bound
    if m == 0 or n_trees == 0:
        return
    views = tree_views(trees, <floating> 0)
    with nogil:
        if m >= 4 * QUERY_CHUNK and views[0].n_internal > 0:
            order = spatial_order(&views[0], &x[0, 0], m, d, n_threads)
        for c in prange(n_chunks, schedule="dynamic",
                        num_threads=max(1, min(n_threads, n_chunks))):
            failed += not knn_chunk(views, n_trees, &x[0, 0], m, d, k, p, fbound, shrink,
                                    tiny, max_leaf, order, c * QUERY_CHUNK,
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
                    Py_ssize_t m, Py_ssize_t d, Py_ssize_t k, int p, floating bound,
                    double shrink, double tiny, Py_ssize_t max_leaf, const int64_t *order,
                    Py_ssize_t start, Py_ssize_t stop, floating *out_d,
                    int64_t *out_i) noexcept nogil:
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
        finish_knn(&s, out_d + q * k, out_i + q * k)
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


cdef void sort_pairs(floating *kd, int64_t *ki, Py_ssize_t n) noexcept nogil:
    """Sort (distance, id) pairs ascending: insertion sort when short, else heapsort."""
    cdef Py_ssize_t i, j
    cdef floating dv
    cdef int64_t iv
    if n <= 32:
        for i in range(1, n):
            dv = kd[i]
            iv = ki[i]
            j = i
            while j > 0 and pair_less(dv, iv, kd[j - 1], ki[j - 1]):
                kd[j] = kd[j - 1]
                ki[j] = ki[j - 1]
                j -= 1
            kd[j] = dv
            ki[j] = iv
        return
    i = n // 2
    while i > 0:
        i -= 1
        sift_down_pairs(kd, ki, n, i, kd[i], ki[i])
    i = n
    while i > 1:
        # The largest goes to the end; the last element sifts down from the root.
        i -= 1
        dv = kd[i]
        iv = ki[i]
        kd[i] = kd[0]
        ki[i] = ki[0]
        sift_down_pairs(kd, ki, i, 0, dv, iv)


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

