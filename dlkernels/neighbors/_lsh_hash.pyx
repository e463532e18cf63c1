"""Compiled hashing of dlkernels.neighbors.LSHIndex: the codes and keys of stored
vectors, their 8-bit sketches, and the directories of the bucket store.

Two hash families (see lsh.py): the random ones (SimHash for cosine, p-stable for
l2), whose codes are sign bits or slot indices of float64 projections; and the
data-aware one, the leaf of a two-level k-means tree fitted on a sample of the
data. A table's *key* is the 64-bit mix of its code: keys spread evenly over the
directory of the bucket store whatever the data.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, floor, nextafterf, sqrt
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from cython cimport floating

from dlkernels._lib._openmp cimport omp_get_thread_num, threads_for
from dlkernels._lib._random cimport mix64
from dlkernels.neighbors._lsh_kernels cimport (
    argmin,
    centroid_scores,
    dots,
    linear_code,
    project,
    sign_code,
    tree_input,
    tree_leaf,
)

cdef enum:
    # Bytes of the float32 header before the 8-bit codes of a sketch row.
    SKETCH_HEADER = 32
    # Points per thread below which hashing stays on fewer threads.
    PER_THREAD = 256


def random_keys(const floating[:, ::1] points, const double[:, ::1] planes,
                const double[::1] shifts, double width, bint l2, const uint64_t[:, ::1] mult,
                bint store_keys, uint64_t[:, ::1] out, int n_threads):
    """Codes of each point in each table of the random family.

    Cosine: the packed sign bits (``store_keys``: their 64-bit mix, the key the
    bucket store sorts by). L2: the mixed linear combination of the slot
    indices, which is both the public code and the store key.
    """
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], i, j
    cdef int n_tables = mult.shape[0], n_bits = mult.shape[1], t
    cdef Py_ssize_t n_planes = planes.shape[0]
    cdef uint64_t c
    cdef int threads = threads_for(n_threads, n, PER_THREAD)
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


def tree_keys(const floating[:, ::1] points, const float[::1] mean, const float[:, ::1] basis,
              const float[:, :, ::1] coarse, const float[:, ::1] coarse_norms,
              const float[:, :, ::1] fine, const float[:, ::1] fine_norms,
              const int64_t[:, ::1] offsets, bint normalize, bint store_keys,
              uint64_t[:, ::1] out, int n_threads):
    """Leaf of each point in each k-means tree (``store_keys``: its 64-bit mix).

    Points are first projected on the ``basis`` (r, d) of principal directions,
    less ``mean`` (after normalising for cosine). ``coarse`` is (L, c1, r) and
    ``fine`` (L, n_leaves, r), with the squared norms of every centre beside
    them; cell ``a`` of tree ``t`` owns the leaves ``offsets[t, a]:offsets[t, a + 1]``.
    """
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], r = basis.shape[0], i, j
    cdef Py_ssize_t n_tables = coarse.shape[0], c1 = coarse.shape[1], t, widest = c1, width
    cdef int64_t leaf
    cdef int threads = threads_for(n_threads, n, PER_THREAD)
    cdef double *xd_buf
    cdef float *buf
    cdef double *xd
    cdef float *x
    if n == 0:
        return
    for t in range(n_tables):
        for j in range(c1):
            widest = max(widest, offsets[t, j + 1] - offsets[t, j])
    width = d + r + widest
    buf = <float *> malloc(threads * width * sizeof(float))
    xd_buf = <double *> malloc(threads * d * sizeof(double))
    if buf == NULL or xd_buf == NULL:
        free(buf)
        free(xd_buf)
        raise MemoryError()
    for i in prange(n, nogil=True, schedule="static", num_threads=threads):
        x = buf + omp_get_thread_num() * width
        xd = xd_buf + omp_get_thread_num() * d
        for j in range(d):
            xd[j] = <double> points[i, j]
        tree_input(xd, d, normalize, &mean[0], &basis[0, 0], r, x + r, x)
        for t in range(n_tables):
            leaf = tree_leaf(&coarse[t, 0, 0], &coarse_norms[t, 0], &fine[t, 0, 0],
                             &fine_norms[t, 0], &offsets[t, 0], c1, x, r, x + r + d)
            out[i, t] = mix64(<uint64_t> leaf) if store_keys else <uint64_t> leaf
    free(buf)
    free(xd_buf)


cdef void sketch_row(const double *u, Py_ssize_t d, const float *mean, const float *basis,
                     Py_ssize_t s, float *w, float *z, uint8_t *out) noexcept nogil:
    # Header (float32): lo, step, |z^|^2, err, rho, |code|, |u|, unused; then the
    # codes. z are the coordinates of w = u - mean in the sketch's directions
    # (``basis``, s rows; none: z = w), z^ = lo + step * code their rounding, rho
    # the length of what the directions leave out (see _lsh_query.pyx).
    cdef float *head = <float *> out
    cdef uint8_t *codes = out + SKETCH_HEADER
    cdef double lo, hi, step, c, a, e, zz = 0.0, err = 0.0, ww = 0.0, z2 = 0.0, cc = 0.0, uu = 0.0
    cdef float lo32, step32
    cdef Py_ssize_t i
    for i in range(d):
        w[i] = <float> u[i] - mean[i]
        ww += <double> w[i] * <double> w[i]
        uu += u[i] * u[i]
    if basis != NULL:
        dots(basis, s, w, d, z)
    else:
        for i in range(d):
            z[i] = w[i]
    lo = z[0]
    hi = z[0]
    for i in range(1, s):
        lo = z[i] if z[i] < lo else lo
        hi = z[i] if z[i] > hi else hi
    lo32 = <float> lo
    step32 = <float> ((hi - <double> lo32) / 255.0)
    step = step32
    for i in range(s):
        c = floor((<double> z[i] - <double> lo32) / step + 0.5) if step > 0 else 0.0
        c = 0.0 if c < 0.0 else (255.0 if c > 255.0 else c)
        codes[i] = <uint8_t> c
        a = <double> lo32 + step * c          # z^, exactly as the bound assumes it
        e = <double> z[i] - a
        zz += a * a
        err += e * e
        z2 += <double> z[i] * <double> z[i]
        cc += c * c
    head[0] = lo32
    head[1] = step32
    head[2] = <float> zz
    # Rounded up, so that the bounds built on them stay valid.
    head[3] = nextafterf(<float> sqrt(err), INFINITY) * <float> 1.000001
    head[4] = <float> sqrt(ww - z2) if ww > z2 else 0.0
    head[5] = nextafterf(<float> sqrt(cc), INFINITY)
    head[6] = <float> sqrt(uu)
    head[7] = 0.0


def sketch(const floating[:, ::1] points, const float[::1] mean, const float[:, ::1] basis,
           bint normalize, uint8_t[:, ::1] out, int n_threads):
    """The sketch rows of ``points`` (of ``x / |x|`` for cosine): a float32 header,
    then 8-bit codes of the coordinates in ``basis`` (no rows: the coordinates of
    ``x - mean`` themselves)."""
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], i, j
    cdef Py_ssize_t s = basis.shape[0] if basis.shape[0] else d
    cdef const float *rot = &basis[0, 0] if basis.shape[0] else NULL
    cdef int threads = threads_for(n_threads, n, PER_THREAD)
    cdef double *ubuf
    cdef float *fbuf
    cdef double *u
    cdef double norm, scale
    if n == 0:
        return
    ubuf = <double *> malloc(threads * d * sizeof(double))
    fbuf = <float *> malloc(threads * (d + s) * sizeof(float))
    if ubuf == NULL or fbuf == NULL:
        free(ubuf)
        free(fbuf)
        raise MemoryError()
    for i in prange(n, nogil=True, schedule="static", num_threads=threads):
        u = ubuf + omp_get_thread_num() * d
        norm = 0.0
        for j in range(d):
            u[j] = <double> points[i, j]
            norm = norm + u[j] * u[j]
        if normalize:
            scale = 1.0 / sqrt(norm) if norm > 0 else 0.0
            for j in range(d):
                u[j] = u[j] * scale
        sketch_row(u, d, &mean[0], rot, s, fbuf + omp_get_thread_num() * (d + s),
                   fbuf + omp_get_thread_num() * (d + s) + d, &out[i, 0])
    free(ubuf)
    free(fbuf)


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


def nearest(const float[:, ::1] points, const float[:, ::1] centres, const float[::1] norms,
            int64_t[::1] out, int n_threads):
    """Index of the nearest of ``centres`` to each point (the first on ties), by the
    same scores as the trees' leaves."""
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], c = centres.shape[0], i
    cdef int threads = threads_for(n_threads, n, PER_THREAD)
    cdef float *buf
    if n == 0:
        return
    buf = <float *> malloc(threads * c * sizeof(float))
    if buf == NULL:
        raise MemoryError()
    for i in prange(n, nogil=True, schedule="static", num_threads=threads):
        centroid_scores(&centres[0, 0], &norms[0], c, &points[i, 0], d,
                        buf + omp_get_thread_num() * c)
        out[i] = argmin(buf + omp_get_thread_num() * c, c)
    free(buf)


def nearest_in_cells(const float[:, ::1] points, const int64_t[::1] cells,
                     const float[:, ::1] fine, const float[::1] fine_norms,
                     const int64_t[::1] offsets, int64_t[::1] out, int n_threads):
    """For each point, the nearest leaf centre of its own cell (``fine[offsets[a]:
    offsets[a + 1]]`` for cell ``a = cells[i]``): one Lloyd step of every cell's
    k-means at once, by the same scores as the trees' leaves."""
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], i, a, lo, widest = 0
    cdef int threads = threads_for(n_threads, n, PER_THREAD)
    cdef float *buf
    if n == 0:
        return
    for a in range(offsets.shape[0] - 1):
        widest = max(widest, offsets[a + 1] - offsets[a])
    buf = <float *> malloc(threads * max(widest, 1) * sizeof(float))
    if buf == NULL:
        raise MemoryError()
    for i in prange(n, nogil=True, schedule="static", num_threads=threads):
        lo = offsets[cells[i]]
        centroid_scores(&fine[lo, 0], &fine_norms[lo], offsets[cells[i] + 1] - lo, &points[i, 0],
                        d, buf + omp_get_thread_num() * widest)
        out[i] = lo + argmin(buf + omp_get_thread_num() * widest, offsets[cells[i] + 1] - lo)
    free(buf)


def sum_by_label(const float[:, ::1] points, const int64_t[::1] labels, double[:, ::1] out):
    """Add each point to row ``labels[i]`` of ``out``, in point order (float64)."""
    cdef Py_ssize_t n = points.shape[0], d = points.shape[1], i, j
    cdef double *row
    with nogil:
        for i in range(n):
            row = &out[labels[i], 0]
            for j in range(d):
                row[j] += points[i, j]
