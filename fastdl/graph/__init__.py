"""Graphs and node2vec random walks.

.. autosummary::
   :toctree: generated/

   Graph
   random_walks
"""

from fastdl.graph.graph import Graph
from fastdl.graph.walks import random_walks

__all__ = ["Graph", "random_walks"]
