"""Dask at arm's length: imported on first use, and the one place a client is resolved."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from dlkernels._lib.array_types import ArrayLike, NDArray

if TYPE_CHECKING:
    from dask.array import Array as DaskArray
    from distributed import Client, Future

HINT = 'dlkernels.distributed needs Dask: pip install "dlkernels[dask]"'


def modules() -> tuple[ModuleType, ModuleType]:
    """``(dask.array, distributed)``, or an ImportError that says what to install."""
    try:
        import dask.array
        import distributed
    except ImportError as exc:
        raise ImportError(f"{HINT} ({exc})") from exc
    return dask.array, distributed


def check_client(client: Client | None) -> Client:
    """A running ``distributed.Client``: ``client`` itself, or the current one if None."""
    _, distributed = modules()
    if client is None:
        try:
            return distributed.get_client()
        except ValueError:
            raise ValueError("client is None and this process has no Dask client: pass "
                             "client=distributed.Client(address) (or create one first)") from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client or None, got "
                        f"{type(client).__name__}")
    if client.status != "running":
        raise ValueError(f"client is {client.status}: its connection to the scheduler is gone; "
                         f"connect a new Client")
    return client


def as_dask_rows(data: DaskArray, name: str) -> DaskArray:
    """``data`` as a 2-D dask array cut into blocks of whole rows (one block per shard)."""
    da, _ = modules()
    if not isinstance(data, da.Array):
        raise TypeError(f"{name} must be a dask.array.Array (wrap a numpy array with "
                        f"dask.array.from_array(x, chunks=...)), got {type(data).__name__}")
    if data.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (rows of points), got shape {data.shape}")
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real, got dtype {data.dtype}")
    if len(data.chunks[1]) > 1:
        data = data.rechunk({1: -1})
    return data


def check_queries(X: ArrayLike, d: int, name: str = "X") -> tuple[NDArray[Any], bool]:
    """Query points as a finite 2-D float array of width ``d`` (and whether one 1-D point)."""
    da, _ = modules()
    if isinstance(X, da.Array):
        X = X.compute()
    from dlkernels._lib.validation import as_array

    arr = as_array(X, name)
    one = arr.ndim == 1
    if one:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"{name} must have shape (m, {d}) for data of {d} columns, got shape "
                         f"{np.shape(X)}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.size and not np.isfinite(arr).all():
        pos = int(np.argmin(np.isfinite(arr).all(axis=1)))
        raise ValueError(f"{name} must be finite, got a non-finite value in row {pos}")
    return np.ascontiguousarray(arr), one


def _identity(x: object) -> object:
    return x


def share(client: Client, x: object) -> Future:
    """``x`` as a future for tasks on many workers: sent to the scheduler once as a task
    of its own, run on one worker and fetched by the others from it. Unlike a
    broadcast scatter it survives a worker lost before or during the tasks (the
    scheduler reruns it), at the price of the scheduler holding ``x``: for small
    inputs such as queries."""
    return client.submit(_identity, x, pure=False)
