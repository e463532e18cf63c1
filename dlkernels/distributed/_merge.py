"""Exact merges of per-shard results: the k best by (distance, id), and CSR radius lists.

Shards hold disjoint rows with global ids, and each shard's distances are those
one index over all rows computes (same formula, same precision), so ordering
the union by distance and then id gives that index's answer bit for bit.
"""

from __future__ import annotations

import numpy as np

from dlkernels._lib.array_types import FloatingArray, IntArray

_LAST = np.iinfo(np.int64).max


def top_k(dists: list[FloatingArray], ids: list[IntArray],
          k: int) -> tuple[FloatingArray, IntArray]:
    """The ``k`` smallest (distance, id) pairs per row of the shards' ``(m, k_s)`` results.

    Padding (``inf``, ``-1``) sorts after every real neighbour and stays padding.
    """
    d = np.concatenate(dists, axis=1)
    i = np.concatenate(ids, axis=1)
    order = np.lexsort((np.where(i < 0, _LAST, i), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def radius(parts: list[tuple[IntArray, FloatingArray, IntArray]], m: int,
           sort_results: bool) -> tuple[IntArray, FloatingArray, IntArray]:
    """One CSR result ``(ids, distances, offsets)`` from each shard's ``(ids, dist, offsets)``."""
    counts = np.zeros(m, dtype=np.int64)
    query, ids, dist = [], [], []
    for shard_ids, shard_dist, offsets in parts:
        per_query = np.diff(offsets)
        counts += per_query
        query.append(np.repeat(np.arange(m, dtype=np.int64), per_query))
        ids.append(shard_ids)
        dist.append(shard_dist)
    query, ids, dist = np.concatenate(query), np.concatenate(ids), np.concatenate(dist)
    # Sorted: by query, distance, id (what one tree gives with sort_results=True).
    # Otherwise by query, then shard by shard.
    order = np.lexsort((ids, dist, query)) if sort_results else np.argsort(query, kind="stable")
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return ids[order], dist[order], offsets
