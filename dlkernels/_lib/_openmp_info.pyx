"""What the compiled kernels see of OpenMP at run time."""

from dlkernels._lib._openmp cimport DLKERNELS_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True if the kernels were compiled with OpenMP."""
    return bool(DLKERNELS_OPENMP_ENABLED)


def max_threads():
    """OpenMP's default thread count now (honours OMP_NUM_THREADS and threadpoolctl)."""
    return int(omp_get_max_threads())
