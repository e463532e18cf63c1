"""Segment tree (sum and min) for weighted sampling with updates."""

from __future__ import annotations

import numbers
from typing import Any, overload

import numpy as np

from dlkernels._lib.array_types import (ArrayLike, FloatArray, IntArray, PathLike, RngLike, Size,
                                        Tensor)
from dlkernels._lib.arrays import like_input
from dlkernels._lib.locks import reads, writes
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.random import draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import (
    as_float_array,
    as_index_array,
    check_alloc,
    check_count,
    check_finite_total,
    check_size,
)
from dlkernels.sampling import _segment_tree

__all__ = ["SumTree"]


def one_value_per_index(values: ArrayLike | Tensor, indices: IntArray, name: str) -> FloatArray:
    """``values`` checked (finite, non-negative) as float64, one per index.

    A scalar is repeated for every index; anything else must have one value per
    index (any shape with that many elements).
    """
    vals = as_float_array(values, name, ndim=None, nonnegative=True, allow_empty=True)
    if vals.ndim == 0:
        return np.full(indices.shape, vals)
    if vals.size != indices.size:
        raise ValueError(f"{name} must be a scalar or have one value per index: "
                         f"{vals.size} {name} for {indices.size} indices")
    return vals.ravel()


class SumTree:
    """A sum tree over ``capacity`` non-negative float64 values.

    Supports O(log N) updates, O(log N) inverse-CDF lookups and sampling in
    proportion to the values, the smallest positive value in O(1), and the
    total in O(1). Sums are recomputed from the children on every update, so
    they do not drift.

    Parameters
    ----------
    capacity : int
        Number of slots, all zero at first. Must be positive.

    Notes
    -----
    Thread safety: reads (:meth:`get`, :meth:`find`, :meth:`sample`, :meth:`min`,
    :attr:`total`, :meth:`save`) run concurrently, with the GIL released in the
    kernels; :meth:`update` waits for the reads in flight and runs alone, so a
    read never sees half an update (see :doc:`/user_guide/safety`).

    See Also
    --------
    SumTree.from_weights : build from existing values in O(N).
    PrioritizedSampler : prioritized experience replay on top of a SumTree.

    Examples
    --------
    >>> from dlkernels.sampling import SumTree
    >>> tree = SumTree.from_weights([1.0, 0.0, 3.0])
    >>> tree.total
    4.0
    >>> tree.find([0.5, 1.0, 3.9]).tolist()
    [0, 2, 2]
    """

    def __init__(self, capacity: int) -> None:
        capacity = check_count(capacity, "capacity", minimum=1)
        check_alloc(capacity, 3 * 8, "capacity")  # sums and minimums of every level
        self._capacity = capacity
        sizes = _segment_tree.level_sizes(capacity)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._sums = np.zeros(self._offsets[-1], dtype=np.float64)
        self._mins = np.full(self._offsets[-1] - self._offsets[1], np.inf)

    @classmethod
    def from_weights(cls, weights: ArrayLike | Tensor) -> SumTree:
        """Build a tree holding ``weights`` in O(N).

        Parameters
        ----------
        weights : array-like of float, shape (N,)
            Finite, non-negative, not empty; their sum must be finite.

        Returns
        -------
        SumTree
            A tree of capacity N with ``tree[i] == weights[i]``.

        Raises
        ------
        ValueError
            If ``weights`` is empty, not 1-D, holds NaN, inf or a negative value, or
            sums past the largest float64.
        """
        weights = as_float_array(weights, "weights", nonnegative=True)
        check_finite_total(weights, "weights")
        tree = cls(weights.shape[0])
        _segment_tree.build(tree._sums, tree._mins, tree._offsets, weights)
        return tree

    # -- reading ---------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Number of slots."""
        return self._capacity

    def __len__(self) -> int:
        return self._capacity

    @property
    @reads
    def total(self) -> float:
        """Sum of all values."""
        return _segment_tree.total(self._sums, self._offsets)

    @property
    @reads
    def values(self) -> FloatArray:
        """A copy of all values, in slot order."""
        return self._sums[:self._capacity].copy()

    @reads
    def min(self) -> float:
        """Smallest positive value (for normalising importance weights).

        Raises
        ------
        ValueError
            If no value is positive.
        """
        smallest = _segment_tree.minimum(self._sums, self._mins, self._offsets)
        if smallest == np.inf:
            raise ValueError("min() of a SumTree with no positive value")
        return smallest

    @overload
    def get(self, indices: int | np.integer[Any]) -> float: ...
    @overload
    def get(self, indices: Tensor) -> Tensor: ...
    @overload
    def get(self, indices: ArrayLike) -> FloatArray: ...

    @reads
    def get(self, indices: ArrayLike | Tensor) -> float | FloatArray | Tensor:
        """Values at ``indices``.

        Parameters
        ----------
        indices : int or array-like of int
            Slots in ``[0, capacity)``.

        Returns
        -------
        float or numpy.ndarray
            A float for an int, else an array of the shape of ``indices`` (a tensor
            for a tensor; 0-d for a 0-d array).
        """
        idx = as_index_array(indices, "indices", self._capacity, ndim=None)
        found = np.asarray(self._sums[idx])
        return float(found) if isinstance(indices, numbers.Integral) else like_input(found, indices)

    __getitem__ = get  # tree[indices]

    # -- writing ---------------------------------------------------------------
    @writes
    def update(self, indices: ArrayLike | Tensor, values: ArrayLike | Tensor) -> None:
        """Set ``tree[indices] = values``; O(log N) per index.

        A repeated index takes its last value, as numpy's fancy assignment does.
        The whole batch is checked before anything is written.

        Parameters
        ----------
        indices : int or array-like of int
            Slots in ``[0, capacity)``, any shape.
        values : float or array-like of float
            Finite and non-negative: a scalar for every index, or one value per index.

        Raises
        ------
        IndexError
            If an index lies outside ``[0, capacity)``.
        ValueError
            If a value is NaN, inf or negative, the counts differ, or the new total
            would overflow float64.
        """
        idx = as_index_array(indices, "indices", self._capacity, ndim=None).ravel()
        self._write(idx, one_value_per_index(values, idx, "values"), "values")

    def _write(self, indices: IntArray, values: FloatArray, name: str,
               power: float = 1.0) -> float:
        # Checked int64 indices and float64 values: set the leaves to values**power,
        # unless the new total would overflow float64. Returns the largest value.
        largest = _segment_tree.update(self._sums, self._mins, self._offsets, indices, values,
                                       power)
        if largest != largest:
            # The kernel's quick bound could not rule out overflow: decide exactly.
            with np.errstate(over="ignore"):
                after = self.values
                after[indices] = np.where(values > 0, values ** power, 0.0)
            check_finite_total(after, name)
            largest = _segment_tree.update(self._sums, self._mins, self._offsets, indices,
                                           values, power, check_total=False)
        return largest

    def __setitem__(self, indices: ArrayLike | Tensor, values: ArrayLike | Tensor) -> None:
        self.update(indices, values)

    # -- sampling --------------------------------------------------------------
    def _check_mass(self, what: str) -> None:
        if not self.total > 0:
            raise ValueError(f"cannot {what}: the tree's total is 0")

    @overload
    def find(self, prefix_sums: Tensor, *, n_threads: int | None = None) -> Tensor: ...
    @overload
    def find(self, prefix_sums: ArrayLike, *, n_threads: int | None = None) -> IntArray: ...

    @reads
    def find(self, prefix_sums: ArrayLike | Tensor, *,
             n_threads: int | None = None) -> IntArray | Tensor:
        """Slot ``i`` with ``cumsum[i-1] <= v < cumsum[i]`` for each ``v`` in ``prefix_sums``.

        Equivalent to ``numpy.searchsorted(numpy.cumsum(values), v, side="right")``
        (up to the rounding of the partial sums); zero-valued slots are never
        returned.

        Parameters
        ----------
        prefix_sums : float or array-like of float
            Each in ``[0, total)``, any shape.
        n_threads : int or None
            Threads for large batches (None: OpenMP's default).

        Returns
        -------
        numpy.ndarray of int64
            Slots, of the shape of ``prefix_sums`` (a tensor for a tensor).

        Raises
        ------
        ValueError
            If the tree's total is 0 or a prefix sum lies outside ``[0, total)``.
        """
        values = as_float_array(prefix_sums, "prefix_sums", ndim=None, allow_empty=True)
        self._check_mass("find")
        flat = values.ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= self.total):
            bad = flat.min() if flat.min() < 0 else flat.max()
            raise ValueError(f"prefix_sums must lie in [0, total={self.total!r}), got {bad!r}")
        out = np.empty(flat.shape, dtype=np.int64)
        _segment_tree.find(self._sums, self._offsets, flat, out, check_n_threads(n_threads))
        return like_input(out.reshape(values.shape), prefix_sums)

    @reads
    def sample(self, size: Size, *, rng: RngLike = None, stratified: bool = False,
               n_threads: int | None = None) -> IntArray:
        """Draw ``size`` slots, each with probability value / total, with replacement.

        Parameters
        ----------
        size : int or tuple of int
            Number of draws, or the shape of the result.
        rng : None, int or numpy.random.Generator
            Source of randomness; the same ``rng`` gives the same draws at any
            ``n_threads``.
        stratified : bool
            Draw the ``k``-th index (in C order) from the ``k``-th of ``n`` equal
            slices of the total mass, as prioritized experience replay does:
            lower variance, and the result comes out sorted.
        n_threads : int or None
            Threads to use (None: OpenMP's default).

        Returns
        -------
        numpy.ndarray of int64, of shape ``size``
        """
        shape = check_size(size)
        n_threads = check_n_threads(n_threads)
        self._check_mass("sample")
        out = np.empty(int(np.prod(shape)), dtype=np.int64)
        _segment_tree.sample(self._sums, self._mins, self._offsets, out, draw_key(rng),
                             bool(stratified), n_threads)
        return out.reshape(shape)

    def _sample_weighted(self, shape: tuple[int, ...], beta: float, rng: RngLike,
                         stratified: bool, n_threads: int | None) -> tuple[IntArray, FloatArray]:
        # Used by PrioritizedSampler, under its lock (the tree's): indices and
        # (value/min)^-beta in one pass.
        n_threads = check_n_threads(n_threads)
        self._check_mass("sample")
        n = int(np.prod(shape))
        out = np.empty(n, dtype=np.int64)
        weights = np.empty(n, dtype=np.float64)
        _segment_tree.sample(self._sums, self._mins, self._offsets, out, draw_key(rng),
                             stratified, n_threads, weights, beta)
        return out.reshape(shape), weights.reshape(shape)

    # -- persistence -----------------------------------------------------------
    @reads
    def save(self, path: PathLike) -> None:
        """Write the values to an ``.npz`` file (loading it never runs code).

        Parameters
        ----------
        path : str or os.PathLike
            Where to write, exactly (no suffix is added).
        """
        save_arrays(path, "SumTree", values=self.values)

    @classmethod
    def load(cls, path: PathLike) -> SumTree:
        """Read a tree written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`SumTree.save`.

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or invalid values.
        """
        with read_archive(path, "SumTree") as archive:
            archive.expect(["values"])
            return cls.from_weights(archive.array("values", "float64", (None,)))

    def __repr__(self) -> str:
        return f"SumTree(capacity={self._capacity}, total={self.total!r})"
