"""Debugging tools for torch training code (needs torch: ``pip install 'dlkernels[torch]'``).

* :class:`MemoryProfiler`: per-module and per-phase memory of a training step,
  through hooks (saved activations, outputs, parameters, gradients, CUDA).
* Parameter-behaviour checks: :func:`check_training_step` and the ``assert_*``
  functions catch parameters that do not train, frozen ones that do, NaN/inf,
  outputs out of range and samples that leak into each other.
* A pytest plugin (registered on install) with fixtures for these checks.

The names are imported on first use, so ``import dlkernels.debug`` (which the pytest
plugin does in every test run) works without torch; using a name then raises an
ImportError that says how to install torch.

.. autosummary::
   :toctree: generated/

   MemoryProfiler
   ModuleMemory
   PhaseMemory
   MemoryEvent
   check_training_step
   TrainingStepReport
   assert_params_change
   assert_params_unchanged
   assert_finite
   assert_output_range
   assert_no_batch_mixing
   check_optimizer_isolation
   assert_optimizer_isolation
   IsolationReport
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "MemoryProfiler", "ModuleMemory", "PhaseMemory", "MemoryEvent",
    "check_training_step", "TrainingStepReport",
    "assert_params_change", "assert_params_unchanged", "assert_finite",
    "assert_output_range", "assert_no_batch_mixing",
    "check_optimizer_isolation", "assert_optimizer_isolation", "IsolationReport",
]

_WHERE = {name: "memory" for name in ("MemoryProfiler", "ModuleMemory", "PhaseMemory", "MemoryEvent")}
_WHERE.update({name: "checks" for name in __all__ if name not in _WHERE})

if TYPE_CHECKING:  # pragma: no cover
    from dlkernels.debug.checks import (IsolationReport, TrainingStepReport, assert_finite,
                                     assert_no_batch_mixing, assert_optimizer_isolation,
                                     assert_output_range, assert_params_change,
                                     assert_params_unchanged, check_optimizer_isolation,
                                     check_training_step)
    from dlkernels.debug.memory import MemoryEvent, MemoryProfiler, ModuleMemory, PhaseMemory


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dlkernels.debug' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dlkernels.debug.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
