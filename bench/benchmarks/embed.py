"""asv benchmarks for dlkernels.embed.SkipGram against gensim's Word2Vec (sg=1).

One epoch over random walks of a 5-block stochastic block model graph (1000
nodes, 10 walks of 80 per node: 800,000 words) at dim 128, window 5 or 10,
5 negatives; ``impl`` and ``n_threads`` are parameters so one table shows both.
gensim's vocabulary scan happens in setup, outside the timing. A missing gensim
is skipped (NotImplementedError in setup). ``track_accuracy`` records the block
classification accuracy of the vectors (5-fold logistic regression).
"""

from __future__ import annotations

import functools
import importlib

import numpy as np

N_THREADS = [1, 2]
DIM, NEGATIVE = 128, 5


@functools.lru_cache(maxsize=None)
def _walks():
    from dlkernels.embed._synthetic import sbm_adjacency, uniform_walks

    neighbours, blocks = sbm_adjacency(1000, 5, p_in=0.05, p_out=0.0025, seed=0)
    return uniform_walks(neighbours, 80, 10, seed=0), blocks


def _trainer(impl: str, window: int, n_threads: int):
    """A zero-argument call that trains one model from scratch and returns its vectors."""
    walks, _ = _walks()
    if impl == "dlkernels":
        from dlkernels.embed import SkipGram

        def run():
            model = SkipGram(dim=DIM, window=window, n_negatives=NEGATIVE, rng=0, n_threads=n_threads)
            return model.fit(walks).vectors
        return run
    try:
        models = importlib.import_module("gensim.models")
    except ImportError:
        raise NotImplementedError("gensim is not installed") from None
    sentences = [[str(x) for x in w[w >= 0]] for w in walks]
    model = models.Word2Vec(vector_size=DIM, window=window, negative=NEGATIVE, sg=1,
                            min_count=1, workers=n_threads, seed=0)
    model.build_vocab(sentences)
    ids = [str(i) for i in range(walks.max() + 1)]

    def run():
        model.train(sentences, total_examples=len(sentences), epochs=1)
        return model.wv[ids]
    return run


class SkipGramTrain:
    """One training epoch over 800,000 words of SBM walks."""

    param_names = ["impl", "window", "n_threads"]
    params = [["dlkernels", "gensim"], [5, 10], N_THREADS]
    timeout = 300

    def setup(self, impl, window, n_threads):
        self.run = _trainer(impl, window, n_threads)

    def time_train(self, impl, window, n_threads):
        self.run()

    def track_words_per_second(self, impl, window, n_threads):
        import time

        start = time.perf_counter()
        self.run()
        return int(np.count_nonzero(_walks()[0] >= 0) / (time.perf_counter() - start))

    track_words_per_second.unit = "words/s"

    def track_accuracy(self, impl, window, n_threads):
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score

        vectors = self.run()
        return float(cross_val_score(LogisticRegression(max_iter=2000), vectors, _walks()[1],
                                     cv=5).mean())

    track_accuracy.unit = "accuracy"
