"""Structural pruning: remove whole output units and the inputs that read them.

Masking (``torch.nn.utils.prune``) keeps every matrix at full size, so the
pruned model runs exactly as fast as the original. Here the weakest output
units of a ``Linear`` (channels of a ``Conv2d``) are cut out of its weight and
bias, the matching input columns are cut out of the layer that consumes them,
and per-channel layers in between (``BatchNorm``) are cut alike: the matrices
shrink and inference gets faster.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dlkernels._lib.torch_checks import check_finite, check_fraction, check_module
from dlkernels._lib.validation import check_choice

__all__ = ["prune_units"]

PRODUCERS = (nn.Linear, nn.Conv2d)
# Modules that act on each unit (channel) separately: a removed unit's output
# never reaches another unit through them.
PASS_THROUGH = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
                nn.Softplus, nn.Softsign, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
                nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_NORMS = ("l1", "l2")


def _leaves(model) -> list[tuple[str, nn.Module]]:
    """The modules of a (nested) ``nn.Sequential`` in execution order."""
    out = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            out += [(f"{name}.{n}", m) for n, m in _leaves(child)]
        else:
            out.append((name, child))
    return out


def _chains_sequential(model) -> list[tuple[str, list[str], str]]:
    """(producer, [norms in between], consumer) for each producer of a Sequential."""
    leaves = _leaves(model)
    chains = []
    for i, (name, module) in enumerate(leaves):
        if not isinstance(module, PRODUCERS):
            continue
        between = []
        for other_name, other in leaves[i + 1:]:
            if isinstance(other, PRODUCERS):
                chains.append((name, between, other_name))
                break
            if isinstance(other, NORMS):
                between.append(other_name)
            elif not isinstance(other, (*PASS_THROUGH, nn.Flatten)):
                raise TypeError(
                    f"model: cannot prune {name!r} structurally: the {type(other).__name__} "
                    f"{other_name!r} between it and the next layer does not act on each unit "
                    f"separately (name the pairs with consumers=... to prune others)")
        # A producer with no consumer is the output layer: its units stay.
    return chains


def _chains_named(model, consumers) -> list[tuple[str, list[str], str]]:
    if not isinstance(consumers, dict):
        raise TypeError(f"consumers must be a dict of producer name -> consumer name, "
                        f"got {type(consumers).__name__}")
    modules = dict(model.named_modules())
    chains = []
    for producer, path in consumers.items():
        path = [path] if isinstance(path, str) else list(path)
        if not path or not all(isinstance(p, str) for p in [producer, *path]):
            raise TypeError(f"consumers[{producer!r}] must be a module name or a list of names")
        for n in [producer, *path]:
            if n not in modules:
                raise ValueError(f"consumers names {n!r}, which is not a module of the model")
        *between, consumer = path
        for n in between:
            if not isinstance(modules[n], NORMS):
                raise TypeError(f"consumers[{producer!r}]: {n!r} is a {type(modules[n]).__name__}; "
                                f"only BatchNorm1d/2d may sit between a producer and its consumer")
        chains.append((producer, between, consumer))
    return chains


def _unit_norms(weight: torch.Tensor, norm: str) -> torch.Tensor:
    rows = weight.detach().reshape(weight.shape[0], -1).to(torch.float64)
    return rows.abs().sum(1) if norm == "l1" else rows.pow(2).sum(1).sqrt()


def prune_units(model, amount: float, norm: str = "l1", consumers: dict | None = None) -> nn.Module:
    """A smaller copy of ``model`` without the weakest output units of its layers.

    For each ``Linear`` (``Conv2d``) that feeds another one, the ``amount``
    share of its output units (channels) with the smallest weight norm are
    removed, with their bias entries, the matching inputs of the consuming
    layer and the matching channels of any ``BatchNorm`` in between. A
    ``Flatten`` from a ``Conv2d`` into a ``Linear`` is followed (each channel
    owns ``in_features / channels`` consecutive inputs).

    Parameters
    ----------
    model : torch.nn.Module
        An ``nn.Sequential`` (nested ones are followed), or any module when
        ``consumers`` is given. Not modified.
    amount : float
        Share of the units of each layer to remove, in ``[0, 1)``
        (``floor(amount * units)``, at least one unit always stays).
    norm : {"l1", "l2"}
        How a unit's weight row (a channel's filter) is measured.
    consumers : dict, optional
        For models that are not ``nn.Sequential``: producer name -> consumer
        name, or -> a list ``[batchnorm names..., consumer name]``. Only these
        producers are pruned.

    Returns
    -------
    torch.nn.Module
        A deep copy with smaller layers. Its outputs equal those of ``model``
        with the removed units masked out (their weight rows and biases, and
        the consumer's matching input weights, set to zero), up to float
        rounding.

    Raises
    ------
    TypeError
        If a module between two layers does not act on each unit separately
        (e.g. an LSTM or a grouped convolution), or a layer is of a kind that
        cannot be pruned structurally.
    ValueError
        If ``amount`` is outside ``[0, 1)``, ``norm`` unknown, a weight is NaN
        or infinite, or the shapes of a producer and its consumer do not match.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import prune_units
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.ReLU(),
    ...                           torch.nn.Linear(300, 100), torch.nn.ReLU(),
    ...                           torch.nn.Linear(100, 10))
    >>> small = prune_units(mlp, 0.5)
    >>> [small[0].out_features, small[2].out_features, small[4].out_features]
    [150, 50, 10]
    """
    check_module(model)
    amount = check_fraction(amount, "amount")
    check_choice(norm, "norm", _NORMS)
    if consumers is None:
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"model: a {type(model).__name__} is not an nn.Sequential; name the "
                            f"producer -> consumer pairs with consumers=...")
        chains = _chains_sequential(model)
    else:
        chains = _chains_named(model, consumers)
    modules = dict(model.named_modules())
    keep_out: dict[str, torch.Tensor] = {}
    keep_in: dict[str, torch.Tensor] = {}
    for producer, between, consumer in chains:
        p, c = modules[producer], modules[consumer]
        for n, m in ((producer, p), (consumer, c)):
            if not isinstance(m, PRODUCERS):
                raise TypeError(f"model: {n!r} is a {type(m).__name__}; only Linear and Conv2d "
                                f"can be pruned structurally")
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                raise TypeError(f"model: {n!r} is a grouped Conv2d (groups={m.groups}), which "
                                f"cannot be pruned structurally")
            if m._parameters.get("weight") is None:
                raise ValueError(f"model: {n!r} has no weight parameter (quantized already?)")
            check_finite(m.weight.detach(), f"{n}.weight")
        units = p.weight.shape[0]
        in_c = c.weight.shape[1]
        if isinstance(p, nn.Linear) and isinstance(c, nn.Conv2d):
            raise TypeError(f"model: {producer!r} (Linear) feeds {consumer!r} (Conv2d): "
                            f"cannot follow units through that reshape")
        if in_c % units or (isinstance(c, nn.Conv2d) and in_c != units):
            raise ValueError(f"model: {consumer!r} has {in_c} inputs, which do not match the "
                             f"{units} units of {producer!r}")
        for n in between:
            if modules[n].num_features != units:
                raise ValueError(f"model: {n!r} has {modules[n].num_features} features, "
                                 f"not the {units} units of {producer!r}")
        n_remove = min(int(amount * units), units - 1)
        order = torch.sort(_unit_norms(p.weight, norm), stable=True).indices
        kept = torch.sort(order[n_remove:]).values.to(p.weight.device)
        keep_out[producer] = kept
        for n in between:
            keep_out[n] = kept
        per_unit = in_c // units  # > 1 after a Flatten from a Conv2d into a Linear
        cols = (kept[:, None] * per_unit + torch.arange(per_unit, device=kept.device)).reshape(-1)
        keep_in[consumer] = cols.to(c.weight.device)
    # Everything is checked: build the smaller copy.
    small = copy.deepcopy(model)
    small_modules = dict(small.named_modules())
    with torch.no_grad():
        for name in dict.fromkeys([*keep_out, *keep_in]):
            old = small_modules[name]
            _replace(small, name, _shrunk(old, keep_out.get(name), keep_in.get(name)))
    return small


def _shrunk(module: nn.Module, rows, cols) -> nn.Module:
    """A new module holding only output units ``rows`` and inputs ``cols`` (None: all)."""
    kw = {"device": module.weight.device if hasattr(module, "weight") and module.weight is not None
          else None}
    if isinstance(module, NORMS):
        kw["dtype"] = module.running_mean.dtype if module.running_mean is not None else None
        new = type(module)(len(rows), eps=module.eps, momentum=module.momentum,
                           affine=module.affine, track_running_stats=module.track_running_stats,
                           **{k: v for k, v in kw.items() if v is not None})
        for attr in ("weight", "bias", "running_mean", "running_var"):
            src = getattr(module, attr)
            if src is not None:
                getattr(new, attr).copy_(src[rows])
        if module.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(module.num_batches_tracked)
        new.train(module.training)
        return new
    weight = module.weight
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    kw["dtype"] = weight.dtype
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias, **kw)
    else:
        new = nn.Conv2d(weight.shape[1], weight.shape[0], module.kernel_size, stride=module.stride,
                        padding=module.padding, dilation=module.dilation, bias=has_bias,
                        padding_mode=module.padding_mode, **kw)
    new.weight.copy_(weight)
    if has_bias:
        new.bias.copy_(module.bias if rows is None else module.bias[rows])
    new.weight.requires_grad_(module.weight.requires_grad)
    new.train(module.training)
    return new


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
