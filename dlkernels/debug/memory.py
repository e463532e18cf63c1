"""MemoryProfiler: where the memory of a torch training step goes, module by module.

This module is what a user sees: the class, its results and outputs. How the
hooks measure, and why that way, is described in
:mod:`dlkernels.debug._memory_hooks`; the records are in
:mod:`dlkernels.debug.memory_results`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch

from dlkernels.debug._memory_hooks import OTHER, HookRecorder, active_profilers
from dlkernels.debug._memory_report import format_report, profile_dict
from dlkernels._lib.array_types import PathLike
from dlkernels.debug.memory_results import ROOT, MemoryEvent, ModuleMemory, PhaseMemory

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MemoryProfiler", "ModuleMemory", "PhaseMemory", "MemoryEvent"]


class MemoryProfiler(HookRecorder):
    """Record the memory of a training step per module and per phase, through hooks.

    Use it as a context manager around one or more forward passes, backward
    passes and optimizer steps. On exit every hook is removed, also when the
    body raises, and the model, its parameters and the optimizer are left as
    they were. A profiler is used once: entering it a second time raises.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose modules are hooked (all of them, containers included).
        A model without parameters is allowed (its activations are still counted).
    optimizer : torch.optim.Optimizer, optional
        If given, its ``step`` is recorded as the ``"optimizer"`` phase (through
        its step pre/post hooks) and its state's size is reported. Without
        it, wrap the step in ``with prof.phase("optimizer"):``.
    device : str or torch.device, optional
        Where to read CUDA memory counters. Default: the device of the model's
        first parameter or buffer. On CPU only the hook-based numbers exist.

    Attributes
    ----------
    modules : list of ModuleMemory
        One entry per module (and one for what was saved outside any module),
        sorted by :attr:`ModuleMemory.memory`, largest first.
    phases : dict of str to PhaseMemory
        Per phase, in order of first appearance.
    timeline : list of MemoryEvent
        Memory at every module call, backward step and phase change.

    Raises
    ------
    TypeError
        If ``model`` is not a ``torch.nn.Module`` or ``optimizer`` not an optimizer.
    ValueError
        If ``device`` is a CUDA device and CUDA is not available.
    RuntimeError
        On entering a profiler twice, or a second profiler while one is active
        (its saved-tensor hooks would hide what the first one sees).

    Notes
    -----
    Counting is by storage: a saved slice ``x[:, :5]`` counts the whole of
    ``x``'s storage, because that is what it keeps alive. Saved tensors that
    are parameters or buffers of the model are not activations and are not
    counted. Tensors saved by other ``saved_tensors_hooks`` placed inside the
    profiled block (activation checkpointing, CPU offloading) are handled by
    those hooks and are not counted; that is how checkpointing's saving shows.
    Hooks fire in the thread that runs the model; profiling a model run by
    several threads at once (``nn.DataParallel``) is not supported.

    ``reset_peak_memory_stats`` is called on the CUDA device at every module
    call: read your own ``torch.cuda.max_memory_allocated`` before entering.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.debug import MemoryProfiler
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> x, y = torch.randn(16, 8), torch.randn(16, 1)
    >>> with MemoryProfiler(model, opt) as prof:
    ...     loss = torch.nn.functional.mse_loss(model(x), y)
    ...     loss.backward()
    ...     opt.step()
    >>> prof.module("1").saved_bytes    # ReLU saves its output: 16 * 32 float32
    2048
    >>> print(prof.report())            # doctest: +SKIP
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 device: str | torch.device | None = None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, "
                            f"got {type(optimizer).__name__}")
        if device is None:
            first = next(iter(model.parameters()), None)
            if first is None:
                first = next(iter(model.buffers()), None)
            device = first.device if first is not None else torch.device("cpu")
        else:
            try:
                device = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"device must name a torch device, got {device!r}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device is {device} but CUDA is not available")
        super().__init__(model, optimizer, device)

    # -- results -------------------------------------------------------------------
    @property
    def modules(self) -> list[ModuleMemory]:
        self._require_started()
        rows = [*self._records.values(), self._outside]
        if self._state == "active":  # grads per module are only final on exit
            self._fill_grad_bytes()
        return sorted(rows, key=lambda r: (-r.memory, -r.output_bytes, r.name))

    def module(self, name: str) -> ModuleMemory:
        """The :class:`ModuleMemory` of the module called ``name`` in the model.

        ``""`` or ``"(model)"`` is the model itself, ``"(outside modules)"``
        what was saved while no module ran.
        """
        self._require_started()
        wanted = ROOT if name == "" else name
        for row in self.modules:
            if row.name == wanted:
                return row
        raise KeyError(f"no module named {name!r} in the profiled model")

    @property
    def phases(self) -> dict[str, PhaseMemory]:
        self._require_started()
        return dict(self._phases)

    @property
    def timeline(self) -> list[MemoryEvent]:
        self._require_started()
        return [MemoryEvent(i, *e) for i, e in enumerate(self._events)]

    @property
    def saved_bytes(self) -> int:
        """Bytes saved for backward in total (each storage once while alive)."""
        return sum(r.saved_bytes for r in self.modules)

    @property
    def peak_saved_bytes(self) -> int:
        """Most saved-for-backward bytes alive at one time."""
        self._require_started()
        return self._peak_saved

    @property
    def param_bytes(self) -> int:
        """Bytes of the model's parameters (distinct storages)."""
        self._require_started()
        return self._param_bytes

    @property
    def grad_bytes(self) -> int:
        """Most bytes of parameter gradients alive at one time."""
        self._require_started()
        return self._grad_peak

    @property
    def optimizer_state_bytes(self) -> int:
        """Bytes of the optimizer's state after its largest step (0 without optimizer)."""
        self._require_started()
        return self._optimizer_state_bytes

    @property
    def cuda_peak(self) -> int | None:
        """Highest ``torch.cuda.memory_allocated`` seen while active; None on CPU."""
        self._require_started()
        peaks = [p.cuda_peak for p in self._phases.values() if p.cuda_peak is not None]
        return max(peaks) if peaks else None

    def _require_started(self) -> None:
        if self._state == "new":
            raise RuntimeError("the MemoryProfiler has recorded nothing yet: use it as "
                               "`with MemoryProfiler(model) as prof: ...` first")

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> MemoryProfiler:
        if self._state == "active":
            raise RuntimeError("this MemoryProfiler is already active: it was entered twice "
                               "(nested `with prof:`); use one `with` block")
        if self._state == "done":
            raise RuntimeError("this MemoryProfiler was already used: entered twice; "
                               "create a new MemoryProfiler for each `with` block")
        if active_profilers:
            raise RuntimeError(f"another MemoryProfiler is already active (on a "
                               f"{type(active_profilers[0].model).__name__}); profilers cannot be "
                               f"nested: the inner one would hide what the outer one sees")
        self._start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._finish()

    # -- phases ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[MemoryProfiler]:
        """Attribute everything inside the block to the phase ``name``.

        Use it for an optimizer step when no optimizer was given
        (``with prof.phase("optimizer"): opt.step()``), or for any stretch of
        code you want measured apart (``"data"``, ``"eval"``). Inside the block
        the automatic phases (forward, backward) are not switched.

        Raises
        ------
        TypeError, ValueError
            If ``name`` is not a non-empty string.
        RuntimeError
            If the profiler is not active.
        """
        if not isinstance(name, str):
            raise TypeError(f"phase name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError("phase name must not be empty")
        if self._state != "active":
            raise RuntimeError("prof.phase(...) is used inside `with MemoryProfiler(...) as prof:`")
        self._explicit.append(name)
        self._switch(name, explicit=True)
        self._event("phase", "")
        try:
            yield self
        finally:
            self._explicit.pop()
            if self._state == "active":
                self._switch(self._explicit[-1] if self._explicit else OTHER, explicit=True)

    # -- output ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything recorded, as plain Python data (what :meth:`to_json` writes).

        Returns
        -------
        dict
            ``model``, ``device``, ``steps`` (phase segment counts), ``totals``
            (bytes), ``modules`` (one dict per :class:`ModuleMemory`, with
            ``memory``), ``phases`` (one dict per :class:`PhaseMemory`) and
            ``timeline`` (one dict per :class:`MemoryEvent`).
        """
        return profile_dict(self)

    def to_json(self, path: PathLike | None = None, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON; also written to ``path`` if given.

        Parameters
        ----------
        path : str or os.PathLike, optional
        indent : int or None
            Passed to :func:`json.dumps`.

        Returns
        -------
        str
        """
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    def report(self, top: int | None = None) -> str:
        """A text table of the modules, largest memory first, with totals and phases.

        Parameters
        ----------
        top : int, optional
            Show only the ``top`` largest modules (the totals still cover all).

        Returns
        -------
        str
            ``memory`` is parameters + gradients + saved activations of the
            module itself; ``saved`` counts each storage once (see the class
            notes); ``outputs`` is summed over calls and overlaps between a
            container and its children, so it has no total.
        """
        if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 1):
            raise ValueError(f"top must be a positive int or None, got {top!r}")
        return format_report(self, top)

    def __repr__(self) -> str:
        return (f"<MemoryProfiler of {type(self.model).__name__} on {self.device}, "
                f"{self._state}>")

    def plot(self, path: PathLike | None = None, *, title: str | None = None) -> Figure:
        """Draw memory over the sequence of module calls, forward and backward.

        The stacked areas are parameters, gradients and saved activations alive
        at each event of :attr:`timeline` (x axis: event number, labelled with
        module names); on CUDA a line shows ``torch.cuda.memory_allocated``.
        The background is shaded by phase.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Save the figure there (any format matplotlib writes, by suffix).
        title : str, optional

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        ImportError
            If matplotlib is not installed (``pip install 'dlkernels[plot]'``).
        """
        from dlkernels.debug._memory_plot import plot_timeline

        self._require_started()
        return plot_timeline(self, path, title=title)
