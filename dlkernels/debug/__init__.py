"""Debugging tools for torch training code (needs torch: ``pip install 'dlkernels[torch]'``).

* :class:`MemoryProfiler`: per-module and per-phase memory of a training step,
  through hooks (saved activations, outputs, parameters, gradients, CUDA).
* Parameter-behaviour checks: :func:`check_training_step` and the ``assert_*``
  functions catch parameters that do not train, frozen ones that do, NaN/inf,
  outputs out of range and samples that leak into each other.
* A pytest plugin (registered on install) with fixtures for these checks.

Without torch, ``import dlkernels.debug`` raises one ImportError that says how to
install it. The pytest plugin lives apart, in :mod:`dlkernels.pytest_plugin`, so
that pytest starts where torch is not installed.

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

from dlkernels._lib.torch_import import require_torch

require_torch("dlkernels.debug")  # one clear ImportError without torch

from dlkernels.debug.batch_mixing import assert_no_batch_mixing  # noqa: E402
from dlkernels.debug.check_reports import IsolationReport, TrainingStepReport  # noqa: E402
from dlkernels.debug.memory import MemoryProfiler  # noqa: E402
from dlkernels.debug.memory_results import MemoryEvent, ModuleMemory, PhaseMemory  # noqa: E402
from dlkernels.debug.optimizer_isolation import (assert_optimizer_isolation,  # noqa: E402
                                                 check_optimizer_isolation)
from dlkernels.debug.training_step import (assert_finite, assert_output_range,  # noqa: E402
                                           assert_params_change, assert_params_unchanged,
                                           check_training_step)

__all__ = [
    "MemoryProfiler", "ModuleMemory", "PhaseMemory", "MemoryEvent",
    "check_training_step", "TrainingStepReport",
    "assert_params_change", "assert_params_unchanged", "assert_finite",
    "assert_output_range", "assert_no_batch_mixing",
    "check_optimizer_isolation", "assert_optimizer_isolation", "IsolationReport",
]
