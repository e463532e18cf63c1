"""Unit spaces and how a tensor dimension is laid out over them.

A *space* is a set of ``n`` units that are removed together wherever they
appear: the output channels of a convolution, and everything coupled to them
(the channels of a residual stream, the rows of a BatchNorm, the input columns
of the layers that read them). Spaces are merged (union-find) when an
operation couples them, e.g. the two addends of ``x + f(x)``.

A dimension of a traced tensor is either *fixed* (``None``: batch, time,
spatial positions, the model's input features) or a *layout*: a tuple of
segments laid end to end (``torch.cat`` makes several). A segment of space
``S`` with ``outer`` and ``inner`` covers ``outer * n * inner`` positions,
position ``(o, u, i)`` in row-major order belonging to unit ``u``: flattening
``(C, H, W)`` gives ``inner = H * W``, flattening ``(H, W, C)`` gives
``outer = H * W``. A fixed segment (``space is None``) covers positions that
are never removed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

__all__ = ["Space", "Segment", "Layout", "UngroupableError", "union", "fixed", "trivial", "extent",
           "spaces_of", "normal", "pin_all", "unify", "merge_dims", "split_dim"]


class UngroupableError(TypeError):
    """An operation couples units in a way that removing them cannot follow."""


class Space:
    """A set of units removed together (a union-find node)."""

    __slots__ = ("size", "_parent", "blocks", "pins", "members")

    def __init__(self, size: int) -> None:
        self.size: int = size
        self._parent: Space | None = None
        self.blocks: int = 1     # units are removed equally from this many equal blocks
        self.pins: list[str] = []  # why no unit may be removed (empty: prunable)
        # (tensor key, dim, offset, outer, inner) slices of the units
        self.members: list[tuple[str, int, int, int, int]] = []

    def root(self) -> "Space":
        node = self
        while node._parent is not None:
            node = node._parent
        return node

    def pin(self, why: str) -> None:
        root = self.root()
        if why not in root.pins:
            root.pins.append(why)

    def require_blocks(self, blocks: int) -> bool:
        """Ask for equal removal from ``blocks`` blocks; False if the size does not allow it."""
        root = self.root()
        want = math.lcm(root.blocks, blocks)
        if root.size % want:
            return False
        root.blocks = want
        return True


def union(a: Space, b: Space) -> Space:
    a, b = a.root(), b.root()
    if a is b:
        return a
    if a.size != b.size:  # shapes agreed, so this is a bug in an op rule
        raise AssertionError(f"coupling spaces of {a.size} and {b.size} units")
    b._parent = a
    blocks = math.lcm(a.blocks, b.blocks)
    if a.size % blocks:
        a.pin("its units are split into blocks of incompatible sizes")
    else:
        a.blocks = blocks
    for why in b.pins:
        a.pin(why)
    a.members += b.members
    b.members, b.pins = [], []
    return a


@dataclass(frozen=True)
class Segment:
    space: Space | None
    outer: int
    n: int
    inner: int

    @property
    def extent(self) -> int:
        return self.outer * self.n * self.inner


# The units along one tensor dimension: segments laid end to end, or None (fixed).
Layout = Union[tuple[Segment, ...], None]


def fixed(size: int) -> tuple[Segment, ...]:
    return (Segment(None, 1, size, 1),)


def trivial(space: Space) -> tuple[Segment, ...]:
    return (Segment(space, 1, space.size, 1),)


def extent(layout: Sequence[Segment]) -> int:
    return sum(s.extent for s in layout)


def spaces_of(layout: Sequence[Segment] | None) -> list[Space]:
    return [] if layout is None else [s.space for s in layout if s.space is not None]


def normal(layout: Sequence[Segment] | None) -> Layout:
    """``None`` for a layout without units."""
    return None if layout is None or not spaces_of(layout) else tuple(layout)


def pin_all(layout: Layout, why: str) -> None:
    for space in spaces_of(layout):
        space.pin(why)


def unify(a: Layout, b: Layout, why: str) -> Layout:
    """The layout of a dimension that must hold the same units in ``a`` and ``b``.

    A fixed side pins the other side's units (they meet values that are never
    removed). Two layouts must be cut into the same segments.
    """
    if a is None or b is None:
        pin_all(a if b is None else b, why)
        return a if b is None else b
    if len(a) != len(b) or any((x.outer, x.n, x.inner) != (y.outer, y.n, y.inner) for x, y in zip(a, b)):
        raise UngroupableError(f"{why}: the units of the two operands are laid out differently")
    for x, y in zip(a, b):
        if x.space is not None and y.space is not None:
            union(x.space, y.space)
        elif x.space is not None or y.space is not None:
            (x.space or y.space).pin(why)
    return a


def merge_dims(sizes: Sequence[int], layouts: Sequence[Layout], why: str) -> Layout:
    """The layout of one dimension made of dimensions ``sizes`` (row-major), e.g. a flatten."""
    carrying = [i for i, lay in enumerate(layouts) if lay is not None]
    if not carrying:
        return None
    if len(carrying) > 1:
        raise UngroupableError(f"{why}: merges two dimensions that both hold units")
    q = carrying[0]
    before, after = math.prod(sizes[:q]), math.prod(sizes[q + 1:])
    layout = layouts[q]
    if before > 1 and len(layout) > 1:
        raise UngroupableError(f"{why}: interleaves concatenated units with another dimension")
    return tuple(Segment(s.space, s.outer * before, s.n, s.inner * after) for s in layout)


def split_dim(layout: Layout, sizes: Sequence[int], why: str) -> list[Layout]:
    """Layouts of dimensions ``sizes`` that one dimension of ``layout`` is viewed as."""
    out: list[Layout] = [None] * len(sizes)
    if layout is None:
        return out
    for r, size in enumerate(sizes):
        before, after = math.prod(sizes[:r]), math.prod(sizes[r + 1:])
        if before > 1 and len(layout) > 1:
            continue
        if all(_fits(s, before, after) for s in layout):
            out[r] = tuple(Segment(s.space, s.outer // before, s.n, s.inner // after) if s.space
                           else Segment(None, 1, s.extent // (before * after), 1) for s in layout)
            return out
    raise UngroupableError(f"{why}: splits units across dimensions")


def _fits(segment: Segment, before: int, after: int) -> bool:
    """Whether a dimension with ``before`` positions in front and ``after`` behind holds whole units."""
    if segment.space is None:
        return segment.extent % (before * after) == 0
    return segment.outer % before == 0 and segment.inner % after == 0
