"""End-to-end Deep Compression of the digits MLP, the file format, and prune_units' speed.

    python bench/compress_pipeline.py              # seeds 0 1 2
    python bench/compress_pipeline.py --seeds 0 --repeat 20
    python bench/compress_pipeline.py --no-pipeline --no-speed    # part 3 only

Part 3 (issue 19) runs ``dlkernels.demo.digits_to_size`` (bit allocation by
measured sensitivity) to 40x at 5-bit and 45x at 4-bit weights per seed, and on
each resulting model measures the file three ways in one process: format 1
(the zlib-JSON header, writer frozen in ``_fdlz_v1.py``), format 2 with Huffman
coding only, and format 2 as written (rANS where it is smaller), with the
header's share of each.

Part 1 runs ``dlkernels.demo.digits_compression`` (train a 64-300-100-10 MLP on
scikit-learn's digits, prune 50% -> 75% -> 90% with fine-tuning, 4-bit weight
sharing of weights and biases, codebook fine-tuning, Huffman-coded file) and
prints the report, the file size against float32 and the accuracies.

Part 2 times batch-256 CPU inference of the unpruned model, torch's masked
structured pruning and ``prune_units`` (50% of hidden units) in one process,
interleaved, and prints the ratios (other / prune_units; > 1 means faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dlkernels.demo import digits_compression, digits_to_size

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import _compress_peers  # noqa: E402


def pipeline(seeds) -> None:
    torch.set_num_threads(1)
    for seed in seeds:
        res = digits_compression(torch, seed)
        print(f"seed {seed} ({res['data']}, {res['seconds']:.0f} s): test accuracy "
              f"{res['base']:.2%} -> pruned {res['pruned']:.2%} -> quantized "
              f"{res['quantized']:.2%} -> fine-tuned {res['final']:.2%} "
              f"({(res['final'] - res['base']) * 100:+.2f} points); {res['float32_bytes']} "
              f"float32 bytes -> {res['bytes']} file bytes = {res['ratio']:.1f}x")
    print(res["report"])


def speed(repeat: int, threads) -> None:
    for sizes in (_compress_peers.BIG, _compress_peers.SMALL):
        for n in threads:
            fns = {k: _compress_peers._infer(sizes, k, n) for k in ("dlkernels", "unpruned", "torch-prune")}
            times = {k: [] for k in fns}
            for _ in range(repeat):  # interleaved: machine load hits all alike
                for k, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - start)
            best = {k: min(v) for k, v in times.items()}
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"{'-'.join(map(str, sizes))} batch {_compress_peers.BATCH}, {n} thread(s): "
                  + ", ".join(f"{k} {best[k] * 1e3:.2f} ms" for k in fns)
                  + f" | ratio unpruned/dlkernels {best['unpruned'] / best['dlkernels']:.2f}x (median "
                  f"{med['unpruned'] / med['dlkernels']:.2f}x), torch-prune/dlkernels "
                  f"{best['torch-prune'] / best['dlkernels']:.2f}x (median "
                  f"{med['torch-prune'] / med['dlkernels']:.2f}x)")


def _huffman_only_size(model) -> int:
    """The format-2 file with every stream Huffman coded (rANS switched off)."""
    import functools

    from dlkernels.compress import _format2, _streams
    from dlkernels.compress.storage import encode_model

    original = _format2.plan
    _format2.plan = functools.partial(_streams.plan, coders=("huffman",))
    try:
        return len(encode_model(model)[0])
    finally:
        _format2.plan = original


def allocation(seeds) -> None:
    import _fdlz_v1

    torch.set_num_threads(1)
    print(f"{'target':>8} {'seed':>4} {'base':>7} {'final':>7} {'points':>7} {'ratio':>6} "
          f"{'v1 file':>8} {'v1 head':>8} {'v2 Huff':>8} {'v2 file':>8} {'v2 head':>8}  kept per layer")
    for ratio, bits in ((40, 5), (45, 4)):
        for seed in seeds:
            res = digits_to_size(torch, seed, target_ratio=ratio, bits=bits)
            model, report = res["model"], res["report"]
            v1, v1_head = _fdlz_v1.encode_model(model)
            kept = ", ".join(f"{1 - a:.1%}" for a in res["allocation"].amounts.values())
            print(f"{ratio:>5}x/{bits}b {seed:>4} {res['base']:>7.2%} {res['final']:>7.2%} "
                  f"{(res['final'] - res['base']) * 100:>+7.2f} {res['ratio']:>5.1f}x "
                  f"{len(v1):>8} {v1_head:>8} {_huffman_only_size(model):>8} {res['bytes']:>8} "
                  f"{report.overhead_bytes:>8}  {kept}", flush=True)
    print(report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-allocation", action="store_true")
    args = parser.parse_args()
    if not args.no_pipeline:
        pipeline(args.seeds)
    if not args.no_allocation:
        allocation(args.seeds)
    if not args.no_speed:
        speed(args.repeat, args.threads)
