"""The README's torch output layers and Huffman codes, for ``mypy --strict``."""

import numpy as np
import torch

from dlkernels.huffman import huffman_tree
from dlkernels.nn import HierarchicalSoftmax, SampledSoftmaxLoss

codes: list[str] = huffman_tree([5, 1, 1, 3]).codes()

word_counts = np.random.default_rng(0).integers(1, 1_000, 500)
hidden, targets = torch.randn(16, 32), torch.randint(0, 500, (16,))
hs = HierarchicalSoftmax(32, 500, counts=word_counts)
hs(hidden, targets).backward()
top: torch.Tensor = hs.predict(hidden, k=5)
log_p: torch.Tensor = hs.log_prob(hidden)

loss_fn = SampledSoftmaxLoss(32, 500, counts=word_counts, n_negatives=64, rng=0)
loss: torch.Tensor = loss_fn(hidden, targets)
loss.backward()
print(codes, top.shape, log_p.shape, loss.item())
