"""Torch output layers for large vocabularies (needs torch).

Hierarchical softmax over a Huffman or balanced tree, Goodman's two-level
class-based softmax, and the sampled losses of word2vec, NCE and sampled
softmax, drawing their noise from :class:`dlkernels.sampling.NegativeSampler`.

.. autosummary::
   :toctree: generated/

   HierarchicalSoftmax
   ClassBasedSoftmax
   NegativeSamplingLoss
   NCELoss
   SampledSoftmaxLoss
"""

from dlkernels.nn.class_based import ClassBasedSoftmax
from dlkernels.nn.hierarchical import HierarchicalSoftmax
from dlkernels.nn.sampled import NCELoss, NegativeSamplingLoss, SampledSoftmaxLoss

__all__ = ["HierarchicalSoftmax", "ClassBasedSoftmax", "NegativeSamplingLoss", "NCELoss",
           "SampledSoftmaxLoss"]
