"""asv benchmarks for dlkernels.cluster, each against its peers (scikit-learn,
faiss, ckmeans, kmeans1d).

Set-up lives in ``_cluster_peers.py``; a peer that is not installed is skipped
(n/a). ``bench/kmeans_compare.py`` times the issue's full sizes and prints the
target ratios and inertias.
"""

from .sampling import _Case


class _Fit(_Case):
    timeout = 600  # scikit-learn and the exact peers take tens of seconds
    number, repeat = 1, 3

    def time_fit(self, impl, n_threads):
        self.run()

    def track_inertia(self, impl, n_threads):
        return self.run()


class KMeans1D(_Fit):
    """k=256 clusters of 2e5 normal float32 values (weights): Lloyd, the exact optimum, peers."""

    case = "kmeans_1d"


class KMeans1DExact(_Fit):
    """The exact optimum into k=255 clusters of 2e5 normal float32 values."""

    case = "kmeans_1d_exact"


class KMeans(_Fit):
    """k=256 clusters of 5e4 standard normal float32 points in 32-D."""

    case = "kmeans"


class KMeansSampled(_Fit):
    """As KMeans, trained on 256 points per centroid as faiss is (every point at this size)."""

    case = "kmeans_sampled"
