"""Which rule each traced operation follows: by function name (fx), ATen name (export) or module type.

fx and export name most operations alike and pass their arguments in the
same order; the ATen table lists those, plus the few whose arguments differ.
"""

from __future__ import annotations

from torch import nn

from dlkernels.compress._layer_rules import (attention_module, batch_norm, batch_norm_module, conv,
                                             convolution, embedding, group_norm, layer_norm, linear, prelu,
                                             unknown_module)
from dlkernels.compress._shape_rules import (along, cat, elementwise, expand, getitem, index_select, matmul,
                                             movedim, narrow, pad, permute, reduction, reshape, sdpa,
                                             select, spatial, split, stack, transpose, unary)
from dlkernels.compress._transformer import decoder, decoder_layer, encoder, encoder_layer, transformer

__all__ = ["FUNCTIONS", "ATEN", "LEAF_TYPES", "module_rule"]


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


MODULES = {nn.modules.batchnorm._BatchNorm: batch_norm_module,
           nn.modules.instancenorm._InstanceNorm: batch_norm_module,
           nn.MultiheadAttention: attention_module,
           nn.TransformerEncoderLayer: encoder_layer, nn.TransformerDecoderLayer: decoder_layer,
           nn.TransformerEncoder: encoder, nn.TransformerDecoder: decoder, nn.Transformer: transformer}


def module_rule(module):
    for kind, rule in MODULES.items():
        if isinstance(module, kind):
            return rule
    return unknown_module
