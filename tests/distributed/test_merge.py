"""The exact merges of shard answers, against brute force over the union (hypothesis)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from dlkernels.distributed import _merge


@st.composite
def shards(draw):
    """Shards of points on a coarse grid (many ties), with disjoint global id ranges."""
    n_shards = draw(st.integers(1, 4))
    m = draw(st.integers(1, 5))
    sizes = [draw(st.integers(0, 6)) for _ in range(n_shards)]
    values = draw(st.lists(st.integers(0, 3), min_size=m * sum(sizes), max_size=m * sum(sizes)))
    dist = np.array(values, dtype=np.float64).reshape(m, sum(sizes))
    return m, sizes, dist


@given(shards(), st.integers(1, 8))
def test_top_k_equals_brute_force(case, k):
    m, sizes, dist = case
    ids = np.broadcast_to(np.arange(dist.shape[1]), dist.shape)
    # Each shard answers with its own k best (by distance, then id), padded.
    answers_d, answers_i, start = [], [], 0
    for size in sizes:
        d, i = dist[:, start:start + size], ids[:, start:start + size]
        order = np.lexsort((i, d), axis=1)[:, :k]
        pad = k - order.shape[1]
        answers_d.append(np.pad(np.take_along_axis(d, order, 1), ((0, 0), (0, pad)),
                                constant_values=np.inf))
        answers_i.append(np.pad(np.take_along_axis(i, order, 1), ((0, 0), (0, pad)),
                                constant_values=-1))
        start += size
    got_d, got_i = _merge.top_k(answers_d, answers_i, k)
    for q in range(m):
        pairs = sorted(zip(dist[q].tolist(), ids[q].tolist()))[:k]
        pairs += [(np.inf, -1)] * (k - len(pairs))
        assert list(zip(got_d[q].tolist(), got_i[q].tolist())) == pairs


@given(shards(), st.booleans())
def test_radius_merge_equals_brute_force(case, sort_results):
    m, sizes, dist = case
    parts, start = [], 0
    for size in sizes:
        d = dist[:, start:start + size]
        within = d <= 1.0
        offsets = np.concatenate([[0], np.cumsum(within.sum(axis=1))])
        rows = [np.flatnonzero(within[q]) for q in range(m)]
        parts.append((np.concatenate([start + r for r in rows] + [np.zeros(0, np.int64)]),
                      np.concatenate([d[q, rows[q]] for q in range(m)] + [np.zeros(0)]),
                      offsets))
        start += size
    ids, got_dist, offsets = _merge.radius(parts, m, sort_results)
    for q in range(m):
        mine = list(zip(got_dist[offsets[q]:offsets[q + 1]].tolist(),
                        ids[offsets[q]:offsets[q + 1]].tolist()))
        want = [(float(dist[q, j]), j) for j in range(dist.shape[1]) if dist[q, j] <= 1.0]
        assert (mine == sorted(want)) if sort_results else (sorted(mine) == sorted(want))
