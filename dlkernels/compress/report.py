"""Per-layer compression figures in the layout of Deep Compression's Tables 2 and 3."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dlkernels.compress.storage import _dense_names, encode_model

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
        Bits per kept value before Huffman coding: ``ceil(log2(K + 1))`` for a
        codebook of K shared values, the dtype's width otherwise.
    weight_bits_huffman : float
        Bits per kept value as stored (Huffman-coded indices).
    index_bits : float
        Bits per kept value spent on positions before Huffman coding (the
        fixed-width capped gaps), 0 when the tensor is stored dense.
    index_bits_huffman : float
        The same as stored (Huffman-coded gaps, filler symbols included).
    bytes : int
        Bytes of this tensor in the file (codebook, tables and streams).
    ratio : float
        Its float32 size divided by ``bytes``.
    coding : str
        ``"quantized dense"``, ``"quantized sparse"``, ``"sparse"`` or ``"raw"``.
    """

    name: str
    weights: int
    kept: float
    weight_bits: float
    weight_bits_huffman: float
    index_bits: float
    index_bits_huffman: float
    bytes: int
    ratio: float
    coding: str


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

    layers: list = field(default_factory=list)
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
        head = (f"{'layer':<22}{'#weights':>10}{'kept':>8}{'wbits':>7}{'wbits+H':>9}"
                f"{'ibits':>7}{'ibits+H':>9}{'bytes':>9}{'ratio':>8}  coding")
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(f"{r.name:<22}{r.weights:>10}{r.kept:>8.1%}{r.weight_bits:>7.1f}"
                         f"{r.weight_bits_huffman:>9.2f}{r.index_bits:>7.1f}"
                         f"{r.index_bits_huffman:>9.2f}{r.bytes:>9}{_ratio_text(r)}  {r.coding}")
        lines.append(f"{'header, magic, CRC':<22}{'':>58}{self.overhead_bytes:>9}")
        n = sum(r.weights for r in self.layers)
        kept = sum(r.kept * r.weights for r in self.layers) / n if n else 0.0
        lines.append(f"{'total':<22}{n:>10}{kept:>8.1%}{'':>40}{self.file_bytes:>9}"
                     f"{self.ratio:>7.1f}x  (float32: {self.float32_bytes} bytes)")
        return "\n".join(lines)


def compression_report(model) -> CompressionReport:
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
    rows = []
    for e in entries:
        n = int(math.prod(e["shape"]))
        itemsize = {"float16": 16, "bfloat16": 16, "float64": 64, "int8": 8, "uint8": 8,
                    "int16": 16, "int32": 32, "int64": 64, "bool": 8}.get(e["dtype"], 32)
        kind = e["k"]
        if kind == "q":
            nnz = e["nnz"] if e["m"] == "sparse" else n
            wbits = math.ceil(math.log2(e["K"] + 1)) if e["K"] else 0
            wbits_h = e["v"]["b"] / nnz if nnz else 0.0
            coding = f"quantized {e['m']}"
        elif kind == "s":
            nnz = e["nnz"]
            wbits = wbits_h = itemsize
            coding = "sparse"
        else:
            nnz, wbits, wbits_h, coding = n, itemsize, itemsize, "raw"
        if "p" in e:
            p = e["p"]
            ibits = math.ceil(math.log2(p["cap"] + 1)) * p["c"] / nnz if nnz else 0.0
            ibits_h = p["b"] / nnz if nnz else 0.0
        else:
            ibits = ibits_h = 0.0
        rows.append(LayerReport(e["name"], n, 0.0, wbits, wbits_h, ibits, ibits_h, e["bytes"],
                                4 * n / e["bytes"] if e["bytes"] else math.inf, coding))
    # Share kept: counted on the model itself (a dense coding does not record it).
    tensors = _dense_names(model)
    final = []
    for row in rows:
        t = tensors[row.name]
        values = t[1] if isinstance(t, tuple) else t
        nonzero = int((values.detach() != 0).sum()) if row.weights else 0
        final.append(LayerReport(**{**row.__dict__, "kept": nonzero / row.weights if row.weights else 0.0}))
    return CompressionReport(final, len(data), 4 * sum(r.weights for r in final))


def _ratio_text(row) -> str:
    # A tensor pruned away entirely takes no bytes: no finite ratio to print.
    return f"{row.ratio:>7.1f}x" if row.bytes else f"{'all 0':>8}"
