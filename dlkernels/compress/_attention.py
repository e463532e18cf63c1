"""``nn.MultiheadAttention``: its units, their sizes, and the smaller module.

Inside the module the ``embed_dim`` projections are laid out as ``num_heads``
heads of ``head_dim`` dimensions. Two spaces describe them: the heads (whole
heads removed) and the head dimensions (the same dimensions removed from
every head, in the queries, keys and values alike). The module ties three
sizes together: its query features, its output features and
``heads * head_dim`` must stay equal, so the query's and the output's groups
keep the same number of units and the inside follows that number, losing
whole heads (``attention="heads"``) or head dimensions (``"head_dims"``).

With head dimensions removed the module scales its queries by
``sqrt(kept / head_dim)``, so that each remaining score is the same
``q . k / sqrt(head_dim)`` it was: outputs equal the original's with the
removed dimensions masked.
"""

from __future__ import annotations

import math

import torch

from dlkernels.compress._layouts import UngroupableError, pin_all
from dlkernels.compress._values import Value, val
from dlkernels.compress.depgraph import AttentionSite

__all__ = ["attention", "tie_sizes", "cut_attention", "resize_attention"]


def _projections(g, m):
    """(reference, rows laid out as [q|k|v] blocks?) of the input projections."""
    if m._qkv_same_embed_dim:
        return [(g.ref_of(m, "in_proj_weight"), 3)]
    return [(g.ref_of(m, a), 1) for a in ("q_proj_weight", "k_proj_weight", "v_proj_weight")]


def _register(g, path, m):
    owner = f"the attention {path!r}"
    H, d = m.num_heads, m.head_dim
    heads, dims = g.new_space(H), g.new_space(d)
    rows = _projections(g, m) + [(g.ref_of(m, "in_proj_bias"), 3)]
    for ref, blocks in rows:
        if ref is None:
            continue
        g.manage(ref, 0, owner)
        heads.members.append((ref.key, 0, 0, blocks, d))
        dims.members.append((ref.key, 0, 0, blocks * H, 1))
    out_w = g.ref_of(m.out_proj, "weight")
    g.manage(out_w, 1, owner)
    heads.members.append((out_w.key, 1, 0, 1, d))
    dims.members.append((out_w.key, 1, 0, H, 1))
    site = AttentionSite(path, m, None, None, heads, dims)
    g.attention.append(site)
    g.producers.setdefault(path, []).extend([heads, dims])
    return site


def attention(g, op, m):
    """The rule for a call of ``nn.MultiheadAttention`` (query, key, value, ...)."""
    if m.bias_k is not None or m.bias_v is not None:
        raise UngroupableError(f"{op.where}: add_bias_kv=True is not supported")
    q, k, v = (val(g, op.arg(i, n)) for i, n in enumerate(("query", "key", "value")))
    site = next((s for s in g.attention if s.path == op.path), None) or _register(g, op.path, m)
    projections = _projections(g, m)
    if len(projections) == 1:
        for x in (q, k, v):
            g.bind(projections[0][0], 1, x.layouts[-1], op.where)
    else:
        for (ref, _), x in zip(projections, (q, k, v)):
            g.bind(ref, 1, x.layouts[-1], op.where)
    out = g.produce(g.ref_of(m.out_proj, "weight"), 0)
    g.bind(g.ref_of(m.out_proj, "bias"), 0, out, op.where)
    g.produced(op.path, out)
    lay = q.layouts[-1]
    if lay is not None and (len(lay) > 1 or lay[0].outer != 1 or lay[0].inner != 1):
        raise UngroupableError(f"{op.where}: the query's features are laid out in pieces")
    if lay is None:
        why = f"{op.where}: the query's features are fixed, and embed_dim must match them"
        pin_all(out, why)
        site.heads.pin(why)
        site.head_dims.pin(why)
    site.query, site.out = (lay[0].space if lay else None), out[0].space
    outs = op.out if isinstance(op.out, tuple) else (op.out, None)
    result = Value(outs[0].shape, q.layouts[:-1] + [out])
    weights = None if outs[1] is None else Value(outs[1].shape, [None] * len(outs[1].shape),
                                                 taint=[site.heads])
    return (result, weights)


def _round_up(x: int, m: int, cap: int) -> int:
    return min(cap, -(-x // m) * m)


def tie_sizes(sites, keep: dict, multiple: dict, mode: str) -> dict:
    """Make each attention's query and output groups keep equal, head-aligned counts.

    ``keep`` maps a root space to its kept count (changed in place);
    ``multiple`` maps it to the multiple its count must be. Returns, per
    site, the (heads, head dims) kept inside.
    """
    changed = True
    while changed:
        changed = False
        for s in sites:
            E, H, d = s.module.embed_dim, s.module.num_heads, s.module.head_dim
            q, o = s.query.root(), s.out.root()
            inside = s.heads.root() if mode == "heads" else s.head_dims.root()
            if q.pins or o.pins or inside.pins:
                e = E
            else:
                step = math.lcm(d if mode == "heads" else H, multiple.get(q, 1), multiple.get(o, 1))
                e = _round_up(max(keep.get(q, E), keep.get(o, E)), step, E)
            for r in (q, o):
                if keep.get(r, r.size) != e:
                    keep[r], changed = e, True
    inside = {}
    for s in sites:
        e, H, d = keep.get(s.query.root(), s.module.embed_dim), s.module.num_heads, s.module.head_dim
        inside[s.path] = (e // d, d) if mode == "heads" else (H, e // H)
    return inside


def cut_attention(g, inside: dict, new: dict) -> None:
    """Cut the projections' head rows and columns into ``new`` (tensor name -> cut tensor).

    ``inside`` maps an attention's path to its kept (heads, head dims);
    ``new`` already holds the input columns and output rows, cut as ordinary
    members of the query's and output's groups.
    """
    for s in g.attention:
        heads, dims = inside[s.path]
        m = s.module
        d = m.head_dim
        E = m.num_heads * d
        rows = (heads[:, None] * d + dims[None, :]).reshape(-1)
        if len(rows) == E:
            continue
        scale = math.sqrt(len(dims) / d)
        for attr, blocks, queries in (("in_proj_weight", 3, True), ("in_proj_bias", 3, True),
                                      ("q_proj_weight", 1, True), ("k_proj_weight", 1, False),
                                      ("v_proj_weight", 1, False)):
            p = getattr(m, attr)
            if p is None:
                continue
            key = g.key_of[id(p)]
            src = new.get(key, p.detach())
            t = src.index_select(0, torch.cat([rows + b * E for b in range(blocks)]).to(src.device))
            if queries:  # the queries come first: rescale them so every score keeps its value
                t[:len(rows)] *= scale
            new[key] = t
        key = g.key_of[id(m.out_proj.weight)]
        src = new.get(key, m.out_proj.weight.detach())
        new[key] = src.index_select(1, rows.to(src.device))


def resize_attention(g, small, inside: dict) -> None:
    """Set the size attributes of the copy's attention modules."""
    for s in g.attention:
        heads, dims = inside[s.path]
        m = small.get_submodule(s.path)
        m.num_heads, m.head_dim = len(heads), len(dims)
        m.embed_dim = m.num_heads * m.head_dim
        if m._qkv_same_embed_dim:
            m.kdim = m.vdim = m.in_proj_weight.shape[1]
        else:
            m.kdim, m.vdim = m.k_proj_weight.shape[1], m.v_proj_weight.shape[1]
