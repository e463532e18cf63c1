"""CSR arrays for Graph: built from edge lists, or checked when a caller hands them in."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlkernels._lib.array_types import ArrayLike, FloatArray, IntArray, NDArray
from dlkernels._lib.validation import as_array, as_float_array, check_finite_total

# Node ids are stored as int32 (half the memory of int64 for the edges and the walks).
MAX_NODES = 2**31 - 1


def node_array(x: ArrayLike, name: str, n_nodes: int | None) -> IntArray:
    """Edge endpoints: a 1-D int64 array of ids in [0, n_nodes) (or >= 0 if n_nodes is None)."""
    arr = as_array(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer node ids, got dtype {arr.dtype}")
    raw, arr = arr, np.asarray(arr, dtype=np.int64)  # a uint64 beyond int64 wraps negative: refused
    if arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < 0:
            pos = int(np.argmax(arr < 0))
            raise ValueError(f"{name} must hold non-negative node ids, got {raw[pos]} at "
                             f"position {pos}")
        limit = MAX_NODES if n_nodes is None else n_nodes
        if high >= limit:
            pos = int(np.argmax(arr >= limit))
            what = f"n_nodes={n_nodes}" if n_nodes is not None else f"{MAX_NODES} nodes at most"
            raise ValueError(f"{name} must hold node ids below {limit} ({what}), got {high} "
                             f"at position {pos}")
    return arr


def csr_from_edges(src: IntArray, dst: IntArray, weights: FloatArray | None, n_nodes: int,
                    directed: bool, self_loops: bool
                    ) -> tuple[IntArray, NDArray[np.int32], FloatArray | None]:
    """Sorted, merged CSR arrays from validated edge arrays (weights None: unweighted)."""
    if not self_loops:
        keep = src != dst
        if not keep.all():
            src, dst = src[keep], dst[keep]
            weights = None if weights is None else weights[keep]
    if weights is not None:
        # A zero weight is no edge (scipy's explicit zeros): dropped, documented.
        keep = weights > 0
        if not keep.all():
            src, dst, weights = src[keep], dst[keep], weights[keep]
    if not directed:
        # Both directions of every edge; a self-loop is stored once.
        other = src != dst
        src, dst = np.concatenate([src, dst[other]]), np.concatenate([dst, src[other]])
        if weights is not None:
            weights = np.concatenate([weights, weights[other]])
    # One int64 key per edge (n_nodes < 2**31, so src * n + dst fits): sort, then merge
    # runs of equal keys, summing their weights.
    key = src * np.int64(n_nodes) + dst
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.ones(key.shape[0], dtype=bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    key = key[starts]
    merged = None
    if weights is not None:
        with np.errstate(over="ignore"):  # an overflow to inf is refused by the caller
            merged = np.add.reduceat(weights[order], starts) if starts.size else np.zeros(0)
    rows = key // n_nodes
    indices = (key - rows * n_nodes).astype(np.int32)
    indptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_nodes), out=indptr[1:])
    return indptr, indices, merged


def check_csr(indptr: ArrayLike, indices: ArrayLike, weights: ArrayLike | None, directed: bool,
               node_ids: ArrayLike | None
               ) -> tuple[IntArray, NDArray[np.int32], FloatArray | None, NDArray[Any] | None]:
    """CSR arrays checked as a graph, converted to the stored dtypes (views where they
    already have them): ``(indptr int64, indices int32, weights float64 or None, node_ids)``."""
    indptr = as_array(indptr, "indptr")
    indices = as_array(indices, "indices")
    for name, arr in (("indptr", indptr), ("indices", indices)):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if indptr.size < 2:
        raise ValueError(f"indptr must have n_nodes + 1 >= 2 entries (an empty graph has "
                         f"no nodes to walk from), got {indptr.size}")
    n_nodes = indptr.size - 1
    if n_nodes > MAX_NODES:
        raise ValueError(f"indptr describes {n_nodes} nodes; at most {MAX_NODES} are supported")
    indptr = np.asarray(indptr, dtype=np.int64)
    if indptr[0] != 0 or indptr[-1] != indices.size:
        raise ValueError(f"indptr must run from 0 to len(indices) = {indices.size}, "
                         f"got {indptr[0]} .. {indptr[-1]}")
    steps = np.diff(indptr)
    if (steps < 0).any():
        pos = int(np.argmax(steps < 0))
        raise ValueError(f"indptr must be non-decreasing, got {indptr[pos]} then "
                         f"{indptr[pos + 1]} at position {pos}")
    wide = np.asarray(indices, dtype=np.int64)
    if wide.size and (wide.min() < 0 or wide.max() >= n_nodes):
        pos = int(np.argmax((wide < 0) | (wide >= n_nodes)))
        raise ValueError(f"indices must lie in [0, {n_nodes}), got {wide[pos]} at position {pos}")
    rows = np.repeat(np.arange(n_nodes, dtype=np.int64), steps)
    if wide.size > 1:
        same_row = rows[1:] == rows[:-1]
        bad = same_row & (wide[1:] <= wide[:-1])
        if bad.any():
            pos = int(np.argmax(bad)) + 1
            raise ValueError(f"indices must be strictly increasing within each row (sorted, "
                             f"no repeated edge), got {wide[pos - 1]} then {wide[pos]} in row "
                             f"{rows[pos]}")
    if weights is not None:
        weights = as_float_array(weights, "weights", nonnegative=True, allow_empty=True)
        if weights.shape != wide.shape:
            raise ValueError(f"weights must have one value per edge ({wide.size}), got "
                             f"shape {weights.shape}")
        if weights.size and not weights.min() > 0:
            pos = int(np.argmin(weights))
            raise ValueError(f"weights must be > 0 (drop zero-weight edges), got "
                             f"{weights[pos]} at position {pos}")
        check_finite_total(weights, "weights")
    if not directed:
        key = rows * n_nodes + wide
        reverse = wide * n_nodes + rows
        order = np.argsort(reverse, kind="stable")
        if not np.array_equal(reverse[order], key) or (
                weights is not None and not np.array_equal(weights[order], weights)):
            raise ValueError("directed=False needs a symmetric adjacency (every edge stored "
                             "in both directions with equal weights)")
    if node_ids is not None:
        node_ids = as_array(node_ids, "node_ids")
        if node_ids.shape != (n_nodes,):
            raise ValueError(f"node_ids must have one label per node ({n_nodes}), got "
                             f"shape {node_ids.shape}")
        if node_ids.dtype.kind not in "iuU":
            raise TypeError(f"node_ids must hold integers or strings, got dtype {node_ids.dtype}")
        if np.unique(node_ids).size != n_nodes:
            raise ValueError("node_ids must be distinct labels")
        node_ids = np.asarray(node_ids)
    return indptr, np.asarray(indices, dtype=np.int32), weights, node_ids
