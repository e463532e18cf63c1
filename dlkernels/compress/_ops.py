"""How each traced operation moves units from its inputs to its outputs.

One rule per kind of operation, shared by the fx and export front ends
(their argument orders agree except where noted). A rule receives the
:class:`Op` with its arguments already turned into ``Value``/``ParamRef``
objects and returns the result the same way. Operations that need every
unit of a dimension (a softmax or a sum over channels, indexing a channel)
*pin* the units there: they are never removed, and the result stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dlkernels.compress._layouts import (Segment, UngroupableError, fixed, merge_dims, normal, pin_all,
                                         split_dim, unify)
from dlkernels.compress._values import ParamRef, TensorMeta, Value, tensors_in

__all__ = ["Op", "FUNCTIONS", "ATEN", "LEAF_TYPES", "module_rule"]


@dataclass
class Op:
    name: str
    args: tuple
    kwargs: dict
    out: object     # the recorded result: TensorMeta, a tuple of them, or a Python value
    path: str       # the module the operation runs in ("" for the model's own forward)

    @property
    def where(self) -> str:
        return f"{self.path or 'the model'!r} ({self.name})"

    def arg(self, i: int, name: str, default=None):
        if len(self.args) > i:
            return self.args[i]
        return self.kwargs.get(name, default)


def val(g, x) -> Value:
    return g.materialize(x) if isinstance(x, ParamRef) else x


def weight(x, op: Op, what: str = "weight") -> ParamRef | None:
    if x is None or isinstance(x, ParamRef):
        return x
    raise UngroupableError(f"{op.where}: the {what} is computed in the forward pass, not a parameter "
                           f"(quantized or reparametrized?)")


def _dims(d, ndim: int) -> list[int]:
    if d is None:
        return list(range(ndim))
    d = [d] if isinstance(d, int) else list(d)
    return [i % ndim for i in d] if d else list(range(ndim))


def _scaled(layout, m: int):
    """Each unit repeated ``m`` times in a row (a depthwise convolution's channel multiplier)."""
    return None if layout is None else tuple(Segment(s.space, s.outer, s.n, s.inner * m) for s in layout)


# -- element-wise ----------------------------------------------------------------------------
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
                batch[d + off] = unify(batch[d + off], v.layouts[d], op.where) if batch[d + off] else v.layouts[d]
    return Value(op.out.shape, batch + [va.layouts[-2], vb.layouts[-1]])


def sdpa(g, op):
    q, k, v = (val(g, t) for t in op.args[:3])
    for t, d in ((q, -1), (k, -1), (k, -2), (v, -2)):
        pin_all(t.layouts[d], f"{op.where} contracts units")
    return Value(op.out.shape, q.layouts[:-1] + [v.layouts[-1]])


# -- layers ----------------------------------------------------------------------------------
def linear(g, op):
    x = val(g, op.args[0])
    w, b = weight(op.arg(1, "weight"), op), weight(op.arg(2, "bias"), op, "bias")
    g.bind(w, 1, x.layouts[-1], op.where)
    out = g.produce(w, 0)
    g.bind(b, 0, out, op.where)
    g.produced(g.owner[w.key], out)
    return Value(op.out.shape, x.layouts[:-1] + [out])


def conv(g, op, transposed=False, groups_pos=6):
    x = val(g, op.args[0])
    w, b = weight(op.arg(1, "weight"), op), weight(op.arg(2, "bias"), op, "bias")
    groups = op.arg(groups_pos, "groups", 1)
    k = w.ndim - 2
    c = x.ndim - k - 1
    if any(lay is not None for lay in x.layouts[c + 1:]):
        raise UngroupableError(f"{op.where}: convolves over a dimension of units")
    lay, path = x.layouts[c], g.owner[w.key]
    in_per_group = w.shape[0] // groups if transposed else w.shape[1]
    if groups == 1:
        g.bind(w, 0 if transposed else 1, lay, op.where)
        out = g.produce(w, 1 if transposed else 0)
    elif in_per_group == 1:  # depthwise: output channel j reads input channel j // m
        m = w.shape[1] if transposed else w.shape[0] // groups
        out = _scaled(lay, m)
        g.bind(w, 0, lay if transposed else out, op.where)
        g.depthwise[path] = m
    elif transposed:
        raise UngroupableError(f"{op.where}: grouped transposed convolutions are not supported")
    else:
        out = g.produce(w, 0)
        g.manage(w, 1, f"the grouped convolution {path!r}")
        fits = lay is not None and len(lay) == 1 and lay[0].outer == 1 and lay[0].inner == 1
        if fits and lay[0].space.require_blocks(groups):
            g.grouped[w.key] = (groups, lay[0].space)
            lay[0].space.root().members.append((w.key, 1, 0, 1, 1))
        else:
            pin_all(lay, f"{op.where} reads units in groups it cannot keep apart")
        if not out[0].space.require_blocks(groups):
            out[0].space.pin(f"{op.where} has groups that cannot lose units equally")
    g.bind(b, 0, out, op.where)
    g.produced(path, out)
    return Value(op.out.shape, x.layouts[:c] + [out] + [None] * k)


def convolution(g, op):
    """aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)."""
    return conv(g, op, transposed=bool(op.arg(6, "transposed")), groups_pos=8)


def norm_channels(g, op, c: int, refs, path: str, blocks: int = 1):
    """BatchNorm, InstanceNorm, GroupNorm: per-channel parameters along dimension ``c``."""
    x = val(g, op.args[0])
    lay = x.layouts[c]
    if blocks > 1 and lay is not None:
        ok = len(lay) == 1 and lay[0].outer == 1 and lay[0].space.require_blocks(blocks)
        if not ok:
            pin_all(lay, f"{op.where} normalizes groups of units that cannot lose units equally")
    for ref in refs:
        g.bind(ref, 0, lay, op.where)
    g.produced(path, lay)
    g.norm_shapes[path] = [lay]
    return Value(op.out.shape, list(x.layouts))


def batch_norm(g, op):
    """F.batch_norm(input, running_mean, running_var, weight, bias, ...) and F.instance_norm."""
    refs = [weight(op.arg(i, n), op, n) for i, n in ((1, "running_mean"), (2, "running_var"),
                                                     (3, "weight"), (4, "bias"))]
    return norm_channels(g, op, 1, refs, op.path)


def group_norm(g, op):
    refs = [weight(op.arg(2, "weight"), op), weight(op.arg(3, "bias"), op, "bias")]
    return norm_channels(g, op, 1, refs, op.path, blocks=op.arg(1, "num_groups"))


def layer_norm(g, op):
    """layer_norm(input, normalized_shape, weight, bias) and rms_norm(input, shape, weight)."""
    x = val(g, op.args[0])
    k = len(op.arg(1, "normalized_shape"))
    refs = [weight(op.arg(2, "weight"), op)]
    if op.name.endswith("layer_norm"):
        refs.append(weight(op.arg(3, "bias"), op, "bias"))
    lays = x.layouts[x.ndim - k:]
    for t, lay in enumerate(lays):
        for ref in refs:
            g.bind(ref, t, lay, op.where)
        g.produced(op.path, lay)
    g.norm_shapes[op.path] = list(lays)
    return Value(op.out.shape, list(x.layouts))


def embedding(g, op, aten=False):
    """F.embedding(input, weight, padding_idx, max_norm, ...); aten.embedding(weight, input, ...)."""
    w = weight(op.args[0] if aten else op.arg(1, "weight"), op)
    idx = val(g, op.args[1] if aten else op.args[0])
    g.bind(w, 0, None, op.where)
    out = g.produce(w, 1)
    if not aten and op.arg(3, "max_norm") is not None:
        pin_all(out, f"{op.where} renormalizes rows (max_norm)")
    g.produced(g.owner[w.key], out)
    return Value(op.out.shape, list(idx.layouts) + [out])


def prelu(g, op):
    x = val(g, op.args[0])
    w = weight(op.arg(1, "weight"), op)
    if w.shape[0] == 1:
        g.bind(w, 0, None, op.where)
    else:
        g.bind(w, 0, x.layouts[1 if x.ndim > 1 else 0], op.where)
    return Value(op.out.shape, list(x.layouts))


# -- modules that fx keeps whole (their forward branches on tensor shapes) --------------------
def batch_norm_module(g, op, module):
    refs = [g.ref_of(module, a) for a in ("weight", "bias", "running_mean", "running_var")]
    spatial_dims = {"1d": 1, "2d": 2, "3d": 3}.get(type(module).__name__[-2:], 1)
    x = op.args[0]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        c = 1 if x.ndim > 1 else 0
    else:  # InstanceNorm also takes unbatched input
        c = x.ndim - spatial_dims - 1
    return norm_channels(g, op, c, refs, op.path)


def attention_module(g, op, module):
    from dlkernels.compress._attention import attention

    return attention(g, op, module)


def carries_units(t) -> bool:
    return isinstance(t, ParamRef) or any(lay is not None for lay in t.layouts)


def fixed_like(meta):
    if isinstance(meta, TensorMeta):
        return Value.fixed(meta.shape)
    if isinstance(meta, (tuple, list)):
        return type(meta)(fixed_like(m) for m in meta)
    return meta


def unknown_module(g, op, module):
    if any(carries_units(t) for t in tensors_in(op.args) + tensors_in(op.kwargs)):
        raise UngroupableError(f"{op.where}: a {type(module).__name__} reads units, and how it mixes "
                               f"them is not known")
    return fixed_like(op.out)


UNARY = ("relu relu_ relu6 hardtanh hardtanh_ gelu silu silu_ sigmoid sigmoid_ tanh tanh_ hardswish "
         "hardswish_ hardsigmoid hardsigmoid_ leaky_relu leaky_relu_ elu elu_ selu selu_ celu celu_ mish "
         "mish_ softplus softsign tanhshrink hardshrink softshrink threshold threshold_ logsigmoid "
         "log_sigmoid rrelu glu_ dropout dropout_ dropout1d dropout2d dropout3d feature_dropout "
         "feature_dropout_ alpha_dropout alpha_dropout_ feature_alpha_dropout native_dropout abs abs_ "
         "neg neg_ exp exp_ log log_ sqrt sqrt_ rsqrt square sin cos erf clamp clamp_ clip clip_ "
         "contiguous clone detach detach_ to type float half double bfloat16 type_as cpu cuda "
         "requires_grad_ alias _to_copy lift_fresh_copy nan_to_num sign reciprocal").split()
ELEMENTWISE = ("add add_ iadd sub sub_ isub rsub mul mul_ imul div div_ truediv itruediv floordiv "
               "true_divide maximum minimum where pow pow_ masked_fill masked_fill_ lerp addcmul "
               "addcdiv fmod remainder").split()
REDUCTIONS = "mean sum amax amin max min std var prod logsumexp argmax argmin nansum nanmean".split()
POOLS = {f"{kind}{k}d{tail}": k for k in (1, 2, 3)
         for kind in ("max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "lp_pool",
                      "_max_pool", "_adaptive_max_pool", "fractional_max_pool")
         for tail in ("", "_with_indices")}

FUNCTIONS = {
    **{n: unary for n in UNARY}, **{n: elementwise for n in ELEMENTWISE},
    **{n: reduction() for n in REDUCTIONS}, "norm": reduction(2),
    "softmax": along(1, None), "log_softmax": along(1, None), "softmin": along(1, None),
    "_softmax": along(1, None), "_log_softmax": along(1, None), "cumsum": along(1, None),
    "normalize": along(2, 1), "local_response_norm": along(99, 1),
    **{n: reshape for n in ("view", "reshape", "_unsafe_view", "view_as", "reshape_as", "flatten",
                            "unflatten", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "ravel")},
    "permute": permute, "transpose": transpose, "transpose_": transpose, "swapaxes": transpose,
    "swapdims": transpose, "t": transpose, "movedim": movedim, "moveaxis": movedim,
    "expand": expand, "expand_as": expand, "broadcast_to": expand, "repeat": expand, "tile": expand,
    "cat": cat, "concat": cat, "concatenate": cat, "stack": stack,
    "split": split(2), "chunk": split(2), "tensor_split": split(2), "split_with_sizes": split(2),
    "unbind": split(1), "getitem": getitem, "select": select, "narrow": narrow,
    "index_select": index_select,
    **{n: spatial(k) for n, k in POOLS.items()},
    "interpolate": spatial(None), "upsample": spatial(None), "pad": pad,
    "matmul": matmul, "mm": matmul, "bmm": matmul, "scaled_dot_product_attention": sdpa,
    "linear": linear, "conv1d": conv, "conv2d": conv, "conv3d": conv,
    "conv_transpose1d": lambda g, op: conv(g, op, True), "conv_transpose2d": lambda g, op: conv(g, op, True),
    "conv_transpose3d": lambda g, op: conv(g, op, True),
    "batch_norm": batch_norm, "instance_norm": batch_norm, "group_norm": group_norm,
    "layer_norm": layer_norm, "rms_norm": layer_norm, "embedding": lambda g, op: embedding(g, op),
    "prelu": prelu,
}

# aten operators whose arguments come in the same order as the functions above.
_SAME = (UNARY + ELEMENTWISE + REDUCTIONS + list(POOLS) + [
    "softmax", "log_softmax", "_softmax", "_log_softmax", "cumsum", "view", "reshape", "_unsafe_view",
    "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose", "t", "movedim", "expand",
    "repeat", "cat", "stack", "split", "chunk", "tensor_split", "split_with_sizes", "unbind", "select",
    "narrow", "index_select", "matmul", "mm", "bmm", "scaled_dot_product_attention", "linear",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "group_norm", "layer_norm", "rms_norm", "prelu"])
ATEN = {f"aten.{n}": FUNCTIONS[n] for n in _SAME}
ATEN.update({
    "aten.slice": narrow, "aten.convolution": convolution, "aten.constant_pad_nd": pad,
    "aten.embedding": lambda g, op: embedding(g, op, aten=True), "aten.sum": reduction(),
    "aten.linalg_vector_norm": reduction(2), "getitem": getitem,
    **{f"aten.upsample_{m}{k}d": spatial(k) for m in ("nearest", "bilinear", "bicubic", "trilinear",
                                                       "linear", "_nearest_exact") for k in (1, 2, 3)},
})
ATEN = {k: v for k, v in ATEN.items() if not k.startswith("aten._max_pool")}

# Modules fx does not trace into: their forward branches on tensor shapes.
LEAF_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
              nn.MultiheadAttention, nn.RNNBase, nn.EmbeddingBag, nn.TransformerEncoderLayer,
              nn.TransformerDecoderLayer, nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer)


def _rules() -> dict:
    from dlkernels.compress import _transformer as t

    return {nn.modules.batchnorm._BatchNorm: batch_norm_module,
            nn.modules.instancenorm._InstanceNorm: batch_norm_module,
            nn.MultiheadAttention: attention_module,
            nn.TransformerEncoderLayer: t.encoder_layer, nn.TransformerDecoderLayer: t.decoder_layer,
            nn.TransformerEncoder: t.encoder, nn.TransformerDecoder: t.decoder, nn.Transformer: t.transformer}


def module_rule(module):
    for kind, rule in _rules().items():
        if isinstance(module, kind):
            return rule
    return unknown_module
