"""Unstructured magnitude pruning with masked gradients.

The mask of a pruned weight is a ``bool`` buffer ``weight_mask`` on its module
(1 byte per weight, not saved in the ``state_dict``). Nothing else is kept:
``torch.nn.utils.prune`` keeps a float mask (4 bytes per weight) *and* a full
copy of the weight (``weight_orig``), 8 bytes per weight in all.

Pruned weights stay exactly zero through fine-tuning:

* a gradient hook on the weight zeroes their gradients, so plain SGD (and SGD
  with weight decay: the decay of a zero weight is zero) never moves them (a
  forward pre-hook re-attaches it to copies: deepcopy and pickle drop tensor hooks);
* optimizers with state (momentum, Adam's moments) may carry a non-zero
  update from before pruning, so a global optimizer post-step hook sets them
  back to zero after every ``optimizer.step()``.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from dlkernels._lib.torch_checks import check_finite, check_fraction, check_module, named_layers
from dlkernels._lib.validation import check_choice
from dlkernels.compress._warning import PruningWarning

__all__ = ["prune_magnitude", "remove_pruning", "PRUNABLE"]

PRUNABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_SCOPES = ("global", "layer")


# id(weight) -> (weakref to the weight, weakref to its module, gradient-hook handle).
# Tensor hooks and attributes do not survive deepcopy or pickling, so the
# module's forward pre-hook (which does) re-attaches the gradient hook to the
# weight it finds, and this registry lets the optimizer hook find the masks.
_MASKED: dict[int, tuple] = {}


def _masked_grad(owner):
    def hook(grad):
        module = owner()
        mask = module._buffers.get("weight_mask") if module is not None else None
        return grad if mask is None else grad.masked_fill(~mask, 0)
    return hook


def _ensure_hooked(module, args=None) -> None:
    """Forward pre-hook: make sure this module's current weight masks its gradient."""
    weight = module._parameters.get("weight")
    if weight is None:
        return
    entry = _MASKED.get(id(weight))
    if entry is not None and entry[0]() is weight and entry[1]() is module:
        return
    key = id(weight)
    handle = weight.register_hook(_masked_grad(weakref.ref(module)))
    _MASKED[key] = (weakref.ref(weight, lambda _, key=key: _MASKED.pop(key, None)),
                    weakref.ref(module), handle)


def _rezero_after_step(optimizer, args, kwargs) -> None:
    # Runs after every optimizer.step() of the process: one dict look-up per
    # parameter, and only pruned weights are touched.
    if not _MASKED:
        return
    with torch.no_grad():
        for group in optimizer.param_groups:
            for p in group["params"]:
                entry = _MASKED.get(id(p))
                if entry is None or entry[0]() is not p:
                    continue
                module = entry[1]()
                mask = module._buffers.get("weight_mask") if module is not None else None
                if mask is not None and module._parameters.get("weight") is p:
                    p.masked_fill_(~mask, 0)


register_optimizer_step_post_hook(_rezero_after_step)


def _weight_of(name: str, module) -> torch.Tensor:
    weight = module._parameters.get("weight")
    if weight is None:
        raise ValueError(f"layers: {name!r} has no weight parameter (quantized already? "
                         f"prune before quantize)")
    return weight


def prune_magnitude(model: torch.nn.Module, amount: float, *, scope: str = "global",
                    layers: Sequence[str | torch.nn.Module] | str | torch.nn.Module | None = None
                    ) -> dict[str, float]:
    """Zero the smallest-magnitude weights and keep them at zero while training.

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place.
    amount : float
        Share of the weights to zero, in ``[0, 1)``.
    scope : {"global", "layer"}
        ``"global"`` ranks all the chosen weights together (one threshold for
        the model); ``"layer"`` zeroes ``amount`` of each layer.
    layers : list of str or torch.nn.Module, optional
        The layers to prune (names from ``model.named_modules()`` or the
        modules). Default: every ``Linear`` and ``Conv1d/2d/3d``.

    Returns
    -------
    dict
        Layer name -> share of its weights that are now zero.

    Warns
    -----
    PruningWarning
        If a layer is left with every weight zero (possible only with
        ``scope="global"``, where small layers can fall wholly under the
        model's threshold); the message names the layers.

    Raises
    ------
    ValueError
        If ``amount`` is outside ``[0, 1)``, ``scope`` unknown, a weight NaN
        or infinite, or a named layer missing; nothing is modified then.
    TypeError
        If ``model`` is not a module or a named layer cannot be pruned.

    Notes
    -----
    Exactly ``floor(amount * n)`` weights are chosen (``n`` the weights in
    scope), ties in magnitude broken by position. Weights pruned earlier stay
    pruned (masks only grow), so pruning 50% and then 80% gives 80%.
    Works on any device; the ranking runs where the weights are.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import prune_magnitude
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> kept = prune_magnitude(model, 0.75)
    >>> int((model[0].weight == 0).sum() + (model[2].weight == 0).sum())
    30
    """
    check_module(model)
    amount = check_fraction(amount, "amount")
    check_choice(scope, "scope", _SCOPES)
    chosen = named_layers(model, PRUNABLE, layers)
    weights = [_weight_of(name, m) for name, m in chosen]
    for (name, _), w in zip(chosen, weights):
        check_finite(w.detach(), f"{name}.weight")
    # Everything is checked: from here on the model changes.
    with torch.no_grad():
        if scope == "global" and chosen:
            flat = torch.cat([w.detach().abs().reshape(-1).to(device=weights[0].device, dtype=torch.float64)
                              for w in weights])
            drop = _smallest(flat, amount)
            sizes = [w.numel() for w in weights]
            masks = [d.view_as(w) for d, w in zip(torch.split(~drop, sizes), weights)]
        else:
            masks = [~_smallest(w.detach().abs().reshape(-1), amount).view_as(w) for w in weights]
        result = {}
        for (name, module), w, mask in zip(chosen, weights, masks):
            mask = mask.to(w.device)
            old = getattr(module, "weight_mask", None)
            if old is not None:
                mask &= old
            _attach(module, w, mask)
            result[name] = 1.0 - float(mask.sum()) / max(mask.numel(), 1)
    emptied = [name for name, share in result.items() if share == 1.0]
    if emptied and amount > 0:
        warnings.warn(f"prune_magnitude removed every weight of {', '.join(map(repr, emptied))}: "
                      f"{'it outputs' if len(emptied) == 1 else 'they output'} only the bias (lower "
                      f"amount, or use scope='layer')", PruningWarning, stacklevel=2)
    return result


def _smallest(values: torch.Tensor, share: float) -> torch.Tensor:
    """Bool tensor marking exactly ``floor(share * n)`` smallest values (stable ties)."""
    k = int(share * values.numel())
    drop = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    if k:
        order = torch.sort(values, stable=True).indices
        drop[order[:k]] = True
    return drop


def _attach(module, weight: torch.nn.Parameter, mask: torch.Tensor) -> None:
    weight.masked_fill_(~mask, 0)
    if "weight_mask" in module._buffers:
        module._buffers["weight_mask"] = mask
    else:
        module.register_buffer("weight_mask", mask, persistent=False)
        module._dlkernels_prune_hook = module.register_forward_pre_hook(_ensure_hooked)
    _ensure_hooked(module)


def remove_pruning(model: torch.nn.Module) -> int:
    """Drop the masks and hooks of :func:`prune_magnitude`; the zeros stay.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    int
        Number of layers whose mask was removed.
    """
    check_module(model)
    count = 0
    for module in model.modules():
        if "weight_mask" in module._buffers:
            weight = module._parameters.get("weight")
            entry = _MASKED.get(id(weight)) if weight is not None else None
            if entry is not None and entry[0]() is weight:
                entry[2].remove()
                del _MASKED[id(weight)]
            handle = getattr(module, "_dlkernels_prune_hook", None)
            if handle is not None:
                handle.remove()
                del module._dlkernels_prune_hook
            del module._buffers["weight_mask"]
            count += 1
    return count
