"""Per-layer compression figures in the layout of Deep Compression's Tables 2 and 3."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dlkernels.compress.storage import _STORAGE, _dense_names, encode_model

__all__ = ["compression_report", "CompressionReport", "LayerReport"]


@dataclass(frozen=True)
class LayerReport:
    """One row of a :class:`CompressionReport` (one tensor of the ``state_dict``).

    Attributes
    ----------
    name : str
    weights : int
        Number of entries.
    kept : float
        Share of non-zero entries (after pruning).
    weight_bits : float
        Bits per coded value before entropy coding: ``ceil(log2(K + 1))`` for a
        codebook of K shared values, the dtype's width otherwise.
    weight_bits_coded : float
        Bits per coded value as stored (entropy-coded indices). For the
        ``"quantized joint"`` coding, positions and values together.
    index_bits : float
        Bits per kept value spent on positions before entropy coding (the
        fixed-width capped gaps), 0 when the tensor is stored dense.
    index_bits_coded : float
        The same as stored (coded gaps, skip symbols included); 0 for the
        joint coding, whose positions count in ``weight_bits_coded``.
    bytes : int
        Bytes of this tensor in the file (codebook, tables and streams).
    ratio : float
        Its float32 size divided by ``bytes``.
    coding : str
        ``"quantized dense"``, ``"quantized sparse"``, ``"quantized joint"``,
        ``"sparse"`` or ``"raw"``.
    coder : str
        The entropy coder of each of its streams, joined by ``+``: ``"rans"``,
        ``"huffman"``, ``"one"`` (a stream of one repeated symbol, stored as
        that symbol), or ``"-"`` for raw values.
    """

    name: str
    weights: int
    kept: float
    weight_bits: float
    weight_bits_coded: float
    index_bits: float
    index_bits_coded: float
    bytes: int
    ratio: float
    coding: str
    coder: str


@dataclass(frozen=True)
class CompressionReport:
    """What :func:`compression_report` returns; ``str(report)`` is the table.

    Attributes
    ----------
    layers : list of LayerReport
    file_bytes : int
        The whole file: every tensor plus header, tables, magic and CRC.
    float32_bytes : int
        4 bytes per entry of every tensor of the ``state_dict``.
    ratio : float
        ``float32_bytes / file_bytes``.
    """

    layers: list[LayerReport] = field(default_factory=list)
    file_bytes: int = 0
    float32_bytes: int = 0

    @property
    def ratio(self) -> float:
        return self.float32_bytes / self.file_bytes if self.file_bytes else math.inf

    @property
    def overhead_bytes(self) -> int:
        """Bytes of the file outside the tensors' sections (header, magic, CRC)."""
        return self.file_bytes - sum(row.bytes for row in self.layers)

    def __str__(self) -> str:
        head = (f"{'layer':<22}{'#weights':>10}{'kept':>8}{'wbits':>7}{'coded':>9}"
                f"{'ibits':>7}{'coded':>9}{'bytes':>9}{'ratio':>9}  coding (coder)")
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(f"{r.name:<22}{r.weights:>10}{r.kept:>8.1%}{r.weight_bits:>7.1f}"
                         f"{r.weight_bits_coded:>9.2f}{r.index_bits:>7.1f}"
                         f"{r.index_bits_coded:>9.2f}{r.bytes:>9}{_ratio_text(r)}  {r.coding} "
                         f"({r.coder})")
        lines.append(f"{'header, magic, CRC':<22}{'':>58}{self.overhead_bytes:>9}")
        n = sum(r.weights for r in self.layers)
        kept = sum(r.kept * r.weights for r in self.layers) / n if n else 0.0
        lines.append(f"{'total':<22}{n:>10}{kept:>8.1%}{'':>40}{self.file_bytes:>9}"
                     f"{self.ratio:>8.1f}x  (float32: {self.float32_bytes} bytes)")
        return "\n".join(lines)


def compression_report(model: torch.nn.Module) -> CompressionReport:
    """Per tensor: weights, share kept, bits per weight and per index, bytes, ratio.

    The figures are those of the file :func:`save_compressed` would write (the
    same encoder runs), so ``report.file_bytes`` is the file's size.

    Parameters
    ----------
    model : torch.nn.Module
        Pruned, quantized, both or neither.

    Returns
    -------
    CompressionReport

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import compression_report, prune_magnitude, quantize
    >>> model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    >>> _ = prune_magnitude(model, 0.9)
    >>> _ = quantize(model, bits=4)
    >>> compression_report(model).ratio > 10
    True
    """
    data, entries = encode_model(model)
    tensors = _dense_names(model)
    rows = []
    for e in entries:
        n = int(math.prod(e["shape"]))
        itemsize = 8 * np.dtype(_STORAGE[e["dtype"]]).itemsize
        streams = e["streams"]
        nnz, kind = e["nnz"], e["coding"]
        per = (lambda bits: bits / nnz if nnz else 0.0)
        wbits, wbits_c, ibits, ibits_c = itemsize, itemsize, 0.0, 0.0
        if kind.startswith("quantized"):
            wbits = math.ceil(math.log2(e["K"] + 1)) if e["K"] else 0
            wbits_c = per(streams[-1][1])
        if kind in ("sparse", "quantized sparse", "quantized joint"):
            cap, count = e["cap"], streams[0][2]
            ibits = per(math.ceil(math.log2(cap + 1)) * count)
            if kind != "quantized joint":
                ibits_c = per(streams[0][1])
        t = tensors[e["name"]]
        values = t[1] if isinstance(t, tuple) else t
        kept = int((values.detach() != 0).sum()) / n if n else 0.0
        coder = "+".join(s[0] for s in streams) or "-"
        rows.append(LayerReport(e["name"], n, kept, wbits, wbits_c, ibits, ibits_c, e["bytes"],
                                4 * n / e["bytes"] if e["bytes"] else math.inf, kind, coder))
    return CompressionReport(rows, len(data), 4 * sum(r.weights for r in rows))


def _ratio_text(row: LayerReport) -> str:
    # A tensor pruned away entirely takes no bytes: no finite ratio to print.
    return f"{row.ratio:>8.1f}x" if row.bytes else f"{'all 0':>9}"
