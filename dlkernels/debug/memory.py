"""MemoryProfiler: where the memory of a torch training step goes, module by module.

How it measures (and why this way):

* **Saved activations** come from ``torch.autograd.graph.saved_tensors_hooks``:
  every tensor autograd keeps for the backward pass goes through the pack hook,
  which is the only place that sees exactly what is saved (not what a module
  returns). Each storage is counted once, keyed by its address and device, so
  views and tensors shared between ops (a ReLU's output saved again as the next
  Linear's input) are not double counted; the bytes go to the innermost module
  running when the storage was first saved. A storage stops being counted when
  autograd drops the last saved reference to it, so the live total falls during
  backward as torch frees the graph. Parameters and buffers that autograd saves
  (a Linear saves its weight to compute the input's gradient) are not
  activations and are left out. The hook keeps a detached alias (a saved
  output kept with its grad_fn would form a reference cycle that is never
  freed) and checks on unpacking that the tensor was not changed in place,
  which torch stops checking itself once saved-tensor hooks are set.
* **Forward** is seen through two global module forward hooks (pre and post),
  filtered to the model's modules: cheaper to add and remove on every ``with``
  than two hooks per module (outputs, call counts, the module that is running).
* **Backward** is seen through autograd *node* pre-hooks on each call's outputs
  (the call's backward starts when the gradient of its outputs is about to be
  used) and on its inputs (it ends when the gradient of its inputs is about to
  be used, or with the backward pass when no input needs a gradient).
  Gradients are read at the end of each call's backward and at phase changes.
  ``Module.register_full_backward_hook`` is deliberately not
  used: it wraps the module's inputs and outputs in identity autograd functions,
  which makes an in-place op on an output (``nn.ReLU(inplace=True)`` after a
  ``Linear``) raise, so profiling would change what the model does.
* **Optimizer step**: the optimizer's step pre/post hooks when one is given, or
  ``with prof.phase("optimizer"):`` around any code.
* **CUDA**: ``torch.cuda.memory_allocated`` and its peak, with the peak counter
  reset at every module call and phase boundary (partial peaks are folded into
  every open interval first, so nested intervals stay exact).

Non-reentrant activation checkpointing (``torch.utils.checkpoint.checkpoint(...,
use_reentrant=False)``) installs its own saved-tensor hooks inside the
checkpointed region, which take precedence over the profiler's: what that
region would have saved is not saved, and the profiler's numbers fall by that
much. Its recomputation during backward is shown as the ``recompute`` phase.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import NamedTuple

from dlkernels.debug._util import (distinct_bytes, flat_tensors, format_bytes, require_torch,
                                storage_key, tensor_bytes)

torch = require_torch()

__all__ = ["MemoryProfiler", "ModuleMemory", "PhaseMemory", "MemoryEvent"]

OUTSIDE = "(outside modules)"
ROOT = "(model)"
_OTHER, _FORWARD, _BACKWARD, _OPTIMIZER, _RECOMPUTE = (
    "other", "forward", "backward", "optimizer", "recompute")

try:  # -1 outside a backward pass; a private torch API, so degrade gracefully
    _graph_task_id = torch._C._current_graph_task_id
    _graph_task_id()
except (AttributeError, RuntimeError):  # pragma: no cover - other torch versions
    def _graph_task_id() -> int:
        return -1


def _queue_callback(fn) -> None:
    """Run ``fn`` when the current backward pass ends (what DDP uses for the same)."""
    try:
        torch.autograd.Variable._execution_engine.queue_callback(fn)
    except (AttributeError, RuntimeError):  # pragma: no cover - other torch versions
        pass


@dataclass(slots=True)
class ModuleMemory:
    """What one module held, summed over its calls while the profiler was active.

    Attributes
    ----------
    name, type : str
        The module's qualified name in the model (``"(model)"`` for the model
        itself, ``"(outside modules)"`` for what was saved while no module ran,
        such as the loss) and its class name.
    calls : int
        Forward calls (checkpoint recomputations are counted apart, in
        ``recomputed_calls``).
    param_bytes, grad_bytes : int
        Bytes of the module's own parameters (not its children's), and the
        most bytes their gradients took at any time.
    saved_bytes : int
        Bytes saved for backward while this module was the innermost one
        running, each storage counted once.
    saved_tensors : int
        How many distinct storages those bytes are.
    output_bytes : int
        Bytes of the tensors the module returned (storages counted once per call).
    backward_calls : int
        Backward passes seen through the module's outputs.
    cuda_forward_delta, cuda_backward_delta : int or None
        Change of ``torch.cuda.memory_allocated`` over the module's forward calls
        and its backward (summed over calls); None on CPU.
    cuda_forward_peak, cuda_backward_peak : int or None
        Largest rise of allocated memory above its value at the start of a call
        (the transient memory the module needs); None on CPU.
    """

    name: str
    type: str
    calls: int = 0
    recomputed_calls: int = 0
    param_bytes: int = 0
    grad_bytes: int = 0
    saved_bytes: int = 0
    saved_tensors: int = 0
    output_bytes: int = 0
    backward_calls: int = 0
    cuda_forward_delta: int | None = None
    cuda_forward_peak: int | None = None
    cuda_backward_delta: int | None = None
    cuda_backward_peak: int | None = None

    @property
    def memory(self) -> int:
        """``param_bytes + grad_bytes + saved_bytes``: the report's sort key."""
        return self.param_bytes + self.grad_bytes + self.saved_bytes


@dataclass(slots=True)
class PhaseMemory:
    """One phase (forward, backward, optimizer, recompute, other, or a named one).

    Attributes
    ----------
    name : str
    segments : int
        How many separate stretches of time the phase had (one per step).
    seconds : float
        Wall time spent in the phase, profiler overhead included.
    saved_bytes : int
        Bytes saved for backward during the phase.
    cuda_delta : int or None
        Change of allocated CUDA memory over the phase (summed over segments).
    cuda_peak : int or None
        Highest allocated CUDA memory during the phase (absolute, in bytes).
    """

    name: str
    segments: int = 0
    seconds: float = 0.0
    saved_bytes: int = 0
    cuda_delta: int | None = None
    cuda_peak: int | None = None


class MemoryEvent(NamedTuple):
    """One point of the memory timeline (what :meth:`MemoryProfiler.plot` draws).

    ``kind`` is ``"forward"`` (a module call returned), ``"backward"`` (a call's
    backward started), ``"backward end"``, ``"optimizer"`` or ``"phase"`` (a
    phase started); ``saved_bytes``, ``grad_bytes`` and ``state_bytes``
    (optimizer state) are what was alive at that moment; ``cuda_allocated`` is
    None on CPU.
    """

    index: int
    phase: str
    kind: str
    module: str
    saved_bytes: int
    grad_bytes: int
    state_bytes: int
    cuda_allocated: int | None


class _Saved:
    """What the pack hook hands to autograd: the tensor, its version, a release.

    Autograd drops it when the node that saved it has run in backward (or when
    the graph is freed); ``__del__`` then tells the profiler the storage is gone
    (``key`` is None for parameters, which are not counted).

    The tensor is a detached alias: a saved *output* kept with its ``grad_fn``
    would form the cycle output -> grad_fn -> saved output, which torch avoids
    on its own path but not for what a pack hook returns; that graph would then
    never be freed. The version is recorded because torch skips its check for
    in-place changes of saved tensors when hooks are set; unpacking does it.
    """

    __slots__ = ("tensor", "version", "key", "release")

    def __init__(self, tensor, version, key, release):
        self.tensor, self.version, self.key, self.release = tensor, version, key, release

    def __del__(self):
        if self.key is not None:
            self.release(self.key)


class _Call:
    """One forward call whose backward is being watched."""

    __slots__ = ("rec", "own", "started", "ended", "pending", "frame")

    def __init__(self, rec, own):
        self.rec, self.own, self.started, self.ended = rec, own, False, False
        self.pending, self.frame = 0, None


def _fire(entries, _grad):
    """One autograd hook serving every call watching the same node (or leaf tensor)."""
    for fn, call, _ in entries:
        fn(call)


class _CudaMeter:
    """Allocated bytes and their peak on one CUDA device (one stats call for both)."""

    def __init__(self, device):
        self.index = device.index if device.index is not None else torch.cuda.current_device()

    def read(self) -> tuple[int, int]:
        stats = torch.cuda.memory_stats_as_nested_dict(self.index)
        allocated = stats.get("allocated_bytes", {}).get("all", {})
        return allocated.get("current", 0), allocated.get("peak", 0)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.index)


# The profiler active now, if any. A second one would shadow the first one's
# saved-tensor hooks (the innermost pair wins), whatever model it watches.
_ACTIVE: list = []


class MemoryProfiler:
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

    def __init__(self, model, optimizer=None, *, device=None):
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
        self.model = model
        self.optimizer = optimizer
        self.device = device
        self._meter = _CudaMeter(device) if device.type == "cuda" else None
        self._state = "new"          # new -> active -> done
        self._hooks_ctx = None
        self._handles: list = []
        self._node_hooks: list = []
        self._forward_nodes: dict = {}
        self._reset_results()

    # -- results -------------------------------------------------------------------
    def _reset_results(self) -> None:
        self._records: dict[int, ModuleMemory] = {}
        self._outside = ModuleMemory(OUTSIDE, "-")
        self._phases: dict[str, PhaseMemory] = {}
        self._events: list[tuple] = []
        self._live: dict[object, list] = {}
        self._live_bytes = 0
        self._peak_saved = 0
        self._grad_live = 0
        self._grad_peak = 0
        self._optimizer_state_bytes = 0
        self._state_live = 0
        self._param_bytes = 0
        self._steps = {"forward": 0, "backward": 0, "optimizer": 0}

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
        if _ACTIVE:
            raise RuntimeError(f"another MemoryProfiler is already active (on a "
                               f"{type(_ACTIVE[0].model).__name__}); profilers cannot be "
                               f"nested: the inner one would hide what the outer one sees")
        self._handles: list = []            # module, parameter and optimizer hooks
        self._node_hooks: list = []         # (handle, entries) of autograd node hooks
        self._prune_at = 1024
        self._forward_nodes: dict = {}      # id -> (node, entries) during one forward pass
        self._calls: list[tuple] = []       # forward call stack: (record, frame, inputs, recompute)
        self._frames: list[list] = []       # open CUDA intervals: [start, peak]
        self._explicit: list[str] = []      # names of the active prof.phase(...) blocks
        self._recompute_depth = 0
        self._graph_task = None
        self._closing: list[_Call] = []     # started calls that end with the backward pass
        self._phase = None
        self._hooks_ctx = None
        try:
            self._install()
        except BaseException:
            self._uninstall()
            self._reset_results()
            raise
        self._state = "active"
        _ACTIVE.append(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            for call in self._closing:
                self._backward_end(call)
            self._close_phase()
            self._rescan_grads()
            self._fill_grad_bytes()
        finally:
            self._uninstall()
            self._state = "done"
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        return False

    def _install(self) -> None:
        model = self.model
        # One pass over the modules: the set-up is paid on every `with`, so it
        # must stay cheap (no per-module or per-parameter hook either).
        named = list(model.named_modules())
        index: dict[int, int] = {}
        self._params, self._param_owner = [], []
        own: dict[int, list[int]] = {}
        sizes: dict = {}   # storage key -> bytes, each parameter storage once
        for name, module in named:
            rec = ModuleMemory(name or ROOT, type(module).__name__)
            self._records[id(module)] = rec
            mine = []
            for p in module._parameters.values():
                if p is None or id(p) in index:
                    continue
                index[id(p)] = len(self._params)
                self._params.append(p)
                self._param_owner.append(rec)
                key, nbytes = storage_key(p)
                if key not in sizes:  # a storage shared by two modules counts for the first
                    sizes[key] = nbytes
                    rec.param_bytes += nbytes
                mine.append(index[id(p)])
            own[id(module)] = mine
        self._param_bytes = sum(sizes.values())
        self._param_keys = set(sizes) | {storage_key(b)[0] for b in model.buffers()}
        self._grad_known = [0] * len(self._params)
        self._grad_max = [0] * len(self._params)
        self._rescan_grads()
        self._info = {id(m): (self._records[id(m)], own[id(m)], m) for _, m in named}
        # Two global module hooks filtered by identity cost less to set up and tear
        # down on every `with` than two hooks per module, and touch no module.
        # always_call: the call stack is popped even when a forward raises.
        self._handles.append(torch.nn.modules.module.register_module_forward_pre_hook(
            self._forward_pre))
        self._handles.append(torch.nn.modules.module.register_module_forward_hook(
            self._forward_post, always_call=True))
        if self.optimizer is not None:
            self._state_live = self._state_bytes(self.optimizer)
            self._optimizer_state_bytes = self._state_live
            self._handles.append(self.optimizer.register_step_pre_hook(self._optimizer_pre))
            self._handles.append(self.optimizer.register_step_post_hook(self._optimizer_post))
        self._hooks_ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks_ctx.__enter__()
        self._switch(_OTHER)

    def _uninstall(self) -> None:
        if self._hooks_ctx is not None:
            self._hooks_ctx.__exit__(None, None, None)
            self._hooks_ctx = None
        for handle in self._handles:
            handle.remove()
        for handle, _ in self._node_hooks:
            handle.remove()
        self._handles, self._node_hooks, self._calls = [], [], []
        self._forward_nodes = {}
        self._closing = []

    # -- phases ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str):
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
                self._switch(self._explicit[-1] if self._explicit else _OTHER, explicit=True)

    def _switch(self, name: str, explicit: bool = False) -> None:
        if (self._explicit and not explicit) or name == self._phase:
            return
        # Gradients are re-read when a forward pass starts (zero_grad() frees them
        # without any hook firing) and when backward ends: O(parameters), twice a step.
        if name == _FORWARD or self._phase == _BACKWARD:
            self._rescan_grads()
        self._close_phase()
        stats = self._phases.get(name)
        if stats is None:
            stats = self._phases[name] = PhaseMemory(name)
        stats.segments += 1
        self._phase, self._phase_stats = name, stats
        self._phase_frame = self._open_frame() if self._meter else None
        self._phase_t0 = time.perf_counter()
        if name in self._steps:
            self._steps[name] += 1

    def _close_phase(self) -> None:
        if self._phase is None:
            return
        stats = self._phase_stats
        stats.seconds += time.perf_counter() - self._phase_t0
        if self._phase_frame is not None:
            delta, peak = self._close_frame(self._phase_frame)
            stats.cuda_delta = (stats.cuda_delta or 0) + delta
            stats.cuda_peak = peak if stats.cuda_peak is None else max(stats.cuda_peak, peak)
        self._phase = None

    # -- CUDA intervals ---------------------------------------------------------------------
    def _open_frame(self) -> list:
        current, peak = self._meter.read()
        # Fold the peak so far into every open interval before the counter resets.
        for frame in self._frames:
            if peak > frame[1]:
                frame[1] = peak
        self._meter.reset_peak()
        frame = [current, current]
        self._frames.append(frame)
        self._cuda_now = current
        return frame

    def _close_frame(self, frame: list) -> tuple[int, int]:
        """``(change, absolute peak)`` of allocated memory over an interval."""
        current, peak = self._meter.read()
        self._cuda_now = current
        try:
            self._frames.remove(frame)
        except ValueError:  # already closed (a backward end seen twice)
            pass
        return current - frame[0], max(frame[1], peak)

    def _event(self, kind: str, module: str) -> None:
        cuda = None
        if self._meter is not None:
            cuda = self._meter.read()[0]
        self._events.append((self._phase or _OTHER, kind, module, self._live_bytes,
                             self._grad_live, self._state_live, cuda))

    # -- saved tensors ------------------------------------------------------------------------
    def _pack(self, t):
        try:
            storage = t.untyped_storage()
            key, nbytes = (storage.data_ptr(), storage.device), storage.nbytes()
        except (RuntimeError, NotImplementedError, TypeError):
            key, nbytes = storage_key(t)
        version = t._version
        if t.requires_grad:
            t = t.detach()  # shares data and version counter, not the graph
        if key in self._param_keys:
            return _Saved(t, version, None, None)
        entry = self._live.get(key)
        if entry is not None:
            entry[0] += 1
        else:
            self._live[key] = [1, nbytes]
            self._live_bytes += nbytes
            if self._live_bytes > self._peak_saved:
                self._peak_saved = self._live_bytes
            rec = self._calls[-1][0] if self._calls else self._outside
            rec.saved_bytes += nbytes
            rec.saved_tensors += 1
            self._phase_stats.saved_bytes += nbytes
        return _Saved(t, version, key, self._release)

    def _unpack(self, packed):
        if self._phase != _BACKWARD and self._recompute_depth == 0:
            self._enter_backward()  # the loss's own nodes run before any module's
        tensor = packed.tensor
        if tensor._version != packed.version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by "
                f"an inplace operation: [{tensor.type()} {list(tensor.shape)}] is at version "
                f"{tensor._version}; expected version {packed.version} instead (checked by "
                f"dlkernels's MemoryProfiler, as torch does when no saved-tensor hooks are set)")
        return tensor

    def _release(self, key) -> None:
        if self._state != "active":
            return
        entry = self._live.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                del self._live[key]
                self._live_bytes -= entry[1]

    # -- forward ---------------------------------------------------------------------------------
    def _forward_pre(self, module, args):
        info = self._info.get(id(module))
        if info is None or info[2] is not module:
            return None
        rec = info[0]
        if _graph_task_id() != -1:  # a forward inside backward: checkpoint's recomputation
            rec.recomputed_calls += 1
            self._recompute_depth += 1
            if self._recompute_depth == 1:
                self._switch(_RECOMPUTE)
            self._calls.append((rec, None, None, True))
            return None
        if self._phase != _FORWARD:
            self._switch(_FORWARD)
        frame = self._open_frame() if self._meter is not None else None
        # The nodes that produced the inputs are captured now: an in-place op in
        # this module would otherwise replace them by its own node.
        inputs = [a.grad_fn or a for a in args
                  if isinstance(a, torch.Tensor) and a.requires_grad]
        self._calls.append((rec, frame, inputs, False))
        return None

    def _forward_post(self, module, args, output):
        calls = self._calls
        info = self._info.get(id(module))
        if info is None or not calls or calls[-1][0] is not info[0]:
            # Not ours, or our pre-hook did not run (another pre-hook raised first).
            return None
        rec, frame, inputs, recompute = calls.pop()
        if recompute:
            self._recompute_depth -= 1
            if self._recompute_depth == 0:
                self._switch(_BACKWARD)
            return None
        rec.calls += 1
        if type(output) is torch.Tensor:
            outputs = [output]
            rec.output_bytes += storage_key(output)[1]
        else:
            outputs = flat_tensors(output)
            rec.output_bytes += distinct_bytes(outputs)
        if frame is not None:
            delta, peak = self._close_frame(frame)
            rec.cuda_forward_delta = (rec.cuda_forward_delta or 0) + delta
            rise = peak - frame[0]
            if rec.cuda_forward_peak is None or rise > rec.cuda_forward_peak:
                rec.cuda_forward_peak = rise
        self._event("forward", rec.name)
        starts = [t for t in outputs if t.requires_grad]
        if starts:
            self._watch_backward(rec, starts, inputs, info[1])
        if not calls:  # the outermost call is over: its nodes need no more sharing
            self._forward_nodes = {}
        return None

    # -- backward ---------------------------------------------------------------------------------
    def _hook(self, target, entry) -> None:
        """Have ``entry`` called when autograd is about to use ``target``'s gradient.

        ``target`` is a node (a pre-hook, fired before it runs) or a leaf tensor
        (a tensor hook). A node shared by several calls (a container's output is
        its last child's) gets one hook that serves them all; the dict holding
        the nodes lives for one forward pass only, so no graph is kept alive.
        """
        found = self._forward_nodes.get(id(target))
        if found is not None and found[0] is target:
            _, entries, handle = found
            entries.append(entry)
        else:
            entries = [entry]
            hook = functools.partial(_fire, entries)
            handle = (target.register_hook(hook) if isinstance(target, torch.Tensor)
                      else target.register_prehook(hook))
            self._forward_nodes[id(target)] = (target, entries, handle)
            self._node_hooks.append((handle, entries))
            if len(self._node_hooks) > self._prune_at:
                self._prune()

    def _watch_backward(self, rec, outputs, inputs, own) -> None:
        call = _Call(rec, own)
        start = (self._backward_start, call, True)
        for t in outputs:
            node = t.grad_fn
            self._hook(node if node is not None else t, start)
        if inputs:
            done = (self._backward_input_done, call, False)
            call.pending = len(inputs)
            for source in inputs:
                self._hook(source, done)
        # Otherwise nothing upstream needs a gradient: the call ends with the
        # backward pass (pending stays 0).

    def _enter_backward(self) -> bool:
        task = _graph_task_id()
        if task == -1:
            return False
        if task != self._graph_task:
            self._graph_task = task
            _queue_callback(self._backward_done)
            self._switch(_BACKWARD)
        return True

    def _backward_start(self, call) -> None:
        if call.started or self._state != "active":
            return None
        call.started = True
        if self._phase != _BACKWARD and self._recompute_depth == 0:
            self._enter_backward()
        rec = call.rec
        rec.backward_calls += 1
        if self._meter is not None:
            call.frame = self._open_frame()
        self._event("backward", rec.name)
        if call.pending == 0:
            self._closing.append(call)
        return None

    def _backward_input_done(self, call) -> None:
        call.pending -= 1
        if call.pending == 0:
            self._backward_end(call)
        return None

    def _backward_end(self, call) -> None:
        if call.ended or not call.started or self._state != "active":
            return
        call.ended = True
        rec = call.rec
        if call.own:  # its parameters' gradients are (about to be) in place
            self._rescan_grads(call.own)
        if call.frame is not None:
            delta, peak = self._close_frame(call.frame)
            rec.cuda_backward_delta = (rec.cuda_backward_delta or 0) + delta
            rise = peak - call.frame[0]
            if rec.cuda_backward_peak is None or rise > rec.cuda_backward_peak:
                rec.cuda_backward_peak = rise
        self._event("backward end", rec.name)

    def _backward_done(self) -> None:
        """End of a backward pass (queued from its first hook)."""
        if self._state != "active":
            return
        self._graph_task = None
        for call in self._closing:
            self._backward_end(call)
        self._closing = []
        if self._phase == _BACKWARD:
            self._switch(_OTHER)
        self._prune()

    def _prune(self) -> None:
        """Drop autograd hooks with nothing left to do.

        Run at the end of every backward pass, and when forward passes without
        backward (evaluation with gradients on) have made the list long: their
        graphs are freed, but nothing tells the profiler so.
        """
        keep = []
        for handle, entries in self._node_hooks:
            if handle.hooks_dict_ref() is None:  # the node or tensor is freed
                continue
            if all(call.started if is_start else call.ended for _, call, is_start in entries):
                handle.remove()
            else:
                keep.append((handle, entries))
        self._node_hooks = keep
        self._prune_at = 2 * len(keep) + 1024

    def _rescan_grads(self, which=None) -> None:
        """Re-read the gradients of parameters ``which`` (indices; default all).

        No hook tells when ``zero_grad()`` frees gradients, and per-parameter
        hooks would cost more to set up than reading them at phase changes and
        at the end of each module's backward.
        """
        params, known, most = self._params, self._grad_known, self._grad_max
        live = self._grad_live
        for i in range(len(params)) if which is None else which:
            grad = params[i].grad
            nbytes = tensor_bytes(grad) if grad is not None else 0
            live += nbytes - known[i]
            known[i] = nbytes
            if nbytes > most[i]:
                most[i] = nbytes
        self._grad_live = live
        if live > self._grad_peak:
            self._grad_peak = live

    def _fill_grad_bytes(self) -> None:
        for rec in self._records.values():
            rec.grad_bytes = 0
        for rec, nbytes in zip(self._param_owner, self._grad_max):
            rec.grad_bytes += nbytes

    # -- optimizer ----------------------------------------------------------------------------------
    def _optimizer_pre(self, optimizer, args, kwargs):
        self._switch(_OPTIMIZER)
        self._event("optimizer", "")
        return None

    @staticmethod
    def _state_bytes(optimizer) -> int:
        """Bytes of the optimizer's state tensors, each block of memory once.

        Optimizer state is ``{parameter: {name: tensor or number}}``, read twice
        per step, so this keys tensors by address (no storage objects made).
        """
        seen: dict = {}
        for state in optimizer.state.values():
            values = state.values() if isinstance(state, Mapping) else flat_tensors(state)
            for v in values:
                if isinstance(v, torch.Tensor):
                    seen[(v.data_ptr(), v.device)] = tensor_bytes(v)
        return sum(seen.values())

    def _optimizer_post(self, optimizer, args, kwargs):
        self._state_live = self._state_bytes(optimizer)
        self._optimizer_state_bytes = max(self._optimizer_state_bytes, self._state_live)
        self._event("optimizer", "")
        self._switch(_OTHER)
        return None

    # -- output ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Everything recorded, as plain Python data (what :meth:`to_json` writes).

        Returns
        -------
        dict
            ``model``, ``device``, ``steps`` (phase segment counts), ``totals``
            (bytes), ``modules`` (one dict per :class:`ModuleMemory`, with
            ``memory``), ``phases`` (one dict per :class:`PhaseMemory`) and
            ``timeline`` (one dict per :class:`MemoryEvent`).
        """
        modules = self.modules
        return {
            "model": type(self.model).__name__,
            "device": str(self.device),
            "steps": dict(self._steps),
            "totals": self._totals(modules),
            "modules": [{**asdict(m), "memory": m.memory} for m in modules],
            "phases": [asdict(p) for p in self._phases.values()],
            "timeline": [e._asdict() for e in self.timeline],
        }

    def to_json(self, path=None, *, indent: int | None = 2) -> str:
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

    def _totals(self, modules) -> dict:
        return {
            "param_bytes": self._param_bytes,
            "grad_bytes": self._grad_peak,
            "saved_bytes": sum(m.saved_bytes for m in modules),
            "saved_tensors": sum(m.saved_tensors for m in modules),
            "peak_saved_bytes": self._peak_saved,
            "optimizer_state_bytes": self._optimizer_state_bytes,
            "cuda_peak": self.cuda_peak,
        }

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
        modules = self.modules
        totals = self._totals(modules)
        cuda = self._meter is not None
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
        param_total = totals["param_bytes"]
        grad_total = sum(m.grad_bytes for m in modules)
        total = ["total", "", "", format_bytes(param_total), format_bytes(grad_total),
                 format_bytes(totals["saved_bytes"]), "",
                 format_bytes(param_total + grad_total + totals["saved_bytes"])]
        if cuda:
            total += ["", "", "", ""]
        lines = [f"MemoryProfiler: {type(self.model).__name__} on {self.device}; "
                 f"{self._steps['forward']} forward, {self._steps['backward']} backward, "
                 f"{self._steps['optimizer']} optimizer phase(s)"]
        lines += _table(head, rows, total, left=2)
        if top is not None and len(modules) > top:
            lines.append(f"({len(modules) - top} smaller modules not shown)")
        lines.append("")
        phead = ["phase", "segments", "time", "saved"] + (["Δcuda", "cuda peak"] if cuda else [])
        prows = []
        for p in self._phases.values():
            row = [p.name, str(p.segments), f"{p.seconds * 1e3:.2f} ms", format_bytes(p.saved_bytes)]
            if cuda:
                row += [format_bytes(p.cuda_delta), format_bytes(p.cuda_peak)]
            prows.append(row)
        lines += _table(phead, prows, None, left=1)
        lines.append("")
        lines.append(f"peak saved activations alive: {format_bytes(self._peak_saved)}; "
                     f"parameters: {format_bytes(param_total)}; "
                     f"gradients (peak): {format_bytes(self._grad_peak)}; "
                     f"optimizer state: {format_bytes(self._optimizer_state_bytes)}"
                     + (f"; CUDA peak allocated: {format_bytes(self.cuda_peak)}" if cuda else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<MemoryProfiler of {type(self.model).__name__} on {self.device}, "
                f"{self._state}>")

    def plot(self, path=None, *, title: str | None = None):
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
        from dlkernels.debug._plot import plot_timeline

        self._require_started()
        return plot_timeline(self, path, title=title)


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
