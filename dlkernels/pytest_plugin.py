"""pytest fixtures for the parameter-behaviour checks (registered as the ``dlkernels`` plugin).

Installing dlkernels registers this module through the ``pytest11`` entry point,
so pytest imports it in every test run, also where torch is not installed:
it must not import torch (or anything that does, such as :mod:`dlkernels.debug`)
at import time, which is why it is not part of that package. The fixtures
import :mod:`dlkernels.debug` when a test asks for them, and skip that test if
torch is missing.

Fixtures
--------
check_training_step
    :func:`dlkernels.debug.check_training_step`.
param_checker
    An object with the checks as methods: ``step`` (check_training_step),
    ``changes``, ``unchanged``, ``finite``, ``output_range``, ``no_batch_mixing``,
    ``optimizer_isolation`` (the ``assert_*`` functions).
memory_profiler
    :class:`dlkernels.debug.MemoryProfiler`, whose instances the fixture exits at
    teardown if a test left one active, so that no hook outlives the test.

Example::

    def test_training_updates_everything(param_checker):
        model, opt = make_model()
        param_checker.changes(model, loss_fn, (x, y), opt)
        param_checker.no_batch_mixing(model.eval(), x)
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dlkernels.debug import IsolationReport, MemoryProfiler, TrainingStepReport


def _debug() -> types.ModuleType:
    pytest.importorskip("torch", reason="dlkernels.debug fixtures need torch (pip install 'dlkernels[torch]')")
    import dlkernels.debug

    return dlkernels.debug


class ParamChecker:
    """The parameter-behaviour assertions of :mod:`dlkernels.debug`, as methods."""

    def __init__(self, debug: types.ModuleType) -> None:
        self.step: Callable[..., TrainingStepReport] = debug.check_training_step
        self.changes: Callable[..., TrainingStepReport] = debug.assert_params_change
        self.unchanged: Callable[..., TrainingStepReport] = debug.assert_params_unchanged
        self.finite: Callable[..., TrainingStepReport] = debug.assert_finite
        self.output_range: Callable[..., None] = debug.assert_output_range
        self.no_batch_mixing: Callable[..., None] = debug.assert_no_batch_mixing
        self.optimizer_isolation: Callable[..., IsolationReport] = (
            debug.assert_optimizer_isolation)


@pytest.fixture
def check_training_step() -> Callable[..., TrainingStepReport]:
    """:func:`dlkernels.debug.check_training_step` (the test is skipped without torch)."""
    check: Callable[..., TrainingStepReport] = _debug().check_training_step
    return check


@pytest.fixture
def param_checker() -> ParamChecker:
    """The ``assert_*`` checks of :mod:`dlkernels.debug` as methods of one object."""
    return ParamChecker(_debug())


@pytest.fixture
def memory_profiler() -> Iterator[Callable[..., MemoryProfiler]]:
    """:class:`dlkernels.debug.MemoryProfiler`; profilers still active at teardown are exited."""
    debug = _debug()
    made: list[MemoryProfiler] = []

    def make(*args: Any, **kwargs: Any) -> MemoryProfiler:
        prof: MemoryProfiler = debug.MemoryProfiler(*args, **kwargs)
        made.append(prof)
        return prof

    yield make
    for prof in made:
        if prof._state == "active":
            prof.__exit__(None, None, None)
