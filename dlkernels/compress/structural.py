"""Structural pruning: remove whole units, so the model gets smaller and faster.

Masking (``torch.nn.utils.prune``) keeps every matrix at full size, so the
masked model runs exactly as fast as the original. :func:`prune_units`
traces the model into groups of coupled units (:mod:`~dlkernels.compress.depgraph`)
and cuts the weakest units of each group out of every tensor that holds them:
the matrices shrink and inference gets faster.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from dlkernels._lib.torch_checks import check_fraction, check_module, named_layers
from dlkernels._lib.validation import check_choice, check_count
from dlkernels.compress._attention import tie_sizes
from dlkernels.compress._importance import IMPORTANCES, unit_scores
from dlkernels.compress._shrink import shrink
from dlkernels.compress._warning import PruningWarning
from dlkernels.compress.depgraph import trace_graph

__all__ = ["prune_units"]

_SCOPES = ("layer", "global")
_ATTENTION = ("heads", "head_dims")


def prune_units(model: nn.Module, amount: float | dict[str, float], *,
                example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
                importance: str = "l1", scope: str = "layer", round_to: int = 8,
                protect: str | nn.Module | Sequence[str | nn.Module] | None = None,
                consumers: dict[str, str | Sequence[str]] | None = None, attention: str = "heads",
                steps: int = 1, on_step: Callable[[nn.Module, int], object] | None = None) -> nn.Module:
    """A smaller copy of ``model`` without the weakest units (channels, features, heads).

    The model is traced into groups of units that must be removed together
    (:func:`~dlkernels.compress.unit_groups`): a convolution's output channels
    with the BatchNorm after it and the input channels of every layer that
    reads them, all the addends of a residual sum, both sides of a
    concatenation, a Linear's inputs after a flatten, the channels of a
    depthwise convolution's input and output, an embedding's features with
    everything added to them, the heads of an ``nn.MultiheadAttention``.
    From each group the ``amount`` share of units with the lowest importance
    is cut out of every tensor that holds them. The model's outputs keep
    their size.

    Parameters
    ----------
    model : torch.nn.Module
        Any module that ``torch.fx`` or ``torch.export`` can trace. Not
        modified.
    amount : float or dict
        Share of the units of each group to remove, in ``[0, 1)``; or a dict
        from module names to shares, for the groups those modules output
        (other groups keep their units).
    example_inputs : torch.Tensor or tuple of torch.Tensor, optional
        Positional arguments of one forward call, run once to learn shapes.
        Needed unless the model's input goes straight into a ``Linear`` or
        ``Embedding``.
    importance : {"l1", "l2", "bn", "taylor"}
        How units are ranked: the L1 or L2 norm of all the weights a unit owns
        in its group (producers' rows, consumers' columns, norm parameters);
        the absolute BatchNorm/GroupNorm/LayerNorm scale; or the first-order
        Taylor estimate ``|sum w * grad|`` over the same weights, which reads
        the ``.grad`` of one batch's ``loss.backward()``.
    scope : {"layer", "global"}
        ``"layer"`` removes ``floor(amount * n)`` units of each group of ``n``;
        ``"global"`` ranks all units together (importance divided by its
        group's mean) and removes the ``amount`` share of all of them, at least
        one unit staying in each group.
    round_to : int
        The number of units each group keeps is rounded up to a multiple of
        this (8: what CPU and GPU kernels like; 1: no rounding). Groups with
        fewer units keep them all.
    protect : str, module or list of them, optional
        Modules whose output units all stay (e.g. a classifier). The model's
        outputs are always kept.
    consumers : dict, optional
        ``{producer name: name or list of names}``: prune only these
        producers' groups, and check each against the traced graph: the names
        must be exactly the other modules that hold the producer's units (the
        layers that read them, the norms in between, and in a residual group
        the other producers).
    attention : {"heads", "head_dims"}
        ``nn.MultiheadAttention`` keeps ``embed_dim == num_heads * head_dim``
        equal to its query and output features: when those lose units, it
        loses whole heads or the same dimensions of every head.
    steps : int
        Prune in this many steps, each to a linearly growing share of the
        original units (``amount * step / steps``).
    on_step : callable, optional
        ``on_step(model, step)`` after each step with the current smaller
        model (``step`` from 1): fine-tune it there. With
        ``importance="taylor"`` it must leave one batch's gradients in
        ``.grad`` for the next step.

    Returns
    -------
    torch.nn.Module
        A deep copy with smaller tensors, of the same classes. Its outputs
        equal those of ``model`` with the removed units masked (their
        weights zeroed everywhere), up to float rounding; LayerNorm and
        GroupNorm normalize over the units that stay.

    Raises
    ------
    TypeError
        If the model cannot be traced, an operation that is not understood
        reads units (the message names the module and the operation), or an
        argument has the wrong type.
    ValueError
        If ``amount`` is outside ``[0, 1)``, an option is unknown, a weight is
        NaN or infinite, a name is not a module of the model, ``consumers``
        does not match the traced graph, or ``importance="taylor"`` finds no
        gradients.

    Warns
    -----
    PruningWarning
        If nothing is removed although ``amount > 0`` (every group pinned or
        kept whole by ``round_to``).

    Notes
    -----
    Units are *pinned* (never removed) where removing them would change the
    result: the model's outputs, protected modules, and units that an
    operation reads as a whole (a softmax, a sum or mean over channels,
    indexing a channel). :func:`~dlkernels.compress.unit_groups` lists each
    group with the reasons it is pinned.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import prune_units
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.ReLU(),
    ...                           torch.nn.Linear(300, 100), torch.nn.ReLU(),
    ...                           torch.nn.Linear(100, 10))
    >>> small = prune_units(mlp, 0.5)
    >>> [small[0].out_features, small[2].out_features, small[4].out_features]
    [152, 56, 10]
    """
    check_module(model)
    amounts = _check_amount(model, amount)
    check_choice(importance, "importance", IMPORTANCES)
    check_choice(scope, "scope", _SCOPES)
    check_choice(attention, "attention", _ATTENTION)
    round_to = check_count(round_to, "round_to", 1)
    steps = check_count(steps, "steps", 1)
    if on_step is not None and not callable(on_step):
        raise TypeError(f"on_step must be callable, got {type(on_step).__name__}")
    if scope == "global" and isinstance(amounts, dict):
        raise ValueError("amount: a dict of per-layer shares needs scope='layer'")
    protected = [] if protect is None else [n for n, _ in named_layers(model, (nn.Module,), protect,
                                                                         "protect")]
    if consumers is not None:
        _check_consumers(model, consumers)
    options = dict(example_inputs=example_inputs, importance=importance, scope=scope, round_to=round_to,
                   protected=protected, consumers=consumers, attention=attention)
    current = model
    for step in range(1, steps + 1):
        before, after = (step - 1) / steps, step / steps

        def share(a, before=before, after=after):  # of the units left, so step k ends at a * k / steps
            return a * after if before == 0 else 1.0 - (1.0 - a * after) / (1.0 - a * before)
        step_amounts = ({k: share(v) for k, v in amounts.items()} if isinstance(amounts, dict)
                        else share(amounts))
        current = _prune_once(current, step_amounts, **options)
        if on_step is not None:
            on_step(current, step)
    return current


def _check_amount(model, amount):
    if isinstance(amount, dict):
        names = dict(model.named_modules())
        out = {}
        for k, v in amount.items():
            if not isinstance(k, str):
                raise TypeError(f"amount: dict keys must be module names, got {type(k).__name__}")
            if k not in names:
                raise ValueError(f"amount names {k!r}, which is not a module of the model")
            out[k] = check_fraction(v, f"amount[{k!r}]")
        return out
    return check_fraction(amount, "amount")


def _check_consumers(model, consumers) -> None:
    if not isinstance(consumers, dict):
        raise TypeError(f"consumers must be a dict of producer name -> consumer name(s), "
                        f"got {type(consumers).__name__}")
    modules = dict(model.named_modules())
    for producer, path in consumers.items():
        path = [path] if isinstance(path, str) else path
        if not isinstance(path, (list, tuple)) or not path or \
                not all(isinstance(p, str) for p in [producer, *path]):
            raise TypeError(f"consumers[{producer!r}] must be a module name or a list of names")
        for n in [producer, *path]:
            if n not in modules:
                raise ValueError(f"consumers names {n!r}, which is not a module of the model")


def _restricted(g, consumers: dict) -> set:
    """The groups named by ``consumers``, each checked against the traced graph."""
    roots = set()
    for producer, path in consumers.items():
        named = {path} if isinstance(path, str) else set(path)
        spaces = g.producers.get(producer)
        if not spaces:
            module = g.model.get_submodule(producer)
            raise TypeError(f"consumers: {producer!r} (a {type(module).__name__}) outputs no units that "
                            f"can be removed")
        root = spaces[0].root()
        readers = {g.owner[m[0]] for m in root.members} - {producer}
        if named != readers:
            raise ValueError(f"consumers[{producer!r}] names {sorted(named)}, but in the traced graph "
                             f"the units of {producer!r} are read by {sorted(readers)}")
        roots.add(root)
    return roots


def _top(scores: torch.Tensor, keep: int, blocks: int) -> torch.Tensor:
    """Sorted indices of the ``keep`` highest scores, ``keep / blocks`` per block (ties: lower index goes)."""
    n = len(scores)
    per, k = n // blocks, keep // blocks
    kept = []
    for b in range(blocks):
        order = torch.sort(scores[b * per:(b + 1) * per], stable=True).indices
        kept.append(torch.sort(order[per - k:]).values + b * per)
    return torch.cat(kept)


def _round_up(x: int, m: int, cap: int) -> int:
    return min(cap, -(-x // m) * m)


def _group_amounts(g, roots, amounts) -> dict:
    if not isinstance(amounts, dict):
        return {r: amounts for r in roots}
    out = {}
    for path, a in amounts.items():
        spaces = g.producers.get(path)
        if not spaces:
            module = g.model.get_submodule(path)
            raise ValueError(f"amount names {path!r} (a {type(module).__name__}), which outputs no units")
        root = spaces[0].root()
        if root in out and out[root] != a:
            other = next(p for p, s in g.producers.items() if s and s[0].root() is root and p in amounts)
            raise ValueError(f"amount gives {other!r} and {path!r} different shares, but their units "
                             f"are removed together")
        out[root] = a
    return {r: a for r, a in out.items() if r in roots}


def _plan(g, amounts, *, importance, scope, round_to, restrict, attention):
    internal = {id(s.root()) for site in g.attention for s in (site.heads, site.head_dims)}
    roots = [r for r in g.roots() if not r.pins and r.size > 1 and id(r) not in internal
             and any(g.is_param[m[0]] for m in r.members) and (restrict is None or r in restrict)]
    shares = {r: a for r, a in _group_amounts(g, roots, amounts).items() if a > 0}
    cache: dict = {}
    scores = {r: unit_scores(g, r, importance, cache) for r in shares}
    keep = {}
    if scope == "layer":
        # (the tolerance keeps a step's share, computed in floats, from missing a whole unit)
        keep = {r: r.size - int(a * r.size + 1e-9) for r, a in shares.items()}
    elif shares:
        share = next(iter(shares.values()))
        norm = [scores[r] / scores[r].mean() if scores[r].mean() > 0 else scores[r] for r in shares]
        owner = torch.cat([torch.full((r.size,), i) for i, r in enumerate(shares)])
        drop = torch.sort(torch.cat(norm), stable=True).indices[:int(share * len(owner))]
        counts = torch.bincount(owner[drop], minlength=len(shares))
        keep = {r: max(1, r.size - int(c)) for r, c in zip(shares, counts)}
    multiple = {r: math.lcm(round_to, r.blocks) for r in g.roots()}
    keep = {r: _round_up(k, multiple[r], r.size) for r, k in keep.items()}
    sites = [s for s in g.attention if s.query is not None]
    counts = tie_sizes(sites, keep, multiple, attention)
    kept = {r: _top(scores[r], k, r.blocks) for r, k in keep.items() if k < r.size}
    inside = {}
    for s in g.attention:
        n_heads, n_dims = counts.get(s.path, (s.module.num_heads, s.module.head_dim))
        inside[s.path] = tuple(
            torch.arange(space.size) if k == space.size
            else _top(unit_scores(g, space.root(), importance, cache), k, 1)
            for space, k in ((s.heads, n_heads), (s.head_dims, n_dims)))
    return kept, inside


def _prune_once(model, amounts, *, example_inputs, importance, scope, round_to, protected, consumers,
                attention):
    g = trace_graph(model, example_inputs)
    for path in protected:
        spaces = g.producers.get(path)
        if not spaces:
            raise ValueError(f"protect names {path!r} (a {type(g.model.get_submodule(path)).__name__}), "
                             f"which outputs no units")
        for s in spaces:
            s.pin(f"protected {path!r}")
    restrict = None if consumers is None else _restricted(g, consumers)
    kept, inside = _plan(g, amounts, importance=importance, scope=scope, round_to=round_to,
                         restrict=restrict, attention=attention)
    wanted = any(a > 0 for a in amounts.values()) if isinstance(amounts, dict) else amounts > 0
    if wanted and not kept:
        warnings.warn(f"prune_units removed nothing: {_why_nothing(g, round_to)}", PruningWarning,
                      stacklevel=3)
    return shrink(g, kept, inside)


def _why_nothing(g, round_to: int) -> str:
    groups = [r for r in g.roots() if any(g.is_param[m[0]] for m in r.members)]
    pinned = [r for r in groups if r.pins]
    reasons = sorted({r.pins[0] for r in pinned})
    text = f"{len(pinned)} of {len(groups)} groups are pinned ({'; '.join(reasons[:3])})"
    small = [r for r in groups if not r.pins and r.size <= round_to]
    if small:
        text += f", {len(small)} have no more than round_to={round_to} units"
    return text + " and the rest lose no unit at this amount"
