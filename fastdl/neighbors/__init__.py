"""Nearest-neighbour search: an exact KD-tree and locality-sensitive hashing.

.. autosummary::
   :toctree: generated/

   KDTree
   split_ragged
"""

from fastdl.neighbors.kdtree import KDTree, split_ragged

__all__: list[str] = ["KDTree", "split_ragged"]
