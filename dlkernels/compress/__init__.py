"""Model compression for torch (Deep Compression: prune, share weights, Huffman code).

Needs torch; works on CPU and GPU tensors.

* :func:`prune_magnitude`: zero the smallest weights, keep them zero while
  fine-tuning (masked gradients, 1 byte of mask per weight).
* :func:`prune_units`: remove whole units/channels, so the model gets smaller
  and faster; :func:`unit_groups` shows which units it removes together.
* :func:`quantize`: a codebook and an index tensor per layer (k-means, exact
  1-D optimum, or ternary), with centroid fine-tuning.
* :func:`fine_tune`: a few epochs of training that keeps all of that intact.
* :func:`compress_to_size`: prune and quantize to a file size or ratio, each
  layer's share and bits chosen by measured sensitivity.
* :func:`low_rank`: SVD factorisation of a ``Linear`` layer.
* :func:`compression_report`, :func:`save_compressed`, :func:`load_compressed`:
  the entropy-coded file format and its per-layer accounting.

.. autosummary::
   :toctree: generated/

   prune_magnitude
   remove_pruning
   prune_units
   unit_groups
   UnitGroup
   Member
   PruningWarning
   quantize
   dequantize
   quantized_tensors
   round_codebooks
   fine_tune
   compress_to_size
   Allocation
   low_rank
   LowRankResult
   compression_report
   CompressionReport
   LayerReport
   save_compressed
   load_compressed
"""

from dlkernels.compress.allocate import Allocation, compress_to_size
from dlkernels.compress.fine_tune import fine_tune
from dlkernels.compress.low_rank import LowRankResult, low_rank
from dlkernels.compress.prune import prune_magnitude, remove_pruning
from dlkernels.compress.quantize import dequantize, quantize, quantized_tensors, round_codebooks
from dlkernels.compress.report import CompressionReport, LayerReport, compression_report
from dlkernels.compress.storage import load_compressed, save_compressed
from dlkernels.compress._warning import PruningWarning
from dlkernels.compress.depgraph import Member, UnitGroup, unit_groups
from dlkernels.compress.structural import prune_units

__all__ = ["prune_magnitude", "remove_pruning", "prune_units", "unit_groups", "UnitGroup", "Member",
           "PruningWarning", "quantize", "dequantize",
           "quantized_tensors", "fine_tune", "low_rank", "LowRankResult", "compression_report",
           "CompressionReport", "LayerReport", "save_compressed", "load_compressed",
           "round_codebooks", "compress_to_size", "Allocation"]
