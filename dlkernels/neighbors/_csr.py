"""Variable-length results per query as one flat array plus offsets (CSR style)."""

from __future__ import annotations

from typing import Any, TypeVar, overload

import numpy as np

from dlkernels._lib.array_types import ArrayLike, NDArray, Tensor
from dlkernels._lib.arrays import is_tensor, to_numpy

__all__ = ["split_csr"]

_S = TypeVar("_S", bound=np.generic)


@overload
def split_csr(values: Tensor, offsets: ArrayLike | Tensor) -> list[Tensor]: ...
@overload
def split_csr(values: NDArray[_S], offsets: ArrayLike | Tensor) -> list[NDArray[_S]]: ...
@overload
def split_csr(values: ArrayLike, offsets: ArrayLike | Tensor) -> list[NDArray[Any]]: ...


def split_csr(values: ArrayLike | Tensor,
              offsets: ArrayLike | Tensor) -> list[NDArray[Any]] | list[Tensor]:
    """Split a flat result array into one array per query.

    Parameters
    ----------
    values : array-like or torch.Tensor, shape (offsets[-1],)
        The concatenated results of every query.
    offsets : array-like or torch.Tensor, shape (m + 1,)
        ``values[offsets[i]:offsets[i + 1]]`` belongs to query ``i``;
        ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == len(values)``.

    Returns
    -------
    list of m arrays (views of ``values``, or tensors if ``values`` is one)

    Raises
    ------
    ValueError
        If ``offsets`` is not a valid offset array for ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.neighbors import split_csr
    >>> [a.tolist() for a in split_csr(np.array([4, 7, 1]), np.array([0, 2, 2, 3]))]
    [[4, 7], [], [1]]
    """
    off = np.asarray(to_numpy(offsets))
    n = len(values)
    if off.ndim != 1 or off.size == 0 or off.dtype.kind not in "iu":
        raise ValueError(f"offsets must be a 1-D integer array of length m + 1, got "
                         f"shape {off.shape} and dtype {off.dtype}")
    if off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 0):
        raise ValueError(f"offsets must start at 0, not decrease and end at len(values) = {n}")
    bounds = off.tolist()
    # Slices, not numpy.split: that gives one part, not none, for zero queries.
    flat = values if is_tensor(values) else np.asarray(values)
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
