"""Weighted sampling: segment trees, the alias method and negative sampling.

.. autosummary::
   :toctree: generated/

   SumTree
   PrioritizedSampler
   AliasSampler
   NegativeSampler
"""

from fastdl.sampling.alias import AliasSampler
from fastdl.sampling.negative import NegativeSampler
from fastdl.sampling.prioritized import PrioritizedSampler
from fastdl.sampling.segment_tree import SumTree

__all__ = ["SumTree", "PrioritizedSampler", "AliasSampler", "NegativeSampler"]
