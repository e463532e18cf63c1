"""What the traced program's operations and values are to the dependency analysis.

An :class:`Op` is one traced operation. A traced tensor becomes a
:class:`Value`: its shape and, per dimension, the layout of units on it (see
``_layouts``). A parameter or buffer used by an operation stays a
:class:`ParamRef` until the operation says how its dimensions relate to the
other operands (a weight's rows are new units, its columns read the input's
units). Tuples and lists stay Python containers; everything else (sizes,
flags) is a plain Python value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlkernels.compress._layouts import UngroupableError

__all__ = ["TensorMeta", "Value", "ParamRef", "Op", "tensors_in", "val", "weight", "carries_units",
           "fixed_like"]


@dataclass(frozen=True)
class TensorMeta:
    """The recorded shape of a tensor result (from one run on the example inputs)."""

    shape: tuple


@dataclass
class Value:
    shape: tuple
    layouts: list  # one layout (tuple of Segments) or None per dimension
    # Spaces to pin if the value is ever used (attention weights averaged over heads).
    taint: list = field(default_factory=list)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @classmethod
    def fixed(cls, shape) -> "Value":
        return cls(tuple(shape), [None] * len(shape))


@dataclass(frozen=True)
class ParamRef:
    """A parameter or buffer of the model, by its canonical name."""

    key: str
    shape: tuple

    @property
    def ndim(self) -> int:
        return len(self.shape)


def tensors_in(obj) -> list:
    """Every Value or ParamRef inside ``obj`` (nested tuples, lists, dicts)."""
    if isinstance(obj, (Value, ParamRef)):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in tensors_in(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in tensors_in(item)]
    return []


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


def carries_units(t) -> bool:
    return isinstance(t, ParamRef) or any(lay is not None for lay in t.layouts)


def fixed_like(meta):
    if isinstance(meta, TensorMeta):
        return Value.fixed(meta.shape)
    if isinstance(meta, (tuple, list)):
        return type(meta)(fixed_like(m) for m in meta)
    return meta
