"""Time dlkernels.cluster against scikit-learn and faiss in one process; print the target ratios.

    python bench/kmeans_compare.py                    # both targets at 2 threads
    python bench/kmeans_compare.py 1d --repeat 3 --threads 1 --no-optimal

Targets (issue 4), "peer time / dlkernels time" with both sides from this run:

  1d  kmeans_1d on 2e6 normal float32 values, k=256: >= 50x scikit-learn's
      KMeans(n_init=1) at no larger inertia; faster than faiss.Kmeans(1, 256) at
      equal or lower inertia; the exact method never worse than any other.
  nd  kmeans on 2e5 x 32 standard normal float32 points, k=256, max_iter=300,
      tol=1e-4: at least as fast as KMeans(n_init=1) at inertia within 1%.

The implementations are called in turn within each repeat (interleaved, so a
change in machine load hits all of them); each keeps its best time. Inertias
are each implementation's, recomputed over every point in float64 for faiss.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time

import numpy as np

# `python bench/kmeans_compare.py` puts bench/ on sys.path, which makes this importable.
from benchmarks import _cluster_peers as P


def impls_1d(n: int, n_threads: int, optimal: bool) -> dict:
    x = P.weights_1d(n)
    out = {"dlkernels (lloyd, k-means++)": P.dlkernels_1d(x, n_threads)}
    if optimal:
        out["dlkernels (optimal)"] = P.dlkernels_1d(x, n_threads, method="optimal")
    out["sklearn"] = P.sklearn_kmeans(x[:, None], n_threads)
    out["faiss"] = P.faiss_kmeans(x[:, None], n_threads)
    return out


def impls_nd(n: int, d: int, n_threads: int) -> dict:
    X = P.points_nd(n, d)
    return {"dlkernels": P.dlkernels_nd(X, n_threads), "sklearn": P.sklearn_kmeans(X, n_threads),
            "faiss (niter=300)": P.faiss_kmeans(X, n_threads, niter=300)}


def run(impls: dict, repeats: int) -> dict:
    best = {}
    for _ in range(repeats):
        for name, fn in impls.items():
            gc.collect()
            try:
                start = time.perf_counter()
                inertia = fn()
                secs = time.perf_counter() - start
            except NotImplementedError as skipped:
                print(f"  {name}: skipped ({skipped})")
                continue
            old = best.get(name, (np.inf, None))
            best[name] = (min(old[0], secs), inertia)
    return best


def report(title: str, best: dict, dlkernels: str, targets: dict) -> None:
    print(f"\n{title}")
    base_t, base_i = best[dlkernels]
    for name, (secs, inertia) in best.items():
        ratio = base_t and secs / base_t
        print(f"  {name:28s} {secs:9.3f} s  inertia {inertia:.6g}  ratio {ratio:7.1f}x"
              f"  inertia/dlkernels {inertia / base_i:.4f}")
    for peer, need in targets.items():
        if peer in best:
            ratio = best[peer][0] / base_t
            ok = ratio >= need
            print(f"  target vs {peer}: {ratio:.1f}x (need >= {need}x) -> {'met' if ok else 'MISSED'}; "
                  f"inertia {'<=' if base_i <= best[peer][1] else '>'} peer's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", default=["1d", "nd"], choices=["1d", "nd"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-optimal", action="store_true",
                        help="leave out the exact 1-D method (minutes at 2e6 values)")
    parser.add_argument("--n1d", type=int, default=2_000_000)
    parser.add_argument("--nnd", type=int, default=200_000)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} threads, best of {args.repeat}")
    if "1d" in args.targets:
        best = run(impls_1d(args.n1d, args.threads, not args.no_optimal), args.repeat)
        report(f"kmeans_1d: {args.n1d} normal float32 values, k={P.K}", best,
               "dlkernels (lloyd, k-means++)", {"sklearn": 50.0, "faiss": 1.0})
        if "dlkernels (optimal)" in best:
            opt = best["dlkernels (optimal)"][1]
            worst = min(i for _, i in best.values())
            print(f"  optimal inertia {opt:.6g} <= every other: {opt <= worst * (1 + 1e-12)}")
    if "nd" in args.targets:
        best = run(impls_nd(args.nnd, P.DIM, args.threads), args.repeat)
        report(f"kmeans: {args.nnd} x {P.DIM} normal float32 points, k={P.K}", best, "dlkernels",
               {"sklearn": 1.0})


if __name__ == "__main__":
    main()
