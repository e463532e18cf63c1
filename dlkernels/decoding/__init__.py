"""Decoding for sequence models (needs torch): beam search vectorised over batch and beams.

.. autosummary::
   :toctree: generated/

   beam_search
   BeamSearchOutput
"""

from dlkernels.decoding.beam_search import BeamSearchOutput, beam_search

__all__ = ["beam_search", "BeamSearchOutput"]
