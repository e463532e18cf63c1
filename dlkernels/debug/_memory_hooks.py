"""The recording side of :class:`~dlkernels.debug.MemoryProfiler`: its hooks and counters.

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

import functools
import time
from collections.abc import Mapping

import torch

from dlkernels.debug._util import distinct_bytes, flat_tensors, storage_key, tensor_bytes
from dlkernels.debug.memory_results import OUTSIDE, ROOT, ModuleMemory, PhaseMemory

OTHER, FORWARD, BACKWARD, OPTIMIZER, RECOMPUTE = (
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
active_profilers: list = []


class HookRecorder:
    """The hooks of a profiler and what they count; :class:`MemoryProfiler` presents it.

    ``__init__`` takes checked arguments; ``_start`` installs every hook (and
    removes them again if that fails), ``_finish`` closes what is open and
    removes them. Results accumulate in the attributes set by ``_reset_results``.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                 device: torch.device) -> None:
        self.model: torch.nn.Module = model
        self.optimizer: torch.optim.Optimizer | None = optimizer
        self.device: torch.device = device
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

    # -- start and finish --------------------------------------------------------------
    def _start(self) -> None:
        self._handles = []                  # module, parameter and optimizer hooks
        self._node_hooks = []               # (handle, entries) of autograd node hooks
        self._prune_at = 1024
        self._forward_nodes = {}            # id -> (node, entries) during one forward pass
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
        active_profilers.append(self)

    def _finish(self) -> None:
        try:
            for call in self._closing:
                self._backward_end(call)
            self._close_phase()
            self._rescan_grads()
            self._fill_grad_bytes()
        finally:
            self._uninstall()
            self._state = "done"
            if self in active_profilers:
                active_profilers.remove(self)

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
        self._switch(OTHER)

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

    def _switch(self, name: str, explicit: bool = False) -> None:
        if (self._explicit and not explicit) or name == self._phase:
            return
        # Gradients are re-read when a forward pass starts (zero_grad() frees them
        # without any hook firing) and when backward ends: O(parameters), twice a step.
        if name == FORWARD or self._phase == BACKWARD:
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
        self._events.append((self._phase or OTHER, kind, module, self._live_bytes,
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
        if self._phase != BACKWARD and self._recompute_depth == 0:
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
                self._switch(RECOMPUTE)
            self._calls.append((rec, None, None, True))
            return None
        if self._phase != FORWARD:
            self._switch(FORWARD)
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
                self._switch(BACKWARD)
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
            self._switch(BACKWARD)
        return True

    def _backward_start(self, call) -> None:
        if call.started or self._state != "active":
            return None
        call.started = True
        if self._phase != BACKWARD and self._recompute_depth == 0:
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
        if self._phase == BACKWARD:
            self._switch(OTHER)
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
        self._switch(OPTIMIZER)
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
        self._switch(OTHER)
        return None
