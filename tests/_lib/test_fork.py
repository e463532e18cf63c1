"""Kernels stay usable in a child made by fork after OpenMP ran with threads.

GNU OpenMP's thread pool does not survive fork: without care, the child's first
parallel region waits forever for threads that do not exist. Each case runs in a
subprocess with a timeout, so a hang fails the test instead of the suite.
"""

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")

PARENT_THEN_CHILD = r"""
import multiprocessing as mp, os, sys
import numpy as np
{setup}
def call():
    return {call}
before = call()                      # the parent's OpenMP pool now exists
def child(queue):
    queue.put(np.array_equal(call(), before))
if sys.argv[1] == "fork":
    pid = os.fork()
    if pid == 0:
        os._exit(0 if np.array_equal(call(), before) else 3)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
else:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(queue,))
    proc.start()
    print("child", 0 if queue.get(timeout=60) else 3)
    proc.join()
# The parent keeps its threads.
from dlkernels._lib.threads import check_n_threads
print("parent", check_n_threads(2))
"""

CASES = {
    "AliasSampler": ("from dlkernels.sampling import AliasSampler\n"
                     "s = AliasSampler(np.arange(1.0, 1001.0))",
                     "s.sample(10**6, rng=0, n_threads=2)"),
    "KDTree": ("from dlkernels.neighbors import KDTree\n"
               "X = np.random.default_rng(0).standard_normal((50_000, 3))\nt = KDTree(X)",
               "t.query(X[:20_000], k=3, n_threads=2)[1]"),
    "kmeans": ("from dlkernels.cluster import kmeans\n"
               "X = np.random.default_rng(0).standard_normal((20_000, 4))",
               "kmeans(X, 8, rng=0, n_threads=2).labels"),
}


@pytest.mark.parametrize("how", ["fork", "multiprocessing"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_child_after_fork_runs_and_agrees(run_python, case, how):
    setup, call = CASES[case]
    code = PARENT_THEN_CHILD.format(setup=setup, call=call)
    proc = run_python("-c", code, how, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert "child 0" in lines
    from dlkernels._lib._openmp_info import openmp_enabled
    assert f"parent {2 if openmp_enabled() else 1}" in lines


def test_child_runs_single_threaded_only_after_openmp(run_python):
    code = ("import os\nfrom dlkernels._lib.threads import check_n_threads, forked_after_openmp\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(10 + forked_after_openmp())\n"
            "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
            "check_n_threads(2)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(10 + forked_after_openmp() + 2 * (check_n_threads(2) == 1))\n"
            "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    proc = run_python("-c", code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    from dlkernels._lib._openmp_info import openmp_enabled
    # Before any threaded call a child keeps its threads; after one it runs on one.
    assert proc.stdout.split() == (["10", "13"] if openmp_enabled() else ["10", "10"])
