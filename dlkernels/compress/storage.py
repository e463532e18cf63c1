"""The compressed model file (``.fdlz``): bit-packed, Huffman coded, no pickle.

Layout (all integers little-endian)::

    b"FDLZ"  u8 version  u32 header length  header  payload  u32 CRC-32

* ``header`` is zlib-compressed JSON: the model's architecture (when it is an
  ``nn.Sequential`` of known layers) and, per ``state_dict`` entry in order, its
  name, shape, dtype, how it is coded and the sizes of its sections.
* ``payload`` is the sections back to back. A Huffman-coded stream is its
  table (the canonical code length of each symbol, bit-packed at a fixed
  width) then the packed bits.
* The CRC-32 (zlib) covers every byte before it: a truncated or corrupted file
  is refused before anything is decoded.

How a tensor is coded (the smallest that applies is chosen):

``q``  quantized (see :func:`dlkernels.compress.quantize`): the codebook in the
       tensor's dtype, then either the Huffman-coded index of every weight
       (dense), or the positions of the non-zero indices and their Huffman-coded
       values (sparse).
``s``  sparse, not quantized: positions, then the raw non-zero values.
``r``  raw bytes.

Positions are coded as in Deep Compression: the gap (zeros skipped) before
each kept weight, capped at ``cap``; a longer gap spends "skip ``cap``" symbols
(the paper's filler zeros). The gap symbols are Huffman coded and ``cap`` is
picked per tensor to make the section smallest.
"""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import torch

from dlkernels._lib.torch_checks import check_module
from dlkernels.huffman import code_lengths, huffman_decode, huffman_encode

__all__ = ["save_compressed", "load_compressed", "encode_model", "FORMAT_VERSION"]

MAGIC = b"FDLZ"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sBI")
_CRC = struct.Struct("<I")
_CAPS = [2**i for i in range(1, 17)]


class _Corrupt(ValueError):
    pass


# -- bit packing -------------------------------------------------------------------
def _pack(values: np.ndarray, width: int) -> bytes:
    """Unsigned ints, each in ``width`` bits, most significant first."""
    values = np.asarray(values, dtype=np.int64)
    if width == 0 or values.size == 0:
        return b""
    bits = (values[:, None] >> np.arange(width - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1)).tobytes()


def _unpack(buf: bytes, width: int, count: int) -> np.ndarray:
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))[: width * count]
    if bits.size < width * count:
        raise _Corrupt("a bit-packed table is cut short")
    return bits.reshape(count, width).astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))


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


def _read_huffman(meta: dict, take) -> np.ndarray:
    lengths = _unpack(take(_nbytes(meta["a"] * meta["w"])), meta["w"], meta["a"])
    data = np.frombuffer(take(_nbytes(meta["b"])), dtype=np.uint8)
    if meta["one"] >= 0:
        # One symbol only: no bits; the header names it.
        if meta["w"] or meta["b"] or not 0 <= meta["one"] < meta["a"]:
            raise _Corrupt("a one-symbol stream is inconsistent")
        return np.full(meta["c"], meta["one"], dtype=np.int64)
    return huffman_decode(data, meta["b"], lengths, meta["c"])


# -- positions of the kept weights -------------------------------------------------
def _gap_symbols(positions: np.ndarray, cap: int) -> np.ndarray:
    gaps = np.diff(positions, prepend=-1) - 1
    skips = gaps // cap
    ends = np.cumsum(skips + 1) - 1
    symbols = np.full(int(ends[-1]) + 1 if ends.size else 0, cap, dtype=np.int64)
    symbols[ends] = gaps % cap
    return symbols


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


def _read_positions(meta: dict, n: int, count: int, take) -> np.ndarray:
    symbols = _read_huffman(meta, take)
    cap = meta["cap"]
    step = np.where(symbols == cap, cap, symbols + 1)
    pos = np.cumsum(step) - 1
    pos = pos[symbols != cap]
    if pos.size != count or (pos.size and (pos[-1] >= n or (symbols > cap).any())):
        raise _Corrupt("the positions of kept weights do not fit the tensor")
    return pos


# -- tensors -----------------------------------------------------------------------
def _raw(t: torch.Tensor) -> bytes:
    if t.numel() == 0:
        return b""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _from_raw(buf: bytes, dtype: torch.dtype, count: int) -> torch.Tensor:
    if count == 0:
        return torch.zeros(0, dtype=dtype)
    return torch.frombuffer(bytearray(buf), dtype=dtype)[:count].clone()


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


def _decode_tensor(meta: dict, take) -> torch.Tensor:
    dtype = _DTYPES.get(meta["dtype"])
    if dtype is None:
        raise _Corrupt(f"unknown dtype {meta['dtype']!r}")
    shape = tuple(meta["shape"])
    n = int(np.prod(shape, dtype=np.int64))
    itemsize = torch.empty(0, dtype=dtype).element_size()
    kind = meta["k"]
    if kind == "r":
        flat = _from_raw(take(n * itemsize), dtype, n)
    elif kind == "s":
        pos = _read_positions(meta["p"], n, meta["nnz"], take)
        flat = torch.zeros(n, dtype=dtype)
        flat[torch.from_numpy(pos)] = _from_raw(take(meta["nnz"] * itemsize), dtype, meta["nnz"])
    elif kind == "q":
        k = meta["K"]
        table = torch.cat([torch.zeros(1, dtype=dtype), _from_raw(take(k * itemsize), dtype, k)])
        if meta["m"] == "dense":
            idx = _read_huffman(meta["v"], take)
            if idx.size != n:
                raise _Corrupt("an index stream does not fit its tensor")
        else:
            pos = _read_positions(meta["p"], n, meta["nnz"], take)
            idx = np.zeros(n, dtype=np.int64)
            idx[pos] = _read_huffman(meta["v"], take) + 1
        if idx.size and idx.max() > k:
            raise _Corrupt("an index points past its codebook")
        flat = table[torch.from_numpy(idx)]
    else:
        raise _Corrupt(f"unknown coding {kind!r}")
    return flat.reshape(shape)


_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8,
    torch.int16, torch.int32, torch.int64, torch.bool)}


# -- architecture ------------------------------------------------------------------
_ARCH = {
    "Linear": lambda m, bias: {"in_features": m.in_features, "out_features": m.out_features,
                               "bias": bias},
    "Conv1d": None, "Conv2d": None,  # filled below
    "BatchNorm1d": lambda m, bias: {"num_features": m.num_features, "eps": m.eps,
                                    "momentum": m.momentum, "affine": m.affine,
                                    "track_running_stats": m.track_running_stats},
    "ReLU": lambda m, bias: {}, "Tanh": lambda m, bias: {}, "Sigmoid": lambda m, bias: {},
    "Identity": lambda m, bias: {}, "SiLU": lambda m, bias: {},
    "GELU": lambda m, bias: {"approximate": m.approximate},
    "LeakyReLU": lambda m, bias: {"negative_slope": m.negative_slope},
    "Dropout": lambda m, bias: {"p": m.p},
    "Flatten": lambda m, bias: {"start_dim": m.start_dim, "end_dim": m.end_dim},
    "Softmax": lambda m, bias: {"dim": m.dim}, "LogSoftmax": lambda m, bias: {"dim": m.dim},
    "MaxPool2d": lambda m, bias: {"kernel_size": m.kernel_size, "stride": m.stride,
                                  "padding": m.padding},
    "AvgPool2d": lambda m, bias: {"kernel_size": m.kernel_size, "stride": m.stride,
                                  "padding": m.padding},
}
_ARCH["BatchNorm2d"] = _ARCH["BatchNorm1d"]
_ARCH["Conv1d"] = _ARCH["Conv2d"] = lambda m, bias: {
    "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": m.kernel_size,
    "stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups,
    "bias": bias, "padding_mode": m.padding_mode}


def _architecture(module, prefix: str, names: set):
    """JSON description of a Sequential of known layers, or None."""
    kind = type(module).__name__
    if type(module) is torch.nn.Sequential:
        children = []
        for name, child in module.named_children():
            spec = _architecture(child, f"{prefix}{name}.", names)
            if spec is None:
                return None
            children.append([name, spec])
        return ["Sequential", children]
    describe = _ARCH.get(kind)
    if describe is None or type(module) is not getattr(torch.nn, kind):
        return None
    return [kind, describe(module, f"{prefix}bias" in names)]


def _build(spec) -> torch.nn.Module:
    kind, args = spec
    if kind == "Sequential":
        seq = torch.nn.Sequential()
        for name, child in args:
            seq.add_module(str(name), _build(child))
        return seq
    if kind not in _ARCH or not isinstance(args, dict):
        raise _Corrupt(f"unknown layer {kind!r} in the architecture")
    return getattr(torch.nn, kind)(**args)


# -- whole models ------------------------------------------------------------------
def _dense_names(model) -> dict[str, object]:
    """state_dict name -> tensor, or -> (codebook, index) for quantized tensors."""
    from dlkernels.compress.quantize import quantized_tensors

    state = model.state_dict(keep_vars=True)
    quant = quantized_tensors(model)
    out = {}
    for name, t in state.items():
        if name.endswith("_codebook") and name[:-9] in quant:
            out[name[:-9]] = quant[name[:-9]]
        elif name.endswith("_index") and name[:-6] in quant:
            continue
        else:
            out[name] = t
    return out


def encode_model(model) -> tuple[bytes, list[dict]]:
    """The file contents for ``model`` and, per tensor, what its sections cost.

    Used by :func:`save_compressed` and :func:`dlkernels.compress.compression_report`
    (so the report counts exactly the bytes of the file).

    Returns
    -------
    data : bytes
    entries : list of dict
        Per ``state_dict`` tensor: the header entry plus ``"bytes"`` (its
        payload bytes: codebook, tables and streams).
    """
    check_module(model)
    tensors = _dense_names(model)
    for name, t in tensors.items():
        values = t[0] if isinstance(t, tuple) else t
        if values.is_floating_point() and not bool(torch.isfinite(values.detach()).all()):
            raise ValueError(f"model: {name} holds NaN or inf; it cannot be compressed")
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
        if meta["dtype"] not in _DTYPES:
            raise ValueError(f"model: {name} has dtype {dtype}, which the file format does not hold")
        payload += parts
        entries.append({**meta, "bytes": sum(map(len, parts))})
    header = {"arch": _architecture(model, "", set(tensors)),
              "tensors": [{k: v for k, v in e.items() if k != "bytes"} for e in entries]}
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head + b"".join(payload)
    return body + _CRC.pack(zlib.crc32(body)), entries


def save_compressed(model, path) -> int:
    """Write ``model`` (pruned, quantized or neither) to a compressed file.

    Parameters
    ----------
    model : torch.nn.Module
        Any module; quantized tensors are stored as codebook + Huffman-coded
        indices, mostly-zero tensors sparse, the rest (biases, norms) as raw
        bytes of their dtype. Every tensor of ``state_dict()`` is stored.
    path : str or os.PathLike

    Returns
    -------
    int
        The file size in bytes.

    Raises
    ------
    ValueError
        If a tensor holds NaN or inf, or has a dtype the format does not hold.

    Notes
    -----
    The architecture is recorded when ``model`` is an ``nn.Sequential``
    (nested ones too) of ``Linear``, ``Conv1d/2d``, ``BatchNorm1d/2d``,
    ``Flatten``, ``Dropout``, pooling and the common activations; then
    :func:`load_compressed` rebuilds it. Otherwise pass a skeleton model to
    :func:`load_compressed`. See the module documentation for the layout.
    """
    data, _ = encode_model(model)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)


def load_compressed(path, model=None) -> torch.nn.Module:
    """Read a file written by :func:`save_compressed`; no code is executed.

    Parameters
    ----------
    path : str or os.PathLike
    model : torch.nn.Module, optional
        A skeleton of plain layers with the saved ``state_dict`` names and
        shapes; its tensors are overwritten. Needed when the file holds no
        architecture (models that are not a known ``nn.Sequential``).

    Returns
    -------
    torch.nn.Module
        ``model``, or the rebuilt ``nn.Sequential``, on the CPU, holding the
        decoded values: quantized tensors become plain tensors of their shared
        values, so its outputs equal those of the saved model exactly.

    Raises
    ------
    ValueError
        If the file is truncated or corrupt (CRC, magic, lengths), from a newer
        format, holds no architecture and no ``model`` was given, or does not
        match ``model``; ``model`` is unchanged then.
    """
    if model is not None:
        check_module(model)
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        arch, state = _decode(data)
    except _Corrupt as exc:
        raise ValueError(f"{path} is not a valid compressed model: {exc}") from None
    if model is None:
        if arch is None:
            raise ValueError(f"{path} holds no architecture (not an nn.Sequential of known "
                             f"layers): pass a skeleton with model=...")
        try:
            model = _build(arch)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a valid compressed model: {exc}") from None
    target = model.state_dict()
    if set(target) != set(state):
        missing, extra = sorted(set(target) - set(state)), sorted(set(state) - set(target))
        raise ValueError(f"model does not match {path}: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, t in state.items():
        if tuple(target[name].shape) != tuple(t.shape):
            raise ValueError(f"model does not match {path}: {name} has shape "
                             f"{tuple(target[name].shape)}, the file {tuple(t.shape)}")
    model.load_state_dict(state)
    return model


def _decode(data: bytes):
    if len(data) < _PREFIX.size + _CRC.size:
        raise _Corrupt(f"{len(data)} bytes is too short (truncated?)")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise _Corrupt(f"it starts with {magic!r}, not {MAGIC!r}")
    if version > FORMAT_VERSION:
        raise _Corrupt(f"format {version} is newer than this dlkernels reads ({FORMAT_VERSION})")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    body = data[: len(data) - _CRC.size]
    if zlib.crc32(body) != crc:
        raise _Corrupt("CRC-32 mismatch (truncated or corrupted)")
    try:
        header = json.loads(zlib.decompress(body[_PREFIX.size:_PREFIX.size + head_len]))
        tensors = header["tensors"]
        arch = header["arch"]
    except (zlib.error, ValueError, KeyError, TypeError) as exc:
        raise _Corrupt(f"bad header ({exc})") from None
    pos = _PREFIX.size + head_len

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(body):
            raise _Corrupt("a section runs past the end of the file")
        chunk = body[pos:pos + n]
        pos += n
        return chunk

    state = {}
    try:
        for meta in tensors:
            state[meta["name"]] = _decode_tensor(meta, take)
    except (KeyError, TypeError, IndexError, ValueError, RuntimeError) as exc:
        if isinstance(exc, _Corrupt):
            raise
        raise _Corrupt(f"bad tensor entry ({type(exc).__name__}: {exc})") from None
    if pos != len(body):
        raise _Corrupt(f"{len(body) - pos} bytes after the last section")
    return arch, state
