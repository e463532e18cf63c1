"""A brute-force reference for structural pruning: rank units, then mask them in the original.

Everything here works from the public description of a group
(:class:`dlkernels.compress.UnitGroup` and its members) and the original
model's tensors, never from what ``prune_units`` built: which units go is
recomputed (L1 norm of every entry a unit owns), and the reference model is
the original with those entries set to zero. LayerNorm and GroupNorm layers
of the reference normalize over the entries that stay, as the pruned layers
do.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F


def member_mask(tensor: torch.Tensor, member, size: int, unit: int) -> torch.Tensor:
    """Bool mask of the entries of ``tensor`` that unit ``unit`` owns through ``member``."""
    mask = torch.zeros(tensor.shape, dtype=torch.bool)
    if member.groups > 1:
        per, rows = size // member.groups, tensor.shape[0] // member.groups
        block = unit // per
        mask[block * rows:(block + 1) * rows, unit % per] = True
        return mask
    positions = [member.offset + (o * size + unit) * member.inner + i
                 for o in range(member.outer) for i in range(member.inner)]
    index = [slice(None)] * tensor.ndim
    index[member.dim] = positions
    mask[tuple(index)] = True
    return mask


def unit_entries(tensor: torch.Tensor, member, size: int, unit: int) -> torch.Tensor:
    """The entries of ``tensor`` that unit ``unit`` owns through ``member`` (what member_mask marks)."""
    if member.groups > 1:
        return tensor[member_mask(tensor, member, size, unit)]
    positions = [member.offset + (o * size + unit) * member.inner + i
                 for o in range(member.outer) for i in range(member.inner)]
    return tensor.index_select(member.dim, torch.tensor(positions))


def scores(model, group, kind: str = "l1") -> torch.Tensor:
    """Brute force: each unit's importance from every entry it owns (see prune_units)."""
    params = dict(model.named_parameters())
    total = torch.zeros(group.size, dtype=torch.float64)
    for m in group.members:
        if m.tensor not in params:
            continue
        owner, _, attr = m.tensor.rpartition(".")
        is_norm = isinstance(model.get_submodule(owner), (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm,
                                                          nn.GroupNorm))
        if kind == "bn" and not (is_norm and attr == "weight"):
            continue
        t = params[m.tensor].detach().double()
        if kind == "taylor":
            t = t * params[m.tensor].grad.double()
        for u in range(group.size):
            x = unit_entries(t, m, group.size, u)
            total[u] += (x * x).sum() if kind == "l2" else x.sum() if kind == "taylor" else x.abs().sum()
    return total.sqrt() if kind == "l2" else total.abs()


def lowest(values: torch.Tensor, k: int, blocks: int = 1) -> list[int]:
    """The ``k`` units of lowest value, ``k / blocks`` from each block."""
    per, kb = len(values) // blocks, k // blocks
    out = []
    for b in range(blocks):
        out += sorted(int(i) + b * per for i in torch.argsort(values[b * per:(b + 1) * per])[:kb])
    return out


def removed_units(model, group, keep: int, kind: str = "l1") -> list[int]:
    """The ``size - keep`` units of lowest importance (per block when the group has blocks)."""
    return lowest(scores(model, group, kind), group.size - keep, group.blocks)


class MaskedLayerNorm(nn.Module):
    """LayerNorm over the last dimension's kept entries only (the others pass through)."""

    def __init__(self, ln: nn.LayerNorm, keep: torch.Tensor):
        super().__init__()
        self.ln, self.keep, self.eps = ln, keep, ln.eps  # TransformerEncoderLayer reads eps

    def forward(self, x):
        y = x.clone()
        w = None if self.ln.weight is None else self.ln.weight[self.keep]
        b = None if self.ln.bias is None else self.ln.bias[self.keep]
        y[..., self.keep] = F.layer_norm(x[..., self.keep], (len(self.keep),), w, b, self.ln.eps)
        return y


class MaskedGroupNorm(nn.Module):
    def __init__(self, gn: nn.GroupNorm, keep: torch.Tensor):
        super().__init__()
        self.gn, self.keep = gn, keep

    def forward(self, x):
        y = x.clone()
        w = None if self.gn.weight is None else self.gn.weight[self.keep]
        b = None if self.gn.bias is None else self.gn.bias[self.keep]
        y[:, self.keep] = F.group_norm(x[:, self.keep], self.gn.num_groups, w, b, self.gn.eps)
        return y


def masked_copy(model, groups, removed: dict):
    """The original with every entry owned by a removed unit set to zero.

    ``removed``: group index -> list of removed units.
    """
    masked = copy.deepcopy(model)
    params = dict(masked.named_parameters())
    norm_drop: dict[str, set] = {}
    with torch.no_grad():
        for gi, units in removed.items():
            group = groups[gi]
            for m in group.members:
                if m.tensor in params:
                    t = params[m.tensor]
                    for u in units:
                        t[member_mask(t, m, group.size, u)] = 0
                owner, _, attr = m.tensor.rpartition(".")
                module = masked.get_submodule(owner)
                if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) and attr == "weight":
                    for u in units:
                        norm_drop.setdefault(owner, set()).update(
                            int(i) for i in member_mask(t, m, group.size, u).nonzero()[:, 0])
    for owner, drop in norm_drop.items():
        module = masked.get_submodule(owner)
        n = module.weight.shape[0]
        keep = torch.tensor([i for i in range(n) if i not in drop])
        masking = MaskedLayerNorm if isinstance(module, nn.LayerNorm) else MaskedGroupNorm
        wrapper = masking(module, keep)
        parent, _, child = owner.rpartition(".")
        setattr(masked.get_submodule(parent) if parent else masked, child, wrapper)
    return masked


def kept_positions(model, groups, removed: dict) -> dict:
    """``{(tensor, dim): kept positions}`` for every tensor dimension that loses entries."""
    shapes = {n: t.shape for n, t in model.state_dict().items()}
    drop: dict = {}
    for gi, units in removed.items():
        group = groups[gi]
        for m in group.members:
            if m.groups > 1:
                continue
            for u in units:
                for o in range(m.outer):
                    for i in range(m.inner):
                        position = m.offset + (o * group.size + u) * m.inner + i
                        drop.setdefault((m.tensor, m.dim), set()).add(position)
    return {key: [p for p in range(shapes[key[0]][key[1]]) if p not in d] for key, d in drop.items()}


def attention_counts(model, groups, keep: dict, mode: str) -> None:
    """Apply the attention size rule to ``keep`` (group index -> kept units), in place.

    ``nn.MultiheadAttention`` keeps its query and output groups at one size
    ``E'``, rounded up to whole heads (``mode="heads"``) or to a multiple of
    the head count (``"head_dims"``); inside it keeps ``E' / head_dim`` heads
    or ``E' / num_heads`` dimensions.
    """
    def find(tensor, dim, **attrs):
        for gi, g in enumerate(groups):
            for m in g.members:
                if m.tensor == tensor and m.dim == dim and all(getattr(m, k) == v for k, v in attrs.items()):
                    return gi
        return None

    for _ in range(3):  # attention layers sharing a residual stream settle in a few rounds
        for name, mha in model.named_modules():
            if not isinstance(mha, nn.MultiheadAttention):
                continue
            E, H, d = mha.embed_dim, mha.num_heads, mha.head_dim
            proj = f"{name}.in_proj_weight" if mha._qkv_same_embed_dim else f"{name}.q_proj_weight"
            blocks = 3 if mha._qkv_same_embed_dim else 1
            q, o = find(proj, 1), find(f"{name}.out_proj.weight", 0)
            heads, dims = find(proj, 0, inner=d, outer=blocks), find(proj, 0, inner=1, outer=blocks * H)
            step = d if mode == "heads" else H
            e = max(E if groups[q].pinned else keep.get(q, E), E if groups[o].pinned else keep.get(o, E))
            e = min(E, -(-e // step) * step)
            keep[q] = keep[o] = e
            keep[heads], keep[dims] = (e // d, d) if mode == "heads" else (H, e // H)


def assert_exact(model, x, amount=0.5, *, attention="heads", kind="l1", rtol=1e-5, atol=1e-5, **kwargs):
    """Prune with ``round_to=1`` and compare with the brute-force reference; return the small model.

    Checks that the units removed are the lowest-ranked ones, that every
    remaining tensor holds exactly the original's kept entries (the queries
    of attention with head dimensions removed are rescaled, so those are
    compared through the outputs only), and that the outputs equal the
    masked original's.
    """
    from dlkernels.compress import prune_units, unit_groups

    inputs = x if isinstance(x, tuple) else (x,)
    groups = unit_groups(model, example_inputs=inputs)
    small = prune_units(model, amount, example_inputs=inputs, round_to=1, attention=attention,
                        importance=kind, **kwargs)
    params = dict(model.named_parameters())
    keep = {gi: g.size - int(amount * g.size) for gi, g in enumerate(groups)
            if not g.pinned and any(m.tensor in params for m in g.members)}
    attention_counts(model, groups, keep, attention)
    removed = {gi: removed_units(model, groups[gi], k, kind) for gi, k in keep.items()
               if k < groups[gi].size}
    positions = kept_positions(model, groups, removed)
    original, pruned = model.state_dict(), small.state_dict()
    assert original.keys() == pruned.keys()
    grouped = {m.tensor for g in groups for m in g.members if m.groups > 1}
    for key, t in original.items():
        if key in grouped:   # cut per group of rows: checked through the outputs
            continue
        for d in range(t.ndim):
            if (key, d) in positions:
                t = t.index_select(d, torch.tensor(positions[(key, d)], dtype=torch.long))
        assert t.shape == pruned[key].shape, key
        queries = ("in_proj_weight", "in_proj_bias", "q_proj_weight")
        rescaled = attention == "head_dims" and key.endswith(queries)
        if not rescaled:
            torch.testing.assert_close(pruned[key], t, rtol=0, atol=0, msg=key)
    reference = masked_copy(model, groups, removed)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)   # torch's fused layers bypass the masked norms
    try:
        with torch.no_grad():
            expected, got = reference(*inputs), small(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)
    return small, groups, removed
