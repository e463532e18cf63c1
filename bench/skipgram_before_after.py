"""Same-run timing of two builds of the skip-gram kernel (dlkernels/embed/_skipgram.pyx).

The installed ``dlkernels.embed._skipgram`` ("after") against another build of
that extension module ("before"), loaded from its file beside it. Both train the
same SkipGram on the same random walks of a 5-block stochastic block model graph
(as bench/skipgram_compare.py), interleaved in alternating order so that both see
the same background load. Printed per thread count: training words per second of each (best of
``--repeat``), after / before, and whether the vectors of the two builds are
bit-identical (expected at one thread, where training is deterministic).

    python bench/skipgram_before_after.py BEFORE.so [--dim 128] [--threads 1 2] [--repeat 5]

BEFORE.so comes from a build of the older commit, e.g.
``git worktree add /tmp/before <commit> && pip install --no-deps --target /tmp/before-site
/tmp/before`` then ``/tmp/before-site/dlkernels/embed/_skipgram.*.so``.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

from dlkernels.embed import SkipGram
from dlkernels.embed import skipgram as facade
from dlkernels.embed._synthetic import sbm_adjacency, uniform_walks


def load_before(path: str):
    """The extension module in ``path``, under its own name but apart from the installed one."""
    spec = importlib.util.spec_from_file_location("dlkernels.embed._skipgram", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(kernel, walks, args, n_threads):
    installed = facade._skipgram
    facade._skipgram = kernel
    try:
        model = SkipGram(dim=args.dim, window=args.window, n_negatives=args.negative,
                         sample=args.sample, epochs=1, rng=0, n_threads=n_threads)
        start = time.perf_counter()
        model.fit(walks)
        return time.perf_counter() - start, model.vectors
    finally:
        facade._skipgram = installed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="the other build's _skipgram extension module file")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negative", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    kernels = {"before": load_before(args.before), "after": facade._skipgram}
    block = args.nodes // 5
    neighbours, _ = sbm_adjacency(args.nodes, 5, p_in=10.0 / block,
                                  p_out=2.0 / (args.nodes - block))
    walks = uniform_walks(neighbours, 80, 10)
    words = int((walks >= 0).sum())
    print(f"SBM walks: {walks.shape[0]} walks, {words} words; dim={args.dim} "
          f"window={args.window} negative={args.negative}; AVX2 copy: "
          f"before {getattr(kernels['before'], 'AVX2', 'n/a')}, after {kernels['after'].AVX2}")
    print(f"{'threads':>7} {'before w/s':>12} {'after w/s':>12} {'after/before':>12} "
          f"{'same bits':>9}")
    for n_threads in args.threads:
        times = {name: [] for name in kernels}
        vectors = {}
        for rep in range(args.repeat):
            # Interleaved, in alternating order, so that both see the same load.
            for name, kernel in list(kernels.items())[::1 if rep % 2 == 0 else -1]:
                seconds, vectors[name] = train(kernel, walks, args, n_threads)
                times[name].append(seconds)
        rate = {name: words / min(t) for name, t in times.items()}
        same = np.array_equal(vectors["before"], vectors["after"])
        print(f"{n_threads:>7} {rate['before']:>12.4g} {rate['after']:>12.4g} "
              f"{rate['after'] / rate['before']:>12.3f} {str(same):>9}", flush=True)


if __name__ == "__main__":
    main()
