"""What the compiled kernels see of OpenMP at run time."""

from fastdl._lib._openmp cimport FASTDL_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True if the kernels were compiled with OpenMP."""
    return bool(FASTDL_OPENMP_ENABLED)


def max_threads():
    """OpenMP's default thread count now (honours OMP_NUM_THREADS and threadpoolctl)."""
    return int(omp_get_max_threads())
