"""A stochastic block model graph and first-order random walks on it, in numpy.

Synthetic data for the demo, the tests and the benchmarks of SkipGram: a graph
whose node classes (its blocks) good embeddings must separate.
"""

from __future__ import annotations

import numpy as np


def sbm_adjacency(n_nodes: int = 500, n_blocks: int = 5, p_in: float = 0.1,
                  p_out: float = 0.005, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Neighbour lists of an undirected SBM graph, and each node's block."""
    rng = np.random.default_rng(seed)
    blocks = np.arange(n_nodes) * n_blocks // n_nodes
    prob = np.where(blocks[:, None] == blocks[None, :], p_in, p_out)
    upper = np.triu(rng.random((n_nodes, n_nodes)) < prob, 1)
    adjacency = upper | upper.T
    return [np.flatnonzero(row) for row in adjacency], blocks


def uniform_walks(neighbours: list[np.ndarray], walk_length: int = 80, walks_per_node: int = 10,
                  seed: int = 0) -> np.ndarray:
    """Uniform random walks (p = q = 1), one row each, -1 after a dead end."""
    rng = np.random.default_rng(seed)
    n = len(neighbours)
    degree = np.array([len(nb) for nb in neighbours])
    flat = np.concatenate([nb for nb in neighbours] + [np.zeros(0, dtype=np.int64)])
    start = np.concatenate([[0], np.cumsum(degree)[:-1]])
    walks = np.full((n * walks_per_node, walk_length), -1, dtype=np.int64)
    current = np.tile(np.arange(n), walks_per_node)
    walks[:, 0] = current
    alive = np.ones(current.size, dtype=bool)
    for t in range(1, walk_length):
        alive &= degree[np.maximum(current, 0)] > 0
        pick = (rng.random(current.size) * np.maximum(degree[current], 1)).astype(np.int64)
        nxt = flat[np.minimum(start[current] + pick, flat.size - 1)] if flat.size else current
        current = np.where(alive, nxt, current)
        walks[alive, t] = current[alive]
    return walks
