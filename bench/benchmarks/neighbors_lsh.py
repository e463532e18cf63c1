"""asv benchmarks for dlkernels.neighbors.LSHIndex against faiss and exact search.

The data of the design target (``_lsh_data.clustered``: 2e5 points, 2000
queries, 128-D Gaussian clusters). Parameters: ``impl`` (dlkernels or a peer) and
``n_threads``; a peer that is not installed is skipped (n/a). ``track_recall``
records each implementation's recall@10, so the time tables can be read at
known accuracy.

Implementations:

* ``dlkernels``: ``LSHIndex(metric="l2")`` with ``_lsh_data.DLKERNELS_L2`` (tuned for
  recall@10 >= 0.9 on this data);
* ``faiss-flat``: exact search, faiss ``IndexFlatL2`` (BLAS);
* ``numpy``: exact search with numpy's BLAS (threadpoolctl sets its threads);
* ``faiss-lsh``: faiss ``IndexLSH`` with 512 bits (Hamming ranking, no re-ranking);
* ``faiss-lsh-refine``: 128-bit ``IndexLSH`` inside ``IndexRefineFlat`` (k_factor 20),
  which re-ranks the 200 best by Hamming distance with exact L2 (the fastest
  faiss LSH configuration at recall >= 0.9 in ``bench/lsh_curve.py``).
"""

from . import _lsh_data as D

N_THREADS = [1, 2]
IMPLS = ["dlkernels", "faiss-flat", "numpy", "faiss-lsh", "faiss-lsh-refine"]


def build(impl: str, n_threads: int):
    X, _ = D.data()
    if impl == "dlkernels":
        return D.dlkernels_lsh(X, n_threads, **D.DLKERNELS_L2)
    if impl == "faiss-flat":
        return D.faiss_flat(X, n_threads)
    if impl == "numpy":
        return D.numpy_brute(X, n_threads)
    if impl == "faiss-lsh":
        return D.faiss_lsh(X, n_threads, 512)
    return D.faiss_lsh(X, n_threads, 128, k_factor=20)


class LSHQuery:
    """2000 queries, k=10, on 2e5 points in 128-D (index built in setup)."""

    params = [IMPLS, N_THREADS]
    param_names = ["impl", "n_threads"]
    timeout = 600

    def setup(self, impl, n_threads):
        self.search = build(impl, n_threads)
        self.queries = D.data()[1]

    def time_query(self, impl, n_threads):
        self.search(self.queries)

    def track_recall(self, impl, n_threads):
        return D.recall(self.search(self.queries), D.ground_truth())

    track_recall.unit = "recall@10"


class LSHBuild:
    """Building the index over 2e5 points in 128-D."""

    params = [["dlkernels", "faiss-lsh", "faiss-lsh-refine"], N_THREADS]
    param_names = ["impl", "n_threads"]
    timeout = 600

    def setup(self, impl, n_threads):
        if impl != "dlkernels":
            D.require("faiss")  # skip (n/a) without faiss
        D.data()

    def time_build(self, impl, n_threads):
        build(impl, n_threads)
