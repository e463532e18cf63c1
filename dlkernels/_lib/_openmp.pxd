# The one place where kernels meet OpenMP (scikit-learn's _openmp_helpers pattern).
# Without OpenMP the calls below fall back to single-threaded stand-ins, and
# Cython's prange compiles to a plain loop, so every kernel still builds and runs.

cdef extern from *:
    """
    #ifdef _OPENMP
        #include <omp.h>
        #define DLKERNELS_OPENMP_ENABLED 1
    #else
        #define DLKERNELS_OPENMP_ENABLED 0
        #define omp_get_max_threads() 1
        #define omp_get_thread_num() 0
    #endif
    """
    bint DLKERNELS_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil


cdef inline int threads_for(int n_threads, Py_ssize_t n_chunks,
                            Py_ssize_t min_chunks_per_thread) noexcept nogil:
    # How many of `n_threads` a loop over `n_chunks` should wake. Waking a thread
    # costs microseconds, and a scheduler time slice (milliseconds) when its core
    # is busy with other work, so each thread gets at least `min_chunks_per_thread`.
    # Results never depend on this: chunks, not threads, own the random streams.
    cdef Py_ssize_t useful = n_chunks // min_chunks_per_thread
    return <int> max(1, min(<Py_ssize_t> n_threads, useful))
