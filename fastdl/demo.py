"""`fastdl demo`: each capability on embedded data, with what it did and how fast."""

from __future__ import annotations

import re
import time
from collections import Counter
from importlib import resources

import numpy as np


def _timed(fn, repeat: int = 3) -> tuple[object, float]:
    """Result of ``fn()`` and its best wall time over ``repeat`` runs, in seconds."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def corpus_words() -> list[str]:
    """The words of the small text shipped with fastdl (lower case)."""
    text = resources.files("fastdl").joinpath("data/corpus.txt").read_text(encoding="utf-8")
    return re.findall(r"[a-z]+", text.lower())


def demo_negative_sampling(rng: np.random.Generator) -> None:
    from fastdl.sampling import NegativeSampler

    words = corpus_words()
    vocab, counts = zip(*Counter(words).most_common())
    sampler = NegativeSampler(np.array(counts), power=0.75)
    ids = {w: i for i, w in enumerate(vocab)}
    print(f"negative sampling: {len(words)} words of embedded text, vocabulary {len(vocab)}")
    for w in ("the", "tree", "replay"):
        i = ids[w]
        print(f"  {w!r:>9}: unigram {counts[i] / len(words):.4f} -> noise "
              f"{float(np.exp(sampler.log_prob(i))):.4f}")
    centre = np.array([ids[w] for w in words[:-1]])
    context = np.array([ids[w] for w in words[1:]])
    pairs = np.stack([centre, context], axis=1)
    (inputs, cands, labels), secs = _timed(lambda: sampler.pairs(pairs, ratio=5, rng=rng))
    clash = np.any(cands.reshape(-1, 6)[:, 1:] == context[:, None])
    print(f"  {len(pairs)} (word, next word) pairs -> {len(labels)} labelled examples, "
          f"5 negatives each, none equal to its target: {not clash} ({secs * 1e3:.2f} ms)")


def demo_prioritized_replay(rng: np.random.Generator) -> None:
    from fastdl.sampling import PrioritizedSampler

    capacity = 2**20
    per = PrioritizedSampler(capacity, alpha=0.6, beta=0.4)
    priorities = rng.pareto(1.5, capacity) + 1e-3
    _, build = _timed(lambda: per.update(np.arange(capacity), priorities), repeat=1)
    (idx, w), secs = _timed(lambda: per.sample(1024, rng=rng))
    new = rng.pareto(1.5, 1024) + 1e-3
    _, upd = _timed(lambda: per.update(idx, new))
    print(f"prioritized replay: {capacity} priorities set in {build * 1e3:.1f} ms; "
          f"a batch of 1024 with importance weights in {secs * 1e6:.0f} us, "
          f"1024 priority updates in {upd * 1e6:.0f} us")
    top = np.argsort(priorities)[-1024:]
    print(f"  the top 0.1% of priorities fill {np.isin(idx, top).mean():.0%} of the batch; "
          f"weights span [{w.min():.3f}, {w.max():.3f}]")


def demo_alias(rng: np.random.Generator) -> None:
    from fastdl.sampling import AliasSampler

    n, size = 1_000_000, 10_000_000
    weights = rng.pareto(1.0, n)
    sampler, build = _timed(lambda: AliasSampler(weights), repeat=1)
    draws, secs = _timed(lambda: sampler.sample(size, rng=rng))
    p = sampler.probabilities
    _, secs_np = _timed(lambda: rng.choice(n, size, p=p), repeat=1)
    top = int(np.argmax(weights))
    print(f"alias method: table for {n} categories in {build * 1e3:.0f} ms; {size} draws in "
          f"{secs * 1e3:.0f} ms (numpy Generator.choice: {secs_np * 1e3:.0f} ms, "
          f"{secs_np / secs:.0f}x slower)")
    print(f"  heaviest category: expected share {p[top]:.4f}, drawn {np.mean(draws == top):.4f}")


def demo_kdtree(rng: np.random.Generator) -> None:
    from fastdl.neighbors import KDTree

    n, m, k = 200_000, 20_000, 8
    # Clustered 3-D points (a point cloud of 50 blobs) and queries from the same blobs.
    centres = rng.random((50, 3))
    both = centres[rng.integers(0, 50, n + m)] + rng.normal(scale=0.02, size=(n + m, 3))
    points, queries = both[:n], both[n:]
    tree, build = _timed(lambda: KDTree(points), repeat=1)
    (dist, idx), secs = _timed(lambda: tree.query(queries, k=k))
    (ids, offsets), secs_r = _timed(lambda: tree.query_radius(queries, 0.007))
    print(f"kd-tree: {n} points built in {build * 1e3:.0f} ms; {m} queries, k={k}, in "
          f"{secs * 1e3:.0f} ms ({m / secs / 1e6:.2f} M queries/s); radius 0.007 in "
          f"{secs_r * 1e3:.0f} ms, {len(ids) / m:.1f} neighbours per query")
    check = queries[:200]
    brute = np.sqrt(((check[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    same = np.allclose(np.sort(brute, axis=1)[:, :k], dist[:200], rtol=1e-12, atol=0)
    new_ids, secs_add = _timed(lambda: tree.add(rng.random((1000, 3))), repeat=1)
    print(f"  k nearest of 200 queries match brute force: {same}; 1000 points added in "
          f"{secs_add * 1e3:.1f} ms (ids {new_ids[0]}..{new_ids[-1]}, {tree.n_trees} trees)")


def run(seed: int = 0) -> None:
    import fastdl

    cfg = fastdl.config()
    print(f"fastdl {fastdl.__version__} demo (OpenMP {cfg['openmp']}, "
          f"{cfg['default threads']} threads, seed {seed})\n")
    rng = np.random.default_rng(seed)
    for part in (demo_negative_sampling, demo_prioritized_replay, demo_alias, demo_kdtree):
        part(rng)
        print()
