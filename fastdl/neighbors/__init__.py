"""Nearest-neighbour search: an exact KD-tree and locality-sensitive hashing.

.. autosummary::
   :toctree: generated/

   KDTree
   LSHIndex
   split_csr
"""

from fastdl.neighbors._csr import split_csr
from fastdl.neighbors.kdtree import KDTree
from fastdl.neighbors.lsh import LSHIndex

__all__: list[str] = ["KDTree", "LSHIndex", "split_csr"]
