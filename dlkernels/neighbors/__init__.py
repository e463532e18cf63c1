"""Nearest-neighbour search: an exact KD-tree and locality-sensitive hashing.

.. autosummary::
   :toctree: generated/

   KDTree
   LSHIndex
   split_csr
"""

from dlkernels.neighbors._csr import split_csr
from dlkernels.neighbors.kdtree import KDTree
from dlkernels.neighbors.lsh import LSHIndex

__all__: list[str] = ["KDTree", "LSHIndex", "split_csr"]
