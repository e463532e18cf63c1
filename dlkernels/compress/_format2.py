"""Format 2 of ``.fdlz``: a binary header, rANS or Huffman streams, compact codebooks.

Layout::

    b"FDLZ"  u8 2  varint header length  header  section per tensor  u32 CRC-32
    section := varint meta length  meta  Huffman bits  rANS bytes  raw values

``header`` and ``meta`` are bit-packed (most significant bit first, unsigned
numbers in Elias gamma code, each block padded to a byte). The header holds the
architecture as a layer table (a type code and the layer's arguments in a fixed
order, see :mod:`dlkernels.compress._arch`), from which the tensors' names and
shapes follow; without an architecture it lists names and shapes itself. Then a
4-bit dtype per tensor.

A tensor's meta names its coding, then its tables:

``raw``            the values' bytes;
``sparse``         positions of the non-zero values (capped gaps, see below), the values' bytes;
``quantized dense``   codebook, one index (0 = zero) per weight;
``quantized sparse``  codebook, positions, the index of each kept weight;
``quantized joint``   codebook, one symbol per kept weight for (gap, index) together.

Positions are the zeros skipped before each kept weight, capped at ``cap`` (a
power of two chosen per tensor), with a "skip ``cap``" symbol for longer runs.
A codebook is stored at the precision it has: the sign, the exponent as an
offset from the smallest one, and only the mantissa bits that are not zero in
some value (lossless; see :func:`dlkernels.compress.round_codebooks`).
Each stream is coded by the smallest of its coders (:mod:`._streams`).
"""

from __future__ import annotations

import numpy as np

from dlkernels.compress import _arch
from dlkernels.compress._bits import BitReader, BitWriter, ByteReader, Corrupt, varint
from dlkernels.compress._streams import (choose, decode_streams, gap_symbols, plan, positions_of,
                                         read_table, write_streams, write_table)

__all__ = ["encode_tensor", "encode_header", "decode_v2", "DTYPES", "KINDS"]

# Tensor dtypes, by code: name, numpy storage dtype, (exponent bits, mantissa bits) for floats.
DTYPES = [("float32", np.float32, (8, 23)), ("float16", np.float16, (5, 10)),
          ("bfloat16", np.uint16, (8, 7)), ("float64", np.float64, (11, 52)),
          ("int8", np.int8, None), ("uint8", np.uint8, None), ("int16", np.int16, None),
          ("int32", np.int32, None), ("int64", np.int64, None), ("bool", np.bool_, None)]
_DTYPE_CODE = {name: i for i, (name, _, _) in enumerate(DTYPES)}
KINDS = ("raw", "sparse", "quantized dense", "quantized sparse", "quantized joint")
_CAPS = [2**i for i in range(1, 17)]
_MAX_K = (1 << 16) - 1
_MAX_ALPHABET = 1 << 16
_KIND_BITS = 3
_LAYER_TYPES = ["Sequential", *_arch.LAYERS]
_MAX_NAME = 1024
_MAX_NDIM = 8


# -- numbers and codebooks -------------------------------------------------------------
def _uint_view(values: np.ndarray) -> np.ndarray:
    return values.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[values.itemsize]).astype(np.uint64)


def _write_floats(w: BitWriter, values: np.ndarray, layout) -> None:
    """Finite floats, losslessly, in as few mantissa and exponent bits as they need."""
    if values.size == 0:
        return
    e_bits, m_bits = layout
    u = _uint_view(values)
    sign = u >> np.uint64(e_bits + m_bits)
    exp = (u >> np.uint64(m_bits)) & np.uint64((1 << e_bits) - 1)
    man = u & np.uint64((1 << m_bits) - 1)
    merged = int(np.bitwise_or.reduce(man))
    drop = (merged & -merged).bit_length() - 1 if merged else m_bits   # shared trailing zeros
    keep = m_bits - drop
    e_min = int(exp.min())
    span = int(exp.max()) - e_min
    w.bits(keep, m_bits.bit_length())
    w.bits(e_min, e_bits)
    w.bits(span.bit_length(), e_bits.bit_length())
    w.array(sign, 1)
    w.array(exp - np.uint64(e_min), span.bit_length())
    w.array(man >> np.uint64(drop), keep)


def _read_floats(r: BitReader, count: int, storage, layout) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=storage)
    e_bits, m_bits = layout
    keep = r.bits(m_bits.bit_length())
    e_min = r.bits(e_bits)
    span_bits = r.bits(e_bits.bit_length())
    if keep > m_bits or span_bits > e_bits:
        raise Corrupt("a codebook's field widths exceed its dtype")
    if count * (1 + span_bits + keep) > r.remaining:
        raise Corrupt("a codebook runs past its block")
    sign = r.array(count, 1).astype(np.uint64)
    exp = r.array(count, span_bits).astype(np.uint64) + np.uint64(e_min)
    if int(exp.max()) >= (1 << e_bits) - 1:
        raise Corrupt("a codebook holds inf or NaN")
    man = r.array(count, keep).astype(np.uint64) << np.uint64(m_bits - keep)
    u = (sign << np.uint64(e_bits + m_bits)) | (exp << np.uint64(m_bits)) | man
    size = np.dtype(storage).itemsize
    return u.astype({2: np.uint16, 4: np.uint32, 8: np.uint64}[size]).view(storage)


# -- positions -----------------------------------------------------------------------
def _caps(positions: np.ndarray):
    """Caps worth trying: up to the first one above the longest gap."""
    longest = int(np.diff(positions, prepend=-1).max()) if positions.size else 0
    for cap in _CAPS:
        yield cap
        if cap > longest:
            return


# -- encoding ------------------------------------------------------------------------
class Encoded:
    """One tensor's section, and what the report says about it."""

    def __init__(self, kind: str, meta: BitWriter, blobs: list[bytes], streams: list, extra: dict):
        body = meta.getvalue()
        self.kind, self.streams, self.extra = kind, streams, extra
        self.data = varint(len(body)) + body + b"".join(blobs)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def coders(self) -> list[str]:
        return [s.coder for s in self.streams]


def _finish(kind, meta: BitWriter, streams, raw: bytes = b"", extra=None) -> Encoded:
    for s in streams:
        write_table(meta, s)
    bits, rans = write_streams(streams)
    if any(s.coder == "rans" for s in streams):
        meta.uint(len(rans))
    return Encoded(kind, meta, [bits, rans, raw], streams, extra or {})


def _best_positions(positions: np.ndarray):
    """(cap, gap symbols, coder options) of the cap with the fewest bits."""
    best = None
    for cap in _caps(positions):
        symbols = gap_symbols(positions, cap)
        options = plan(symbols, cap + 1)
        bits = min(s.cost_bits for s in options)
        if best is None or bits < best[3]:
            best = (cap, symbols, options, bits)
    return best[:3]


def _encode_float(flat: np.ndarray, dtype_name: str) -> Encoded:
    raw = flat.tobytes()
    found = []
    meta = BitWriter()
    meta.bits(0, _KIND_BITS)
    found.append(Encoded("raw", meta, [raw], [], {}))
    if DTYPES[_DTYPE_CODE[dtype_name]][2] is not None and flat.size:
        nz = np.flatnonzero(flat)
        if nz.size < flat.size // 2:
            cap, symbols, gap_options = _best_positions(nz)
            streams, _ = choose([gap_options])
            meta = BitWriter()
            meta.bits(1, _KIND_BITS)
            meta.uint(nz.size)
            meta.bits(cap.bit_length() - 2, 4)
            meta.uint(symbols.size)
            found.append(_finish("sparse", meta, streams, flat[nz].tobytes(),
                                   {"nnz": int(nz.size), "cap": cap}))
    return min(found, key=lambda e: e.size)


def _codebook_meta(kind: int, codebook: np.ndarray, layout) -> BitWriter:
    meta = BitWriter()
    meta.bits(kind, _KIND_BITS)
    meta.uint(codebook.size)
    _write_floats(meta, codebook, layout)
    return meta


def _encode_quantized(codebook: np.ndarray, index: np.ndarray, dtype_name: str) -> Encoded:
    layout = DTYPES[_DTYPE_CODE[dtype_name]][2]
    k = codebook.size
    options = []
    # Dense: every index, zero included.
    streams, _ = choose([plan(index, k + 1)])
    options.append(_finish("quantized dense", _codebook_meta(2, codebook, layout), streams))
    nz = np.flatnonzero(index)
    values = index[nz] - 1
    if nz.size and k:
        # Sparse: positions and values apart.
        cap, gaps, gap_options = _best_positions(nz)
        streams, _ = choose([gap_options, plan(values, k)])
        meta = _codebook_meta(3, codebook, layout)
        meta.uint(nz.size)
        meta.bits(cap.bit_length() - 2, 4)
        meta.uint(gaps.size)
        options.append(_finish("quantized sparse", meta, streams, extra={"nnz": int(nz.size), "cap": cap}))
        # Joint: one symbol for (gap, value) of each kept weight; skips apart.
        best = None
        for cap in _caps(nz):
            if cap * k + 1 > _MAX_ALPHABET:
                break
            gaps = gap_symbols(nz, cap)
            joint = np.full(gaps.size, cap * k, dtype=np.int64)
            kept = gaps != cap
            joint[kept] = gaps[kept] * k + values
            streams, bits = choose([plan(joint, cap * k + 1)])
            if best is None or bits < best[2]:
                best = (cap, joint, bits, streams)
        if best is not None:
            cap, joint, _, streams = best
            meta = _codebook_meta(4, codebook, layout)
            meta.uint(nz.size)
            meta.bits(cap.bit_length() - 2, 4)
            meta.uint(joint.size)
            options.append(_finish("quantized joint", meta, streams,
                                   extra={"nnz": int(nz.size), "cap": cap}))
    return min(options, key=lambda e: e.size)


def encode_tensor(value, dtype_name: str) -> Encoded:
    """``value``: a numpy array, or ``(codebook, index)`` numpy arrays of a quantized tensor."""
    if isinstance(value, tuple):
        codebook, index = value
        best = _encode_quantized(codebook, index.reshape(-1).astype(np.int64), dtype_name)
        # A tiny tensor (ten biases) can cost less as its plain values (the same numbers).
        table = np.concatenate([np.zeros(1, codebook.dtype), codebook])
        plain = _encode_float(table[index.reshape(-1)], dtype_name)
        return min(best, plain, key=lambda e: e.size)
    return _encode_float(value.reshape(-1), dtype_name)


# -- header --------------------------------------------------------------------------
def _write_arg(w: BitWriter, check, value) -> None:
    kind = check.kind
    if kind[0] == "int":
        w.uint(value - kind[1])
    elif kind[0] == "bool":
        w.flag(value)
    elif kind[0] == "float":
        if kind[1]:
            w.flag(value is None)
            if value is None:
                return
        w.bits(int(np.float64(value).view(np.uint64)), 64)
    elif kind[0] == "choice":
        w.bits(kind[1].index(value), (len(kind[1]) - 1).bit_length())
    else:
        _, n, scalar_ok, words = kind
        if words:
            w.flag(isinstance(value, str))
            if isinstance(value, str):
                w.bits(words.index(value), (len(words) - 1).bit_length())
                return
        if scalar_ok:
            w.flag(not isinstance(value, tuple))
            if not isinstance(value, tuple):
                w.uint(value)
                return
        for v in value:
            w.uint(v)


def _read_arg(r: BitReader, check):
    kind = check.kind
    if kind[0] == "int":
        return r.uint(kind[2] - kind[1]) + kind[1]
    if kind[0] == "bool":
        return r.flag()
    if kind[0] == "float":
        if kind[1] and r.flag():
            return None
        return float(np.uint64(r.bits(64)).view(np.float64))
    if kind[0] == "choice":
        i = r.bits((len(kind[1]) - 1).bit_length())
        if i >= len(kind[1]):
            raise Corrupt("an argument names no choice")
        return kind[1][i]
    _, n, scalar_ok, words = kind
    if words and r.flag():
        i = r.bits((len(words) - 1).bit_length())
        if i >= len(words):
            raise Corrupt("an argument names no choice")
        return words[i]
    if scalar_ok and r.flag():
        return r.uint(1 << 31)
    return tuple(r.uint(1 << 31) for _ in range(n))


def _write_spec(w: BitWriter, spec) -> None:
    stack = [spec]
    while stack:
        kind, args = stack.pop()
        w.bits(_LAYER_TYPES.index(kind), 5)
        if kind == "Sequential":
            w.uint(len(args))
            numbered = all(name == str(i) for i, (name, _) in enumerate(args))
            w.flag(numbered)
            for name, _ in args:
                if not numbered:
                    _write_text(w, name)
            stack.extend(child for _, child in reversed(args))
        else:
            for arg, check in _arch.LAYERS[kind].items():
                _write_arg(w, check, args[arg])


def _read_spec(r: BitReader):
    """The description as the JSON-like nested lists :func:`_arch.check_spec` checks."""
    root = []
    stack = [(root, 0)]
    count = 0
    while stack:
        holder, depth = stack.pop()
        count += 1
        if count > _arch.MAX_LAYERS or depth > _arch.MAX_DEPTH:
            raise Corrupt("the architecture is too large or too deep")
        code = r.bits(5)
        if code >= len(_LAYER_TYPES):
            raise Corrupt(f"layer type code {code} names no layer type")
        kind = _LAYER_TYPES[code]
        if kind == "Sequential":
            n = r.uint(r.remaining)
            numbered = r.flag()
            names = [str(i) if numbered else _read_text(r) for i in range(n)]
            children = [[name, []] for name in names]
            holder += [kind, children]
            stack.extend((child[1], depth + 1) for child in reversed(children))
        else:
            holder += [kind, {arg: _read_arg(r, check) for arg, check in _arch.LAYERS[kind].items()}]
    return root


def _write_text(w: BitWriter, text: str) -> None:
    raw = text.encode()
    w.uint(len(raw))
    w.array(np.frombuffer(raw, dtype=np.uint8), 8)


def _read_text(r: BitReader) -> str:
    n = r.uint(_MAX_NAME)
    try:
        return bytes(r.array(n, 8).astype(np.uint8)).decode()
    except UnicodeDecodeError:
        raise Corrupt("a name is not UTF-8") from None


def encode_header(spec, tensors: list[tuple[str, tuple, str]]) -> bytes:
    """``tensors``: (name, shape, dtype name) in file order (that of ``spec`` when given)."""
    w = BitWriter()
    w.flag(spec is not None)
    if spec is not None:
        _write_spec(w, spec)
    else:
        w.uint(len(tensors))
        for name, shape, _ in tensors:
            _write_text(w, name)
            w.uint(len(shape))
            for s in shape:
                w.uint(s)
    for _, _, dtype in tensors:
        w.bits(_DTYPE_CODE[dtype], 4)
    body = w.getvalue()
    return varint(len(body)) + body


# -- decoding ------------------------------------------------------------------------
def _decode_tensor(reader: ByteReader, n: int, dtype_code: int) -> np.ndarray:
    name, storage, layout = DTYPES[dtype_code]
    itemsize = np.dtype(storage).itemsize
    meta = BitReader(reader.take(reader.varint(reader.stop - reader.pos)))
    kind = meta.bits(_KIND_BITS)
    if kind >= len(KINDS):
        raise Corrupt(f"unknown tensor coding {kind}")
    if kind == 0:
        meta.finish()
        return np.frombuffer(reader.take(n * itemsize), dtype=storage).copy()
    if layout is None:
        raise Corrupt(f"a {name} tensor coded as floats")
    k = 0
    codebook = None
    if kind >= 2:
        k = meta.uint(_MAX_K)
        codebook = _read_floats(meta, k, storage, layout)
    if kind in (3, 4) and k == 0:
        raise Corrupt("kept weights without a codebook")
    streams, nnz, cap = [], n, 0
    if kind in (1, 3, 4):
        nnz = meta.uint(n)
        cap = 2 << meta.bits(4)
        count = meta.uint(nnz + n // cap)
        alphabet = cap * k + 1 if kind == 4 else cap + 1
        if alphabet > _MAX_ALPHABET + 1:
            raise Corrupt("a joint alphabet past the format's limit")
        streams.append(read_table(meta, alphabet, count))
    if kind == 2:
        streams.append(read_table(meta, k + 1, n))
    if kind == 3:
        streams.append(read_table(meta, k, nnz))
    rans_len = meta.uint(reader.stop - reader.pos) if any(s.coder == "rans" for s in streams) else 0
    meta.finish()
    huff_bits = sum(s.n_bits for s in streams if s.coder == "huffman")
    symbols = decode_streams(streams, reader.take((huff_bits + 7) // 8), reader.take(rans_len))
    if kind == 1:
        pos = positions_of(symbols[0], cap, n, nnz)
        flat = np.zeros(n, dtype=storage)
        flat[pos] = np.frombuffer(reader.take(nnz * itemsize), dtype=storage)
        return flat
    if kind == 2:
        index = symbols[0]
    elif kind == 3:
        index = np.zeros(n, dtype=np.int64)
        if nnz:
            index[positions_of(symbols[0], cap, n, nnz)] = symbols[1] + 1
    else:
        joint = symbols[0]
        skip = joint == cap * k
        gaps = np.where(skip, cap, joint // k)
        index = np.zeros(n, dtype=np.int64)
        index[positions_of(gaps, cap, n, nnz)] = joint[~skip] % k + 1
    if index.size and int(index.max()) > k:
        raise Corrupt("an index points past its codebook")
    return np.concatenate([np.zeros(1, dtype=storage), codebook])[index]


def decode_v2(data: bytes, start: int, budget):
    """(description or None, {name: (numpy array, dtype name)}) of a checked format-2 body."""
    reader = ByteReader(data, start)
    header = BitReader(reader.take(reader.varint(len(data))))
    spec = None
    if header.flag():
        spec = _arch.check_spec(_read_spec(header), "architecture")
        tensors = _arch.state_shapes(spec)
    else:
        n_tensors = header.uint(header.remaining)
        tensors = []
        for _ in range(n_tensors):
            name = _read_text(header)
            ndim = header.uint(_MAX_NDIM)
            tensors.append((name, tuple(header.uint(1 << 40) for _ in range(ndim))))
    codes = [header.bits(4) for _ in tensors]
    header.finish()
    if any(c >= len(DTYPES) for c in codes):
        raise Corrupt("unknown dtype code")
    sizes = [budget.take(name, shape) for name, shape in tensors]   # all checked before decoding
    state = {}
    for (name, shape), n, code in zip(tensors, sizes, codes):
        if name in state:
            raise Corrupt(f"{name} appears twice")
        state[name] = (_decode_tensor(reader, n, code).reshape(shape), DTYPES[code][0])
    if reader.pos != len(data):
        raise Corrupt(f"{len(data) - reader.pos} bytes after the last section")
    return spec, state
