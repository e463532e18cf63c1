"""dlkernels._lib.threads.check_n_threads: None, positive and negative counts."""

import os

import numpy as np
import pytest

from dlkernels._lib._openmp_info import max_threads, openmp_enabled
from dlkernels._lib.threads import check_n_threads


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def effective(count: int) -> int:
    """Without OpenMP every kernel runs on one thread."""
    return count if openmp_enabled() else 1


def test_none_is_openmp_default():
    got = check_n_threads(None)
    assert type(got) is int and got >= 1
    assert got == effective(max_threads())


def test_none_honours_omp_num_threads(run_python):
    proc = run_python("-c", "from dlkernels._lib.threads import check_n_threads as c; print(c(None))",
                      env={"OMP_NUM_THREADS": "3"})
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == effective(3)


@pytest.mark.parametrize("n", [1, 2, 3, 4, np.int64(3), np.uint8(2)])
def test_positive_is_taken_as_is(n):
    got = check_n_threads(n)
    assert type(got) is int
    assert got == effective(int(n))


@pytest.mark.parametrize("n", [4 * usable_cores() + 1, 2**31, 2**63, 10**30])
def test_huge_counts_are_capped_at_four_per_core(n):
    # No OverflowError on the way to C, and no thousands of OpenMP threads.
    assert check_n_threads(n) == effective(4 * usable_cores())


def test_three_threads_with_openmp():
    if not openmp_enabled():
        assert check_n_threads(3) == 1
    else:
        assert check_n_threads(3) == 3


@pytest.mark.parametrize("n, want", [(-1, lambda c: c), (-2, lambda c: max(c - 1, 1)),
                                     (-(10**6), lambda c: 1)])
def test_negative_counts_back_from_the_cores(n, want):
    assert check_n_threads(n) == effective(want(usable_cores()))


def test_zero_is_refused():
    with pytest.raises(ValueError, match="n_threads"):
        check_n_threads(0)


@pytest.mark.parametrize("bad", [1.5, 2.0, True, False, np.bool_(True), "2", [2]])
def test_non_int_is_refused(bad):
    with pytest.raises(TypeError, match="n_threads"):
        check_n_threads(bad)
