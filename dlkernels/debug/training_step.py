"""The training-step checks: what one step does to every parameter, NaN/inf, output ranges.

One real training step is run and compared with the state before it: which
parameters moved and by how much, whether the ones that should be frozen stayed
put, whether anything became NaN or infinite, whether outputs stay in their
range, and (through gradients) whether a sample's output depends on the other
samples of its batch.

Batches follow torchtest's convention: a tuple or list batch is
``(inputs, targets)``, the model is called on ``inputs`` and the loss is
``loss_fn(outputs, targets)``; any other batch (a tensor, a dict) is passed to
the model whole and to ``loss_fn(outputs, batch)``. An ``inputs`` that is a tuple
is unpacked, ``model(*inputs)`` (as ``torch.jit.trace`` and ``torch.export``
treat a tuple of example inputs); a list or dict is passed as one argument.

Unlike torchtest: every parameter is checked, trainable or not; a tensor counts
as non-finite when *any* element is NaN or infinite; tuple and dict inputs and
outputs work; and the dependency between samples is actually checked.

By default every check restores what the step changed (parameters, buffers,
gradients, the optimizer's state and the random number generators), so a test
can run several checks on one model. Pass ``restore=False`` to keep the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from dlkernels.debug._check_common import (OutputRange, Params, Tensors, call_model, check_batch, check_callable, check_model,
                                           check_optimizer, check_range, detached_copy,
                                           format_range, has_nonfinite, max_change,
                                           maybe_restore, name_list, output_problems,
                                           resolve_params, split_batch)
from dlkernels.debug.check_reports import NONFINITE_KEYS, TrainingStepReport

__all__ = ["check_training_step", "assert_params_change", "assert_params_unchanged",
           "assert_finite", "assert_output_range"]


def check_training_step(model: torch.nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor],
                        batch: Tensors, optimizer: torch.optim.Optimizer,
                        params: Params | None = None, frozen: Params | None = None,
                        output_range: OutputRange | None = None, *,
                        restore: bool = True) -> TrainingStepReport:
    """Run one training step and report what it did to every parameter.

    The step is ``optimizer.zero_grad()``, the forward pass, ``loss_fn``,
    ``loss.backward()`` and ``optimizer.step()``, with the model in whatever
    mode (train/eval) it is in.

    Parameters
    ----------
    model : torch.nn.Module
    loss_fn : callable
        ``loss_fn(outputs, targets)`` (or ``loss_fn(outputs, batch)``, see the
        module notes on the batch convention), returning a scalar tensor.
    batch : tensor, tuple, list or dict of tensors
        ``(inputs, targets)``, or one tensor or dict passed whole.
    optimizer : torch.optim.Optimizer
    params : names, tensors, (name, tensor) pairs or modules, optional
        The parameters that must change. Default: every parameter that requires
        a gradient and is not in ``frozen``. A submodule (or its name) stands
        for all of its parameters.
    frozen : same kinds as params, optional
        The parameters that must not change. Default: every parameter that does
        not require a gradient and is not in ``params``.
    output_range : (low, high), optional
        Bounds every floating output must stay within (either may be None).
    restore : bool, default True
        Put back the parameters, buffers, gradients, optimizer state and the
        torch random number generators after the step, so that the check has no
        lasting effect. With False the step is kept, as in training.

    Returns
    -------
    TrainingStepReport
        Never raises for what it finds: call :meth:`TrainingStepReport.assert_ok`
        or use the ``assert_*`` functions for that.

    Raises
    ------
    TypeError
        If an argument has the wrong type, a batch leaf is not a tensor, or
        ``loss_fn`` does not return a tensor.
    ValueError
        If the model has no parameters, ``params`` or ``frozen`` name something
        that is not a parameter of the model or overlap, ``output_range`` is
        malformed, or the loss is not a scalar.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.debug import check_training_step
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> batch = (torch.randn(16, 4), torch.randn(16, 1))
    >>> report = check_training_step(model, torch.nn.functional.mse_loss, batch, opt)
    >>> report.ok, report.not_updated
    (True, [])
    """
    named = check_model(model)
    check_callable(loss_fn, "loss_fn")
    check_optimizer(optimizer)
    check_batch(batch)
    output_range = check_range(output_range)
    must_change = resolve_params(model, params, "params", named)
    must_stay = resolve_params(model, frozen, "frozen", named)
    both = set(must_change or ()) & set(must_stay or ())
    if both:
        raise ValueError(f"params and frozen both name {name_list(sorted(both))}")
    if must_change is None:
        must_change = [n for n, p in named.items() if p.requires_grad
                       and n not in set(must_stay or ())]
    if must_stay is None:
        must_stay = [n for n, p in named.items() if not p.requires_grad
                     and n not in set(must_change)]
    run_model, compute_loss = split_batch(model, loss_fn, batch)

    nonfinite: dict[str, list[str]] = {}
    out_of_range: dict[str, tuple[float, float]] = {}
    before = {n: detached_copy(p) for n, p in named.items()}
    with maybe_restore(restore, model, [optimizer]):
        optimizer.zero_grad()
        outputs = run_model()
        loss = compute_loss(outputs)
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"loss_fn must return a tensor, got {type(loss).__name__}")
        if loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar, got a tensor of shape "
                             f"{tuple(loss.shape)}")
        loss.backward()
        bad_grads = [n for n, p in named.items() if has_nonfinite(p.grad)]
        optimizer.step()
        after = {n: detached_copy(p) for n, p in named.items()}
        loss_value = float(loss.detach())
        found: list[str] = []
        output_problems(outputs, output_range, found, out_of_range)
    stages = {
        "parameters before the step": [n for n, t in before.items() if has_nonfinite(t)],
        "outputs": found,
        "loss": ["loss"] if not math.isfinite(loss_value) else [],
        "gradients": bad_grads,
        "parameters after the step": [n for n, t in after.items() if has_nonfinite(t)],
    }
    nonfinite = {k: v for k, v in stages.items() if v}
    changes = {n: max_change(before[n], after[n]) for n in named}
    return TrainingStepReport(
        loss=loss_value, changes=changes,
        expected_to_change=list(must_change), expected_frozen=list(must_stay),
        not_updated=[n for n in must_change if changes[n] == 0],
        frozen_moved=[n for n in must_stay if changes[n] != 0],
        nonfinite=nonfinite, out_of_range=out_of_range, output_range=output_range,
        restored=restore)


# -- assertions ---------------------------------------------------------------------------------
def assert_params_change(model: torch.nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor],
                         batch: Tensors, optimizer: torch.optim.Optimizer,
                         params: Params | None = None, *,
                         restore: bool = True) -> TrainingStepReport:
    """Assert that one training step changes every parameter in ``params``.

    ``params`` defaults to every parameter that requires a gradient. Catches
    layers cut off from the loss (a ``.detach()``, an unused branch) and
    parameters missing from the optimizer. Other arguments as in
    :func:`check_training_step`.

    Returns
    -------
    TrainingStepReport

    Raises
    ------
    AssertionError
        Naming each parameter that did not change.
    """
    report = check_training_step(model, loss_fn, batch, optimizer, params=params, frozen=[],
                                 restore=restore)
    if report.not_updated:
        raise AssertionError(report.problems()[0])
    return report


def assert_params_unchanged(model: torch.nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor],
                            batch: Tensors, optimizer: torch.optim.Optimizer,
                            params: Params | None = None, *,
                            restore: bool = True) -> TrainingStepReport:
    """Assert that one training step leaves every parameter in ``params`` unchanged.

    ``params`` defaults to every parameter that does not require a gradient
    (checked even though torch would not update them: weight decay, a hand-written
    update or an in-place op in ``forward`` can still move them).

    Returns
    -------
    TrainingStepReport

    Raises
    ------
    AssertionError
        Naming each parameter that changed, and by how much.
    ValueError
        If there is nothing to check (every parameter is trainable and ``params``
        is not given).
    """
    named = check_model(model)
    if params is None and all(p.requires_grad for p in named.values()):
        raise ValueError("assert_params_unchanged has nothing to check: every parameter "
                         "requires a gradient; pass params=... naming those that must stay fixed")
    if params is None:
        params = [n for n, p in named.items() if not p.requires_grad]
    report = check_training_step(model, loss_fn, batch, optimizer, params=[], frozen=params,
                                 restore=restore)
    if report.frozen_moved:
        raise AssertionError(next(p for p in report.problems() if "frozen" in p))
    return report


def assert_finite(model: torch.nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor],
                  batch: Tensors, optimizer: torch.optim.Optimizer, *,
                  restore: bool = True) -> TrainingStepReport:
    """Assert that no NaN or inf appears in a training step.

    Checks every element (not only whether a whole tensor is NaN) of the
    parameters before the step, the outputs, the loss, the gradients and the
    parameters after the step, in that order, so the first stage named is
    where the trouble starts.

    Returns
    -------
    TrainingStepReport

    Raises
    ------
    AssertionError
        Naming, stage by stage, the parameters and outputs that hold NaN or inf.
    """
    report = check_training_step(model, loss_fn, batch, optimizer, params=[], frozen=[],
                                 restore=restore)
    if report.nonfinite:
        raise AssertionError("non-finite values in a training step:\n  - " + "\n  - ".join(
            f"{stage}: {name_list(report.nonfinite[stage])}" for stage in NONFINITE_KEYS
            if stage in report.nonfinite))
    return report


def assert_output_range(model: torch.nn.Module, batch: Tensors, output_range: OutputRange, *,
                        restore: bool = True) -> None:
    """Assert that every floating output of a forward pass lies within ``output_range``.

    Only the forward pass runs (under ``torch.no_grad()``, in the model's
    current mode); ``batch`` follows the same convention as in
    :func:`check_training_step` (its targets are not used). NaN is outside
    any range.

    Parameters
    ----------
    model : torch.nn.Module
    batch : tensor, tuple, list or dict of tensors
    output_range : (low, high)
        Either bound may be None.
    restore : bool, default True
        Put back buffers a training-mode forward updates (batch-norm statistics)
        and the random number generators.

    Raises
    ------
    AssertionError
        Naming each output (``outputs``, ``outputs[1]``, ``outputs['prob']``)
        outside the range, with its min and max.
    """
    check_model(model, need_params=False)
    check_batch(batch)
    output_range = check_range(output_range)
    if output_range is None:
        raise ValueError("output_range must be a (low, high) pair, got None")
    inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
    out_of_range: dict[str, tuple[float, float]] = {}
    with maybe_restore(restore, model), torch.no_grad():
        outputs = call_model(model, inputs)
        output_problems(outputs, output_range, [], out_of_range)
    if out_of_range:
        raise AssertionError("outputs outside output_range " + format_range(output_range) + ": "
                             + "; ".join(f"{p} spans [{lo:.4g}, {hi:.4g}]"
                                         for p, (lo, hi) in out_of_range.items()))
