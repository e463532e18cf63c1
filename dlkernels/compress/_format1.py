"""Reading format 1 of ``.fdlz`` (dlkernels 0.x up to the binary header): still loads.

Layout::

    b"FDLZ"  u8 1  u32 header length  zlib(JSON header)  payload  u32 CRC-32

The JSON header holds the architecture and, per tensor, its name, shape,
dtype, coding (``r`` raw, ``s`` sparse, ``q`` quantized dense or sparse) and
stream sizes. Everything is checked before it is used: the inflated header's
size, every count against the tensor's size and the file's bytes, before any
array is allocated.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from dlkernels.compress._bits import ByteReader, Corrupt
from dlkernels.compress._streams import positions_of
from dlkernels.huffman import MAX_CODE_LENGTH, huffman_decode

__all__ = ["decode_v1"]

_PREFIX = struct.Struct("<4sBI")
_MAX_HEADER = 1 << 24        # inflated JSON header, bytes
_MAX_CAP = 1 << 16


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, _MAX_HEADER)
    if d.unconsumed_tail or not d.eof:
        raise Corrupt(f"the header inflates past {_MAX_HEADER} bytes or is cut short")
    if d.unused_data:
        raise Corrupt("bytes after the compressed header")
    return out


def _int(meta, key, low, high) -> int:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Corrupt(f"{key}={value!r} lies outside [{low}, {high}]")
    return value


def _nbytes(bits: int) -> int:
    return (bits + 7) // 8


def _unpack(buf: bytes, width: int, count: int) -> np.ndarray:
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))[: width * count]
    if bits.size < width * count:
        raise Corrupt("a bit-packed table is cut short")
    return bits.reshape(count, width).astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))


def _read_huffman(meta: dict, reader: ByteReader, count: int) -> np.ndarray:
    """A stream of exactly ``count`` symbols (the caller's bound, checked first)."""
    alphabet = _int(meta, "a", 1, 1 << 17)
    width = _int(meta, "w", 0, 6)
    n_bits = _int(meta, "b", 0, 8 * (reader.stop - reader.pos))
    if meta["c"] != count:
        raise Corrupt(f"a stream holds {meta['c']!r} symbols where {count} are expected")
    one = _int(meta, "one", -1, alphabet - 1)
    lengths = _unpack(reader.take(_nbytes(alphabet * width)), width, alphabet)
    data = np.frombuffer(reader.take(_nbytes(n_bits)), dtype=np.uint8)
    if one >= 0:
        if width or n_bits:
            raise Corrupt("a one-symbol stream is inconsistent")
        return np.full(count, one, dtype=np.int64)
    if lengths.max(initial=0) > MAX_CODE_LENGTH:
        raise Corrupt("a Huffman code is too long")
    try:
        return huffman_decode(data, n_bits, lengths, count)
    except (TypeError, ValueError) as exc:
        raise Corrupt(str(exc)) from None


def _read_positions(meta: dict, n: int, nnz: int, reader: ByteReader) -> np.ndarray:
    cap = _int(meta, "cap", 2, _MAX_CAP)
    # Each skip symbol stands for `cap` zeros: no more than nnz + n // cap symbols.
    count = _int(meta, "c", 0, nnz + n // cap)
    return positions_of(_read_huffman(meta, reader, count), cap, n, nnz)


def _tensor(meta: dict, reader: ByteReader, dtypes: dict, budget) -> tuple[str, np.ndarray, str]:
    name = meta["name"]
    if not isinstance(name, str) or not name:
        raise Corrupt("a tensor without a name")
    dtype = dtypes.get(meta["dtype"]) if isinstance(meta["dtype"], str) else None
    if dtype is None:
        raise Corrupt(f"{name}: unknown dtype {meta['dtype']!r}")
    shape = meta["shape"]
    if not isinstance(shape, list) or len(shape) > 8 or any(
            isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 1 << 40 for s in shape):
        raise Corrupt(f"{name}: invalid shape {shape!r}")
    n = budget.take(name, shape)
    itemsize = np.dtype(dtype).itemsize
    kind = meta["k"]
    if kind == "r":
        flat = np.frombuffer(reader.take(n * itemsize), dtype=dtype).copy()
    elif kind == "s":
        nnz = _int(meta, "nnz", 0, n)
        pos = _read_positions(meta["p"], n, nnz, reader)
        flat = np.zeros(n, dtype=dtype)
        flat[pos] = np.frombuffer(reader.take(nnz * itemsize), dtype=dtype)
    elif kind == "q":
        k = _int(meta, "K", 0, (1 << 16) - 1)
        table = np.concatenate([np.zeros(1, dtype),
                                np.frombuffer(reader.take(k * itemsize), dtype=dtype)])
        if meta["m"] == "dense":
            idx = _read_huffman(meta["v"], reader, n)
        elif meta["m"] == "sparse":
            nnz = _int(meta, "nnz", 0, n)
            pos = _read_positions(meta["p"], n, nnz, reader)
            idx = np.zeros(n, dtype=np.int64)
            idx[pos] = _read_huffman(meta["v"], reader, nnz) + 1
        else:
            raise Corrupt(f"{name}: unknown mode {meta['m']!r}")
        if idx.size and idx.max() > k:
            raise Corrupt(f"{name}: an index points past its codebook")
        flat = table[idx]
    else:
        raise Corrupt(f"{name}: unknown coding {kind!r}")
    return name, flat.reshape(shape), meta["dtype"]


def decode_v1(data: bytes, dtypes: dict, budget):
    """(architecture or None, {name: (numpy array, dtype name)}) of a checked format-1 body
    (``data`` without its CRC, which the caller has checked)."""
    _, _, head_len = _PREFIX.unpack_from(data)
    if head_len > len(data) - _PREFIX.size:
        raise Corrupt("the header runs past the end of the file")
    try:
        header = json.loads(_inflate(data[_PREFIX.size:_PREFIX.size + head_len]))
        tensors, arch = header["tensors"], header["arch"]
    except (zlib.error, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise Corrupt(f"bad header ({type(exc).__name__}: {exc})") from None
    if not isinstance(tensors, list):
        raise Corrupt("bad header (no tensor list)")
    reader = ByteReader(data, _PREFIX.size + head_len)
    state = {}
    try:
        for meta in tensors:
            if not isinstance(meta, dict):
                raise Corrupt("bad tensor entry")
            name, value, dtype = _tensor(meta, reader, dtypes, budget)
            if name in state:
                raise Corrupt(f"{name} appears twice")
            state[name] = (value, dtype)
    except (KeyError, TypeError, IndexError) as exc:
        raise Corrupt(f"bad tensor entry ({type(exc).__name__}: {exc})") from None
    if reader.pos != len(data):
        raise Corrupt(f"{len(data) - reader.pos} bytes after the last section")
    return arch, state
