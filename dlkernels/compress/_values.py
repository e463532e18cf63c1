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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlkernels.compress._layouts import Layout, Space, UngroupableError

if TYPE_CHECKING:
    from dlkernels.compress.depgraph import Graph

__all__ = ["TensorMeta", "Value", "ParamRef", "Op", "tensors_in", "val", "weight", "carries_units",
           "fixed_like"]


@dataclass(frozen=True)
class TensorMeta:
    """The recorded shape of a tensor result (from one run on the example inputs)."""

    shape: tuple[int, ...]


@dataclass
class Value:
    """A traced tensor: its shape and the layout of units along each dimension."""

    shape: tuple[int, ...]
    layouts: list[Layout]  # one layout (tuple of Segments) or None per dimension
    # Spaces to pin if the value is ever used (attention weights averaged over heads).
    taint: list[Space] = field(default_factory=list)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @classmethod
    def fixed(cls, shape: Sequence[int]) -> Value:
        return cls(tuple(shape), [None] * len(shape))


@dataclass(frozen=True)
class ParamRef:
    """A parameter or buffer of the model, by its canonical name."""

    key: str
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)


def tensors_in(obj: object) -> list[Value | ParamRef]:
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
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: object     # the recorded result: TensorMeta, a tuple of them, or a Python value
    path: str       # the module the operation runs in ("" for the model's own forward)

    @property
    def where(self) -> str:
        return f"{self.path or 'the model'!r} ({self.name})"

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        if len(self.args) > i:
            return self.args[i]
        return self.kwargs.get(name, default)


def val(g: Graph, x: Value | ParamRef) -> Value:
    return g.materialize(x) if isinstance(x, ParamRef) else x


def weight(x: object, op: Op, what: str = "weight") -> ParamRef | None:
    if x is None or isinstance(x, ParamRef):
        return x
    raise UngroupableError(f"{op.where}: the {what} is computed in the forward pass, not a parameter "
                           f"(quantized or reparametrized?)")


def carries_units(t: Value | ParamRef) -> bool:
    return isinstance(t, ParamRef) or any(lay is not None for lay in t.layouts)


def fixed_like(meta: object) -> object:
    if isinstance(meta, TensorMeta):
        return Value.fixed(meta.shape)
    if isinstance(meta, (tuple, list)):
        return type(meta)(fixed_like(m) for m in meta)
    return meta
