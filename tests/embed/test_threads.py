"""SkipGram and Node2Vec under the thread-safety contract, stressed with four threads.

``fit`` is a write: two fits never overlap, so fits that share one Generator
draw from it one after the other, exactly as sequential fits do. Without the
lock their draws interleave and the models match no sequential run. Readers
see a whole model, before or after a fit.
"""

import numpy as np

from dlkernels.embed import SkipGram
from dlkernels.graph import Graph, Node2Vec

WALKS = np.random.default_rng(0).integers(0, 40, size=(60, 12))


def _fingerprints(n_fits):
    """The vectors after each of ``n_fits`` sequential fits sharing one Generator."""
    model = SkipGram(dim=8, window=2, rng=np.random.default_rng(7), n_threads=1)
    return [model.fit(WALKS).vectors.tobytes() for _ in range(n_fits)]


def test_concurrent_fits_are_serialised(concurrently):
    model = SkipGram(dim=8, window=2, rng=np.random.default_rng(7), n_threads=1)
    seen = []

    def fit(i):
        model.fit(WALKS)

    def read(i):
        ids, sims = model.most_similar(3, k=5) if model._fitted is not None else (None, None)
        seen.append(model.vectors.tobytes() if model._fitted is not None else None)
        return ids is None or (ids.shape == (5,) and np.all(np.diff(sims) <= 0))

    results = concurrently(fit, fit, read, read, seconds=1.0)
    n_fits = len(results[0]) + len(results[1])
    sequential = _fingerprints(n_fits)
    # Serialised fits consume the Generator as sequential fits do: the model
    # ends as the last sequential fit, and every read saw one of them.
    assert model.vectors.tobytes() == sequential[-1]
    allowed = set(sequential) | {None}
    assert all(v in allowed for v in seen)
    assert all(results[2]) and all(results[3])


def _labelled(labels):
    n = len(labels)
    g = Graph.from_edges(np.arange(n), (np.arange(n) + 1) % n)
    return Graph(g.indptr, g.indices, node_ids=np.array(labels))


def test_node2vec_savers_see_whole_fits(concurrently, tmp_path):
    # Two graphs of different sizes and labels: a saver that read the vectors
    # of one fit and the labels of the other would write a mismatched file.
    small, large = _labelled(list("abcde")), _labelled([f"n{i}" for i in range(9)])
    model = Node2Vec(dim=4, walk_length=6, walks_per_node=3, window=2, rng=0,
                     n_threads=1).fit(small)

    def fit(i):
        model.fit(large if i % 2 == 0 else small)

    def save(k):
        def run(i):
            path = tmp_path / f"emb{k}.txt"
            model.save_word2vec_format(path)
            lines = path.read_text().splitlines()
            n = int(lines[0].split()[0])
            names = [line.split()[0] for line in lines[1:]]
            return names == (list("abcde") if n == 5 else [f"n{i}" for i in range(9)])
        return run

    results = concurrently(fit, save(0), save(1), save(2))
    assert all(all(r) for r in results[1:])


def test_node2vec_concurrent_fits_are_serialised(concurrently):
    graph = _labelled([f"n{i}" for i in range(30)])

    def make():
        return Node2Vec(dim=4, walk_length=8, walks_per_node=2, window=2,
                        rng=np.random.default_rng(11), n_threads=1)

    model = make()
    results = concurrently(lambda i: model.fit(graph), lambda i: model.fit(graph), seconds=1.0)
    replay = make()
    for _ in range(len(results[0]) + len(results[1])):
        replay.fit(graph)
    np.testing.assert_array_equal(model.vectors, replay.vectors)
