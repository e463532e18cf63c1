"""Type aliases of the public signatures, so that every facade spells them the same way.

torch is optional, so ``Tensor`` is imported for type checkers only (annotations
are strings at run time). Where an output follows the input's kind (numpy in,
numpy out; a tensor in, a tensor out), a facade takes overloads with ``Tensor``
first, or is generic in :data:`Out`, the kind of array it returns.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar, Union

import numpy as np
import numpy.typing as npt
# Imported, not assigned (``NDArray = npt.NDArray``): mypy takes an assigned alias
# for one without type parameters, so ``NDArray[np.float32]`` would mean any array.
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from torch import Tensor
else:  # the name must exist to be imported; annotations are never evaluated at run time
    Tensor = Any

__all__ = ["ArrayLike", "Tensor", "NDArray", "FloatArray", "FloatingArray", "IntArray", "Out",
           "RngLike", "Size", "PathLike"]

FloatArray = npt.NDArray[np.float64]
# float32 or float64, whichever the data was kept in (a tree's points, their distances).
FloatingArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
# The kind of array an object returns: numpy arrays, or tensors when built from a tensor.
Out = TypeVar("Out", npt.NDArray[Any], "Tensor")
# `rng`: None (fresh entropy), an int seed, or a numpy Generator (SPEC 7).
RngLike = Union[int, np.random.Generator, None]
# `size`: a number of draws, or the shape of the result.
Size = Union[int, tuple[int, ...]]
PathLike = Union[str, "os.PathLike[str]"]
