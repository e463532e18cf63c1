"""Compiled core of dlkernels.neighbors.KDTree: building one static tree.

The search over the trees built here is ``_kdtree_query``.

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
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

ctypedef fused floating:
    float
    double

cdef enum:
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


def layout(Py_ssize_t n, Py_ssize_t leafsize):
    """Depth ``D`` of the tree over ``n >= 1`` points with leaves of at most ``leafsize``."""
    cdef Py_ssize_t depth = 0
    # ceil(n / 2**D) > leafsize and 2**(D + 1) <= n, in shifts that cannot overflow
    # (a file may claim n up to 2**63 - 1 before its arrays are checked).
    while ((n - 1) >> depth) >= leafsize and (n >> depth) >= 2:
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
