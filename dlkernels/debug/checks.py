"""Parameter-behaviour checks for training code and its tests.

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

import contextlib
import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dlkernels.debug._util import iter_tensors, require_torch

torch = require_torch()

__all__ = [
    "check_training_step", "TrainingStepReport",
    "assert_params_change", "assert_params_unchanged", "assert_finite",
    "assert_output_range", "assert_no_batch_mixing",
    "check_optimizer_isolation", "assert_optimizer_isolation", "IsolationReport",
]

# Keys of TrainingStepReport.nonfinite, in the order things happen in a step.
NONFINITE_KEYS = ("parameters before the step", "outputs", "loss", "gradients",
                  "parameters after the step")


# -- reports ---------------------------------------------------------------------------------
@dataclass
class TrainingStepReport:
    """What one training step did to a model (returned by :func:`check_training_step`).

    Attributes
    ----------
    loss : float
        The loss of the step.
    changes : dict of str to float
        Every parameter of the model, trainable or not, mapped to the largest
        absolute change of any of its elements (``inf`` where an element
        became or stopped being NaN).
    expected_to_change, expected_frozen : list of str
        The parameters checked for moving, and for staying fixed.
    not_updated : list of str
        Parameters expected to change that did not.
    frozen_moved : list of str
        Parameters expected to stay fixed that changed.
    nonfinite : dict of str to list of str
        Where NaN or inf values were found, by stage: ``"parameters before the
        step"``, ``"outputs"``, ``"loss"``, ``"gradients"``, ``"parameters
        after the step"`` (parameter names, or output paths such as
        ``"outputs['logits']"``). Stages with nothing found are left out.
    out_of_range : dict of str to tuple of float
        Output paths whose values leave ``output_range``, with their (min, max).
    output_range : tuple or None
        The range that was checked.
    restored : bool
        Whether the model and optimizer were put back as they were before the step.
    """

    loss: float
    changes: dict[str, float]
    expected_to_change: list[str]
    expected_frozen: list[str]
    not_updated: list[str]
    frozen_moved: list[str]
    nonfinite: dict[str, list[str]]
    out_of_range: dict[str, tuple[float, float]]
    output_range: tuple | None
    restored: bool

    @property
    def changed(self) -> list[str]:
        """Names of the parameters that changed at all."""
        return [name for name, change in self.changes.items() if change > 0]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems()

    def problems(self) -> list[str]:
        """One sentence per problem found (empty when all is well)."""
        out = []
        if self.not_updated:
            out.append(f"{_count(self.not_updated, 'parameter')} did not change in the "
                       f"training step: {_names(self.not_updated)} (no gradient reaches them? "
                       f"a .detach(), requires_grad=False, or missing from the optimizer)")
        if self.frozen_moved:
            out.append(f"{_count(self.frozen_moved, 'parameter')} expected to stay frozen "
                       f"changed: " + ", ".join(f"{n} (by up to {self.changes[n]:.3g})"
                                                for n in self.frozen_moved))
        for stage in NONFINITE_KEYS:
            if stage in self.nonfinite:
                out.append(f"NaN or inf in the {stage}: {_names(self.nonfinite[stage])}")
        for path, (lo, hi) in self.out_of_range.items():
            out.append(f"{path} spans [{lo:.4g}, {hi:.4g}], outside output_range "
                       f"{_fmt_range(self.output_range)}")
        return out

    def assert_ok(self) -> None:
        """Raise an AssertionError listing every problem, if there is one."""
        problems = self.problems()
        if problems:
            raise AssertionError("training step check failed:\n  - " + "\n  - ".join(problems))

    def __str__(self) -> str:
        lines = [f"training step: loss {self.loss:.6g}; {len(self.changed)} of "
                 f"{len(self.changes)} parameters changed"
                 + (" (model and optimizer restored)" if self.restored else "")]
        width = max((len(n) for n in self.changes), default=0)
        for name, change in self.changes.items():
            tag = ("  NOT UPDATED" if name in self.not_updated else
                   "  FROZEN BUT MOVED" if name in self.frozen_moved else
                   "  (frozen)" if name in self.expected_frozen else "")
            lines.append(f"  {name:<{width}}  max |change| {change:.3g}{tag}")
        problems = self.problems()
        lines.append("problems:" if problems else "no problems found")
        lines += [f"  - {p}" for p in problems]
        return "\n".join(lines)


@dataclass
class IsolationReport:
    """What each step of a multi-optimizer training loop moved (see
    :func:`check_optimizer_isolation`).

    Attributes
    ----------
    steps : list of str
        The step names, in the order they ran.
    owners : dict of str to list of str
        Each step's optimizer's parameters (by name).
    moved : dict of str to list of str
        For each step, the parameters of the *other* optimizers that changed
        during it (should be empty).
    not_updated : dict of str to list of str
        For each step, the parameters of its own optimizer that did not change.
    grads_touched : dict of str to list of str
        For each step, the other optimizers' parameters whose ``.grad`` changed
        during it. Not an error by itself (the generator's loss must flow
        through the discriminator), but in a discriminator step it means a
        missing ``.detach()`` on the generated batch: wasted backward work, and
        wrong updates if the generator's gradients are not zeroed before its step.
    restored : bool
    """

    steps: list[str]
    owners: dict[str, list[str]]
    moved: dict[str, list[str]]
    not_updated: dict[str, list[str]]
    grads_touched: dict[str, list[str]]
    restored: bool

    @property
    def ok(self) -> bool:
        """True when no step moved another optimizer's parameters and every step
        updated all of its own."""
        return not self.problems()

    def problems(self, require_updates: bool = True) -> list[str]:
        """One sentence per problem (``require_updates=False``: ignore ``not_updated``)."""
        out = []
        for step in self.steps:
            if self.moved[step]:
                out.append(f"during the {step!r} step, {_count(self.moved[step], 'parameter')} "
                           f"of other optimizers changed: {_names(self.moved[step])}")
            if require_updates and self.not_updated[step]:
                out.append(f"the {step!r} step did not change "
                           f"{_count(self.not_updated[step], 'parameter')} of its own optimizer: "
                           f"{_names(self.not_updated[step])}")
        return out

    def assert_ok(self, require_updates: bool = True) -> None:
        """Raise an AssertionError listing every problem, if there is one."""
        problems = self.problems(require_updates)
        if problems:
            raise AssertionError("optimizer isolation check failed:\n  - "
                                 + "\n  - ".join(problems))

    def __str__(self) -> str:
        lines = [f"optimizer isolation over steps {', '.join(map(repr, self.steps))}"]
        for step in self.steps:
            lines.append(f"  {step}: moved others {_names(self.moved[step]) or '-'}; "
                         f"own not updated {_names(self.not_updated[step]) or '-'}; "
                         f"others' grads touched {_names(self.grads_touched[step]) or '-'}")
        return "\n".join(lines)


def _count(items, noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def _names(items, limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _fmt_range(r) -> str:
    return "None" if r is None else f"({r[0]}, {r[1]})"


# -- validation -----------------------------------------------------------------------------
def _check_model(model, *, need_params: bool = True) -> dict:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = dict(model.named_parameters())
    if need_params and not named:
        raise ValueError(f"model ({type(model).__name__}) has no parameters: there is "
                         f"nothing whose training could be checked")
    return named


def _check_optimizer(optimizer, argname: str = "optimizer"):
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{argname} must be a torch.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")


def _check_callable(fn, argname: str):
    if not callable(fn):
        raise TypeError(f"{argname} must be callable, got {type(fn).__name__}")


def _check_batch(batch) -> None:
    """The batch is a tensor or a nest of tuples, lists and dicts of tensors."""
    found = list(iter_tensors(batch, "batch", strict=True, what=""))
    if not found:
        raise TypeError(f"batch must be a torch.Tensor or a tuple, list or dict of tensors; "
                        f"got {type(batch).__name__} holding no tensor")
    if isinstance(batch, (tuple, list)) and len(batch) != 2:
        raise ValueError(f"a {type(batch).__name__} batch is (inputs, targets), so it must "
                         f"have 2 items; got {len(batch)}. Pass a dict or a tensor to have "
                         f"the batch passed to the model whole")


def _split_batch(model, loss_fn, batch):
    """``(run_model, compute_loss)`` for a batch, by the convention in the module docs."""
    if isinstance(batch, (tuple, list)):
        inputs, targets = batch
    else:
        inputs, targets = batch, batch
    return (lambda: _call(model, inputs)), (lambda outputs: loss_fn(outputs, targets))


def _call(model, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _resolve(model, spec, argname: str, named: dict) -> list[str] | None:
    """Parameter names from names, tensors, (name, tensor) pairs or submodules."""
    if spec is None:
        return None
    single = (isinstance(spec, (str, torch.Tensor, torch.nn.Module))
              or (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str)
                  and isinstance(spec[1], torch.Tensor)))
    items = [spec] if single else spec
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"{argname} must be parameter names, tensors, (name, tensor) pairs "
                        f"or modules, got {type(spec).__name__}") from None
    by_id = {id(p): name for name, p in named.items()}
    modules = dict(model.named_modules())
    out: dict[str, None] = {}
    for i, item in enumerate(items):
        where = f"{argname}[{i}]" if not single else argname
        if isinstance(item, str):
            if item in named:
                out[item] = None
            elif item in modules and item:
                for p in modules[item].parameters():
                    out[by_id[id(p)]] = None
            else:
                raise ValueError(f"{where} names no parameter (or submodule) of the model: "
                                 f"{item!r}; its parameters are {_names(named)}")
        elif isinstance(item, torch.nn.Module):
            for p in item.parameters():
                if id(p) not in by_id:
                    raise ValueError(f"{where} is a {type(item).__name__} whose parameters "
                                     f"are not the model's")
                out[by_id[id(p)]] = None
        elif isinstance(item, torch.Tensor):
            if id(item) not in by_id:
                raise ValueError(f"{where} is a tensor of shape {tuple(item.shape)} that is "
                                 f"not a parameter of the model")
            out[by_id[id(item)]] = None
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], torch.Tensor)):
            name, tensor = item
            if name not in named:
                raise ValueError(f"{where} names no parameter of the model: {name!r}; its "
                                 f"parameters are {_names(named)}")
            if named[name] is not tensor:
                raise ValueError(f"{where} pairs the name {name!r} with a tensor that is not "
                                 f"that parameter")
            out[name] = None
        else:
            raise TypeError(f"{where} must be a parameter name, a tensor, a (name, tensor) "
                            f"pair or a module, got {type(item).__name__}")
    return list(out)


def _check_range(output_range):
    if output_range is None:
        return None
    if not isinstance(output_range, (tuple, list)) or len(output_range) != 2:
        raise TypeError(f"output_range must be a (low, high) pair, got {output_range!r}")
    low, high = output_range
    for name, value in (("low", low), ("high", high)):
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (int, float))
                                  or math.isnan(value)):
            raise ValueError(f"output_range {name} must be a number or None, got {value!r}")
    if low is not None and high is not None and low > high:
        raise ValueError(f"output_range low must not exceed high, got {output_range!r}")
    return (low, high)


# -- state ------------------------------------------------------------------------------------
def _clone(t):
    return None if t is None else t.detach().clone()


class _Snapshot:
    """Everything a step may change, copied, so that it can be put back."""

    def __init__(self, model, optimizers=(), params=()):
        self.params = list(model.parameters()) if model is not None else []
        seen = {id(p) for p in self.params}
        self.params += [p for p in params if id(p) not in seen]
        self.values = [_clone(p) for p in self.params]
        self.grads = [_clone(p.grad) for p in self.params]
        self.buffers = ([(m, name, _clone(b)) for m in model.modules()
                         for name, b in m._buffers.items()] if model is not None else [])
        self.optimizers = [(opt, copy.deepcopy(opt.state_dict())) for opt in optimizers]

    def restore(self) -> None:
        with torch.no_grad():
            for p, value, grad in zip(self.params, self.values, self.grads):
                p.copy_(value)
                p.grad = grad
            for module, name, value in self.buffers:
                current = module._buffers.get(name)
                if value is None or current is None or current.shape != value.shape:
                    module._buffers[name] = value
                else:
                    current.copy_(value)
        for opt, state in self.optimizers:
            opt.load_state_dict(state)


@contextlib.contextmanager
def _maybe_restore(restore: bool, model, optimizers=(), params=()):
    """Put back parameters, buffers, grads, optimizer state and RNG streams on exit."""
    if not restore:
        yield
        return
    tensors = [*(model.parameters() if model is not None else ()), *params]
    devices = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    snapshot = _Snapshot(model, optimizers, params)
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            snapshot.restore()


def _max_change(before, after) -> float:
    if before.shape != after.shape:
        return math.inf
    if before.dtype.is_floating_point or before.dtype.is_complex:
        both_nan = torch.isnan(before) & torch.isnan(after)
        one_nan = torch.isnan(before) ^ torch.isnan(after)
        if bool(one_nan.any()):
            return math.inf
        diff = (after - before).abs().masked_fill(both_nan, 0)
    else:
        diff = (after.long() - before.long()).abs()
    return float(diff.max()) if diff.numel() else 0.0


def _nonfinite(t) -> bool:
    if t is None or not (t.dtype.is_floating_point or t.dtype.is_complex):
        return False
    return not bool(torch.isfinite(t).all())


def _output_problems(outputs, output_range, nonfinite: list, out_of_range: dict) -> None:
    for path, t in iter_tensors(outputs, "outputs"):
        if not (t.dtype.is_floating_point or t.dtype.is_complex):
            continue
        t = t.detach()
        if _nonfinite(t):
            nonfinite.append(path)
        if output_range is not None and t.numel() and not t.dtype.is_complex:
            low, high = output_range
            inside = torch.ones_like(t, dtype=torch.bool)
            if low is not None:
                inside &= t >= low
            if high is not None:
                inside &= t <= high
            if not bool(inside.all()):  # NaN compares False: it is outside too
                out_of_range[path] = (float(t.min()), float(t.max()))


# -- the step check ---------------------------------------------------------------------------
def check_training_step(model, loss_fn: Callable, batch, optimizer, params=None, frozen=None,
                        output_range=None, *, restore: bool = True) -> TrainingStepReport:
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
    named = _check_model(model)
    _check_callable(loss_fn, "loss_fn")
    _check_optimizer(optimizer)
    _check_batch(batch)
    output_range = _check_range(output_range)
    must_change = _resolve(model, params, "params", named)
    must_stay = _resolve(model, frozen, "frozen", named)
    both = set(must_change or ()) & set(must_stay or ())
    if both:
        raise ValueError(f"params and frozen both name {_names(sorted(both))}")
    if must_change is None:
        must_change = [n for n, p in named.items() if p.requires_grad
                       and n not in set(must_stay or ())]
    if must_stay is None:
        must_stay = [n for n, p in named.items() if not p.requires_grad
                     and n not in set(must_change)]
    run_model, compute_loss = _split_batch(model, loss_fn, batch)

    nonfinite: dict[str, list[str]] = {}
    out_of_range: dict[str, tuple[float, float]] = {}
    before = {n: _clone(p) for n, p in named.items()}
    with _maybe_restore(restore, model, [optimizer]):
        optimizer.zero_grad()
        outputs = run_model()
        loss = compute_loss(outputs)
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"loss_fn must return a tensor, got {type(loss).__name__}")
        if loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar, got a tensor of shape "
                             f"{tuple(loss.shape)}")
        loss.backward()
        bad_grads = [n for n, p in named.items() if _nonfinite(p.grad)]
        optimizer.step()
        after = {n: _clone(p) for n, p in named.items()}
        loss_value = float(loss.detach())
        found: list[str] = []
        _output_problems(outputs, output_range, found, out_of_range)
    stages = {
        "parameters before the step": [n for n, t in before.items() if _nonfinite(t)],
        "outputs": found,
        "loss": ["loss"] if not math.isfinite(loss_value) else [],
        "gradients": bad_grads,
        "parameters after the step": [n for n, t in after.items() if _nonfinite(t)],
    }
    nonfinite = {k: v for k, v in stages.items() if v}
    changes = {n: _max_change(before[n], after[n]) for n in named}
    return TrainingStepReport(
        loss=loss_value, changes=changes,
        expected_to_change=list(must_change), expected_frozen=list(must_stay),
        not_updated=[n for n in must_change if changes[n] == 0],
        frozen_moved=[n for n in must_stay if changes[n] != 0],
        nonfinite=nonfinite, out_of_range=out_of_range, output_range=output_range,
        restored=restore)


# -- assertions ---------------------------------------------------------------------------------
def assert_params_change(model, loss_fn, batch, optimizer, params=None, *,
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


def assert_params_unchanged(model, loss_fn, batch, optimizer, params=None, *,
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
    named = _check_model(model)
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


def assert_finite(model, loss_fn, batch, optimizer, *, restore: bool = True) -> TrainingStepReport:
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
            f"{stage}: {_names(report.nonfinite[stage])}" for stage in NONFINITE_KEYS
            if stage in report.nonfinite))
    return report


def assert_output_range(model, batch, output_range, *, restore: bool = True) -> None:
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
    _check_model(model, need_params=False)
    _check_batch(batch)
    output_range = _check_range(output_range)
    if output_range is None:
        raise ValueError("output_range must be a (low, high) pair, got None")
    inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
    out_of_range: dict[str, tuple[float, float]] = {}
    with _maybe_restore(restore, model), torch.no_grad():
        outputs = _call(model, inputs)
        _output_problems(outputs, output_range, [], out_of_range)
    if out_of_range:
        raise AssertionError("outputs outside output_range " + _fmt_range(output_range) + ": "
                             + "; ".join(f"{p} spans [{lo:.4g}, {hi:.4g}]"
                                         for p, (lo, hi) in out_of_range.items()))


def _rebuild(obj, leaves: dict, path: str = ""):
    """``obj`` with the tensors at the paths in ``leaves`` replaced."""
    if isinstance(obj, torch.Tensor):
        return leaves.get(path, obj)
    if isinstance(obj, Mapping):
        items = {k: _rebuild(v, leaves, f"{path}[{k!r}]") for k, v in obj.items()}
        try:
            return items if type(obj) is dict else type(obj)(items)
        except TypeError:  # a mapping type that cannot be built from a dict
            return items
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_rebuild(v, leaves, f"{path}[{i}]") for i, v in enumerate(obj)))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_rebuild(v, leaves, f"{path}[{i}]") for i, v in enumerate(obj))
    return obj


def assert_no_batch_mixing(model, inputs, *, samples: int | None = None, atol: float = 0.0,
                           restore: bool = True) -> None:
    """Assert that each sample's output depends only on its own input.

    For sample ``i`` the gradient of the sum of its outputs with respect to
    every floating input tensor is computed; rows ``j != i`` of it must be zero
    (up to ``atol``). The model runs in its current mode, so a batch-norm
    layer in training mode, which normalises each sample with the statistics
    of the whole batch, is caught, and the same model in eval mode passes.
    When mixing is found, each module is tested the same way to name the
    modules that mix.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : tensor, tuple, list or dict of tensors
        What the model is called on (a tuple is unpacked into positional
        arguments), batch first. Not an ``(inputs, targets)`` batch. Only
        floating inputs can be differentiated: for token ids, check a model
        that starts from the embeddings.
    samples : int, optional
        Check only this many samples, evenly spaced (default: all). Each
        costs one backward pass.
    atol : float, default 0
        Gradients up to this size count as zero.
    restore : bool, default True
        Put back the buffers and random number generators a forward changes.

    Raises
    ------
    AssertionError
        Naming the samples, the inputs and the modules through which outputs
        depend on other samples.
    TypeError, ValueError
        If no input is a floating tensor with a batch dimension of at least 2,
        or no output has the batch dimension.
    """
    _check_model(model, need_params=False)
    found = list(iter_tensors(inputs, "inputs", strict=True, what=""))
    if not found:
        raise TypeError(f"inputs must be a torch.Tensor or a tuple, list or dict of tensors, "
                        f"got {type(inputs).__name__}")
    floats = [(p, t) for p, t in found if t.dtype.is_floating_point and t.dim() > 0]
    if not floats:
        raise TypeError("assert_no_batch_mixing needs at least one floating-point input "
                        "tensor to differentiate; inputs holds only "
                        + ", ".join(f"{p} ({t.dtype})" for p, t in found))
    sizes = {t.shape[0] for _, t in floats}
    if len(sizes) != 1:
        raise ValueError("the floating inputs disagree on the batch size (first dimension): "
                         + ", ".join(f"{p}: {t.shape[0]}" for p, t in floats))
    n = sizes.pop()
    if n < 2:
        raise ValueError(f"assert_no_batch_mixing needs a batch of at least 2 samples, got {n}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                or samples < 1):
        raise ValueError(f"samples must be a positive int or None, got {samples!r}")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise ValueError(f"atol must be a non-negative number, got {atol!r}")
    count = n if samples is None else min(samples, n)
    which = sorted({round(k * (n - 1) / max(count - 1, 1)) for k in range(count)})

    leaves = {p: t.detach().clone().requires_grad_(True) for p, t in floats}
    calls: list[tuple[str, object, object]] = []

    def record(name):
        def hook(module, args, output):
            ins = [a for _, a in iter_tensors(args) if a.requires_grad and a.dim() > 0
                   and a.shape[0] == n]
            outs = [o for o in _batch_outputs(output, n)]
            if ins and outs:
                calls.append((name, ins, outs))
        return hook

    handles = []
    with _maybe_restore(restore, model):
        try:
            for name, module in model.named_modules():
                if name:
                    handles.append(module.register_forward_hook(record(name)))
            with torch.enable_grad():
                outputs = _call(model, _rebuild(inputs, leaves, "inputs"))
        finally:
            for h in handles:
                h.remove()
        outs = _batch_outputs(outputs, n)
        if not outs:
            raise ValueError(f"no output of the model has the batch size {n} as its first "
                             f"dimension, so outputs cannot be matched to samples")
        mixed: dict[str, dict] = {}
        for i in which:
            total = sum(o[i].sum() for o in outs)
            grads = torch.autograd.grad(total, list(leaves.values()), retain_graph=True,
                                        allow_unused=True)
            for (path, _), g in zip(leaves.items(), grads):
                if g is None:
                    continue
                others = _other_rows(g, i, atol)
                if others:
                    entry = mixed.setdefault(path, {"samples": {}, "largest": 0.0})
                    entry["samples"][i] = others
                    entry["largest"] = max(entry["largest"], _largest_other(g, i))
        if not mixed:
            return
        first = min(i for e in mixed.values() for i in e["samples"])
        culprits = _mixing_modules(model, calls, first, atol)
    lines = []
    for path, entry in mixed.items():
        bad = sorted(entry["samples"])
        lines.append(f"the outputs of {_count(bad, 'sample')} ({_names(map(str, bad))}) depend "
                     f"on other samples' {path} (largest |gradient| {entry['largest']:.3g})")
    where = (f"mixed by: {', '.join(culprits)}" if culprits else
             "no single module mixes samples on its own")
    raise AssertionError("samples of a batch are mixed: " + "; ".join(lines) + "; " + where)


def _batch_outputs(output, n):
    return [o for _, o in iter_tensors(output) if o.dim() > 0 and o.shape[0] == n
            and o.requires_grad and (o.dtype.is_floating_point or o.dtype.is_complex)]


def _other_rows(g, i, atol) -> list[int]:
    rows = g.detach().reshape(g.shape[0], -1).abs()
    big = ~(rows <= atol)  # NaN counts as dependence
    big = big.any(dim=1)
    big[i] = False
    return big.nonzero().flatten().tolist()


def _largest_other(g, i) -> float:
    rows = g.detach().reshape(g.shape[0], -1).abs().nan_to_num(math.inf)
    rows = torch.cat([rows[:i], rows[i + 1:]])
    return float(rows.max()) if rows.numel() else 0.0


def _mixing_modules(model, calls, i, atol) -> list[str]:
    """Names (and types) of the innermost modules whose own outputs mix samples."""
    modules = dict(model.named_modules())
    guilty = []
    for name, ins, outs in calls:
        total = sum(o[i].sum() for o in outs)
        try:
            grads = torch.autograd.grad(total, ins, retain_graph=True, allow_unused=True)
        except RuntimeError:  # an input modified in place since: cannot tell
            continue
        if any(g is not None and _other_rows(g, i, atol) for g in grads):
            guilty.append(name)
    # Keep the innermost: drop a container when one of its children is guilty.
    inner = [g for g in guilty if not any(o != g and o.startswith(g + ".") for o in guilty)]
    out = []
    for name in inner:
        module = modules[name]
        mode = " in training mode" if module.training else ""
        out.append(f"{name} ({type(module).__name__}{mode})")
    return out


# -- several optimizers -------------------------------------------------------------------------
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
        _check_optimizer(optimizer, f"steps[{name!r}] optimizer")
        _check_callable(fn, f"steps[{name!r}] step_fn")
        out.append((name, optimizer, fn))
    return out


def check_optimizer_isolation(steps, *, model=None, restore: bool = True) -> IsolationReport:
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
        _check_model(model, need_params=False)
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
    with _maybe_restore(restore, model, [opt for _, opt, _ in checked], list(params.values())):
        for step, _, fn in checked:
            before = {i: (_clone(p), _clone(p.grad)) for i, p in params.items()}
            fn()
            moved[step], not_updated[step], touched[step] = [], [], []
            for i, p in params.items():
                value, grad = before[i]
                changed = _max_change(value, p.detach()) != 0
                if owner[i] == step:
                    if not changed:
                        not_updated[step].append(label[i])
                    continue
                if changed:
                    moved[step].append(label[i])
                if (grad is None) != (p.grad is None) or (
                        grad is not None and _max_change(grad, p.grad.detach()) != 0):
                    touched[step].append(label[i])
    owners = {step: [label[i] for i in params if owner[i] == step] for step, _, _ in checked}
    return IsolationReport(steps=[s for s, _, _ in checked], owners=owners, moved=moved,
                           not_updated=not_updated, grads_touched=touched, restored=restore)


def assert_optimizer_isolation(steps, *, model=None, restore: bool = True,
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
