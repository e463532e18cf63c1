"""Negative sampling from a smoothed unigram distribution (word2vec's noise)."""

from __future__ import annotations

import numbers
from typing import Any, Generic, overload

import numpy as np

from dlkernels._lib.array_types import (ArrayLike, FloatArray, IntArray, NDArray, Out, PathLike,
                                        RngLike, Size, Tensor)
from dlkernels._lib.arrays import is_tensor, like_input, to_numpy
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.random import check_rng, draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import (
    as_array,
    as_float_array,
    as_index_array,
    check_count,
    check_real,
    check_size,
)
from dlkernels.sampling import _alias
from dlkernels.sampling.alias import AliasSampler

__all__ = ["NegativeSampler"]


class NegativeSampler(Generic[Out]):
    """Draw ids from ``counts**power / sum(counts**power)`` (Mikolov et al., 2013).

    Parameters
    ----------
    counts : array-like or torch.Tensor, shape (n,)
        Frequency of each id; finite, non-negative, at least one positive.
        An id with count 0 is never drawn.
    power : float, default 0.75
        Smoothing exponent; 1 is the unigram distribution, 0 uniform over the
        ids with a positive count.

    Notes
    -----
    Draws are made on the CPU. If ``counts`` is a tensor, results are tensors on
    its device (copied there from the host for a CUDA tensor).

    Thread safety: the sampler never changes after construction, so any number
    of threads may draw from it at once (see :doc:`/user_guide/safety`).

    Examples
    --------
    >>> from dlkernels.sampling import NegativeSampler
    >>> sampler = NegativeSampler([10, 0, 5, 1])
    >>> neg = sampler.sample((2, 3), rng=0, exclude=[0, 2])
    >>> bool((neg[0] != 0).all() and (neg[1] != 2).all())
    True
    """

    @overload
    def __init__(self: NegativeSampler[Tensor], counts: Tensor, *, power: float = 0.75) -> None: ...
    @overload
    def __init__(self: NegativeSampler[NDArray[Any]], counts: ArrayLike, *,
                 power: float = 0.75) -> None: ...

    def __init__(self, counts: ArrayLike | Tensor, *, power: float = 0.75) -> None:
        self._template = counts.new_empty(0) if is_tensor(counts) else None
        counts = as_float_array(counts, "counts", nonnegative=True)
        if not counts.max() > 0:
            raise ValueError("counts must have at least one positive value, got all zeros")
        self._power = check_real(power, "power", low=0.0)
        # Scale by the largest count first so counts**power cannot overflow (the
        # distribution is the same); 0**0 would make zero counts drawable: keep them 0.
        with np.errstate(under="ignore"):
            scaled = (counts / counts.max()) ** self.power
        self._set_noise(np.where(counts > 0, scaled, 0.0))

    def _set_noise(self, noise: FloatArray) -> None:
        self._alias = AliasSampler(noise)
        self._noise = noise
        self._probs = self._alias._probabilities
        self._n_positive = int(np.count_nonzero(self._probs))

    def __len__(self) -> int:
        return len(self._alias)

    @property
    def power(self) -> float:
        """The smoothing exponent the noise distribution was built with."""
        return self._power

    @property
    def alias_table(self) -> NDArray[np.void]:
        """The alias table of the noise (read-only): rows of (prob float64, alias int64).

        For compiled consumers that draw from it themselves (the skip-gram trainer).
        """
        table = self._alias._table.view()
        table.flags.writeable = False
        return table

    @property
    def probabilities(self) -> Out:
        """The noise distribution."""
        return like_input(self._probs.copy(), self._template)

    @overload
    def log_prob(self, ids: int | np.integer[Any]) -> float: ...
    @overload
    def log_prob(self, ids: Tensor) -> Tensor: ...
    @overload
    def log_prob(self, ids: ArrayLike) -> Out: ...

    def log_prob(self, ids: ArrayLike | Tensor) -> float | Out | Tensor:
        """Log-probability of ``ids`` under the noise distribution.

        This is the ``log Q(y)`` of the logQ correction in sampled softmax and NCE.

        Parameters
        ----------
        ids : int or array-like of int
            Ids in ``[0, n)``, any shape.

        Returns
        -------
        float or numpy.ndarray of float64
            ``log Q(id)``, ``-inf`` for an id of count 0; a float for an int, else
            the shape of ``ids`` (a tensor for a tensor or if ``counts`` was one).
        """
        idx = as_index_array(ids, "ids", len(self), ndim=None)
        with np.errstate(divide="ignore"):
            result = np.asarray(np.log(self._probs[idx]))
        if isinstance(ids, numbers.Integral):
            return float(result)
        return like_input(result, ids if is_tensor(ids) else self._template)

    def sample(self, size: Size, *, rng: RngLike = None, exclude: ArrayLike | Tensor | None = None,
               n_threads: int | None = None) -> Out:
        """Draw negatives, with replacement.

        Parameters
        ----------
        size : int or tuple of int
            Number of draws, or the shape of the result.
        rng : None, int or numpy.random.Generator
            The same ``rng`` gives the same draws at any ``n_threads``.
        exclude : array-like of int, optional
            Ids row ``r`` must not contain: shape ``(size[0],)`` for one id per row
            (the positive), or ``(size[0], m)`` for several; -1 entries are
            padding. Draws come from the noise distribution conditioned on
            avoiding them, so a row whose excluded ids hold all the mass is an error.
        n_threads : int or None

        Returns
        -------
        numpy.ndarray of int64 (a tensor if ``counts`` was one), of shape ``size``
        """
        shape = check_size(size)
        if exclude is None:
            return like_input(self._alias.sample(shape, rng=rng, n_threads=n_threads),
                              self._template)
        if len(shape) == 0:
            raise ValueError("size must have a first dimension (one row per exclude row), got ()")
        return self._sample_excluding(shape, rng, exclude, n_threads, "exclude")

    def _sample_excluding(self, shape: tuple[int, ...], rng: RngLike, exclude: ArrayLike | Tensor,
                          n_threads: int | None, name: str) -> Out:
        excluded = self._check_exclude(exclude, shape[0], name)
        out = np.empty((shape[0], int(np.prod(shape[1:]))), dtype=np.int64)
        n_threads = check_n_threads(n_threads)
        _alias.sample_excluding(self._alias._table, self._probs, excluded, out, draw_key(rng),
                                n_threads)
        return like_input(out.reshape(shape), self._template)

    def _check_exclude(self, exclude: ArrayLike | Tensor, rows: int, name: str) -> IntArray:
        ex = as_array(exclude, name)
        if ex.size and ex.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer ids, got dtype {ex.dtype}")
        if ex.ndim == 1:
            ex = ex[:, None]
        if ex.ndim != 2:
            raise ValueError(f"{name} must be 1- or 2-dimensional, got shape {ex.shape}")
        if ex.shape[0] != rows:
            raise ValueError(f"{name} must have one row per row of the output: "
                             f"{ex.shape[0]} rows for size[0]={rows}")
        padded = ex == -1
        ids = as_index_array(np.where(padded, 0, ex), name, len(self), ndim=2)
        ids = np.where(padded, -1, ids)
        if ids.shape[1] >= self._n_positive:
            # Could a row exclude every id with positive probability? Count its
            # distinct drawable ids exactly instead of comparing rounded masses.
            drawable = np.where((ids >= 0) & (self._probs[np.maximum(ids, 0)] > 0), ids, -1)
            drawable.sort(axis=1)
            first = np.ones_like(drawable, dtype=bool)
            first[:, 1:] = drawable[:, 1:] != drawable[:, :-1]
            distinct = ((drawable >= 0) & first).sum(axis=1)
            full = np.flatnonzero(distinct >= self._n_positive)
            if full.size:
                raise ValueError(f"{name} row {full[0]} excludes every id that can be drawn")
        return np.ascontiguousarray(ids)

    @overload
    def pairs(self, positive_pairs: Tensor, n_negatives: int = 1, *, rng: RngLike = None,
              n_threads: int | None = None) -> tuple[Tensor, Tensor, Tensor]: ...
    @overload
    def pairs(self, positive_pairs: ArrayLike, n_negatives: int = 1, *, rng: RngLike = None,
              n_threads: int | None = None) -> tuple[Out, Out, Out]: ...

    def pairs(self, positive_pairs: ArrayLike | Tensor, n_negatives: int = 1, *,
              rng: RngLike = None, n_threads: int | None = None
              ) -> tuple[Out, Out, Out] | tuple[Tensor, Tensor, Tensor]:
        """Balanced training pairs: each positive followed by ``n_negatives`` negatives.

        Parameters
        ----------
        positive_pairs : array-like of int, shape (p, 2)
            ``(input, target)`` pairs; targets must be valid ids.
        n_negatives : int, default 1
            Negatives per positive; a negative never equals its pair's target.
        rng : None, int or numpy.random.Generator

        Returns
        -------
        inputs, candidates : int64 arrays of shape ``(p * (1 + n_negatives),)``
            For pair ``i``, rows ``i * (1 + n_negatives)`` onward: the pair itself,
            then its negatives.
        labels : float32 array of the same shape, 1 for positives and 0 for negatives
        """
        ratio = check_count(n_negatives, "n_negatives")
        arr = np.asarray(to_numpy(positive_pairs))
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"positive_pairs must have shape (p, 2), got {arr.shape}")
        if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise TypeError(f"positive_pairs must hold integers, got dtype {arr.dtype}")
        targets = as_index_array(arr[:, 1], "positive_pairs[:, 1]", len(self))
        inputs = np.ascontiguousarray(arr[:, 0], dtype=np.int64)
        p = arr.shape[0]
        negatives = np.asarray(to_numpy(self._sample_excluding(
            (p, ratio), check_rng(rng), targets, n_threads, "positive_pairs[:, 1]")))
        candidates = np.concatenate([targets[:, None], negatives], axis=1).ravel()
        labels = np.zeros((p, 1 + ratio), dtype=np.float32)
        labels[:, 0] = 1.0
        out_inputs = np.repeat(inputs, 1 + ratio)
        template = positive_pairs if is_tensor(positive_pairs) else self._template
        return (like_input(out_inputs, template), like_input(candidates, template),
                like_input(labels.ravel(), template))

    def save(self, path: PathLike) -> None:
        """Write the noise distribution to an ``.npz`` file (loading it never runs code).

        Parameters
        ----------
        path : str or os.PathLike
            Where to write, exactly (no suffix is added).
        """
        save_arrays(path, "NegativeSampler", noise=self._noise, power=self.power)

    @classmethod
    def load(cls, path: PathLike) -> NegativeSampler[NDArray[Any]]:
        """Read a sampler written by :meth:`save` (a numpy-backed one).

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`NegativeSampler.save`.

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or invalid values.
        """
        with read_archive(path, "NegativeSampler") as archive:
            archive.expect(["noise", "power"])
            sampler = cls.__new__(cls)
            sampler._template = None
            sampler._power = archive.scalar("power", float, low=0.0)
            sampler._set_noise(archive.array("noise", "float64", (None,)))
        return sampler

    def __repr__(self) -> str:
        return f"NegativeSampler(n={len(self)}, power={self.power})"
