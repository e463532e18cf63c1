"""Entropy-coded symbol streams of the ``.fdlz`` format: one symbol, Huffman, or rANS.

For each stream the writer measures each coder exactly (its table in bits plus
its coded bits) and keeps the smallest:

``one``      a single distinct symbol: the table names it, no data;
``huffman``  canonical code lengths (fixed width) and the packed codes;
``rans``     frequencies quantised to ``2**scale`` (exponential-Golomb coded,
             the precision chosen per stream to minimise table + data) and a
             static rANS coder (:mod:`dlkernels._lib._entropy`), which codes
             within a fraction of a bit of the entropy of those frequencies where
             Huffman spends at least one bit a symbol.

All rANS streams of a tensor share one coder state (one 4-byte flush); all
Huffman streams of a tensor share one padded bit string.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlkernels._lib._entropy import (ERR_END, rans_decode, rans_encode)
from dlkernels.compress._bits import BitReader, BitWriter, Corrupt
from dlkernels.huffman import MAX_CODE_LENGTH, code_lengths, huffman_decode, huffman_encode

__all__ = ["Stream", "plan", "choose", "write_table", "write_streams", "read_table",
           "decode_streams", "gap_symbols", "positions_of", "CODERS"]

CODERS = ("one", "huffman", "rans")
MAX_SCALE = 16            # rANS frequencies sum to 2**scale, scale <= 16 (byte-wise rANS)
_RANS_FLUSH_BITS = 32
_LEN_WIDTH = 3            # bits of the Huffman length width (lengths <= 57 need 6)


@dataclass
class Stream:
    """One symbol sequence and how it is (to be) coded."""

    alphabet: int
    count: int
    coder: str = "one"
    symbol: int = 0                          # coder "one"
    lengths: np.ndarray | None = None        # coder "huffman"
    freq: np.ndarray | None = None           # coder "rans"
    scale: int = 0
    egk: int = 0                             # exp-Golomb order of the frequency table
    symbols: np.ndarray | None = field(default=None, repr=False)
    n_bits: int = 0                          # Huffman data bits
    table_bits: int = 0
    cost_bits: float = 0.0                   # table + data (rANS data estimated)


# -- tables ------------------------------------------------------------------------
def _gamma_bits(values: np.ndarray) -> np.ndarray:
    """Bits of the Elias gamma code of ``values + 1`` (vectorised)."""
    return 2 * np.floor(np.log2(values.astype(np.float64) + 1)).astype(np.int64) + 1


def _eg_bits(freq: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Bits of the frequency table (all but the last, implied) at each exp-Golomb order ``k``."""
    shifted = freq[None, :-1] >> k[:, None]
    gamma = 2 * np.floor(np.log2(shifted + 1.0)).astype(np.int64) + 1
    return gamma.sum(axis=1) + k * (freq.size - 1)


def _normalise(counts: np.ndarray, scale: int) -> np.ndarray:
    """Frequencies summing to ``2**scale``, at least 1 for each present symbol,
    close to the counts in coded size (greedy rounds on the marginal cost)."""
    total = 1 << scale
    present = counts > 0
    c = counts.astype(np.float64)
    freq = np.where(present, np.maximum(1, np.floor(c * total / c.sum())), 0).astype(np.int64)
    diff = total - int(freq.sum())
    while diff:
        if diff > 0:    # give a unit to the symbols whose cost drops most
            gain = np.where(present, c * np.log2((freq + 1) / np.maximum(freq, 1)), -1.0)
            pick = np.argsort(-gain, kind="stable")[:min(diff, int(present.sum()))]
            freq[pick] += 1
            diff -= pick.size
        else:           # take a unit from the symbols whose cost grows least
            loss = np.where(freq > 1, c * np.log2(np.maximum(freq, 2) / np.maximum(freq - 1, 1)), np.inf)
            movable = int((freq > 1).sum())
            pick = np.argsort(loss, kind="stable")[:min(-diff, movable)]
            freq[pick] -= 1
            diff += pick.size
    return freq


def _rans_option(counts: np.ndarray) -> tuple[float, np.ndarray, int, int, int]:
    """(total bits, freq, scale, exp-Golomb order, table bits) of the best rANS table."""
    n_present = int((counts > 0).sum())
    best = None
    lo = max(1, int(np.ceil(np.log2(n_present))))
    # Past about twice the count's resolution, finer frequencies only grow the table.
    hi = min(MAX_SCALE, max(lo, int(np.ceil(np.log2(counts.sum()))) + 1))
    used = counts > 0
    for scale in range(lo, hi + 1):
        freq = _normalise(counts, scale)
        data = float((counts[used] * (scale - np.log2(freq[used]))).sum())
        orders = np.arange(0, min(scale, 15) + 1)
        sizes = _eg_bits(freq, orders)
        k = int(np.argmin(sizes))
        table = int(sizes[k]) + 8  # plus scale and k, 4 bits each
        total = data + table
        if best is None or total < best[0]:
            best = (total, freq, scale, k, table)
    return best


def plan(symbols: np.ndarray, alphabet: int, coders=("huffman", "rans")) -> list[Stream]:
    """Each coder that applies to ``symbols``, measured; the caller picks among them."""
    symbols = np.asarray(symbols, dtype=np.int64)
    counts = np.bincount(symbols, minlength=alphabet)
    present = np.flatnonzero(counts)
    if present.size <= 1:
        one = int(present[0]) if present.size else 0
        bits = int(_gamma_bits(np.array([one]))[0])
        return [Stream(alphabet, symbols.size, "one", symbol=one, table_bits=bits, cost_bits=bits)]
    options = []
    if "huffman" in coders:
        lengths = code_lengths(counts)
        width = int(lengths.max()).bit_length()
        table = _LEN_WIDTH + width * alphabet
        n_bits = int(counts @ lengths)
        options.append(Stream(alphabet, symbols.size, "huffman", lengths=lengths, symbols=symbols,
                              n_bits=n_bits, table_bits=table, cost_bits=table + n_bits))
    if "rans" in coders and present.size <= 1 << MAX_SCALE:
        total, freq, scale, k, table = _rans_option(counts)
        options.append(Stream(alphabet, symbols.size, "rans", freq=freq, scale=scale, egk=k,
                              symbols=symbols, table_bits=table, cost_bits=total))
    return options


def choose(options_per_stream: list[list[Stream]]) -> tuple[list[Stream], float]:
    """The cheapest combination: rANS streams share one 32-bit flush."""
    best_any = [min(opts, key=lambda s: s.cost_bits) for opts in options_per_stream]

    def cost(streams):
        flush = _RANS_FLUSH_BITS if any(s.coder == "rans" for s in streams) else 0
        return sum(s.cost_bits for s in streams) + flush

    choices = [(best_any, cost(best_any))]
    plain = [[s for s in opts if s.coder != "rans"] for opts in options_per_stream]
    if all(plain):
        no_rans = [min(opts, key=lambda s: s.cost_bits) for opts in plain]
        choices.append((no_rans, cost(no_rans)))
    return min(choices, key=lambda x: x[1])


def write_table(w: BitWriter, s: Stream) -> None:
    w.bits(CODERS.index(s.coder), 2)
    if s.coder == "one":
        w.uint(s.symbol)
    elif s.coder == "huffman":
        width = int(s.lengths.max()).bit_length()
        w.bits(width, _LEN_WIDTH)
        w.array(s.lengths, width)
        w.uint(s.n_bits)
    else:
        w.bits(s.scale - 1, 4)
        w.bits(s.egk, 4)
        for f in s.freq[:-1].tolist():
            w.uint(f >> s.egk)
            w.bits(f & ((1 << s.egk) - 1), s.egk)


def read_table(r: BitReader, alphabet: int, count: int) -> Stream:
    """The table of a stream of ``count`` symbols over ``alphabet``, checked."""
    coder = r.bits(2)
    if coder >= len(CODERS):
        raise Corrupt("unknown stream coder")
    s = Stream(alphabet, count, CODERS[coder])
    if s.coder == "one":
        s.symbol = r.uint(alphabet - 1)
    elif s.coder == "huffman":
        width = r.bits(_LEN_WIDTH)
        lengths = r.array(alphabet, width)
        if lengths.max(initial=0) > MAX_CODE_LENGTH:
            raise Corrupt("a Huffman code is longer than the format allows")
        used = lengths[lengths > 0]
        if used.size < 2 or sum(2.0 ** -used) > 1.0 + 1e-12:
            raise Corrupt("a Huffman table is not that of a prefix code")
        s.lengths = lengths
        s.n_bits = r.uint()
        if count > s.n_bits // int(used.min()):
            raise Corrupt(f"{s.n_bits} bits cannot hold {count} symbols")
    else:
        s.scale = r.bits(4) + 1
        s.egk = r.bits(4)
        total = 1 << s.scale
        freq = np.empty(alphabet, dtype=np.int64)
        running = 0
        for i in range(alphabet - 1):
            f = (r.uint(total) << s.egk) | r.bits(s.egk)
            running += f
            if running > total:
                raise Corrupt("rANS frequencies sum past their scale")
            freq[i] = f
        freq[-1] = total - running
        if (freq > 0).sum() < 2:
            raise Corrupt("a rANS table with fewer than two symbols")
        s.freq = freq
    return s


# -- positions of kept weights ------------------------------------------------------
def gap_symbols(positions: np.ndarray, cap: int) -> np.ndarray:
    """Zeros skipped before each kept weight, as symbols < cap, with `cap` = "skip cap"."""
    gaps = np.diff(positions, prepend=-1) - 1
    skips = gaps // cap
    ends = np.cumsum(skips + 1) - 1
    symbols = np.full(int(ends[-1]) + 1 if ends.size else 0, cap, dtype=np.int64)
    symbols[ends] = gaps % cap
    return symbols


def positions_of(symbols: np.ndarray, cap: int, n: int, nnz: int) -> np.ndarray:
    if (symbols > cap).any() or (symbols < 0).any():
        raise Corrupt("a gap symbol lies past its cap")
    step = np.where(symbols == cap, cap, symbols + 1)
    pos = (np.cumsum(step) - 1)[symbols != cap]
    if pos.size != nnz or (pos.size and pos[-1] >= n):
        raise Corrupt("the positions of kept weights do not fit the tensor")
    return pos


# -- coding ------------------------------------------------------------------------
def _tables(streams: list[Stream]):
    freq = np.concatenate([s.freq for s in streams]).astype(np.uint32)
    cum = np.concatenate([np.concatenate([[0], np.cumsum(s.freq)[:-1]]) for s in streams]).astype(np.uint32)
    offset = np.cumsum([0] + [s.alphabet for s in streams[:-1]]).astype(np.int64)
    scale = np.array([s.scale for s in streams], dtype=np.int32)
    ends = np.cumsum([s.count for s in streams]).astype(np.int64)
    return freq, cum, offset, scale, ends


def write_streams(streams: list[Stream]) -> tuple[bytes, bytes]:
    """(Huffman bit string, rANS bytes) of the chosen streams, in order."""
    huff = [huffman_encode(s.symbols, s.lengths) for s in streams if s.coder == "huffman"]
    bits = b""
    if huff:
        flat = np.concatenate([np.unpackbits(d)[:n] for d, n in huff])
        bits = np.packbits(flat).tobytes()
    rans = [s for s in streams if s.coder == "rans"]
    data = b""
    if rans:
        freq, cum, offset, scale, ends = _tables(rans)
        symbols = np.concatenate([s.symbols for s in rans])
        data = rans_encode(symbols, ends, np.arange(len(rans), dtype=np.int64), freq, cum,
                           offset, scale)
    return bits, data


def decode_streams(streams: list[Stream], huffman_bits: bytes, rans_bytes: bytes) -> list[np.ndarray]:
    """The symbols of each stream (tables from :func:`read_table`)."""
    out = [None] * len(streams)
    bits = np.unpackbits(np.frombuffer(huffman_bits, dtype=np.uint8)) if huffman_bits else None
    pos = 0
    for i, s in enumerate(streams):
        if s.coder == "one":
            out[i] = np.full(s.count, s.symbol, dtype=np.int64)
        elif s.coder == "huffman":
            chunk = bits[pos:pos + s.n_bits] if bits is not None else np.zeros(0, np.uint8)
            if chunk.size != s.n_bits:
                raise Corrupt("a Huffman stream runs past its section")
            pos += s.n_bits
            try:
                out[i] = huffman_decode(np.packbits(chunk), s.n_bits, s.lengths, s.count)
            except ValueError as exc:
                raise Corrupt(str(exc)) from None
    if bits is not None and (bits.size - pos >= 8 or bits[pos:].any()):
        raise Corrupt("Huffman bits left over in a section")
    rans = [i for i, s in enumerate(streams) if s.coder == "rans"]
    if rans:
        chosen = [streams[i] for i in rans]
        freq, cum, offset, scale, ends = _tables(chosen)
        lookup = np.concatenate([np.repeat(np.arange(s.alphabet, dtype=np.int32), s.freq)
                                 for s in chosen])
        lookup_offset = np.cumsum([0] + [1 << s.scale for s in chosen[:-1]]).astype(np.int64)
        symbols = np.empty(int(ends[-1]), dtype=np.int64)
        status = rans_decode(np.frombuffer(rans_bytes, dtype=np.uint8), ends,
                             np.arange(len(chosen), dtype=np.int64), freq, cum, offset, scale,
                             lookup, lookup_offset, symbols)
        if status:
            raise Corrupt("a rANS stream " + ("ends early" if status == ERR_END
                                              else "does not end in its start state"))
        for i, part in zip(rans, np.split(symbols, ends[:-1])):
            out[i] = part
    elif rans_bytes:
        raise Corrupt("rANS bytes without a rANS stream")
    return out
