"""The ``n_threads`` argument of every parallel kernel, and OpenMP after ``fork``."""

from __future__ import annotations

import numbers
import os

from dlkernels._lib._openmp_info import max_threads, openmp_enabled

__all__ = ["check_n_threads", "forked_after_openmp"]

# Set once a kernel has been asked for more than one thread: from then on the
# process may own an OpenMP thread pool.
_pool_may_exist = False
# True in a child process forked after that: GNU OpenMP's pool does not survive
# fork (its threads are gone, its state says they exist), and the child's first
# parallel region waits for them forever. The child runs every kernel on one
# thread instead, as torch does; results do not depend on the thread count.
_forked_after_openmp = False


def _after_fork_in_child() -> None:
    global _forked_after_openmp
    _forked_after_openmp = _forked_after_openmp or _pool_may_exist


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def forked_after_openmp() -> bool:
    """True in a process forked after OpenMP ran with threads (kernels then use one)."""
    return _forked_after_openmp


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        return os.cpu_count() or 1


def check_n_threads(n_threads) -> int:
    """Resolve ``n_threads`` to a positive thread count.

    ``None`` is OpenMP's default (``OMP_NUM_THREADS``, or a threadpoolctl limit);
    a positive int is taken as is, up to four times the usable cores (more
    threads only add switching; results never depend on the count); a negative
    int counts back from the number of usable cores as in scikit-learn (-1 is
    all of them, -2 all but one). Without OpenMP, and in a child forked after
    OpenMP ran, every kernel runs on one thread whatever is asked.
    """
    global _pool_may_exist
    if n_threads is None:
        count = max_threads()
    elif isinstance(n_threads, numbers.Integral) and not isinstance(n_threads, bool):
        n_threads = int(n_threads)
        if n_threads == 0:
            raise ValueError("n_threads must be a positive or negative int or None, got 0")
        cores = _cpu_count()
        count = min(n_threads, 4 * cores) if n_threads > 0 else max(cores + 1 + n_threads, 1)
    else:
        raise TypeError(f"n_threads must be an int or None, got {type(n_threads).__name__}")
    if not openmp_enabled() or _forked_after_openmp:
        return 1
    if count > 1:
        _pool_may_exist = True
    return count
