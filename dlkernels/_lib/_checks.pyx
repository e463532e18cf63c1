"""One-pass input checks behind dlkernels._lib.validation.

Each returns the position of the first offending element, or -1: one pass over
the data and no temporaries, where the numpy equivalent takes several passes
(isfinite, any, min, max). That matters for the small batches of hot paths.
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t


def first_invalid_float(const double[::1] values, bint nonnegative):
    """First position that is NaN or infinite (or negative, if ``nonnegative``), else -1."""
    cdef Py_ssize_t i, found = -1
    cdef double v
    with nogil:
        for i in range(values.shape[0]):
            v = values[i]
            if not isfinite(v) or (nonnegative and v < 0):
                found = i
                break
    return found


def first_out_of_range(const int64_t[::1] indices, int64_t size):
    """First position outside ``[0, size)``, else -1."""
    cdef Py_ssize_t i, found = -1
    with nogil:
        for i in range(indices.shape[0]):
            if indices[i] < 0 or indices[i] >= size:
                found = i
                break
    return found
