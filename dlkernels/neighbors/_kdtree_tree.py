"""One static tree of a KDTree's forest: flat arrays, built, checked when loaded."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dlkernels._lib.array_types import FloatingArray, IntArray, NDArray
from dlkernels.neighbors import _kdtree_build

ARRAY_NAMES = ("points", "perm", "dims", "vals", "boxes")
# read(key, dtype, shape): one stored array, checked before use.
Reader = Callable[[str, Any, tuple[int, ...]], NDArray[Any]]
# What the query kernels take of one tree: (points, perm, dims, vals, boxes, leaf_start, offset).
View = tuple[FloatingArray, IntArray, NDArray[np.int32], FloatingArray, FloatingArray, IntArray,
              int]


def coordinate_bound(dtype: np.dtype[Any] | type[np.floating[Any]], d: int) -> float:
    """Largest absolute coordinate a tree of ``dtype`` in ``d`` dimensions accepts.

    The largest power of two ``B`` with ``16 d B**2 <= finfo(dtype).max``. Two
    points within ``[-B, B]`` are at most ``4 d B**2`` apart squared, and every
    partial sum and incremental bound the search forms stays below that (up to
    rounding, which the factor 4 to spare covers), so no distance overflows.
    """
    limit = math.sqrt(float(np.finfo(dtype).max) / (16 * max(d, 1)))
    return math.ldexp(1.0, math.frexp(limit)[1] - 1)


class Tree:
    """One static tree of the forest: flat arrays, no Python object per node."""

    points: FloatingArray
    perm: IntArray
    dims: NDArray[np.int32]
    vals: FloatingArray
    boxes: FloatingArray
    leaf_start: IntArray
    n: int
    d: int
    depth: int
    offset: int

    __slots__ = ("points", "perm", "dims", "vals", "boxes", "leaf_start", "n", "d", "depth",
                 "offset")

    @classmethod
    def build(cls, data: FloatingArray, leafsize: int, offset: int, n_threads: int) -> Tree:
        n, d = data.shape
        tree = cls._empty(n, d, leafsize, offset, data.dtype)
        _kdtree_build.build(data, tree.points, tree.perm, tree.dims, tree.vals, tree.boxes,
                      tree.leaf_start, tree.depth, n_threads)
        return tree

    @classmethod
    def _frame(cls, n: int, d: int, leafsize: int, offset: int) -> Tree:
        """A tree's sizes and leaf boundaries, without its arrays."""
        tree = cls()
        tree.n, tree.d, tree.offset = n, d, offset
        tree.depth = _kdtree_build.layout(n, leafsize)
        n_leaves = 1 << tree.depth
        tree.leaf_start = np.arange(n_leaves + 1, dtype=np.int64) * n // n_leaves
        return tree

    @classmethod
    def _empty(cls, n: int, d: int, leafsize: int, offset: int, dtype: np.dtype[Any]) -> Tree:
        tree = cls._frame(n, d, leafsize, offset)
        for key, (shape, kind) in cls.shapes(n, d, leafsize, dtype).items():
            setattr(tree, key, (np.zeros if key in ("dims", "vals") else np.empty)(shape, kind))
        return tree

    @staticmethod
    def shapes(n: int, d: int, leafsize: int,
               dtype: np.dtype[Any]) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Shape and dtype of each flat array of a tree of ``n`` points (nothing allocated)."""
        n_leaves = 1 << _kdtree_build.layout(n, leafsize)
        inner = max(n_leaves - 1, 1)
        return {"points": ((n * d,), dtype), "perm": ((n,), np.int64),
                "dims": ((inner,), np.int32), "vals": ((2 * inner,), dtype),
                "boxes": ((n_leaves * 2 * d,), dtype)}

    @classmethod
    def from_arrays(cls, read: Reader, n: int, d: int, leafsize: int, offset: int,
                    dtype: np.dtype[Any]) -> Tree:
        """Rebuild from stored arrays, checked so that a bad file cannot crash a query.

        ``read(key, dtype, shape)`` returns each array after checking its dtype
        and shape, before anything of the tree's size is allocated.
        """
        arrays = {key: read(key, kind, shape)
                  for key, (shape, kind) in cls.shapes(n, d, leafsize, dtype).items()}
        tree = cls._frame(n, d, leafsize, offset)
        for key, value in arrays.items():
            setattr(tree, key, value)
        bound = coordinate_bound(dtype, d)
        for key in ("points", "vals", "boxes"):
            values = getattr(tree, key)
            pos = _kdtree_build.first_outside(values, bound)
            if pos >= 0:
                value = values[pos]
                what = "NaN" if np.isnan(value) else f"{value}, beyond [-{bound}, {bound}],"
                raise ValueError(f"{what} in {key}")
        problem = _kdtree_build.check_tree(tree.points, tree.perm, tree.dims, tree.vals,
                                           tree.boxes, tree.leaf_start, d)
        if problem:
            raise ValueError(f"an inconsistent tree: {problem}")
        return tree

    @property
    def max_leaf(self) -> int:
        return int(np.max(np.diff(self.leaf_start)))

    def view(self) -> View:
        return (self.points, self.perm, self.dims, self.vals, self.boxes, self.leaf_start,
                self.offset)

    def original(self) -> FloatingArray:
        """The points in id order, shape (n, d)."""
        out = np.empty((self.n, self.d), dtype=self.points.dtype)
        _kdtree_build.extract(self.points, self.perm, self.leaf_start, out)
        return out

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {key: getattr(self, key) for key in ARRAY_NAMES}
