"""The MemoryProfiler's overhead on a training step, measured by interleaving.

    python bench/profiler_overhead.py                 # both models, 1 thread
    python bench/profiler_overhead.py --threads 2 --rounds 400

Runs the same callables as the asv suite (``benchmarks/_peers.py``, cases
``profile_mlp_step`` and ``profile_cnn_step``) but alternates the bare step and
the profiled step, so that a change of machine load hits both alike (on a
shared machine, timing one after the other measures the load, not the
profiler). Prints, per model, the best time of each and the median of the
per-round ratios profiled / bare; the overhead is that ratio minus one.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from benchmarks import _peers


def measure(case: str, n_threads: int, rounds: int) -> tuple[float, float, float]:
    bare = _peers.make(case, "no-profiler", n_threads)
    profiled = _peers.make(case, "dlkernels", n_threads)
    for _ in range(5):  # warm up both
        bare(), profiled()
    times_bare, times_prof, ratios = [], [], []
    for i in range(rounds):
        # Alternate which one goes first, so neither always runs on a warmer cache.
        order = (bare, profiled) if i % 2 == 0 else (profiled, bare)
        took = {}
        for fn in order:
            start = time.perf_counter()
            fn()
            took[fn] = time.perf_counter() - start
        times_bare.append(took[bare])
        times_prof.append(took[profiled])
        ratios.append(took[profiled] / took[bare])
    return min(times_bare), min(times_prof), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--rounds", type=int, default=200, help="paired runs per model")
    args = parser.parse_args()
    gc.collect()
    print(f"{'case':18} {'bare (best)':>12} {'profiled (best)':>16} {'best ratio':>11} "
          f"{'median ratio':>13}")
    for case in ("profile_mlp_step", "profile_cnn_step"):
        bare, prof, median = measure(case, args.threads, args.rounds)
        print(f"{case:18} {bare * 1e3:9.2f} ms {prof * 1e3:13.2f} ms {prof / bare:10.3f}x "
              f"{median:12.3f}x")


if __name__ == "__main__":
    main()
