"""Time dlkernels against its peers in one process and print the ratios.

    python bench/compare.py                    # every case
    python bench/compare.py per_sample alias_sample --repeat 7

Runs the same callables as the asv suite (``benchmarks/_peers.py``): dlkernels at
each ``n_threads``, each peer at the thread counts it has a knob for. Each
time is the best of several repeats (``timeit``, garbage collection off).
Ratios are peer time / dlkernels time, so above 1 means dlkernels is faster; a peer
without a thread count is compared at its one-thread time.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
import timeit

import numpy as np

# `python bench/compare.py` puts bench/ on sys.path, which makes this importable.
from benchmarks import _peers

MIN_REPEAT_S = 0.05   # loop a fast call until one repeat lasts this long (timer noise)
BUDGET_S = 3.0        # stop repeating a slow call after this long (at least 2 repeats)

# (case, peer, least acceptable peer/dlkernels ratio) from the design targets.
TARGETS = [
    ("per_sample", "cpprb", 5.0),
    ("per_update", "cpprb", 1.5),
    ("per_step", "cpprb", 1.5),
    ("alias_sample", "torch", 20.0),
    ("alias_sample", "numpy", 20.0),
    ("alias_sample", "numpy-integers", 1 / 3),   # dlkernels within 3x of uniform draws
    # The "peer" is the bare training step: no-profiler / profiled >= 1/1.1 is < 10% overhead.
    ("profile_mlp_step", "no-profiler", 1 / 1.1),
    ("profile_cnn_step", "no-profiler", 1 / 1.1),
    ("softmax_step", "torch-linear", 10.0),
    ("softmax_step", "torch-adaptive", 1.0),
    # issue 15: V=100000, d=300, batch 512; LSH attention at seq 4096 (bench/nn_layers.py
    # runs seq 16384 and the memory).
    ("vmf_step", "torch-linear", 5.0),
    ("binary_code_step", "torch-linear", 10.0),
    ("lsh_attention", "reformer-pytorch", 1.0),
    ("beam_step", "python-loop", 1.0),
    # LSHIndex and hnswlib, each tuned for recall@10 >= 0.95 (bench/lsh_curve.py has the
    # recalls, the other data sets and peers): at least hnswlib's queries per second.
    ("lsh_query", "hnswlib", 1.0),
    # prune_units removing 50% of the hidden units: >= 1.6x faster inference.
    ("units_infer", "unpruned", 1.6),
    ("units_infer", "torch-prune", 1.6),
    # prune_units against Torch-Pruning, 50% of all channels of resnet18: the same architecture,
    # so inference runs as fast (0.95: timing noise); the pruning call no slower.
    ("prune_infer_resnet18", "torch-pruning", 0.95),
    ("prune_call_resnet18", "torch-pruning", 1.0),
    # k-means at the asv sizes (bench/kmeans_compare.py runs the sizes and inertias).
    ("kmeans_1d", "sklearn", 50.0),
    ("kmeans_1d", "faiss", 1.0),
    ("kmeans_1d_exact", "ckmeans", 4.0),
    ("kmeans_1d_exact", "kmeans1d", 4.0),
    ("kmeans", "sklearn", 1.0),
    ("kmeans_sampled", "faiss", 1.0),
]


def best_time(fn, repeats: int) -> float:
    """Best seconds per call of ``fn`` over up to ``repeats`` repeats."""
    timer = timeit.Timer(fn)
    first = timer.timeit(1)  # warms caches and tells how many calls fill a repeat
    number = max(1, int(MIN_REPEAT_S / max(first, 1e-9)))
    times = [first] if number == 1 else []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 2 or time.perf_counter() - start < BUDGET_S):
        times.append(timer.timeit(number) / number)
    return min(times)


def measure(case: str, repeats: int) -> dict[str, dict[int, float | str]]:
    """{impl: {n_threads: seconds, or the reason it was skipped}} for one case."""
    results: dict[str, dict[int, float | str]] = {}
    for impl in _peers.implementations(case):
        for n_threads in _peers.N_THREADS:
            try:
                fn = _peers.make(case, impl, n_threads)
            except NotImplementedError as skipped:
                if "thread count" not in str(skipped):  # n/a threads are not news
                    results.setdefault(impl, {})[n_threads] = f"skipped: {skipped}"
                continue
            results.setdefault(impl, {})[n_threads] = best_time(fn, repeats)
            del fn
            gc.collect()  # free this implementation's buffers before the next one
    return results


def at(times: dict[int, float | str], n_threads: int) -> float | None:
    """A peer's time at ``n_threads``, or its one-thread time if it has no thread count."""
    value = times.get(n_threads, times.get(1))
    return value if isinstance(value, float) else None


def fmt_time(seconds: float | str | None) -> str:
    if not isinstance(seconds, float):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def print_table(all_results: dict[str, dict[str, dict]]) -> None:
    threads = _peers.N_THREADS
    header = (f"{'case':22} {'impl':15}"
              + "".join(f"{f'time @{n}':>12}" for n in threads)
              + "".join(f"{f'ratio @{n}':>10}" for n in threads))
    print(header)
    print("-" * len(header))
    for case, results in all_results.items():
        dlkernels = results.get("dlkernels", {})
        for impl, times in results.items():
            skipped = next((v for v in times.values() if isinstance(v, str)), None)
            row = f"{case:22} {impl:15}"
            if skipped:
                print(row + "  " + skipped)
                continue
            row += "".join(f"{fmt_time(times.get(n)):>12}" for n in threads)
            for n in threads:
                # No ratio at a thread count dlkernels itself was not timed at.
                peer, ours = at(times, n), dlkernels.get(n)
                ratio = "" if impl == "dlkernels" or not (peer and isinstance(ours, float)) else f"{peer / ours:.2f}x"
                row += f"{ratio:>10}"
            print(row)
        print()


def print_targets(all_results: dict[str, dict[str, dict]]) -> None:
    print("Targets (peer time / dlkernels time):")
    for case, peer, minimum in TARGETS:
        results = all_results.get(case, {})
        if peer not in results or "dlkernels" not in results:
            continue
        cells = []
        for n in _peers.N_THREADS:
            theirs, ours = at(results[peer], n), results["dlkernels"].get(n)
            if theirs and isinstance(ours, float):
                ratio = theirs / ours
                cells.append(f"@{n}: {ratio:6.2f}x {'ok ' if ratio >= minimum else 'MISS'}")
        print(f"  {case:13} vs {peer:15} >= {minimum:5.2f}x   " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="case",
                        help=f"cases to run (default: all of {', '.join(_peers.CASES)})")
    parser.add_argument("--repeat", type=int, default=5, help="repeats per timing (best is kept)")
    args = parser.parse_args()
    # Checked here: argparse's `choices` with nargs="*" rejects an empty list.
    unknown = [case for case in args.cases if case not in _peers.CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(_peers.CASES)}")

    import dlkernels

    print(f"dlkernels {dlkernels.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    all_results = {}
    for case in args.cases or list(_peers.CASES):
        start = time.perf_counter()
        all_results[case] = measure(case, args.repeat)
        print(f"  measured {case} in {time.perf_counter() - start:.1f} s", flush=True)
    print()
    print_table(all_results)
    print_targets(all_results)


if __name__ == "__main__":
    main()
