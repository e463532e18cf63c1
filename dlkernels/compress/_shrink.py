"""Build the smaller copy: cut every member tensor, then fix the modules' size attributes.

The copy is made by ``copy.deepcopy`` with the cut tensors already in its
memo, so tensors that shrink are never copied at full size and a parameter
shared by two modules (tied weights) stays shared.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dlkernels.compress._attention import cut_attention, resize_attention

__all__ = ["shrink", "kept_count"]


def kept_count(layout, kept: dict, size: int) -> int:
    """Entries left along a dimension laid out as ``layout`` (``size`` entries when fixed)."""
    if layout is None:
        return size
    return sum(s.extent if s.space is None or s.space.root() not in kept
               else s.outer * len(kept[s.space.root()]) * s.inner for s in layout)


def _positions(layout, kept: dict) -> torch.Tensor:
    parts, offset = [], 0
    for s in layout:
        root = None if s.space is None else s.space.root()
        if root is None or root not in kept:
            parts.append(torch.arange(offset, offset + s.extent))
        else:
            k = kept[root]
            pos = (torch.arange(s.outer)[:, None, None] * (s.n * s.inner) + k[None, :, None] * s.inner
                   + torch.arange(s.inner)[None, None, :])
            parts.append(offset + pos.reshape(-1))
        offset += s.extent
    return torch.cat(parts)


def _cut(layout, kept: dict) -> bool:
    return layout is not None and any(s.space is not None and s.space.root() in kept for s in layout)


def _grouped_columns(w: torch.Tensor, groups: int, kept_in: torch.Tensor, n_in: int) -> torch.Tensor:
    """Keep, for the rows of each group, the input columns of that group's kept channels."""
    per_group = n_in // groups
    cols = kept_in.reshape(groups, -1) - torch.arange(groups)[:, None] * per_group  # (groups, kept/group)
    rows_per_group = w.shape[0] // groups
    index = cols.repeat_interleave(rows_per_group, dim=0).to(w.device)
    index = index.reshape(index.shape + (1,) * (w.ndim - 2)).expand(-1, -1, *w.shape[2:])
    return torch.gather(w, 1, index)


def cut_tensors(g, kept: dict, inside: dict) -> dict:
    """Tensor name -> its cut version, for every tensor that loses entries."""
    new: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for (key, dim), layout in g.bound.items():
            if _cut(layout, kept):
                t = new.get(key, g.tensors[key])
                new[key] = t.index_select(dim, _positions(layout, kept).to(t.device))
        for key, (groups, space) in g.grouped.items():
            root = space.root()
            if root in kept:
                new[key] = _grouped_columns(new.get(key, g.tensors[key]), groups, kept[root], root.size)
        cut_attention(g, inside, new)
        # prune_magnitude's masks follow their weights.
        for path, module in g.model.named_modules():
            mask, w = module._buffers.get("weight_mask"), module._parameters.get("weight")
            if mask is not None and w is not None and g.key_of.get(id(w)) in new:
                key, mask_key = g.key_of[id(w)], g.key_of[id(mask)]
                for d in range(w.ndim):
                    layout = g.bound.get((key, d))
                    if _cut(layout, kept):
                        mask = mask.index_select(d, _positions(layout, kept).to(mask.device))
                new[mask_key] = mask
    return new


def shrink(g, kept: dict, inside: dict) -> nn.Module:
    """A copy of ``g.model`` without the units not in ``kept`` (root space -> kept indices)."""
    new = cut_tensors(g, kept, inside)
    memo = {}
    for key, t in new.items():
        old = g.tensors[key]
        memo[id(old)] = nn.Parameter(t, requires_grad=old.requires_grad) if g.is_param[key] else t
    small = copy.deepcopy(g.model, memo)
    for path, module in small.named_modules():
        _resize(g, path, module, kept)
    resize_attention(g, small, inside)
    return small


def _resize(g, path: str, m: nn.Module, kept: dict) -> None:
    """Set the size attributes of a module of the copy from its tensors and recorded layouts."""
    w = m._parameters.get("weight")
    if isinstance(m, nn.Linear) and w is not None:
        m.out_features, m.in_features = w.shape
    elif isinstance(m, nn.modules.conv._ConvNd) and w is not None:
        if path in g.depthwise:
            mult = g.depthwise[path]
            m.in_channels = w.shape[0] if m.transposed else w.shape[0] // mult
            m.groups, m.out_channels = m.in_channels, m.in_channels * mult
        elif m.transposed:
            m.in_channels, m.out_channels = w.shape[0], w.shape[1] * m.groups
        else:
            m.out_channels, m.in_channels = w.shape[0], w.shape[1] * m.groups
    elif isinstance(m, nn.Embedding) and w is not None:
        m.num_embeddings, m.embedding_dim = w.shape
    elif isinstance(m, nn.PReLU) and w is not None:
        m.num_parameters = w.numel()
    elif path in g.norm_shapes:
        layouts = g.norm_shapes[path]
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
            m.num_features = kept_count(layouts[0], kept, m.num_features)
        elif isinstance(m, nn.GroupNorm):
            m.num_channels = kept_count(layouts[0], kept, m.num_channels)
        elif hasattr(m, "normalized_shape"):
            m.normalized_shape = tuple(kept_count(lay, kept, size)
                                       for lay, size in zip(layouts, m.normalized_shape))
