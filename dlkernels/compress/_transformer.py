"""Rules for torch's Transformer layers, which fx cannot trace (their forward branches on shapes).

Each rule replays the layer's documented computation (attention, residual
adds, LayerNorms, the feed-forward Linears) through the ordinary rules, so
these layers cost no ``torch.export`` and group exactly as their code does.
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from dlkernels.compress._attention import attention
from dlkernels.compress._layer_rules import layer_norm, linear
from dlkernels.compress._layouts import UngroupableError
from dlkernels.compress._shape_rules import elementwise, unary
from dlkernels.compress._values import Op, TensorMeta

__all__ = ["encoder_layer", "decoder_layer", "encoder", "decoder", "transformer"]

_ACTIVATIONS = (F.relu, F.gelu)
_ACTIVATION_MODULES = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish)


class _Replay:
    """Run the ordinary rules for the pieces of a layer at ``path``."""

    def __init__(self, g, op, path: str):
        self.g, self.op, self.path = g, op, path

    def at(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _op(self, name, args, shape, path=None):

        return Op(name, args, {}, TensorMeta(tuple(shape)), path if path is not None else self.path)

    def add(self, a, b):

        return elementwise(self.g, self._op("add", (a, b), a.shape))

    def norm(self, x, ln: nn.LayerNorm, name: str):

        path = self.at(name)
        args = (x, ln.normalized_shape, self.g.ref_of(ln, "weight"), self.g.ref_of(ln, "bias"))
        return layer_norm(self.g, self._op("layer_norm", args, x.shape, path))

    def linear(self, x, lin: nn.Linear, name: str):

        args = (x, self.g.ref_of(lin, "weight"), self.g.ref_of(lin, "bias"))
        return linear(self.g, self._op("linear", args, x.shape[:-1] + (lin.out_features,), self.at(name)))

    def attend(self, q, kv, m: nn.MultiheadAttention, name: str):

        op = Op(type(m).__name__, (q, kv, kv), {}, (TensorMeta(q.shape), None), self.at(name))
        return attention(self.g, op, m)[0]

    def feed_forward(self, x, layer):

        act = layer.activation
        if not (act in _ACTIVATIONS or isinstance(act, _ACTIVATION_MODULES)):
            raise UngroupableError(f"{self.path!r} ({type(layer).__name__}): its activation "
                                   f"{getattr(act, '__name__', type(act).__name__)} is not known to "
                                   f"act on each unit separately")
        h = self.linear(x, layer.linear1, "linear1")
        h = unary(self.g, self._op("activation", (h,), h.shape))
        return self.linear(h, layer.linear2, "linear2")


def _encoder_layer(g, op, m, path: str, x):
    r = _Replay(g, op, path)
    if m.norm_first:
        h = r.norm(x, m.norm1, "norm1")
        x = r.add(x, r.attend(h, h, m.self_attn, "self_attn"))
        return r.add(x, r.feed_forward(r.norm(x, m.norm2, "norm2"), m))
    x = r.norm(r.add(x, r.attend(x, x, m.self_attn, "self_attn")), m.norm1, "norm1")
    return r.norm(r.add(x, r.feed_forward(x, m)), m.norm2, "norm2")


def _decoder_layer(g, op, m, path: str, x, memory):
    r = _Replay(g, op, path)
    if m.norm_first:
        h = r.norm(x, m.norm1, "norm1")
        x = r.add(x, r.attend(h, h, m.self_attn, "self_attn"))
        x = r.add(x, r.attend(r.norm(x, m.norm2, "norm2"), memory, m.multihead_attn, "multihead_attn"))
        return r.add(x, r.feed_forward(r.norm(x, m.norm3, "norm3"), m))
    x = r.norm(r.add(x, r.attend(x, x, m.self_attn, "self_attn")), m.norm1, "norm1")
    x = r.norm(r.add(x, r.attend(x, memory, m.multihead_attn, "multihead_attn")), m.norm2, "norm2")
    return r.norm(r.add(x, r.feed_forward(x, m)), m.norm3, "norm3")


def _stack(g, op, m, path, x, memory=None):
    for i, layer in enumerate(m.layers):
        sub = _Replay(g, op, path).at(f"layers.{i}")
        if memory is None:
            x = _encoder_layer(g, op, layer, sub, x)
        else:
            x = _decoder_layer(g, op, layer, sub, x, memory)
    if m.norm is not None:
        x = _Replay(g, op, path).norm(x, m.norm, "norm")
    return x


def encoder_layer(g, op, m):
    return _encoder_layer(g, op, m, op.path, op.arg(0, "src"))


def decoder_layer(g, op, m):
    return _decoder_layer(g, op, m, op.path, op.arg(0, "tgt"), op.arg(1, "memory"))


def encoder(g, op, m):
    return _stack(g, op, m, op.path, op.arg(0, "src"))


def decoder(g, op, m):
    return _stack(g, op, m, op.path, op.arg(0, "tgt"), op.arg(1, "memory"))


def transformer(g, op, m):
    r = _Replay(g, op, op.path)
    memory = _stack(g, op, m.encoder, r.at("encoder"), op.arg(0, "src"))
    return _stack(g, op, m.decoder, r.at("decoder"), op.arg(1, "tgt"), memory)
