"""What the parameter-behaviour checks share: argument checks, the batch convention,
snapshot and restore, and the measures of change and of NaN/inf.

The batch convention is described in :mod:`dlkernels.debug.training_step`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

import torch

from dlkernels.debug._util import iter_tensors

# What a model is called on, or a batch: a tensor, or tuples, lists and dicts of tensors.
Tensors = Union[torch.Tensor, Sequence[Any], Mapping[Any, Any]]
# Parameters named by name, by tensor, by (name, tensor) pair or by submodule; or several.
ParamRef = Union[str, torch.Tensor, torch.nn.Module, tuple[str, torch.Tensor]]
Params = Union[ParamRef, Iterable[ParamRef]]
# (low, high); either may be None.
OutputRange = Union[tuple[Optional[float], Optional[float]], Sequence[Optional[float]]]


def plural(items, noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def name_list(items, limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def format_range(r) -> str:
    return "None" if r is None else f"({r[0]}, {r[1]})"


# -- validation -----------------------------------------------------------------------------
def check_model(model, *, need_params: bool = True) -> dict:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = dict(model.named_parameters())
    if need_params and not named:
        raise ValueError(f"model ({type(model).__name__}) has no parameters: there is "
                         f"nothing whose training could be checked")
    return named


def check_optimizer(optimizer, argname: str = "optimizer"):
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{argname} must be a torch.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")


def check_callable(fn, argname: str):
    if not callable(fn):
        raise TypeError(f"{argname} must be callable, got {type(fn).__name__}")


def check_batch(batch) -> None:
    """The batch is a tensor or a nest of tuples, lists and dicts of tensors."""
    found = list(iter_tensors(batch, "batch", strict=True, what=""))
    if not found:
        raise TypeError(f"batch must be a torch.Tensor or a tuple, list or dict of tensors; "
                        f"got {type(batch).__name__} holding no tensor")
    if isinstance(batch, (tuple, list)) and len(batch) != 2:
        raise ValueError(f"a {type(batch).__name__} batch is (inputs, targets), so it must "
                         f"have 2 items; got {len(batch)}. Pass a dict or a tensor to have "
                         f"the batch passed to the model whole")


def split_batch(model, loss_fn, batch):
    """``(run_model, compute_loss)`` for a batch, by the convention in the module docs."""
    if isinstance(batch, (tuple, list)):
        inputs, targets = batch
    else:
        inputs, targets = batch, batch
    return (lambda: call_model(model, inputs)), (lambda outputs: loss_fn(outputs, targets))


def call_model(model, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def resolve_params(model, spec, argname: str, named: dict) -> list[str] | None:
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
                                 f"{item!r}; its parameters are {name_list(named)}")
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
                                 f"parameters are {name_list(named)}")
            if named[name] is not tensor:
                raise ValueError(f"{where} pairs the name {name!r} with a tensor that is not "
                                 f"that parameter")
            out[name] = None
        else:
            raise TypeError(f"{where} must be a parameter name, a tensor, a (name, tensor) "
                            f"pair or a module, got {type(item).__name__}")
    return list(out)


def check_range(output_range):
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
def detached_copy(t):
    return None if t is None else t.detach().clone()


class Snapshot:
    """Everything a step may change, copied, so that it can be put back."""

    def __init__(self, model, optimizers=(), params=()):
        self.params = list(model.parameters()) if model is not None else []
        seen = {id(p) for p in self.params}
        self.params += [p for p in params if id(p) not in seen]
        self.values = [detached_copy(p) for p in self.params]
        self.grads = [detached_copy(p.grad) for p in self.params]
        self.buffers = ([(m, name, detached_copy(b)) for m in model.modules()
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
def maybe_restore(restore: bool, model, optimizers=(), params=()):
    """Put back parameters, buffers, grads, optimizer state and RNG streams on exit."""
    if not restore:
        yield
        return
    tensors = [*(model.parameters() if model is not None else ()), *params]
    devices = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    snapshot = Snapshot(model, optimizers, params)
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            snapshot.restore()


def max_change(before, after) -> float:
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


def has_nonfinite(t) -> bool:
    if t is None or not (t.dtype.is_floating_point or t.dtype.is_complex):
        return False
    return not bool(torch.isfinite(t).all())


def output_problems(outputs, output_range, nonfinite: list, out_of_range: dict) -> None:
    for path, t in iter_tensors(outputs, "outputs"):
        if not (t.dtype.is_floating_point or t.dtype.is_complex):
            continue
        t = t.detach()
        if has_nonfinite(t):
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
