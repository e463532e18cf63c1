"""Word embeddings: word2vec's skip-gram, with negative sampling and hierarchical softmax.

.. autosummary::
   :toctree: generated/

   SkipGram
"""

from dlkernels.embed.skipgram import SkipGram

__all__ = ["SkipGram"]
