"""What the traced program's values are to the dependency analysis.

A traced tensor becomes a :class:`Value`: its shape and, per dimension, the
layout of units on it (see ``_layouts``). A parameter or buffer used by an
operation stays a :class:`ParamRef` until the operation says how its
dimensions relate to the other operands (a weight's rows are new units, its
columns read the input's units). Tuples and lists stay Python containers;
everything else (sizes, flags) is a plain Python value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TensorMeta", "Value", "ParamRef", "tensors_in"]


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
