"""The alias method: O(n) build, O(1) per draw."""

from __future__ import annotations

from typing import Any, Generic, overload

import numpy as np

from dlkernels._lib.array_types import (ArrayLike, FloatArray, IntArray, NDArray, Out, PathLike,
                                        RngLike, Size, Tensor)
from dlkernels._lib.arrays import is_cuda_tensor, is_tensor, like_input
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.random import draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import as_float_array, as_index_array, check_size
from dlkernels.sampling import _alias

__all__ = ["AliasSampler"]

# One row of the table: keep row j with probability `prob`, else draw `alias`.
TABLE_DTYPE = np.dtype([("prob", np.float64), ("alias", np.int64)])


def normalise(weights: np.ndarray) -> np.ndarray:
    """``weights / weights.sum()`` without overflow for weights near the float64 limit."""
    scaled = weights / weights.max()
    return scaled / scaled.sum()


class AliasSampler(Generic[Out]):
    """Draw integers in ``[0, n)`` with probability proportional to ``weights``.

    Vose's alias method: the table is built once in O(n) and each draw costs one
    uniform integer, one uniform float and one table lookup, whatever ``n``.
    Draws run in parallel with OpenMP.

    Parameters
    ----------
    weights : array-like or torch.Tensor, shape (n,)
        Finite, non-negative, with at least one positive value. Ratios up to
        1e300 between weights are handled; a zero weight is never drawn.
        Numpy in, numpy out. A CPU tensor gives CPU tensors. A CUDA tensor gets
        its table on the GPU, where draws are made with torch operations and
        returned as CUDA tensors.

    Notes
    -----
    Thread safety: the sampler never changes after construction, so any
    number of threads may draw from it at once, each with the GIL released
    (see :doc:`/user_guide/safety`).

    Examples
    --------
    >>> from dlkernels.sampling import AliasSampler
    >>> sampler = AliasSampler([1.0, 0.0, 3.0])
    >>> sampler.probabilities.tolist()
    [0.25, 0.0, 0.75]
    >>> sorted(set(sampler.sample(100, rng=0).tolist()))
    [0, 2]
    """

    @overload
    def __init__(self: AliasSampler[Tensor], weights: Tensor) -> None: ...
    @overload
    def __init__(self: AliasSampler[NDArray[Any]], weights: ArrayLike) -> None: ...

    def __init__(self, weights: ArrayLike | Tensor) -> None:
        # An empty tensor on the weights' device: outputs follow it, without keeping the weights alive.
        self._template = weights.new_empty(0) if is_tensor(weights) else None
        w = as_float_array(weights, "weights", nonnegative=True)
        if not w.max() > 0:
            raise ValueError("weights must have at least one positive value, got all zeros")
        self._probabilities = normalise(w)
        self._table = np.empty(w.shape[0], dtype=TABLE_DTYPE)
        _alias.build_table(w, self._table)
        self._device_table = None
        if is_cuda_tensor(weights):
            self._device_table = _DeviceTable(self._table, weights.device)

    @classmethod
    def _from_table(cls, probabilities: FloatArray, table: NDArray[Any]) -> AliasSampler[NDArray[Any]]:
        sampler = cls.__new__(cls)
        sampler._template = None
        sampler._probabilities = probabilities
        sampler._table = table
        sampler._device_table = None
        return sampler

    def __len__(self) -> int:
        return self._table.shape[0]

    @property
    def probabilities(self) -> Out:
        """The normalised weights, as numpy or as a tensor where weights were one."""
        return like_input(self._probabilities.copy(), self._template)

    def sample(self, size: Size, *, rng: RngLike = None, n_threads: int | None = None) -> Out:
        """Draw ``size`` independent category indices (int64).

        Parameters
        ----------
        size : int or tuple of int
            Number of draws, or the shape of the result (``()`` for one draw,
            as a 0-d array).
        rng : None, int or numpy.random.Generator
            The same ``rng`` gives the same draws at any ``n_threads``.
        n_threads : int or None
            Threads to use on the CPU (None: OpenMP's default).
        """
        shape = check_size(size)
        n_threads = check_n_threads(n_threads)
        key = draw_key(rng)
        if self._device_table is not None:
            return self._device_table.sample(shape, key)
        out = np.empty(int(np.prod(shape)), dtype=np.int64)
        _alias.sample(self._table, out, key, n_threads)
        return like_input(out.reshape(shape), self._template)

    def save(self, path: PathLike) -> None:
        """Write the table to an ``.npz`` file (loading it never runs code).

        Parameters
        ----------
        path : str or os.PathLike
            Where to write, exactly (no suffix is added).
        """
        save_arrays(path, "AliasSampler", probabilities=self._probabilities,
                    prob=self._table["prob"], alias=self._table["alias"])

    @classmethod
    def load(cls, path: PathLike) -> AliasSampler[NDArray[Any]]:
        """Read a sampler written by :meth:`save` (a numpy-backed one).

        The table is checked before use: ids in range, no zero-probability id
        reachable, and the distribution it draws equal to the stored one.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`AliasSampler.save`.

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or a tampered table.
        """
        with read_archive(path, "AliasSampler") as archive:
            archive.expect(["probabilities", "prob", "alias"])
            probabilities = as_float_array(archive.array("probabilities", "float64", (None,)),
                                           "probabilities", nonnegative=True)
            n = probabilities.shape[0]
            prob = as_float_array(archive.array("prob", "float64", (n,)), "prob")
            alias = as_index_array(archive.array("alias", "int64", (n,)), "alias", n)
            return cls._checked_table(probabilities, prob, alias)

    @classmethod
    def _checked_table(cls, probabilities: FloatArray, prob: FloatArray,
                       alias: IntArray) -> AliasSampler[NDArray[Any]]:
        n = probabilities.shape[0]
        # A file is data from outside: check the table could only draw valid ids
        # with positive probability before any kernel reads it.
        if not probabilities.sum() > 0 or prob.min() < 0 or prob.max() > 1:
            raise ValueError("an invalid alias table (prob outside [0, 1] "
                             "or no positive probability)")
        kept = prob > 0
        if (probabilities[kept] == 0).any() or (probabilities[alias[prob < 1]] == 0).any():
            raise ValueError("an alias table that can draw a zero-probability id")
        # The distribution the table draws from: column i keeps prob[i] of its
        # 1/n and hands the rest to alias[i]. It must be the stored one.
        drawn = (prob + np.bincount(alias, weights=1.0 - prob, minlength=n)) / n
        if not np.allclose(drawn, probabilities / probabilities.sum(), rtol=1e-9, atol=1e-12):
            raise ValueError("an alias table that does not draw from its stored probabilities")
        table = np.empty(n, dtype=TABLE_DTYPE)
        table["prob"], table["alias"] = prob, alias
        return cls._from_table(probabilities, table)

    def __repr__(self) -> str:
        where = "" if self._device_table is None else f", device={self._device_table.device}"
        return f"AliasSampler(n={len(self)}{where})"


class _DeviceTable:
    """The alias table as torch tensors on a device, sampled with torch operations."""

    def __init__(self, table: np.ndarray, device):
        import torch

        self.device = device
        self.prob = torch.from_numpy(np.ascontiguousarray(table["prob"])).to(device)
        self.alias = torch.from_numpy(np.ascontiguousarray(table["alias"])).to(device)

    def sample(self, shape: tuple[int, ...], key: int):
        import torch

        generator = torch.Generator(device=self.device)
        generator.manual_seed(key)
        n = self.prob.shape[0]
        rows = torch.randint(n, shape, generator=generator, device=self.device)
        coins = torch.rand(shape, generator=generator, device=self.device, dtype=torch.float64)
        drawn = torch.where(coins < self.prob[rows], rows, self.alias[rows])
        return drawn
