"""Input checks shared by every facade.

Everything is checked before a kernel runs or any state changes, and each error
names the argument and the offending value.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

from dlkernels._lib._checks import first_invalid_float, first_out_of_range
from dlkernels._lib.arrays import to_numpy

__all__ = [
    "as_array",
    "as_float_array",
    "as_index_array",
    "check_alloc",
    "check_bool",
    "check_choice",
    "check_count",
    "check_finite_total",
    "check_shape",
    "check_size",
    "check_real",
]


def as_array(x, name: str) -> np.ndarray:
    """``x`` as a numpy array (a view of a CPU tensor), refusing what numpy would misread."""
    if isinstance(x, np.ma.MaskedArray):
        # np.asarray would silently use the masked-out values.
        raise TypeError(f"{name} must not be a masked array: fill or drop the masked "
                        f"values first (numpy.ma.filled or .compressed())")
    try:
        x = to_numpy(x)
    except TypeError as exc:  # a tensor dtype numpy lacks (bfloat16, float8, ...)
        raise TypeError(f"{name} has a dtype numpy cannot hold ({exc}); convert it first, "
                        f"e.g. with .float()") from None
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise TypeError(f"{name} must be array-like, got {type(x).__name__}: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got an object array")
    return arr


def as_float_array(x, name: str, *, ndim: int | None = 1, nonnegative: bool = False,
                   allow_empty: bool = False) -> np.ndarray:
    """A C-contiguous float64 copy-or-view of ``x`` with every value finite."""
    arr = as_array(x, name)
    # dtype.kind rather than np.issubdtype: this runs on every call of hot paths.
    if arr.dtype.kind not in "biuf":
        what = "real" if arr.dtype.kind == "c" else "numeric"
        raise TypeError(f"{name} must be {what}, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    arr = np.asarray(arr, dtype=np.float64, order="C")  # keeps 0-d as 0-d
    pos = first_invalid_float(arr.reshape(-1), nonnegative)
    if pos >= 0:
        bad = arr.reshape(-1)[pos]
        rule = "finite" if not np.isfinite(bad) else "non-negative"
        raise ValueError(f"{name} must be {rule}, got {bad} at position {pos}")
    return arr


def as_index_array(x, name: str, size: int, *, ndim: int | None = 1) -> np.ndarray:
    """A C-contiguous int64 array of indices, each in ``[0, size)``."""
    arr = as_array(x, name)
    if arr.ndim == 0 and ndim == 1:
        arr = arr.reshape(1)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    converted = np.asarray(arr, dtype=np.int64, order="C")
    # A uint64 beyond int64 wraps negative here and is caught as out of range.
    pos = first_out_of_range(converted.reshape(-1), size)
    if pos >= 0:
        raise IndexError(f"{name} must lie in [0, {size}), got {arr.reshape(-1)[pos]} "
                         f"at position {pos}")
    return converted


def check_finite_total(values: np.ndarray, name: str) -> None:
    """Refuse non-negative values whose sum overflows float64."""
    with np.errstate(over="ignore"):
        total = values.sum()
    if not np.isfinite(total):
        raise ValueError(f"{name} sum to more than the largest float64; scale them down")


def check_bool(flag, name: str) -> bool:
    """A Python bool from ``True``/``False`` or a numpy bool; anything else is a TypeError."""
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {flag!r}")
    return bool(flag)


def check_choice(value, name: str, choices) -> str:
    """One of the strings in ``choices`` (an option such as ``method`` or ``init``)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_count(n, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    """A Python int in ``[minimum, maximum]`` (bools refused): a count, a size, a k."""
    rule = "a non-negative int" if minimum == 0 else "an int"
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be {rule}, got {type(n).__name__}")
    if n < minimum:
        bound = "a non-negative int" if minimum == 0 else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {n}")
    if maximum is not None and n > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {n}")
    return int(n)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: assume a large machine
        return 1 << 40


def check_alloc(n_items: int, itemsize: int, name: str) -> None:
    """Refuse an output of ``n_items`` items that could not fit in this machine's memory.

    Without it a huge ``size`` fails deep inside numpy ("array is too big") or
    makes the process swap; here the error names the argument that asked for it.
    """
    nbytes = int(n_items) * int(itemsize)
    limit = _physical_memory()
    if nbytes > limit:
        raise ValueError(f"{name} asks for {n_items} items ({nbytes / 2**30:.3g} GiB), "
                         f"more than this machine's memory ({limit / 2**30:.3g} GiB)")


def check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """An int or a tuple of non-negative ints, as a tuple."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {type(shape).__name__}") from None
    return tuple(check_count(d, name) for d in dims)


def check_size(size, itemsize: int = 8, name: str = "size") -> tuple[int, ...]:
    """An output shape (an int or a tuple of ints) whose array fits in memory."""
    shape = check_shape(size, name)
    n_items = 1
    for dim in shape:
        n_items *= dim
    check_alloc(n_items, itemsize, name)
    return shape


def check_real(x, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float:
    """A finite real number, optionally within ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {x}")
    if high is not None and x > high:
        raise ValueError(f"{name} must be <= {high}, got {x}")
    return x
