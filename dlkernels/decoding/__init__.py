"""Decoding for sequence models (needs torch): beam search vectorised over batch and beams.

.. autosummary::
   :toctree: generated/

   beam_search
   BeamSearchOutput
"""

from dlkernels._lib.torch_import import require_torch

require_torch("dlkernels.decoding")  # one clear ImportError without torch

from dlkernels.decoding.beam_search import BeamSearchOutput, beam_search  # noqa: E402

__all__ = ["beam_search", "BeamSearchOutput"]
