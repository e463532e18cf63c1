"""Graphs and node2vec random walks.

.. autosummary::
   :toctree: generated/

   Graph
   random_walks
   Node2Vec
"""

from dlkernels.graph.graph import Graph
from dlkernels.graph.walks import random_walks
from dlkernels.graph.node2vec import Node2Vec

__all__ = ["Graph", "random_walks", "Node2Vec"]
