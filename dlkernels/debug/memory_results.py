"""What :class:`~dlkernels.debug.MemoryProfiler` reports: per module, per phase, per event.

Plain records with no torch in them, so that they can be kept, compared and
written out after the profiled model is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["ModuleMemory", "PhaseMemory", "MemoryEvent", "OUTSIDE", "ROOT"]

# The names of the two rows that are not modules of the model's own.
OUTSIDE = "(outside modules)"
ROOT = "(model)"


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
