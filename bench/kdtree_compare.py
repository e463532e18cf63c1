"""Time dlkernels's KDTree against pykdtree and SciPy in one process; print the target ratios.

    python bench/kdtree_compare.py                  # targets a, b, c at 2 threads
    python bench/kdtree_compare.py a c --repeat 5 --threads 2

Targets (issue 3), each "peer time / dlkernels time" with both sides from this run:

  a  1e6 uniform 3-D points, 1e5 queries, k=10: build + query, >= 1.3x the faster
     of pykdtree and cKDTree(...).query(workers)
  b  the same on clustered 8-D data
  c  radius queries (about 20 neighbours each) against cKDTree.query_ball_point(workers),
     on the uniform 3-D data (and, as extra information, the clustered 8-D data)

The implementations are called in turn within each repeat (interleaved, so a
change in machine load hits all of them), and each keeps its best repeat.
Every implementation gets the same thread count: ``n_threads`` for dlkernels,
``workers`` for SciPy, the OpenMP limit (threadpoolctl) for pykdtree.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time

import numpy as np

# `python bench/kdtree_compare.py` puts bench/ on sys.path, which makes this importable.
from benchmarks.neighbors_kdtree import IMPLS, RADIUS, RADIUS_IMPLS, Implementation, dataset

TARGET = 1.3
CASES = {
    "a": ("k-NN, uniform 3-D", "uniform3d", "knn", IMPLS),
    "b": ("k-NN, clustered 8-D", "clustered8d", "knn", IMPLS),
    "c": ("radius, uniform 3-D", "uniform3d", "radius", RADIUS_IMPLS),
    "c8": ("radius, clustered 8-D", "clustered8d", "radius", RADIUS_IMPLS),
}


def available(impls, n_threads):
    libs = {}
    for impl in impls:
        try:
            libs[impl] = Implementation(impl, n_threads)
        except NotImplementedError as skipped:
            print(f"  {impl}: skipped ({skipped})")
    return libs


def time_case(data: str, kind: str, libs: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Best build, query and build+query seconds per implementation."""
    points, queries = dataset(data)
    best = {impl: {"build": np.inf, "query": np.inf, "total": np.inf} for impl in libs}
    for _ in range(repeats):
        for impl, lib in libs.items():
            gc.collect()
            start = time.perf_counter()
            tree = lib.build(points)
            built = time.perf_counter()
            if kind == "knn":
                lib.knn(tree, queries)
            else:
                lib.radius(tree, queries, RADIUS[data])
            done = time.perf_counter()
            del tree
            b = best[impl]
            b["build"] = min(b["build"], built - start)
            b["query"] = min(b["query"], done - built)
            b["total"] = min(b["total"], done - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="case", help="a, b, c, c8 (default: a b c)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats (best is kept)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every implementation")
    args = parser.parse_args()
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")

    import dlkernels

    print(f"dlkernels {dlkernels.__version__}, numpy {np.__version__}, python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, {args.threads} threads, "
          f"best of {args.repeat}")
    results = {}
    for case in args.cases or ["a", "b", "c"]:
        title, data, kind, impls = CASES[case]
        libs = available(impls, args.threads)
        start = time.perf_counter()
        best = time_case(data, kind, libs, args.repeat)
        results[case] = best
        print(f"\n({case}) {title}  [{time.perf_counter() - start:.0f} s]")
        print(f"  {'impl':10} {'build':>9} {'query':>9} {'total':>9}   ratio total (query)")
        ours = best.get("dlkernels")
        for impl, b in best.items():
            ratio = "" if impl == "dlkernels" or ours is None else \
                f"{b['total'] / ours['total']:6.2f}x ({b['query'] / ours['query']:.2f}x)"
            print(f"  {impl:10} {b['build']:9.3f} {b['query']:9.3f} {b['total']:9.3f}   {ratio}")
        peers = [b["total"] for impl, b in best.items() if impl != "dlkernels"]
        if ours is not None and peers:
            ratio = min(peers) / ours["total"]
            print(f"  faster peer / dlkernels: {ratio:.2f}x  (target {TARGET}x: "
                  f"{'ok' if ratio >= TARGET else 'MISS'})")


if __name__ == "__main__":
    main()
