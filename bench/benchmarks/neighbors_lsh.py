"""asv benchmarks for dlkernels.neighbors.LSHIndex against graph and inverted-file indexes.

The three data sets of ``_lsh_data`` (2e5 vectors, 128-D: clustered,
low-contrast, cosine embeddings). Parameters: ``impl`` (dlkernels or a peer),
the data set and ``n_threads``; a peer that is not installed is skipped (n/a).
Each index is tuned for recall@10 >= 0.95 on the tuning queries (``LSHIndex.tune``,
or the smallest ``ef`` / ``nprobe`` that reaches it) and timed on the 2000 test
queries; ``track_recall`` records the recall reached there, so the times can be
read at known accuracy. ``bench/lsh_curve.py`` prints all of it, with the build,
tune and update costs, in one run.
"""

from . import _lsh_data as D

IMPLS = ["dlkernels", "hnswlib", "usearch", "faiss-hnsw", "faiss-ivf"]
N_THREADS = [1, 2]


class LSHQuery:
    """2000 queries, k=10, on 2e5 vectors (index built and tuned in setup)."""

    params = [IMPLS, list(D.SETS), N_THREADS]
    param_names = ["impl", "data", "n_threads"]
    timeout = 1800

    def setup(self, impl, data, n_threads):
        self.searcher = D.tuned(impl, data, n_threads)
        self.queries = D.data(data)[2]

    def time_query(self, impl, data, n_threads):
        self.searcher.search(self.queries)

    def track_recall(self, impl, data, n_threads):
        return D.recall(self.searcher.search(self.queries), D.truth(data, "test"))

    track_recall.unit = "recall@10"


class LSHBuild:
    """Building (and, for dlkernels, tuning) the index of 2e5 vectors."""

    params = [IMPLS, list(D.SETS), N_THREADS]
    param_names = ["impl", "data", "n_threads"]
    timeout = 1800
    number, repeat = 1, 1

    def setup(self, impl, data, n_threads):
        if impl != "dlkernels":
            D.require({"hnswlib": "hnswlib", "usearch": "usearch.index"}.get(impl, "faiss"))
        D.truth(data, "tune")

    def time_build_and_tune(self, impl, data, n_threads):
        X, Q_tune, _, metric = D.data(data)
        D.SEARCHERS[impl](X, metric, n_threads).tune(Q_tune, D.truth(data, "tune"))
