"""The compressed model file (``.fdlz``): no pickle, every size checked before use.

Layout (format 2, written since dlkernels 0.2; format 1 files still load)::

    b"FDLZ"  u8 version  header  section per tensor  u32 CRC-32

The header is bit-packed binary: the architecture as a layer table (when the
model is an ``nn.Sequential`` of known layers) or the tensors' names and
shapes, then each tensor's dtype. Each tensor's section holds its tables and
streams (see :mod:`dlkernels.compress._format2` for the details). The CRC-32
(zlib) covers every byte before it: a truncated or corrupted file is refused
before anything is decoded.

A file is data from outside. Loading checks the magic, version and CRC, then
every declared size against the file's real size and the number of entries a
file of that size may describe (2**20 plus 1024 per byte of file) before it
allocates anything; builds nothing but the layer types the format lists, with
every argument checked (no device or dtype is ever taken from a file), on
torch's ``meta`` device, and hands it the decoded tensors. Any failure is a
:class:`dlkernels.FileFormatError` naming the file.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import zlib
from typing import Any

import numpy as np
import torch

from dlkernels._lib.array_types import PathLike
from dlkernels._lib.persist import FileFormatError
from dlkernels._lib.torch_checks import check_module
from dlkernels._lib.validation import _physical_memory
from dlkernels.compress import _arch
from dlkernels.compress._bits import Corrupt
from dlkernels.compress._format1 import decode_v1
from dlkernels.compress._format2 import DTYPES, decode_v2, encode_header, encode_tensor

__all__ = ["save_compressed", "load_compressed", "encode_model", "FORMAT_VERSION"]

MAGIC = b"FDLZ"
FORMAT_VERSION = 2
_CRC = struct.Struct("<I")
_TORCH_DTYPES = {name: getattr(torch, name) for name, _, _ in DTYPES}
_STORAGE = {name: storage for name, storage, _ in DTYPES}
# Entries a file may describe: a small allowance, and 1024 per byte of file (a
# model compressed 50x takes about 1 byte per 12 weights; only tensors that are
# zero throughout come near the limit).
_ENTRIES_BASE = 1 << 20
_ENTRIES_PER_BYTE = 1024


class _Budget:
    """How many tensor entries a file of ``file_bytes`` may still declare."""

    def __init__(self, file_bytes: int):
        self.left = min(_ENTRIES_BASE + _ENTRIES_PER_BYTE * file_bytes, _physical_memory() // 16)

    def take(self, name: str, shape) -> int:
        n = math.prod(shape)
        if n > self.left:
            raise Corrupt(f"{name} declares shape {tuple(shape)}, more entries than a file "
                          f"of this size may describe")
        self.left -= n
        return n


# -- writing -------------------------------------------------------------------------
def _dense_names(model: torch.nn.Module
                 ) -> dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """state_dict name -> tensor, or -> (codebook, index) for quantized tensors."""
    from dlkernels.compress.quantize import quantized_tensors

    state = model.state_dict(keep_vars=True)
    quant = quantized_tensors(model)
    out: dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]] = {}
    for name, t in state.items():
        if name.endswith("_codebook") and name[:-9] in quant:
            out[name[:-9]] = quant[name[:-9]]
        elif name.endswith("_index") and name[:-6] in quant:
            continue
        else:
            out[name] = t
    return out


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def encode_model(model: torch.nn.Module) -> tuple[bytes, list[dict[str, Any]]]:
    """The file contents for ``model`` and, per tensor, how it was coded and what it cost.

    Used by :func:`save_compressed` and :func:`dlkernels.compress.compression_report`
    (so the report counts exactly the bytes of the file).

    Returns
    -------
    data : bytes
    entries : list of dict
        Per ``state_dict`` tensor, in file order: ``name``, ``shape``,
        ``dtype``, ``coding`` (``"raw"``, ``"sparse"``, ``"quantized dense"``,
        ``"quantized sparse"`` or ``"quantized joint"``), ``streams`` (each
        stream's coder and bits), ``K`` (codebook size or 0), ``nnz`` and
        ``bytes`` (the tensor's section: tables, codebook, streams).
    """
    check_module(model)
    tensors = _dense_names(model)
    for name, t in tensors.items():
        values = t[0] if isinstance(t, tuple) else t
        if values.is_floating_point() and not bool(torch.isfinite(values.detach()).all()):
            raise ValueError(f"model: {name} holds NaN or inf; it cannot be compressed")
        dtype = str(values.dtype).removeprefix("torch.")
        if dtype not in _TORCH_DTYPES:
            raise ValueError(f"model: {name} has dtype {values.dtype}, which the file format "
                             f"does not hold")
        if isinstance(t, tuple) and not values.is_floating_point():
            raise ValueError(f"model: {name} has an integer codebook; the format holds float ones")
    spec = _arch.describe(model, "", set(tensors))
    order = list(tensors)
    if spec is not None:
        expected = _arch.state_shapes(spec)
        shapes = {name: tuple((t[1] if isinstance(t, tuple) else t).shape)
                  for name, t in tensors.items()}
        if {n: s for n, s in expected} == shapes and len(expected) == len(shapes):
            order = [n for n, _ in expected]
        else:
            spec = None
    entries, sections, header_rows = [], [], []
    for name in order:
        t = tensors[name]
        if isinstance(t, tuple):
            codebook, index = t
            shape, dtype = tuple(index.shape), str(codebook.dtype).removeprefix("torch.")
            value = (_numpy(codebook).reshape(-1), index.detach().cpu().numpy().astype(np.int64))
            k = int(codebook.numel())
        else:
            shape, dtype = tuple(t.shape), str(t.dtype).removeprefix("torch.")
            value, k = _numpy(t), 0
        enc = encode_tensor(value, dtype)
        header_rows.append((name, shape, dtype))
        sections.append(enc.data)
        entries.append({"name": name, "shape": shape, "dtype": dtype, "coding": enc.kind,
                        "streams": [(s.coder, _stream_bits(s), s.count, s.alphabet) for s in enc.streams],
                        "K": k if enc.kind.startswith("quantized") else 0,
                        "nnz": enc.extra.get("nnz", math.prod(shape)), "cap": enc.extra.get("cap", 0),
                        "bytes": enc.size})
    body = MAGIC + bytes([FORMAT_VERSION]) + encode_header(spec, header_rows) + b"".join(sections)
    return body + _CRC.pack(zlib.crc32(body)), entries


def _stream_bits(s) -> float:
    """Data bits of a stream (rANS: its share of the coder's output, to a fraction of a bit)."""
    if s.coder == "huffman":
        return float(s.n_bits)
    return float(s.cost_bits - s.table_bits) if s.coder == "rans" else 0.0


def save_compressed(model: torch.nn.Module, path: PathLike) -> int:
    """Write ``model`` (pruned, quantized or neither) to a compressed file.

    Parameters
    ----------
    model : torch.nn.Module
        Any module; quantized tensors are stored as a codebook and entropy-coded
        indices (rANS or Huffman, whichever is smaller), mostly-zero tensors
        sparse, the rest (biases, norms) as raw bytes of their dtype. Every
        tensor of ``state_dict()`` is stored.
    path : str or os.PathLike
        The file; it appears complete or not at all (written next to it, then
        renamed).

    Returns
    -------
    int
        The file size in bytes.

    Raises
    ------
    ValueError
        If a tensor holds NaN or inf, or has a dtype the format does not hold.
    OSError
        If ``path`` cannot be written (a directory, a missing folder).

    Notes
    -----
    The architecture is recorded when ``model`` is an ``nn.Sequential``
    (nested ones too) of ``Linear``, ``Conv1d/2d``, ``BatchNorm1d/2d``,
    ``Flatten``, ``Dropout``, pooling and the common activations; then
    :func:`load_compressed` rebuilds it. Otherwise pass a skeleton model to
    :func:`load_compressed`. See the module documentation for the layout.
    """
    data, _ = encode_model(model)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path {path!r} is a directory; give a file name such as "
                                f"{os.path.join(path, 'model.fdlz')!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path {path!r}: the folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".dlkernels-", suffix=".fdlz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(data)


# -- reading -------------------------------------------------------------------------
def _decode(data: bytes):
    """(checked architecture or None, {name: torch tensor}) of a file's bytes."""
    if len(data) < 5 + _CRC.size:
        raise Corrupt(f"{len(data)} bytes is too short (truncated?)")
    if data[:4] != MAGIC:
        raise Corrupt(f"it starts with {data[:4]!r}, not {MAGIC!r}")
    version = data[4]
    if version > FORMAT_VERSION:
        raise Corrupt(f"format {version} is newer than this dlkernels reads ({FORMAT_VERSION})")
    if version == 0:
        raise Corrupt("format 0 does not exist")
    body = data[:-_CRC.size]
    if zlib.crc32(body) != _CRC.unpack_from(data, len(data) - _CRC.size)[0]:
        raise Corrupt("CRC-32 mismatch (truncated or corrupted)")
    budget = _Budget(len(data))
    if version == 1:
        arch, arrays = decode_v1(body, _STORAGE, budget)
        spec = None if arch is None else _arch.check_spec(arch)
    else:
        spec, arrays = decode_v2(body, 5, budget)
    state = {}
    for name, (arr, dtype) in arrays.items():
        t = torch.from_numpy(np.require(arr, requirements="CW"))
        state[name] = t.view(torch.bfloat16) if dtype == "bfloat16" else t
    if spec is not None:
        expected = _arch.state_shapes(spec)
        got = {name: tuple(t.shape) for name, t in state.items()}
        if dict(expected) != got or len(expected) != len(got):
            raise Corrupt("its tensors are not those of its architecture")
    return spec, state


def load_compressed(path: PathLike, model: torch.nn.Module | None = None) -> torch.nn.Module:
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
        decoded values in their saved dtypes: quantized tensors become plain
        tensors of their shared values, so its outputs equal those of the saved
        model exactly.

    Raises
    ------
    dlkernels.FileFormatError
        (a ``ValueError`` naming the file) If the file is truncated or corrupt
        (CRC, magic, lengths), from a newer format, declares more than it
        holds, names a layer or argument the format does not allow, holds no
        architecture and no ``model`` was given, or does not match ``model``;
        ``model`` is unchanged then.

    Notes
    -----
    Thread safety: a pure function of the file; loading into one ``model``
    from two threads at once is the caller's to avoid.
    """
    if model is not None:
        check_module(model)
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        spec, state = _decode(data)
    except (Corrupt, _arch.ArchError) as exc:
        raise FileFormatError(path, f"not a valid compressed model: {exc}") from None
    if model is None:
        if spec is None:
            raise FileFormatError(path, "holds no architecture (not an nn.Sequential of known "
                                        "layers): pass a skeleton with model=...")
        try:
            return _arch.build(spec, state)
        except (_arch.ArchError, RuntimeError, ValueError, TypeError) as exc:
            raise FileFormatError(path, f"not a valid compressed model: {exc}") from None
    target = model.state_dict()
    if set(target) != set(state):
        missing, extra = sorted(set(target) - set(state)), sorted(set(state) - set(target))
        raise FileFormatError(path, f"model does not match the file: missing {missing[:5]}, "
                                    f"unexpected {extra[:5]}")
    for name, t in state.items():
        if tuple(target[name].shape) != tuple(t.shape):
            raise FileFormatError(path, f"model does not match the file: {name} has shape "
                                        f"{tuple(target[name].shape)}, the file {tuple(t.shape)}")
    model.load_state_dict(state)
    return model
