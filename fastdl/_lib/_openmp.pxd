# The one place where kernels meet OpenMP (scikit-learn's _openmp_helpers pattern).
# Without OpenMP the calls below fall back to single-threaded stand-ins, and
# Cython's prange compiles to a plain loop, so every kernel still builds and runs.

cdef extern from *:
    """
    #ifdef _OPENMP
        #include <omp.h>
        #define FASTDL_OPENMP_ENABLED 1
    #else
        #define FASTDL_OPENMP_ENABLED 0
        #define omp_get_max_threads() 1
        #define omp_get_thread_num() 0
    #endif
    """
    bint FASTDL_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
