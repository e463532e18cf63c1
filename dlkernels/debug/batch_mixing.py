"""assert_no_batch_mixing: does each sample's output depend only on its own input?"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from dlkernels.debug._check_common import (Tensors, call_model, check_model, maybe_restore, name_list,
                                           plural)
from dlkernels.debug._util import iter_tensors

__all__ = ["assert_no_batch_mixing"]


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


def assert_no_batch_mixing(model: torch.nn.Module, inputs: Tensors, *, samples: int | None = None,
                           atol: float = 0.0, restore: bool = True) -> None:
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
    check_model(model, need_params=False)
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
    with maybe_restore(restore, model):
        try:
            for name, module in model.named_modules():
                if name:
                    handles.append(module.register_forward_hook(record(name)))
            with torch.enable_grad():
                outputs = call_model(model, _rebuild(inputs, leaves, "inputs"))
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
        lines.append(f"the outputs of {plural(bad, 'sample')} ({name_list(map(str, bad))}) depend "
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
