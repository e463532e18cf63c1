"""LSHIndex under the thread-safety contract, stressed with four threads.

A writer swaps a batch of marker vectors in and out (``add`` with fixed ids,
then ``remove``, and now and then ``tune``) while readers query, list candidates, hash and read the ids.
Each marker is a copy of a query point, so a reader sees either the whole
batch (every query finds its marker at distance 0) or none of it; and every
answer must be well formed: ascending distances, known ids, each distance that
of its id. Without the lock the writer reallocates and re-sorts the tables
under a running query, which read freed memory (the reproducer of issue 13
crashed the process 5 times out of 5).
"""

import numpy as np
import pytest

from dlkernels.neighbors import LSHIndex, split_csr

DIM, N, B = 16, 3000, 40
_rng = np.random.default_rng(0)
BASE = _rng.standard_normal((N, DIM)).astype(np.float32)
QUERIES = _rng.standard_normal((B, DIM)).astype(np.float32) * 3.0
MARKER_IDS = np.arange(10**6, 10**6 + B)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_queries_never_see_half_a_write(concurrently, metric):
    index = LSHIndex(DIM, metric=metric, n_tables=6, n_bits=8, rng=0)
    index.add(BASE)
    known = set(range(N)) | set(MARKER_IDS.tolist()) | {-1}   # -1: padding

    def write(i):
        if i % 2 == 0:
            index.add(QUERIES, ids=MARKER_IDS)
        else:
            index.remove(MARKER_IDS)
        if i % 5 == 0:      # the query settings are written under the lock too
            index.tune(BASE[:20] + 0.01, k=3, target_recall=0.5)
        return True

    def query(i):
        dist, ids = index.query(QUERIES, k=5, n_probes=4, n_threads=2)
        ok = bool(np.all(dist[:, :-1] <= dist[:, 1:])) and set(ids.ravel().tolist()) <= known
        has_marker = ids[:, 0] == MARKER_IDS
        # All markers or none: a query that ran between the add and the remove.
        good = ok and (has_marker.all() or not np.isin(ids, MARKER_IDS).any())
        return good

    def candidates(i):
        flat, offsets = index.candidates(QUERIES, n_probes=2, n_threads=2)
        # Each query's own marker is in its home buckets: in every pool or in none.
        own = [m in pool for m, pool in zip(MARKER_IDS, split_csr(flat, offsets))]
        return bool(offsets[-1] == flat.size) and (all(own) or not any(own))

    def read(i):
        ids = index.ids
        size = len(ids)
        codes = index.hash(BASE[:50])
        return size in (N, N + B) and codes.shape == (50, 6)

    results = concurrently(write, query, candidates, read)
    assert [all(r) for r in results] == [True] * 4
