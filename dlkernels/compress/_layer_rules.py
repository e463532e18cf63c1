"""How layers move units: a weight's rows are new units, its columns read the input's units.

Rules for Linear, convolutions (grouped, depthwise, transposed), the norms,
Embedding and PReLU, by their functional form (fx traces into these modules;
torch.export gives the same ATen calls), and for the modules fx keeps whole.
"""

from __future__ import annotations

from torch import nn

from dlkernels.compress._attention import attention
from dlkernels.compress._layouts import Segment, UngroupableError, pin_all
from dlkernels.compress._values import Value, carries_units, fixed_like, tensors_in, val, weight


def _scaled(layout, m: int):
    """Each unit repeated ``m`` times in a row (a depthwise convolution's channel multiplier)."""
    return None if layout is None else tuple(Segment(s.space, s.outer, s.n, s.inner * m) for s in layout)


# -- element-wise ----------------------------------------------------------------------------


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
    """aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
    groups)."""
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
    return attention(g, op, module)


def unknown_module(g, op, module):
    if any(carries_units(t) for t in tensors_in(op.args) + tensors_in(op.kwargs)):
        raise UngroupableError(f"{op.where}: a {type(module).__name__} reads units, and how it mixes "
                               f"them is not known")
    return fixed_like(op.out)
