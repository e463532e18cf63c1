"""Torch output layers for large vocabularies and long sequences (needs torch).

Hierarchical softmax over a Huffman or balanced tree, Goodman's two-level
class-based softmax, the sampled losses of word2vec, NCE and sampled softmax
(noise from :class:`dlkernels.sampling.NegativeSampler`), binary code
prediction, the von Mises-Fisher loss for continuous outputs, and the
Reformer's LSH attention.

.. autosummary::
   :toctree: generated/

   HierarchicalSoftmax
   ClassBasedSoftmax
   NegativeSamplingLoss
   NCELoss
   SampledSoftmaxLoss
   BinaryCodeSoftmax
   VonMisesFisherLoss
   LSHAttention
"""

from dlkernels._lib.torch_import import require_torch

require_torch("dlkernels.nn")

from dlkernels.nn.binary_code import BinaryCodeSoftmax  # noqa: E402
from dlkernels.nn.class_based import ClassBasedSoftmax  # noqa: E402
from dlkernels.nn.hierarchical import HierarchicalSoftmax  # noqa: E402
from dlkernels.nn.lsh_attention import LSHAttention  # noqa: E402
from dlkernels.nn.sampled import NCELoss, NegativeSamplingLoss, SampledSoftmaxLoss  # noqa: E402
from dlkernels.nn.vmf import VonMisesFisherLoss  # noqa: E402

__all__ = ["HierarchicalSoftmax", "ClassBasedSoftmax", "NegativeSamplingLoss", "NCELoss",
           "SampledSoftmaxLoss", "BinaryCodeSoftmax", "VonMisesFisherLoss", "LSHAttention"]
