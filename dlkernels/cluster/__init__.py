"""k-means clustering: the exact 1-D optimum, Lloyd on sorted 1-D values, and n-D Lloyd.

.. autosummary::
   :toctree: generated/

   kmeans
   kmeans_1d
   KMeansResult
   ConvergenceWarning
"""

from dlkernels.cluster.kmeans import ConvergenceWarning, KMeansResult, kmeans
from dlkernels.cluster.univariate import kmeans_1d

__all__ = ["kmeans", "kmeans_1d", "KMeansResult", "ConvergenceWarning"]
