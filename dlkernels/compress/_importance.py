"""How much each unit of a group matters: one score per unit, low scores are removed first.

``"l1"`` and ``"l2"``: the norm of every weight the unit owns in any member
(its rows in the producers, its columns in the consumers, its norm scale and
shift), as one vector. ``"bn"``: the absolute scale (gamma) of the group's
normalization layers (Liu et al., network slimming). ``"taylor"``: the
first-order estimate of the loss change when the unit's weights are zeroed,
``|sum of w * dL/dw|`` over the same weights (Molchanov et al. 2019), from the
gradients a backward pass left in ``.grad``.
"""

from __future__ import annotations

import math

import torch

from dlkernels._lib.torch_checks import check_finite
from dlkernels.compress.depgraph import NORM_TYPES

__all__ = ["IMPORTANCES", "unit_scores"]

IMPORTANCES = ("l1", "l2", "bn", "taylor")


def _name_nonfinite(g, key: str, kind: str) -> None:
    """Raise the ValueError for a member whose scores are not finite."""
    t = g.tensors[key]
    check_finite(t.detach(), key)
    if kind == "taylor":
        check_finite(t.grad.detach(), f"{key}.grad")
    raise ValueError(f"{key} must have finite importance, got an overflow (|weights| too large)")


def _transformed(g, key: str, kind: str, cache: dict) -> torch.Tensor:
    """|w| (l1, bn), w**2 (l2) or w * grad (taylor), computed once per tensor and call."""
    if key not in cache:
        t = g.tensors[key]
        x = t.detach()
        if kind == "taylor":
            if t.grad is None:
                raise ValueError(f"importance='taylor' needs gradients: {key!r} has no .grad (run "
                                 f"loss.backward() on one batch first)")
            x = x * t.grad.detach()
        cache[key] = x * x if kind == "l2" else x if kind == "taylor" else x.abs()
    return cache[key]


def _member_scores(g, member, n: int, kind: str, cache: dict) -> torch.Tensor:
    """Per unit, the sum of the transformed entries one member gives it."""
    key, dim, offset, outer, inner = member
    x = _transformed(g, key, kind, cache)
    # Sums in (at least) float32 are several times faster than in float64, and exact enough
    # to rank units: each sum has at most a few thousand terms per unit and member.
    acc = torch.promote_types(x.dtype, torch.float32)
    if key in g.grouped and dim == 1:
        # Grouped convolution: unit u is column u % (n / groups) of the rows of its group.
        groups = g.grouped[key][0]
        x = x.reshape(groups, x.shape[0] // groups, x.shape[1], -1).transpose(0, 1)
        part = x.reshape(x.shape[0], n, -1).sum((0, 2), dtype=acc)
    else:
        # Sum the dimensions in front first (a contiguous reduction, no copy), then the
        # positions each unit owns along ``dim`` and everything behind it.
        pre, post = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1:])
        y = x.reshape(pre, -1).sum(0, dtype=acc) if pre > 1 else x.reshape(-1)
        y = y.reshape(x.shape[dim], post)[offset:offset + outer * n * inner]
        part = y.reshape(outer, n, inner * post).sum((0, 2), dtype=acc)
    part = part.to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(part).all():
        _name_nonfinite(g, key, kind)
    return part


def unit_scores(g, root, kind: str, cache: dict | None = None) -> torch.Tensor:
    """The importance of each unit of the group ``root`` (float64, on the CPU).

    Raises a ValueError naming the tensor when a weight (or its gradient) is
    NaN or infinite.
    """
    n = root.size
    cache = {} if cache is None else cache
    total = torch.zeros(n, dtype=torch.float64)
    used = False
    for member in root.members:
        key = member[0]
        if not g.is_param[key]:
            continue  # running statistics are no weights
        if kind == "bn":
            module = g.model.get_submodule(g.owner[key])
            if not (isinstance(module, NORM_TYPES) and key.endswith(".weight")):
                continue
        total += _member_scores(g, member, n, kind, cache)
        used = True
    if kind == "bn" and not used:
        names = ", ".join(sorted({g.owner[m[0]] for m in root.members})) or "?"
        raise ValueError(f"importance='bn' needs a normalization layer with a scale in every pruned "
                         f"group; the group of {names} has none (protect it or use 'l1')")
    if kind == "l2":
        return total.sqrt()
    return total.abs() if kind == "taylor" else total
