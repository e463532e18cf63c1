"""A plain ``nn.Sequential`` of known layers, analysed without torch.fx.

Tracing costs fx a fixed ~10 ms of patching per call, more than the rest of
pruning a small network. A plain Sequential (nested ones too) is already its
own graph: each layer's call goes to the rule of its functional form, with the
same arguments fx would record, so the groups are the same as through fx.
"""

from __future__ import annotations

import torch
from torch import nn

from dlkernels.compress._layer_rules import conv, embedding, group_norm, layer_norm, linear, prelu
from dlkernels.compress._layouts import pin_all
from dlkernels.compress._ops import module_rule
from dlkernels.compress._shape_rules import along, reshape, spatial, unary
from dlkernels.compress._values import Op, TensorMeta, Value

__all__ = ["sequential_ops"]

_UNARY = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU,
          nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign, nn.Tanhshrink,
          nn.LogSigmoid, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
_POOLS = {kind: int(kind.__name__[-2]) for kind in (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)}
_LEAVES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _call(g, m: nn.Module, x):
    """(operation name, rule, arguments) of one layer's call, as fx records it; None if not known here."""
    ref = g.ref_of
    for attr in ("weight", "bias"):
        if isinstance(getattr(m, attr, None), torch.Tensor) and ref(m, attr) is None:
            return None  # computed in a hook (quantized): fx names the problem
    if isinstance(m, nn.Linear):
        return "linear", linear, (x, ref(m, "weight"), ref(m, "bias"))
    if isinstance(m, nn.modules.conv._ConvNd) and m.padding_mode == "zeros":
        w, b = ref(m, "weight"), ref(m, "bias")
        if m.transposed:
            args = (x, w, b, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
            return "conv_transpose", (lambda g_, op: conv(g_, op, True)), args
        return "conv", conv, (x, w, b, m.stride, m.padding, m.dilation, m.groups)
    if isinstance(m, nn.LayerNorm):
        return "layer_norm", layer_norm, (x, m.normalized_shape, ref(m, "weight"), ref(m, "bias"))
    if isinstance(m, nn.GroupNorm):
        return "group_norm", group_norm, (x, m.num_groups, ref(m, "weight"), ref(m, "bias"))
    if isinstance(m, nn.Embedding):
        return "embedding", embedding, (x, ref(m, "weight"), m.padding_idx, m.max_norm)
    if isinstance(m, nn.PReLU):
        return "prelu", prelu, (x, ref(m, "weight"))
    if isinstance(m, _UNARY):
        return type(m).__name__.lower(), unary, (x,)
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        return type(m).__name__.lower(), reshape, (x,)
    if type(m) in _POOLS:
        return type(m).__name__.lower(), spatial(_POOLS[type(m)]), (x,)
    if isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
        return type(m).__name__.lower(), along(1, None), (x, m.dim)
    if isinstance(m, _LEAVES):
        return type(m).__name__, (lambda g_, op: module_rule(m)(g_, op, m)), (x,)
    return None


def _layers(model: nn.Module, prefix: str = "") -> list | None:
    out = []
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            inner = _layers(child, f"{path}.")
            if inner is None:
                return None
            out += inner
        elif isinstance(child, nn.Module):
            out.append((path, child))
    return out


def _example(layers) -> tuple | None:
    first = layers[0][1] if layers else None
    w = getattr(first, "weight", None)
    if isinstance(first, nn.Linear):
        return (torch.zeros(2, w.shape[1], dtype=w.dtype, device=w.device),)
    if isinstance(first, nn.Embedding):
        return (torch.zeros(2, 1, dtype=torch.long, device=w.device),)
    return None


def sequential_ops(g, model: nn.Module, example_inputs, run_once) -> bool:
    """Analyse ``model`` into ``g`` if it is a plain Sequential of known layers; else False.

    ``example_inputs`` are already checked (a tuple) or None; ``run_once(fn)``
    runs ``fn`` in eval mode without autograd.
    """
    if type(model) is not nn.Sequential:
        return False
    layers = _layers(model)
    if not layers or any(_call(g, m, None) is None for _, m in layers):
        return False
    inputs = example_inputs if example_inputs is not None else _example(layers)
    if inputs is None or len(inputs) != 1:
        return False

    def shapes():
        out, x = [], inputs[0]
        for _, m in layers:
            x = m(x)
            out.append(tuple(x.shape))
        return out

    value = Value.fixed(tuple(inputs[0].shape))
    for (path, m), shape in zip(layers, run_once(shapes)):
        name, rule, args = _call(g, m, value)
        value = rule(g, Op(name, args, {}, TensorMeta(shape), path))
    for lay in value.layouts:
        pin_all(lay, "model output")
    return True
