"""k-means clustering: the exact 1-D optimum, Lloyd on sorted 1-D values, and n-D Lloyd.

.. autosummary::
   :toctree: generated/

   kmeans
   kmeans_1d
   KMeansResult
"""

from dlkernels.cluster.kmeans import KMeansResult, kmeans, kmeans_1d

__all__ = ["kmeans", "kmeans_1d", "KMeansResult"]
