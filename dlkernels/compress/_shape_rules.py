"""How shape and element-wise operations move units from their inputs to their outputs.

Element-wise operations couple the units of their operands; views, permutes,
concatenations and splits move them between dimensions and positions;
pooling keeps them. Operations that need every unit of a dimension (a
softmax or a sum over channels, indexing a channel, a matrix product over
them) *pin* the units there: they are never removed, and the result stays
exact. Each rule takes the graph and an :class:`~dlkernels.compress._values.Op`
whose arguments are Values/ParamRefs, and returns the result the same way.
"""

from __future__ import annotations

from dlkernels.compress._layouts import (UngroupableError, fixed, merge_dims, normal, pin_all, split_dim,
                                         unify)
from dlkernels.compress._values import ParamRef, TensorMeta, Value, tensors_in, val


def _dims(d, ndim: int) -> list[int]:
    if d is None:
        return list(range(ndim))
    d = [d] if isinstance(d, int) else list(d)
    return [i % ndim for i in d] if d else list(range(ndim))


def unary(g, op):
    x = val(g, op.args[0])
    if isinstance(op.out, tuple):  # e.g. native_dropout: (output, mask)
        return tuple(Value(o.shape, list(x.layouts)) for o in op.out)
    return Value(op.out.shape, list(x.layouts))


def elementwise(g, op):
    shape = op.out.shape
    layouts, seen = [None] * len(shape), [False] * len(shape)
    for t in tensors_in(op.args) + tensors_in(op.kwargs):
        v = val(g, t)
        off = len(shape) - v.ndim
        for d, size in enumerate(v.shape):
            if size == 1 and shape[d + off] != 1:
                continue  # broadcast: one value for every unit
            lay = v.layouts[d]
            layouts[d + off] = unify(layouts[d + off], lay, op.where) if seen[d + off] else lay
            seen[d + off] = True
    return Value(shape, layouts)


def along(pos: int, default):
    """softmax, cumsum, normalize...: every unit of ``dim`` enters every output there."""
    def rule(g, op):
        x = val(g, op.args[0])
        for d in _dims(op.arg(pos, "dim", default), x.ndim):
            pin_all(x.layouts[d], f"{op.where} mixes units")
        return Value(op.out.shape, list(x.layouts))
    return rule


def reduction(pos: int = 1):
    def rule(g, op):
        x = val(g, op.args[0])
        other = op.arg(1, "other")
        if isinstance(other, (Value, ParamRef)):   # torch.max(a, b) is element-wise
            return elementwise(g, op)
        dims = _dims(op.arg(pos, "dim"), x.ndim) if x.ndim else []
        for d in dims:
            pin_all(x.layouts[d], f"{op.where} reduces over units")
        outs = op.out if isinstance(op.out, tuple) else (op.out,)
        keep = len(outs[0].shape) == x.ndim
        layouts = [None if d in dims else lay for d, lay in enumerate(x.layouts) if keep or d not in dims]
        res = [Value(o.shape, list(layouts)) if isinstance(o, TensorMeta) else o for o in outs]
        return tuple(res) if isinstance(op.out, tuple) else res[0]
    return rule


# -- shapes ----------------------------------------------------------------------------------
def reshape_layouts(in_shape, in_layouts, out_shape, why):
    out = [None] * len(out_shape)
    if 0 in in_shape:
        return out
    for i, size in enumerate(in_shape):
        if size == 1:
            pin_all(in_layouts[i], why)
    ins = [i for i, s in enumerate(in_shape) if s != 1]
    outs = [j for j, s in enumerate(out_shape) if s != 1]
    i = j = 0
    while i < len(ins):
        gi, gj = [ins[i]], [outs[j]]
        pi, pj = in_shape[ins[i]], out_shape[outs[j]]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                gi.append(ins[i])
                pi, i = pi * in_shape[ins[i]], i + 1
            else:
                gj.append(outs[j])
                pj, j = pj * out_shape[outs[j]], j + 1
        merged = merge_dims([in_shape[k] for k in gi], [in_layouts[k] for k in gi], why)
        for k, lay in zip(gj, split_dim(merged, [out_shape[k] for k in gj], why)):
            out[k] = lay
    return out


def reshape(g, op):
    x = val(g, op.args[0])
    return Value(op.out.shape, reshape_layouts(x.shape, x.layouts, op.out.shape, op.where))


def _flat_ints(args) -> list[int]:
    out = []
    for a in args:
        out += _flat_ints(a) if isinstance(a, (tuple, list)) else [a]
    return out


def permute(g, op):
    x = val(g, op.args[0])
    dims = _flat_ints(op.args[1:]) or _flat_ints([op.kwargs.get("dims", ())])
    return Value(op.out.shape, [x.layouts[d % x.ndim] for d in dims])


def transpose(g, op):
    x = val(g, op.args[0])
    layouts = list(x.layouts)
    if op.name in ("t", "aten.t") or x.ndim < 2:
        a, b = (0, 1) if x.ndim == 2 else (0, 0)
    else:
        a, b = op.arg(1, "dim0") % x.ndim, op.arg(2, "dim1") % x.ndim
    layouts[a], layouts[b] = layouts[b], layouts[a]
    return Value(op.out.shape, layouts)


def movedim(g, op):
    x = val(g, op.args[0])
    src, dst = _dims(op.arg(1, "source"), x.ndim), _dims(op.arg(2, "destination"), x.ndim)
    order = [None] * x.ndim
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(x.ndim) if i not in src)
    order = [o if o is not None else next(rest) for o in order]
    return Value(op.out.shape, [x.layouts[o] for o in order])


def expand(g, op):
    x = val(g, op.args[0])
    shape = op.out.shape
    off = len(shape) - x.ndim
    layouts = [None] * len(shape)
    for d, size in enumerate(x.shape):
        if size == shape[d + off]:
            layouts[d + off] = x.layouts[d]
        else:
            pin_all(x.layouts[d], f"{op.where} repeats units")
    return Value(shape, layouts)


def cat(g, op):
    items = [val(g, t) for t in op.arg(0, "tensors")]
    items = [t for t in items if t.shape != (0,)]  # torch.cat skips empty 1-D tensors
    dim = op.arg(1, "dim", 0) % len(op.out.shape)
    layouts = []
    for d in range(len(op.out.shape)):
        if d == dim:
            segs = []
            for t in items:
                segs += list(t.layouts[d] or fixed(t.shape[d]) if t.shape[d] else ())
            layouts.append(normal(segs))
        else:
            lay = items[0].layouts[d]
            for t in items[1:]:
                lay = unify(lay, t.layouts[d], op.where)
            layouts.append(lay)
    return Value(op.out.shape, layouts)


def stack(g, op):
    items = [val(g, t) for t in op.arg(0, "tensors")]
    dim = op.arg(1, "dim", 0) % len(op.out.shape)
    layouts = list(items[0].layouts)
    for t in items[1:]:
        layouts = [unify(a, b, op.where) for a, b in zip(layouts, t.layouts)]
    return Value(op.out.shape, layouts[:dim] + [None] + layouts[dim:])


def split(pos: int):
    """split, chunk, unbind...: pieces that hold whole concatenated parts keep their units."""
    def rule(g, op):
        x = val(g, op.args[0])
        dim = op.arg(pos, "dim", 0) % x.ndim
        pieces = list(op.out)
        lay = x.layouts[dim]
        dropped = len(pieces[0].shape) < x.ndim
        parts = _whole_parts(lay, [p.shape[dim] for p in pieces]) if lay and not dropped else None
        if lay is not None and parts is None:
            pin_all(lay, f"{op.where} takes part of the units")
        out = []
        for k, p in enumerate(pieces):
            layouts = list(x.layouts)
            if dropped:
                del layouts[dim]
            else:
                layouts[dim] = parts[k] if parts else None
            out.append(Value(p.shape, layouts))
        return tuple(out)
    return rule


def _whole_parts(layout, sizes):
    parts, segs = [], list(layout)
    for size in sizes:
        part = []
        while size > 0 and segs:
            part.append(segs.pop(0))
            size -= part[-1].extent
        if size != 0:
            return None
        parts.append(normal(part))
    return parts


def getitem(g, op):
    obj, idx = op.args[0], op.args[1]
    if isinstance(obj, (tuple, list)):
        return obj[idx]
    x = val(g, obj)
    idx = idx if isinstance(idx, tuple) else (idx,)
    why = f"{op.where} indexes units"
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    layouts, d = [], 0
    for item in idx:
        if item is Ellipsis:
            k = x.ndim - n_real
            layouts += x.layouts[d:d + k]
            d += k
        elif item is None:
            layouts.append(None)
        elif isinstance(item, slice) and item.indices(x.shape[d]) == (0, x.shape[d], 1):
            layouts.append(x.layouts[d])
            d += 1
        elif isinstance(item, (slice, int)):
            pin_all(x.layouts[d], why)
            if isinstance(item, slice):
                layouts.append(None)
            d += 1
        else:  # advanced indexing with tensors or lists
            for lay in x.layouts:
                pin_all(lay, why)
            return Value.fixed(op.out.shape)
    layouts += x.layouts[d:]
    return Value(op.out.shape, layouts)


def select(g, op):
    x = val(g, op.args[0])
    dim = op.arg(1, "dim") % x.ndim
    pin_all(x.layouts[dim], f"{op.where} indexes units")
    return Value(op.out.shape, x.layouts[:dim] + x.layouts[dim + 1:])


def narrow(g, op):
    x = val(g, op.args[0])
    dim = op.arg(1, "dim", 0) % x.ndim
    layouts = list(x.layouts)
    if op.out.shape[dim] != x.shape[dim]:
        pin_all(layouts[dim], f"{op.where} takes part of the units")
        layouts[dim] = None
    return Value(op.out.shape, layouts)


def index_select(g, op):
    x = val(g, op.args[0])
    dim = op.arg(1, "dim") % x.ndim
    pin_all(x.layouts[dim], f"{op.where} indexes units")
    layouts = list(x.layouts)
    layouts[dim] = None
    return Value(op.out.shape, layouts)


def spatial(k: int | None):
    """Pooling, interpolation: the last ``k`` dimensions are positions, never units."""
    def rule(g, op):
        x = val(g, op.args[0])
        n = k if k is not None else x.ndim - 2
        for d in range(x.ndim - n, x.ndim):
            if x.layouts[d] is not None:
                raise UngroupableError(f"{op.where}: pools or resamples over a dimension of units")
        layouts = list(x.layouts)
        outs = op.out if isinstance(op.out, tuple) else (op.out,)
        res = tuple(Value(o.shape, list(layouts)) for o in outs)
        return res if isinstance(op.out, tuple) else res[0]
    return rule


def pad(g, op):
    x = val(g, op.args[0])
    widths = op.arg(1, "pad")
    layouts = list(x.layouts)
    for t in range(len(widths) // 2):
        d = x.ndim - 1 - t
        if widths[2 * t] or widths[2 * t + 1]:
            pin_all(layouts[d], f"{op.where} pads units")
            layouts[d] = None
    return Value(op.out.shape, layouts)


def matmul(g, op):
    a, b = op.args[0], op.args[1]
    if isinstance(b, ParamRef) and b.ndim == 2 and not isinstance(a, ParamRef):
        x = val(g, a)
        g.bind(b, 0, x.layouts[-1], op.where)
        out = g.produce(b, 1)
        g.produced(g.owner[b.key], out)
        return Value(op.out.shape, x.layouts[:-1] + [out])
    va, vb = val(g, a), val(g, b)
    if va.ndim < 2 or vb.ndim < 2:
        for lay in va.layouts + vb.layouts:
            pin_all(lay, f"{op.where} contracts units")
        return Value.fixed(op.out.shape)
    pin_all(va.layouts[-1], f"{op.where} contracts units")
    pin_all(vb.layouts[-2], f"{op.where} contracts units")
    batch = [None] * (len(op.out.shape) - 2)
    for v in (va, vb):
        off = len(batch) - (v.ndim - 2)
        for d in range(v.ndim - 2):
            if v.shape[d] != 1:
                lay = v.layouts[d]
                batch[d + off] = unify(batch[d + off], lay, op.where) if batch[d + off] else lay
    return Value(op.out.shape, batch + [va.layouts[-2], vb.layouts[-1]])


def sdpa(g, op):
    q, k, v = (val(g, t) for t in op.args[:3])
    for t, d in ((q, -1), (k, -1), (k, -2), (v, -2)):
        pin_all(t.layouts[d], f"{op.where} contracts units")
    return Value(op.out.shape, q.layouts[:-1] + [v.layouts[-1]])


# -- layers ----------------------------------------------------------------------------------
