"""The dependency graph of a model's units, from tracing its forward pass.

:func:`unit_groups` traces the model (``torch.fx`` symbolic tracing, or
``torch.export`` where fx cannot follow the Python code), runs it once on
example inputs to learn every shape, and follows each tensor dimension through
every operation. Dimensions that must lose the same units are merged into one
group: the output channels of a convolution, the BatchNorm after it, the other
addend of a residual ``+``, the input columns of every layer that reads them.
:func:`~dlkernels.compress.prune_units` removes units group by group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from dlkernels._lib.torch_checks import check_module
from dlkernels.compress._layouts import (Layout, Space, UngroupableError, extent, spaces_of, trivial,
                                         unify)
from dlkernels.compress._values import ParamRef, Value

__all__ = ["unit_groups", "UnitGroup", "Member", "NORM_TYPES"]

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm,
              nn.LayerNorm)


class Member(NamedTuple):
    """Where the units of a group sit in one tensor dimension.

    Along ``dim`` of the parameter or buffer ``tensor`` (a ``state_dict``
    name), positions ``offset + (o * size + u) * inner + i`` (``o < outer``,
    ``i < inner``) belong to unit ``u`` of a group of ``size`` units:
    ``inner > 1`` after a flatten, several members of one tensor after a
    concatenation. With ``groups > 1`` the tensor is a grouped convolution's
    weight and ``dim`` its input columns: unit ``u`` owns column
    ``u % (size // groups)`` of the rows of group ``u // (size // groups)``.
    """

    tensor: str
    dim: int
    offset: int
    outer: int
    inner: int
    groups: int = 1


@dataclass(frozen=True)
class UnitGroup:
    """Units that are removed together, and every tensor slice they own.

    Attributes
    ----------
    size : int
        Number of units.
    modules : tuple of str
        The modules whose outputs are these units (convolutions, linears,
        norms, embeddings, attention output projections).
    members : tuple of Member
        Every tensor dimension that holds these units, and where.
    pinned : tuple of str
        Why no unit of this group may be removed (empty when prunable), e.g.
        ``"model output"``.
    blocks : int
        Units are removed equally from this many equal blocks (grouped
        convolutions, GroupNorm).
    """

    size: int
    modules: tuple[str, ...]
    members: tuple[Member, ...]
    pinned: tuple[str, ...]
    blocks: int


@dataclass
class AttentionSite:
    """An ``nn.MultiheadAttention``: its input and output units and its internal heads."""

    path: str
    module: nn.Module
    query: Space | None   # None: the query's channels are fixed
    out: Space
    heads: Space
    head_dims: Space


class Graph:
    """The state of the analysis: spaces, and how each tensor dimension is laid out on them."""

    def __init__(self, model: nn.Module) -> None:
        self.model: nn.Module = model
        self.tensors: dict[str, torch.Tensor] = {}
        self.key_of: dict[int, str] = {}
        self.owner: dict[str, str] = {}
        self.is_param: dict[str, bool] = {}
        names = [(n, t, True) for n, t in model.named_parameters(remove_duplicate=False)]
        names += [(n, t, False) for n, t in model.named_buffers(remove_duplicate=False)]
        for name, tensor, is_param in names:
            if tensor is None or id(tensor) in self.key_of:
                continue
            self.key_of[id(tensor)] = name
            self.tensors[name] = tensor
            self.owner[name] = name.rpartition(".")[0]
            self.is_param[name] = is_param
        self.bound: dict[tuple[str, int], Layout] = {}
        self.managed: dict[tuple[str, int], str] = {}
        self.producers: dict[str, list[Space]] = {}
        self.attention: list[AttentionSite] = []
        self.grouped: dict[str, tuple[int, Space]] = {}   # weight key -> (groups, input space)
        self.depthwise: dict[str, int] = {}               # conv path -> channel multiplier
        self.norm_shapes: dict[str, list[Layout]] = {}    # norm path -> layouts of its normalized dims
        self.spaces: list[Space] = []

    # -- tensors ---------------------------------------------------------------------------
    def ref(self, tensor: torch.Tensor) -> ParamRef | None:
        """``tensor`` as a parameter or buffer of the model, or None if it is neither."""
        key = self.key_of.get(id(tensor))
        return None if key is None else ParamRef(key, tuple(tensor.shape))

    def ref_of(self, module: nn.Module, attr: str) -> ParamRef | None:
        """The parameter or buffer ``module.attr``, or None where there is none."""
        tensor = getattr(module, attr, None)
        return None if tensor is None else self.ref(tensor)

    def new_space(self, size: int) -> Space:
        """A new space of ``size`` units."""
        space = Space(size)
        self.spaces.append(space)
        return space

    def bind(self, ref: ParamRef | None, dim: int, layout: Layout, why: str) -> Layout:
        """Lay ``dim`` of a parameter out as ``layout``; unify with an earlier use."""
        if ref is None:
            return layout
        key = (ref.key, dim)
        if key in self.managed:
            raise UngroupableError(f"{why}: {ref.key!r} is also used by {self.managed[key]}, "
                                   f"which rearranges its units")
        if key in self.bound:
            return unify(self.bound[key], layout, why)
        if layout is not None and extent(layout) != ref.shape[dim]:
            raise AssertionError(f"{ref.key} dim {dim}: {extent(layout)} != {ref.shape[dim]}")
        self.bound[key] = layout
        offset = 0
        for seg in layout or ():
            if seg.space is not None:
                seg.space.root().members.append((ref.key, dim, offset, seg.outer, seg.inner))
            offset += seg.extent
        return layout

    def produce(self, ref: ParamRef, dim: int) -> Layout:
        """The layout of ``dim`` of a weight whose positions are new units (a layer's outputs)."""
        key = (ref.key, dim)
        if key in self.bound and key not in self.managed:
            return self.bound[key]
        return self.bind(ref, dim, trivial(self.new_space(ref.shape[dim])), "")

    def materialize(self, ref: ParamRef) -> Value:
        """A parameter used as data: each dimension of more than one entry holds units."""
        layouts: list[Layout] = []
        for d, size in enumerate(ref.shape):
            if (ref.key, d) in self.managed:
                raise UngroupableError(f"{ref.key!r} is used directly, and also by "
                                       f"{self.managed[(ref.key, d)]}")
            layouts.append(self.produce(ref, d) if size > 1 else self.bind(ref, d, None, ""))
        return Value(ref.shape, layouts)

    def manage(self, ref: ParamRef | None, dim: int, owner: str) -> None:
        """Let ``owner`` alone rearrange ``dim`` of a parameter (no other use may bind it)."""
        if ref is None:
            return
        key = (ref.key, dim)
        if key in self.bound or (key in self.managed and self.managed[key] != owner):
            raise UngroupableError(f"{owner}: {ref.key!r} is also used elsewhere")
        self.managed[key] = owner

    def produced(self, path: str, layout: Layout) -> None:
        """Record that module ``path`` outputs the units of ``layout``."""
        spaces = self.producers.setdefault(path, [])
        spaces += [s for s in spaces_of(layout) if s not in spaces]

    # -- results ---------------------------------------------------------------------------
    def roots(self) -> list[Space]:
        """One space per group (the union-find roots), in the order they were made."""
        seen: set[int] = set()
        out: list[Space] = []
        for space in self.spaces:
            root = space.root()
            if id(root) not in seen:
                seen.add(id(root))
                out.append(root)
        return out

    def groups(self) -> list[UnitGroup]:
        """The groups of units, each with every tensor slice it owns."""
        modules: dict[int, list[str]] = {}
        for path, spaces in self.producers.items():
            for s in spaces:
                names = modules.setdefault(id(s.root()), [])
                if path not in names:
                    names.append(path)
        def member(m: tuple[str, int, int, int, int]) -> Member:
            grouped = m[1] == 1 and m[0] in self.grouped
            return Member(*m, groups=self.grouped[m[0]][0] if grouped else 1)

        return [UnitGroup(root.size, tuple(modules.get(id(root), ())), tuple(member(m) for m in root.members),
                          tuple(root.pins), root.blocks)
                for root in self.roots() if root.members]


def trace_graph(model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None
                ) -> Graph:
    """Trace ``model`` and build its :class:`Graph` (the model is not modified)."""
    from dlkernels.compress._trace import analyse

    check_module(model)
    return analyse(model, example_inputs)


def unit_groups(model: nn.Module, *,
                example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None) -> list[UnitGroup]:
    """The groups of units of ``model`` that structural pruning removes together.

    Parameters
    ----------
    model : torch.nn.Module
        Any module that ``torch.fx`` can trace, or that ``torch.export`` can
        export when fx cannot (Python control flow on shapes, torch's
        ``TransformerEncoderLayer``). Not modified.
    example_inputs : torch.Tensor or tuple of torch.Tensor, optional
        Positional arguments of one forward call, used once to learn every
        shape. May be omitted when the model's single input goes straight into
        ``Linear`` or ``Embedding`` layers.

    Returns
    -------
    list of UnitGroup
        One per group, in the order the model first produces them; groups
        that hold no tensor (units only ever met in activations) are left out.

    Raises
    ------
    TypeError
        If the model cannot be traced, or an operation that is not understood
        reads units (the message names the module and the operation), or
        ``example_inputs`` is needed and missing.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import unit_groups
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
    ...                           torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 4))
    >>> [(g.size, g.modules, g.pinned) for g in unit_groups(net, example_inputs=torch.randn(1, 3, 8, 8))]
    [(8, ('0', '1'), ()), (4, ('4',), ('model output',))]
    """
    return trace_graph(model, example_inputs).groups()
