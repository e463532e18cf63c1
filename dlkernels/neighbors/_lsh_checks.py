"""What LSHIndex accepts: vectors to store or query, and ids to add or remove.

Each check raises a ValueError or TypeError naming the argument before the
index changes, and returns the array in the form the kernels take.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlkernels._lib.validation import as_array
from dlkernels.neighbors._lsh_store import BucketStore


def check_points(x: Any, name: str, dim: int, dtype: np.dtype[Any], cosine: bool, *,
                 allow_empty: bool, allow_zero: bool = False) -> np.ndarray:
    """``x`` as a C-contiguous (m, dim) array of ``dtype``, every value finite (and no
    all-zero row for the cosine distance unless ``allow_zero``)."""
    arr = as_array(x, name)
    if arr.dtype.kind not in "biuf":
        what = "real" if arr.dtype.kind == "c" else "numeric"
        raise TypeError(f"{name} must be {what}, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (m, {dim}) for this index of "
                         f"dim={dim}, got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range turns inf: refused below
        out = np.ascontiguousarray(arr, dtype=dtype)
    bad = ~np.isfinite(out)
    if bad.any():
        pos = np.unravel_index(int(np.argmax(bad)), out.shape)
        raise ValueError(f"{name} must be finite (and within {dtype} range), got "
                         f"{arr[pos]} at row {pos[0]}, column {pos[1]}")
    if cosine and not allow_zero and out.shape[0]:
        zero = ~np.any(out != 0, axis=1)
        if zero.any():
            raise ValueError(f"{name} has an all-zero row {int(np.argmax(zero))}: the cosine "
                             f"distance is undefined for it")
    return out


def check_tensor_points(X: Any, dim: int, dtype: np.dtype[Any]) -> Any:
    """A torch tensor ``X`` of shape (m, dim), detached and cast to ``dtype``, finite."""
    import torch

    ints = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
    if not (X.dtype.is_floating_point or X.dtype in ints):
        raise TypeError(f"X must be a real tensor, got dtype {X.dtype}")
    if X.ndim != 2 or X.shape[1] != dim:
        raise ValueError(f"X must have shape (m, {dim}) for this index of "
                         f"dim={dim}, got shape {tuple(X.shape)}")
    x = X.detach().to(torch.float32 if dtype == np.float32 else torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"X must be finite (and within {dtype} range)")
    return x


def check_new_ids(ids: Any, b: int, next_id: int, store: BucketStore) -> np.ndarray:
    """The int64 ids of ``b`` vectors to add: ``next_id, next_id + 1, ...`` by default,
    else non-negative, distinct and not yet in ``store``."""
    if ids is None:
        return np.arange(next_id, next_id + b, dtype=np.int64)
    arr = as_array(ids, "ids")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.shape[0] != b:
        raise ValueError(f"ids must have shape ({b},), one per row of X, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"ids must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"ids must fit in int64, got {arr.max()}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"ids must be non-negative, got {arr.min()} at position "
                         f"{int(np.argmin(arr))}")
    if arr.max() == np.iinfo(np.int64).max:
        raise ValueError(f"ids must be below {np.iinfo(np.int64).max}, got {arr.max()}")
    order = np.argsort(arr, kind="stable")
    dup = np.flatnonzero(np.diff(arr[order]) == 0)
    if dup.size:
        raise ValueError(f"ids must be distinct, got {arr[order[dup[0]]]} twice")
    present = store.find_rows(arr) >= 0
    if present.any():
        raise ValueError(f"ids must be new, but id {arr[int(np.argmax(present))]} is already "
                         f"in the index")
    return arr


def check_known_rows(ids: Any, store: BucketStore) -> np.ndarray:
    """The store rows of ``ids`` to remove (an int or a 1-D array; each in ``store``,
    none twice); empty when ``ids`` is."""
    arr = as_array(ids, "ids")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"ids must be an int or 1-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"ids must hold integers, got dtype {arr.dtype}")
    signed = arr.astype(np.int64)
    rows = store.find_rows(signed)
    missing = (rows < 0) | (signed != arr)  # a uint64 beyond int64 is unknown too
    if missing.any():
        raise ValueError(f"ids holds {arr[int(np.argmax(missing))]}, which is not in the index")
    if np.unique(rows).shape[0] != rows.shape[0]:
        order = np.argsort(signed, kind="stable")
        dup = signed[order][np.flatnonzero(np.diff(signed[order]) == 0)[0]]
        raise ValueError(f"ids holds {dup} twice")
    return rows
