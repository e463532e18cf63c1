"""Graphs and node2vec random walks.

.. autosummary::
   :toctree: generated/

   Graph
   random_walks
   Node2Vec
"""

from fastdl.graph.graph import Graph
from fastdl.graph.walks import random_walks
from fastdl.graph.node2vec import Node2Vec

__all__ = ["Graph", "random_walks", "Node2Vec"]
