"""The memory timeline figure of :meth:`MemoryProfiler.plot` (matplotlib, optional)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dlkernels._lib.array_types import PathLike
    from dlkernels.debug.memory import MemoryProfiler

_PHASE_COLOURS = {"forward": "#dbe9f6", "backward": "#fde2cf", "optimizer": "#dff2dc",
                  "recompute": "#f6dcf0", "other": "#f2f2f2"}
_MAX_LABELS = 48


def _unit(largest: float) -> tuple[str, float]:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if largest >= scale:
            return unit, scale
    return "B", 1.0


def plot_timeline(prof: MemoryProfiler, path: PathLike | None = None, *,
                  title: str | None = None) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("MemoryProfiler.plot needs matplotlib, which is not installed: "
                          "pip install 'dlkernels[plot]'") from exc

    events = prof.timeline
    params = prof.param_bytes
    x = list(range(len(events)))
    grads = [e.grad_bytes for e in events]
    state = [e.state_bytes for e in events]
    saved = [e.saved_bytes for e in events]
    cuda = [e.cuda_allocated for e in events]
    has_cuda = any(c is not None for c in cuda)
    largest = max([params + g + o + s for g, o, s in zip(grads, state, saved)]
                  + [c for c in cuda if c is not None] + [1])
    unit, scale = _unit(largest)

    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.add_subplot()
    # Phase backgrounds: one span per run of consecutive events in the same phase.
    start, seen = 0, set()
    for i in range(1, len(events) + 1):
        if i == len(events) or events[i].phase != events[start].phase:
            phase = events[start].phase
            label = phase if phase not in seen else None
            seen.add(phase)
            ax.axvspan(start - 0.5, i - 0.5, color=_PHASE_COLOURS.get(phase, "#eeeeee"),
                       label=label, zorder=0, linewidth=0)
            start = i
    if events:
        ax.stackplot(x, [params / scale] * len(x), [g / scale for g in grads],
                     [o / scale for o in state], [s / scale for s in saved], step="mid",
                     labels=["parameters", "gradients", "optimizer state", "saved activations"],
                     colors=["#9e9e9e", "#e6a23c", "#7bb06a", "#4a7fc1"], alpha=0.9, zorder=2)
        if has_cuda:
            ax.step(x, [(c or 0) / scale for c in cuda], where="mid", color="black",
                    linewidth=1.2, label="CUDA allocated", zorder=3)
    # Module names as x labels, thinned out when there are many events.
    step = max(1, -(-len(events) // _MAX_LABELS))
    ticks = [e.index for e in events[::step]]
    marks = {"backward": " ↑", "backward end": " ✓"}
    labels = [(e.module or e.kind) + marks.get(e.kind, "") for e in events[::step]]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_xlim(-0.5, max(len(events) - 0.5, 0.5))
    ax.set_ylabel(f"memory ({unit})")
    ax.set_xlabel("events in order: module calls (↑ its backward starts, ✓ it ends)")
    ax.set_title(title or f"{type(prof.model).__name__} on {prof.device}: memory per event")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.margins(y=0.1)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
