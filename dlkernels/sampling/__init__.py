"""Weighted sampling: segment trees, the alias method and negative sampling.

.. autosummary::
   :toctree: generated/

   SumTree
   PrioritizedSampler
   AliasSampler
   NegativeSampler
"""

from dlkernels.sampling.alias import AliasSampler
from dlkernels.sampling.negative import NegativeSampler
from dlkernels.sampling.prioritized import PrioritizedSampler
from dlkernels.sampling.segment_tree import SumTree

__all__ = ["SumTree", "PrioritizedSampler", "AliasSampler", "NegativeSampler"]
