"""The ``n_threads`` argument of every parallel kernel."""

from __future__ import annotations

import numbers
import os

from dlkernels._lib._openmp_info import max_threads, openmp_enabled

__all__ = ["check_n_threads"]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        return os.cpu_count() or 1


def check_n_threads(n_threads) -> int:
    """Resolve ``n_threads`` to a positive thread count.

    ``None`` is OpenMP's default (``OMP_NUM_THREADS``, or a threadpoolctl limit);
    a positive int is taken as is; a negative int counts back from the number of
    usable cores as in scikit-learn (-1 is all of them, -2 all but one). Without
    OpenMP every kernel runs on one thread whatever is asked.
    """
    if n_threads is None:
        count = max_threads()
    elif isinstance(n_threads, numbers.Integral) and not isinstance(n_threads, bool):
        n_threads = int(n_threads)
        if n_threads == 0:
            raise ValueError("n_threads must be a positive or negative int or None, got 0")
        count = n_threads if n_threads > 0 else max(_cpu_count() + 1 + n_threads, 1)
    else:
        raise TypeError(f"n_threads must be an int or None, got {type(n_threads).__name__}")
    return count if openmp_enabled() else 1
