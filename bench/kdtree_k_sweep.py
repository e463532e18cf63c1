"""CPU time of KDTree queries on one thread, for k from 1 to 100 and sorted radius results.

    python bench/kdtree_k_sweep.py [--repeat 7]

Process CPU time on one thread moves far less with the machine's load than
wall time does, so two builds can be compared in separate runs: for example
the kd-tree before and after a change, each installed into its own folder and
put first on ``PYTHONPATH``. k up to 48 keeps the best in a sorted array,
above in the bounded heap of ``dlkernels/_lib/_heap.pxd``; sorted radius
results use its ``sort_pairs``. Data: 1e6 points uniform in the unit cube
(3-D), 5e4 queries from the same distribution (fixed seed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def best_cpu_seconds(call, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.process_time()
        call()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repeats (best is kept)")
    args = parser.parse_args()

    import dlkernels
    from dlkernels.neighbors import KDTree

    rng = np.random.default_rng(0)
    X, Q = rng.random((1_000_000, 3)), rng.random((50_000, 3))
    tree = KDTree(X, n_threads=1)
    print(f"dlkernels {dlkernels.__version__} from {dlkernels.__file__}")
    print("CPU ms, one thread, best of", args.repeat)
    for k in (1, 4, 10, 32, 48, 49, 100):
        ms = 1e3 * best_cpu_seconds(lambda: tree.query(Q, k=k, n_threads=1), args.repeat)
        print(f"  {f'query k={k}':<26}{ms:8.1f}")
    ms = 1e3 * best_cpu_seconds(
        lambda: tree.query_radius(Q, 0.02, sort_results=True, n_threads=1), args.repeat)
    print(f"  {'query_radius sorted (~34)':<26}{ms:8.1f}")


if __name__ == "__main__":
    main()
