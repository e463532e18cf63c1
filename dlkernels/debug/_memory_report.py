"""The outputs of :class:`~dlkernels.debug.MemoryProfiler`: a text table and plain data."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from dlkernels.debug._util import format_bytes

if TYPE_CHECKING:
    from dlkernels.debug.memory import MemoryProfiler
    from dlkernels.debug.memory_results import ModuleMemory

__all__ = ["profile_dict", "totals", "format_report"]


def profile_dict(prof: MemoryProfiler) -> dict[str, Any]:
    """Everything ``prof`` recorded, as plain Python data (see ``MemoryProfiler.to_dict``)."""
    modules = prof.modules
    return {
        "model": type(prof.model).__name__,
        "device": str(prof.device),
        "steps": dict(prof._steps),
        "totals": totals(prof, modules),
        "modules": [{**asdict(m), "memory": m.memory} for m in modules],
        "phases": [asdict(p) for p in prof._phases.values()],
        "timeline": [e._asdict() for e in prof.timeline],
    }


def totals(prof: MemoryProfiler, modules: list[ModuleMemory]) -> dict[str, int | None]:
    """The totals of ``prof`` over ``modules`` (its sorted module rows)."""
    return {
        "param_bytes": prof._param_bytes,
        "grad_bytes": prof._grad_peak,
        "saved_bytes": sum(m.saved_bytes for m in modules),
        "saved_tensors": sum(m.saved_tensors for m in modules),
        "peak_saved_bytes": prof._peak_saved,
        "optimizer_state_bytes": prof._optimizer_state_bytes,
        "cuda_peak": prof.cuda_peak,
    }


def format_report(prof: MemoryProfiler, top: int | None) -> str:
    """The text table of ``MemoryProfiler.report``; ``top`` is already checked."""
    modules = prof.modules
    sums = totals(prof, modules)
    cuda = prof._meter is not None
    head = ["module", "type", "calls", "params", "grads", "saved", "outputs", "memory"]
    if cuda:
        head += ["fwd Δcuda", "fwd peak", "bwd Δcuda", "bwd peak"]
    rows = []
    for m in modules[:top]:
        row = [m.name, m.type, str(m.calls), format_bytes(m.param_bytes),
               format_bytes(m.grad_bytes), format_bytes(m.saved_bytes),
               format_bytes(m.output_bytes), format_bytes(m.memory)]
        if cuda:
            row += [format_bytes(m.cuda_forward_delta), format_bytes(m.cuda_forward_peak),
                    format_bytes(m.cuda_backward_delta), format_bytes(m.cuda_backward_peak)]
        rows.append(row)
    param_total = sums["param_bytes"]
    grad_total = sum(m.grad_bytes for m in modules)
    total = ["total", "", "", format_bytes(param_total), format_bytes(grad_total),
             format_bytes(sums["saved_bytes"]), "",
             format_bytes(param_total + grad_total + sums["saved_bytes"])]
    if cuda:
        total += ["", "", "", ""]
    lines = [f"MemoryProfiler: {type(prof.model).__name__} on {prof.device}; "
             f"{prof._steps['forward']} forward, {prof._steps['backward']} backward, "
             f"{prof._steps['optimizer']} optimizer phase(s)"]
    lines += _table(head, rows, total, left=2)
    if top is not None and len(modules) > top:
        lines.append(f"({len(modules) - top} smaller modules not shown)")
    lines.append("")
    phead = ["phase", "segments", "time", "saved"] + (["Δcuda", "cuda peak"] if cuda else [])
    prows = []
    for p in prof._phases.values():
        row = [p.name, str(p.segments), f"{p.seconds * 1e3:.2f} ms", format_bytes(p.saved_bytes)]
        if cuda:
            row += [format_bytes(p.cuda_delta), format_bytes(p.cuda_peak)]
        prows.append(row)
    lines += _table(phead, prows, None, left=1)
    lines.append("")
    lines.append(f"peak saved activations alive: {format_bytes(prof._peak_saved)}; "
                 f"parameters: {format_bytes(param_total)}; "
                 f"gradients (peak): {format_bytes(prof._grad_peak)}; "
                 f"optimizer state: {format_bytes(prof._optimizer_state_bytes)}"
                 + (f"; CUDA peak allocated: {format_bytes(prof.cuda_peak)}" if cuda else ""))
    return "\n".join(lines)


def _table(head, rows, total, left: int) -> list[str]:
    """Align columns: the first ``left`` columns to the left, the others right."""
    every = [head, *rows] + ([total] if total else [])
    widths = [max(len(r[i]) for r in every) for i in range(len(head))]

    def fmt(row):
        return "  ".join(cell.ljust(w) if i < left else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(row, widths))).rstrip()

    lines = [fmt(head), "-" * len(fmt(head))]
    lines += [fmt(r) for r in rows]
    if total:
        lines += ["-" * len(fmt(head)), fmt(total)]
    return lines
