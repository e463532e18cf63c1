"""The optimizer-isolation checks: in a loop of several optimizers (a GAN), each step
moves only its own optimizer's parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from dlkernels.debug._check_common import (check_callable, check_model, check_optimizer,
                                           detached_copy, max_change, maybe_restore)
from dlkernels.debug.check_reports import IsolationReport

__all__ = ["check_optimizer_isolation", "assert_optimizer_isolation"]


def _check_steps(steps) -> list[tuple[str, object, Callable]]:
    if not isinstance(steps, Mapping):
        raise TypeError(f"steps must be a dict of name -> (optimizer, step_fn), "
                        f"got {type(steps).__name__}")
    if len(steps) < 2:
        raise ValueError(f"steps needs at least two optimizers to isolate, got {len(steps)}")
    out = []
    for name, value in steps.items():
        if not isinstance(name, str):
            raise TypeError(f"steps keys must be step names (str), got {name!r}")
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"steps[{name!r}] must be an (optimizer, step_fn) pair, got {value!r}")
        optimizer, fn = value
        check_optimizer(optimizer, f"steps[{name!r}] optimizer")
        check_callable(fn, f"steps[{name!r}] step_fn")
        out.append((name, optimizer, fn))
    return out


def check_optimizer_isolation(steps: Mapping[str, tuple[torch.optim.Optimizer, Callable[[], object]]],
                              *, model: torch.nn.Module | None = None,
                              restore: bool = True) -> IsolationReport:
    """Run the steps of a multi-optimizer loop and report what each one moved.

    For GANs (a discriminator step, then a generator step) or transfer
    learning with separate optimizers: during each step only the parameters of
    that step's optimizer may change.

    Parameters
    ----------
    steps : dict of str to (optimizer, step_fn)
        In the order to run them, e.g. ``{"discriminator": (opt_d, d_step),
        "generator": (opt_g, g_step)}``. ``step_fn()`` takes no argument and
        does the whole step: zero_grad, forward, backward, ``optimizer.step()``.
    model : torch.nn.Module, optional
        A module holding all the parameters (an ``nn.ModuleDict`` of the
        generator and discriminator, say), used to name them and to restore
        its buffers. Without it parameters are named
        ``"<step>.param_groups[g][k]"``.
    restore : bool, default True
        Put back parameters, gradients, optimizer states, the model's buffers
        and the random number generators afterwards.

    Returns
    -------
    IsolationReport

    Raises
    ------
    TypeError, ValueError
        On malformed ``steps``, fewer than two of them, or a parameter held
        by two optimizers (such parameters cannot be isolated).
    """
    checked = _check_steps(steps)
    if model is not None:
        check_model(model, need_params=False)
    names_by_id = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
    owner: dict[int, str] = {}
    params: dict[int, object] = {}
    label: dict[int, str] = {}
    for step, optimizer, _ in checked:
        for g, group in enumerate(optimizer.param_groups):
            for k, p in enumerate(group["params"]):
                if id(p) in owner and owner[id(p)] != step:
                    raise ValueError(f"parameter {names_by_id.get(id(p), label.get(id(p)))} is "
                                     f"held by the optimizers of both {owner[id(p)]!r} and "
                                     f"{step!r}: such parameters cannot be isolated")
                owner[id(p)] = step
                params[id(p)] = p
                label[id(p)] = names_by_id.get(id(p), f"{step}.param_groups[{g}][{k}]")
    moved, not_updated, touched = {}, {}, {}
    with maybe_restore(restore, model, [opt for _, opt, _ in checked], list(params.values())):
        for step, _, fn in checked:
            before = {i: (detached_copy(p), detached_copy(p.grad)) for i, p in params.items()}
            fn()
            moved[step], not_updated[step], touched[step] = [], [], []
            for i, p in params.items():
                value, grad = before[i]
                changed = max_change(value, p.detach()) != 0
                if owner[i] == step:
                    if not changed:
                        not_updated[step].append(label[i])
                    continue
                if changed:
                    moved[step].append(label[i])
                if (grad is None) != (p.grad is None) or (
                        grad is not None and max_change(grad, p.grad.detach()) != 0):
                    touched[step].append(label[i])
    owners = {step: [label[i] for i in params if owner[i] == step] for step, _, _ in checked}
    return IsolationReport(steps=[s for s, _, _ in checked], owners=owners, moved=moved,
                           not_updated=not_updated, grads_touched=touched, restored=restore)


def assert_optimizer_isolation(steps: Mapping[str, tuple[torch.optim.Optimizer,
                                                         Callable[[], object]]],
                               *, model: torch.nn.Module | None = None, restore: bool = True,
                               require_updates: bool = True) -> IsolationReport:
    """Assert that each step of a multi-optimizer loop moves only its own parameters.

    Arguments as in :func:`check_optimizer_isolation`. With
    ``require_updates=True`` each step must also change every parameter of its
    own optimizer.

    Returns
    -------
    IsolationReport

    Raises
    ------
    AssertionError
        Naming the parameters that moved during another optimizer's step (and
        those their own step left unchanged).
    """
    report = check_optimizer_isolation(steps, model=model, restore=restore)
    report.assert_ok(require_updates)
    return report
