"""The README's model-compression examples, for ``mypy --strict``."""

import os
import tempfile

import torch
from torch import nn

from dlkernels.compress import (CompressionReport, compression_report, load_compressed,
                                prune_magnitude, prune_units, quantize, save_compressed)

model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
prune_magnitude(model, 0.8, scope="layer")
quantize(model, bits=4, bias_bits=4)
report: CompressionReport = compression_report(model)
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "model.fdlz")
    size: int = save_compressed(model, path)
    restored: nn.Module = load_compressed(path)
x = torch.randn(8, 64)
equal: bool = torch.equal(restored(x), model(x))
mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
smaller: nn.Module = prune_units(mlp, 0.5)
print(report.ratio, size, equal, smaller)
