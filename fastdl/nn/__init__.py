"""Torch output layers for large vocabularies (needs torch).

Hierarchical softmax over a Huffman or balanced tree, Goodman's two-level
class-based softmax, and the sampled losses of word2vec, NCE and sampled
softmax, drawing their noise from :class:`fastdl.sampling.NegativeSampler`.

.. autosummary::
   :toctree: generated/

   HierarchicalSoftmax
   ClassBasedSoftmax
   NegativeSamplingLoss
   NCELoss
   SampledSoftmaxLoss
"""

from fastdl.nn.class_based import ClassBasedSoftmax
from fastdl.nn.hierarchical import HierarchicalSoftmax
from fastdl.nn.sampled import NCELoss, NegativeSamplingLoss, SampledSoftmaxLoss

__all__ = ["HierarchicalSoftmax", "ClassBasedSoftmax", "NegativeSamplingLoss", "NCELoss",
           "SampledSoftmaxLoss"]
