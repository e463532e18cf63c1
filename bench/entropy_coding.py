"""Huffman and rANS in the .fdlz format: bits per symbol against the entropy, and speed.

    python bench/entropy_coding.py

For streams like those of a pruned, quantized layer (a dominant zero index and a
few dozen others; a uniform 5-bit index; a skewed binary stream), prints each
coder's size in bits per symbol (tables included) next to the empirical entropy,
and the decoding time per symbol of a 10**6-symbol stream (best of 5).
"""

from __future__ import annotations

import time

import numpy as np

from dlkernels.compress._bits import BitReader, BitWriter
from dlkernels.compress._streams import decode_streams, plan, read_table, write_streams, write_table

N = 1_000_000


def streams(rng):
    kept = rng.random(N) < 0.08
    yield "index of an 8%-kept layer, 5 bits", np.where(kept, rng.binomial(30, 0.5, N) + 1, 0), 32
    yield "uniform 5-bit index", rng.integers(0, 32, N), 32
    yield "binary, p = 0.03", (rng.random(N) < 0.03).astype(np.int64), 2
    yield "Zipf(1.3) over 60 symbols", np.minimum(rng.zipf(1.3, N) - 1, 59), 60


def _decode_seconds(stream) -> float:
    w = BitWriter()
    write_table(w, stream)
    huff, rans = write_streams([stream])
    best = float("inf")
    for _ in range(5):
        table = read_table(BitReader(w.getvalue()), stream.alphabet, stream.count)
        start = time.perf_counter()
        (out,) = decode_streams([table], huff, rans)
        best = min(best, time.perf_counter() - start)
    assert np.array_equal(out, stream.symbols)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'stream':<36}{'entropy':>9}{'Huffman':>9}{'rANS':>9}   decode ns/symbol "
          f"(Huffman, rANS)")
    for name, symbols, alphabet in streams(rng):
        counts = np.bincount(symbols, minlength=alphabet)
        p = counts[counts > 0] / N
        entropy = float(-(p * np.log2(p)).sum())
        options = {s.coder: s for s in plan(symbols, alphabet)}
        sizes = {c: (s.cost_bits + (32 if c == "rans" else 0)) / N for c, s in options.items()}
        times = {c: _decode_seconds(s) / N * 1e9 for c, s in options.items()}
        print(f"{name:<36}{entropy:>9.4f}{sizes['huffman']:>9.4f}{sizes['rans']:>9.4f}   "
              f"{times['huffman']:.1f}, {times['rans']:.1f}")


if __name__ == "__main__":
    main()
