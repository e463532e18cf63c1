"""LSHIndex.tune: the cheapest query settings that reach a target recall.

The recall of a setting is measured on the caller's sample queries against
their exact neighbours; its cost is *modelled* from what the kernel counts per
query (buckets looked up, candidates bounded, exact distances) and the hashing
work, not timed: timings move with the machine's load, and the same data must
give the same choice.
"""

from __future__ import annotations

import numpy as np

# Model of a query's cost, in nanoseconds of a two-core x86-64 machine (hand-set
# estimates; bench/lsh_curve.py shows whether the choices are fast): per term of a hashing dot product; per
# bucket looked up in one run of the store; per candidate, fixed and per
# dimension (its sketch bound); per exact distance, fixed and per dimension.
COST_DOT = 0.03
COST_PROBE = 40.0
COST_CANDIDATE = (4.0, 0.06)
COST_EXACT = (25.0, 0.25)
# n_probes tried, ascending; then at the first that reaches the target and the
# next, caps on the candidates at these fractions of its mean candidate count
# (a cap of half was never the cheapest on the benchmark sets, and the passes
# beyond the first two probe counts cost most of tune's time).
GRID = (0, 1, 2, 3) + tuple(int(round(2 ** (i / 2))) for i in range(4, 41))
CAP_FACTORS = (0.7, 1.0)
CAP_STEPS = 2


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``found``."""
    both = np.sort(np.concatenate([found, truth], axis=1), axis=1)
    # Ids are distinct within a row of each (padding -1 is never in truth).
    hits = (both[:, 1:] == both[:, :-1]) & (both[:, 1:] >= 0)
    return float(hits.sum()) / truth.size


def query_cost(index, counts: np.ndarray, n_probes: int) -> float:
    """Modelled mean cost of one query, from the kernel's counts per query."""
    dim = index.dim
    probes, cands, exact = counts.mean(axis=0)
    return (COST_DOT * dim * index._family.hashing_cost(n_probes)
            + COST_PROBE * (index._store.run_starts.shape[0] - 1) * probes
            + (COST_CANDIDATE[0] + COST_CANDIDATE[1] * dim) * cands
            + (COST_EXACT[0] + COST_EXACT[1] * dim) * exact)


def tune_settings(index, points: np.ndarray, k: int, target: float, n_threads: int) -> dict:
    """The setting of lowest modelled cost with recall >= ``target`` (else the best recall)."""
    _, truth = index._exact(points, k, n_threads)
    kk = truth.shape[1]
    tried = []

    def evaluate(n_probes: int, cap: int) -> dict:
        _, found, counts = index._search(points, kk, n_probes, cap, n_threads)
        result = {"n_probes": n_probes, "max_candidates": cap or None,
                  "recall": recall_at(found, truth),
                  "candidates": float(counts[:, 1].mean()),
                  "cost": query_cost(index, counts, n_probes)}
        tried.append(result)
        return result

    # A full scan bounds every candidate once: no setting should cost more.
    scan = (COST_CANDIDATE[0] + COST_CANDIDATE[1] * index.dim) * len(index)
    limit = min(GRID[-1], index._family.max_probes())
    grid = [n for n in GRID if n <= limit] or [0]
    first = None
    for i, n in enumerate(grid):
        result = evaluate(n, 0)
        if result["recall"] >= target:
            first = i
            break
        if result["recall"] >= 1.0 or result["cost"] > scan:
            break
    if first is not None:
        base = tried[-1]["candidates"]
        for n in grid[first:first + CAP_STEPS]:
            for factor in CAP_FACTORS:
                evaluate(n, max(1, int(round(base * factor))))
    feasible = [r for r in tried if r["recall"] >= target]
    if feasible:
        return min(feasible, key=lambda r: (r["cost"], r["n_probes"]))
    return max(tried, key=lambda r: (r["recall"], -r["cost"]))
