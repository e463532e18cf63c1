"""Prioritized experience replay sampling (Schaul et al., ICLR 2016)."""

from __future__ import annotations

from dlkernels._lib.array_types import (ArrayLike, FloatArray, IntArray, PathLike, RngLike, Size,
                                        Tensor)
from dlkernels._lib.locks import lock_of, reads, writes
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.validation import as_index_array, check_real, check_size
from dlkernels.sampling.segment_tree import SumTree, one_value_per_index

__all__ = ["PrioritizedSampler"]


class PrioritizedSampler:
    """What a prioritized replay buffer needs: priorities in, indices and weights out.

    Slot ``i`` is drawn with probability ``p_i**alpha / sum_j p_j**alpha`` and
    comes with the importance weight ``(N * P(i))**-beta`` divided by the largest
    weight any stored slot could get, ``(N * P_min)**-beta``, so weights lie in
    ``(0, 1]`` and are comparable between batches (as in the paper and in cpprb).

    Parameters
    ----------
    capacity : int
        Number of slots; all start with priority 0 (never drawn).
    alpha : float, default 0.6
        How much prioritization is used (0: uniform over slots with a priority).
    beta : float, default 0.4
        Default importance-sampling exponent, in ``[0, 1]``; usually annealed to 1.

    Notes
    -----
    Weights are computed in logarithms, so priorities far apart (1e-300 and
    1e300) still give positive weights.

    Thread safety: :meth:`sample` calls run concurrently; :meth:`update` runs
    alone, so a batch never mixes priorities from before and after an update
    (the sampler and its :attr:`tree` share one lock; see :doc:`/user_guide/safety`).

    Examples
    --------
    >>> from dlkernels.sampling import PrioritizedSampler
    >>> per = PrioritizedSampler(4, alpha=1.0, beta=1.0)
    >>> per.update([0, 1, 2, 3], [1.0, 1.0, 2.0, 4.0])
    >>> idx, w = per.sample(8, rng=0)
    >>> bool(((w > 0) & (w <= 1)).all())
    True
    """

    def __init__(self, capacity: int, *, alpha: float = 0.6, beta: float = 0.4) -> None:
        self._alpha = check_real(alpha, "alpha", low=0.0)
        self.beta = beta
        self._tree = SumTree(capacity)
        self._max_priority = 1.0
        self._rwlock = lock_of(self._tree)  # one lock for the sampler and its tree

    @property
    def alpha(self) -> float:
        """The prioritization exponent (fixed: the tree stores ``priority**alpha``)."""
        return self._alpha

    @property
    def beta(self) -> float:
        """The default importance-sampling exponent, in ``[0, 1]`` (may be annealed)."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = check_real(value, "beta", low=0.0, high=1.0)

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return self._tree.capacity

    def __len__(self) -> int:
        return self._tree.capacity

    @property
    def tree(self) -> SumTree:
        """The underlying tree of ``priority**alpha`` values (read it, don't write it)."""
        return self._tree

    @property
    def max_priority(self) -> float:
        """Largest priority given so far (1.0 before any): the usual priority for new data."""
        return self._max_priority

    @writes
    def update(self, indices: ArrayLike | Tensor, priorities: ArrayLike | Tensor) -> None:
        """Set the priorities of ``indices`` (stored as ``priority**alpha``).

        A repeated index takes its last priority. Nothing is written unless the
        whole batch is valid.

        Parameters
        ----------
        indices : int or array-like of int
            Slots in ``[0, capacity)``, any shape.
        priorities : float or array-like of float
            Finite, non-negative: a scalar for every index, or one per index.
            Priority 0 means the slot is never drawn.

        Raises
        ------
        IndexError
            If an index lies outside ``[0, capacity)``.
        ValueError
            If a priority is NaN, inf or negative, the counts differ, or the sum
            of ``priority**alpha`` would overflow float64.
        """
        idx = as_index_array(indices, "indices", self.capacity, ndim=None).ravel()
        prio = one_value_per_index(priorities, idx, "priorities")
        largest = self._tree._write(idx, prio, "priorities", power=self.alpha)
        self._max_priority = max(self._max_priority, largest)

    @reads
    def sample(self, size: Size, *, beta: float | None = None, rng: RngLike = None,
               stratified: bool = True,
               n_threads: int | None = None) -> tuple[IntArray, FloatArray]:
        """Draw ``size`` slots in proportion to their priority.

        Parameters
        ----------
        size : int or tuple of int
            Batch size, or the shape of the result.
        beta : float or None
            Importance-sampling exponent for this batch (None: ``self.beta``).
        rng : None, int or numpy.random.Generator
        stratified : bool, default True
            One draw from each of ``n`` equal slices of the mass, as in the paper.
        n_threads : int or None

        Returns
        -------
        indices : numpy.ndarray of int64, of shape ``size``
        weights : numpy.ndarray of float64, of shape ``size``
            Normalised importance weights, in ``(0, 1]``.
        """
        shape = check_size(size, itemsize=16)
        beta = self.beta if beta is None else check_real(beta, "beta", low=0.0, high=1.0)
        return self._tree._sample_weighted(shape, beta, rng, bool(stratified), n_threads)

    @reads
    def save(self, path: PathLike) -> None:
        """Write priorities and settings to an ``.npz`` file (loading it never runs code).

        Parameters
        ----------
        path : str or os.PathLike
            Where to write, exactly (no suffix is added).
        """
        save_arrays(path, "PrioritizedSampler", values=self._tree.values, alpha=self.alpha,
                    beta=self.beta, max_priority=self._max_priority)

    @classmethod
    def load(cls, path: PathLike) -> PrioritizedSampler:
        """Read a sampler written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`PrioritizedSampler.save`.

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or invalid values.
        """
        with read_archive(path, "PrioritizedSampler") as archive:
            archive.expect(["values", "alpha", "beta", "max_priority"])
            values = archive.array("values", "float64", (None,))
            sampler = cls(max(len(values), 1), alpha=archive.scalar("alpha", float),
                          beta=archive.scalar("beta", float))
            sampler._tree = SumTree.from_weights(values)
            sampler._rwlock = lock_of(sampler._tree)
            sampler._max_priority = archive.scalar("max_priority", float, low=0.0)
        return sampler

    def __repr__(self) -> str:
        return (f"PrioritizedSampler(capacity={self.capacity}, alpha={self.alpha}, "
                f"beta={self.beta})")
