"""Which hash family finds the neighbours with the fewest candidates? A numpy study.

    python bench/lsh_families.py                 # the three data sets, ~30 minutes
    python bench/lsh_families.py --sets cosine --queries 50

For each family, every stored vector gets a probe score per table: the cost of
reaching its bucket from the query's by query-directed multiprobe (0 for the
query's own bucket). Taking the vectors in order of their best score over the
tables is what probing buckets in score order gathers; the table prints the
recall@10 reached after the first 200, 400, ... 3200 candidates. The index's
speed follows the candidates it must re-rank, so this is how the hash families
of issue 18 were chosen between (``benchmarks/_lsh_data.py`` data, 100 test
queries by default). Families:

* ``sign``: SimHash, random hyperplanes through the origin (``n_tables`` x 12 bits);
* ``sign-pca``: the same on the centred data's 12 leading principal directions,
  randomly rotated per table; ``sign-itq``: rotated by ITQ (Gong and Lazebnik,
  CVPR 2011) instead, 30 iterations on 20000 vectors;
* ``cross-polytope``: 2 functions per table, each the nearest of +-e_i after a
  random rotation of the centred data into 64 dimensions (Andoni et al., NIPS
  2015; FALCONN computes the rotation with fast Hadamard transforms, which changes
  its cost, not which vectors collide); a vertex's score is (max |y| - |y_v|)**2;
* ``kmeans``: LSHIndex's trees (1 table, 4096 leaves), scored by the squared
  distance from the query to the leaf centre.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import _lsh_data as D  # noqa: E402

CANDIDATES = (200, 400, 800, 1600, 3200)


def unit(X, metric):
    X = X.astype(np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X


def principal(X, r):
    mean = X.mean(axis=0)
    centred = X[::10] - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return mean, vt[:r]


def sign_family(X, tables, mode, rng, bits=12):
    d = X.shape[1]
    mean = X.mean(axis=0) if mode != "sign" else np.zeros(d)
    if mode != "sign":
        _, basis = principal(X, bits)
    out = []
    for _ in range(tables):
        if mode == "sign":
            W = rng.standard_normal((bits, d))
            W /= np.linalg.norm(W, axis=1, keepdims=True)
        else:
            R, _ = np.linalg.qr(rng.standard_normal((bits, bits)))
            if mode == "sign-itq":
                V = (X[rng.choice(len(X), 20000, replace=False)] - mean) @ basis.T
                for _ in range(30):
                    U, _, Wt = np.linalg.svd(V.T @ np.sign(V @ R))
                    R = U @ Wt
            W = R.T @ basis
        out.append((W, (X - mean) @ W.T > 0))

    def scores(q):
        best = np.full(len(X), np.inf)
        for W, bits_x in out:
            p = (q - mean) @ W.T
            # Flipping bit j costs the squared distance to hyperplane j.
            best = np.minimum(best, ((bits_x != (p > 0)) * p ** 2).sum(axis=1))
        return best
    return scores


def cross_polytope(X, tables, rng, functions=2, dims=64):
    mean = X.mean(axis=0)
    out = []
    for _ in range(tables):
        fs = []
        for _ in range(functions):
            R, _ = np.linalg.qr(rng.standard_normal((X.shape[1], dims)))
            Y = (X - mean) @ R
            v = np.abs(Y).argmax(axis=1)
            fs.append((R, 2 * v + (Y[np.arange(len(Y)), v] > 0)))
        out.append(fs)

    def scores(q):
        best = np.full(len(X), np.inf)
        for fs in out:
            total = np.zeros(len(X))
            for R, code in fs:
                y = (q - mean) @ R
                vertex = np.stack([-y, y], axis=1).ravel()     # the value of vertex 2i+s
                total += ((np.abs(y).max() - vertex) ** 2)[code]
            best = np.minimum(best, total)
        return best
    return scores


def kmeans_trees(X_raw, metric):
    from dlkernels.neighbors import LSHIndex

    index = LSHIndex(X_raw.shape[1], metric=metric, n_bits=12, rng=0)
    index.add(X_raw)
    fam = index._family
    leaves = fam.keys(index.vectors, 2, store_keys=False)[:, 0].astype(np.int64)
    order = np.argsort(index.ids)
    leaves = leaves[order]                     # by id, as the data

    def scores(q):
        z = ((q - fam.mean) @ fam.basis.T.astype(np.float64))
        fine = fam.fine[0].astype(np.float64)
        leaf_score = ((fine - z) ** 2).sum(axis=1)
        return leaf_score[leaves] - leaf_score.min()
    return scores, unit


def study(name, args):
    X_raw, _, Q_raw, metric = D.data(name, args.n)
    want = D.truth(name, "test", args.n)[:args.queries]
    X, Q = unit(X_raw, metric), unit(Q_raw[:args.queries], metric)
    rng = np.random.default_rng(0)
    families = {
        "sign (16 tables)": lambda: sign_family(X, 16, "sign", rng),
        "sign-pca (16 tables)": lambda: sign_family(X, 16, "sign-pca", rng),
        "sign-itq (16 tables)": lambda: sign_family(X, 16, "sign-itq", rng),
        "cross-polytope (8 tables)": lambda: cross_polytope(X, 8, rng),
        "kmeans (1 table)": lambda: kmeans_trees(X_raw, metric)[0],
    }
    print(f"\n== {name}: recall@10 after the first n candidates ({args.queries} queries)")
    print(f"  {'family':28} " + " ".join(f"{c:>6}" for c in CANDIDATES) + "   fit (s)")
    for label, make in families.items():
        start = time.perf_counter()
        scores = make()
        fit = time.perf_counter() - start
        hits = np.zeros(len(CANDIDATES))
        for q, truth in zip(Q, want):
            order = np.argsort(scores(q), kind="stable")
            for j, c in enumerate(CANDIDATES):
                hits[j] += np.isin(truth, order[:c]).mean()
        print(f"  {label:28} " + " ".join(f"{h / len(Q):6.3f}" for h in hits)
              + f"   {fit:7.1f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(D.SETS), choices=D.SETS)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--n", type=int, default=D.N)
    args = parser.parse_args()
    for name in args.sets:
        study(name, args)


if __name__ == "__main__":
    main()
