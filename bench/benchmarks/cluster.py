"""asv benchmarks for dlkernels.cluster, each against its peers (scikit-learn, faiss).

Set-up lives in ``_cluster_peers.py``; a peer that is not installed is skipped
(n/a). ``bench/kmeans_compare.py`` times the issue's full sizes and prints the
target ratios and inertias.
"""

from .sampling import _Case


class KMeans1D(_Case):
    """k=256 clusters of 2e5 normal float32 values (weights)."""

    case = "kmeans_1d"
    timeout = 600  # scikit-learn takes tens of seconds
    number, repeat = 1, 3

    def time_fit(self, impl, n_threads):
        self.run()

    def track_inertia(self, impl, n_threads):
        return self.run()


class KMeans(_Case):
    """k=256 clusters of 5e4 standard normal float32 points in 32-D."""

    case = "kmeans"
    timeout = 600
    number, repeat = 1, 3

    def time_fit(self, impl, n_threads):
        self.run()

    def track_inertia(self, impl, n_threads):
        return self.run()
