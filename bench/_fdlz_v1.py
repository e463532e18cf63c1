"""Format 1 of ``.fdlz`` (the zlib-JSON header), writer only: frozen from commit 718510c
so that ``compress_pipeline.py`` can measure the format-2 file against it on the same model.
Not part of the package."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import torch

from dlkernels.compress._arch import describe
from dlkernels.compress._streams import gap_symbols as _gap_symbols
from dlkernels.compress.storage import _dense_names
from dlkernels.huffman import code_lengths, huffman_encode

MAGIC = b"FDLZ"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sBI")
_CRC = struct.Struct("<I")
_CAPS = [2**i for i in range(1, 17)]


# -- bit packing -------------------------------------------------------------------
def _pack(values: np.ndarray, width: int) -> bytes:
    """Unsigned ints, each in ``width`` bits, most significant first."""
    values = np.asarray(values, dtype=np.int64)
    if width == 0 or values.size == 0:
        return b""
    bits = (values[:, None] >> np.arange(width - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1)).tobytes()


def _nbytes(bits: int) -> int:
    return (bits + 7) // 8


# -- Huffman streams ---------------------------------------------------------------
def _huffman(symbols: np.ndarray, alphabet: int) -> tuple[dict, list[bytes]]:
    counts = np.bincount(symbols, minlength=alphabet)
    present = np.flatnonzero(counts)
    if present.size <= 1:
        # Zero or one distinct symbol: the header names it, no table, no bits.
        one = int(present[0]) if present.size else 0
        return {"a": alphabet, "w": 0, "c": int(symbols.size), "b": 0, "one": one}, []
    lengths = code_lengths(counts)
    data, n_bits = huffman_encode(symbols, lengths)
    width = int(lengths.max()).bit_length()
    meta = {"a": alphabet, "w": width, "c": int(symbols.size), "b": n_bits, "one": -1}
    return meta, [_pack(lengths, width), data.tobytes()]


def _huffman_size(meta: dict) -> int:
    return _nbytes(meta["a"] * meta["w"]) + _nbytes(meta["b"])


# -- positions of the kept weights -------------------------------------------------
def _positions(positions: np.ndarray) -> tuple[dict, list[bytes]]:
    best = None
    for cap in _CAPS:
        meta, parts = _huffman(_gap_symbols(positions, cap), cap + 1)
        size = _huffman_size(meta)
        if best is None or size < best[0]:
            best = (size, {"cap": cap, **meta}, parts)
        if not positions.size or cap > np.diff(positions, prepend=-1).max():
            break  # larger caps only grow the table
    return best[1], best[2]


# -- tensors -----------------------------------------------------------------------
def _raw(t: torch.Tensor) -> bytes:
    if t.numel() == 0:
        return b""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _encode_float(t: torch.Tensor) -> tuple[dict, list[bytes]]:
    raw = _raw(t)
    if not t.is_floating_point() or t.numel() == 0:
        return {"k": "r"}, [raw]
    flat = t.detach().cpu().reshape(-1)
    nz = torch.nonzero(flat).reshape(-1)
    meta, parts = _positions(nz.numpy().astype(np.int64))
    values = _raw(flat[nz])
    if sum(map(len, parts)) + len(values) < len(raw):
        return {"k": "s", "nnz": int(nz.numel()), "p": meta}, [*parts, values]
    return {"k": "r"}, [raw]


def _encode_quantized(codebook: torch.Tensor, index: torch.Tensor) -> tuple[dict, list[bytes]]:
    idx = index.detach().cpu().reshape(-1).to(torch.int64).numpy()
    k = codebook.numel()
    book = _raw(codebook)
    dense_meta, dense_parts = _huffman(idx, k + 1)
    nz = np.flatnonzero(idx)
    pos_meta, pos_parts = _positions(nz)
    val_meta, val_parts = _huffman(idx[nz] - 1, max(k, 1))
    if _huffman_size(pos_meta) + _huffman_size(val_meta) < _huffman_size(dense_meta):
        best = ({"k": "q", "K": k, "m": "sparse", "nnz": int(nz.size), "p": pos_meta,
                 "v": val_meta}, [book, *pos_parts, *val_parts])
    else:
        best = {"k": "q", "K": k, "m": "dense", "v": dense_meta}, [book, *dense_parts]
    # A tiny tensor (ten biases) can cost less as plain values than with a
    # codebook: store the shared values themselves then (the same numbers).
    table = torch.cat([codebook.detach().cpu().new_zeros(1), codebook.detach().cpu()])
    plain = _encode_float(table[torch.from_numpy(idx)].reshape(index.shape))
    return min(best, plain, key=lambda option: sum(map(len, option[1])))


def encode_model(model) -> tuple[bytes, int]:
    """The format-1 file for ``model`` and the size of its header (prefix, zlib JSON, CRC)."""
    tensors = _dense_names(model)
    entries, payload = [], []
    for name, t in tensors.items():
        if isinstance(t, tuple):
            codebook, index = t
            meta, parts = _encode_quantized(codebook, index)
            shape, dtype = index.shape, codebook.dtype
        else:
            meta, parts = _encode_float(t)
            shape, dtype = t.shape, t.dtype
        meta.update(name=name, shape=list(shape), dtype=str(dtype).removeprefix("torch."))
        payload += parts
        entries.append(meta)
    header = {"arch": describe(model, "", set(tensors)), "tensors": entries}
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head + b"".join(payload)
    return body + _CRC.pack(zlib.crc32(body)), _PREFIX.size + len(head) + _CRC.size
