"""The README's sampling examples, as a user script that must pass ``mypy --strict``."""

import numpy as np
import numpy.typing as npt

from dlkernels.sampling import AliasSampler, NegativeSampler, PrioritizedSampler, SumTree

tree = SumTree.from_weights([1.0, 0.0, 3.0])
drawn: npt.NDArray[np.int64] = tree.sample(5, rng=0)
tree.update([2], [0.5])
value: float = tree[2]
values: npt.NDArray[np.float64] = tree.get(np.array([0, 2]))
slots: npt.NDArray[np.int64] = tree.find([0.5, 1.2])

per = PrioritizedSampler(2**10, alpha=0.6, beta=0.4)
per.update(np.arange(2**10), np.random.default_rng(0).random(2**10))
idx, weights = per.sample(64, rng=0)
mean_weight: float = float(weights.mean())

sampler = AliasSampler(np.arange(1.0, 1001.0))
draws: npt.NDArray[np.int64] = sampler.sample(10_000, rng=0).astype(np.int64)
same: bool = bool((sampler.sample(10_000, rng=0, n_threads=2) == draws).all())
probabilities = sampler.probabilities

word_counts = np.array([50, 10, 0, 5])
neg = NegativeSampler(word_counts)
negatives = neg.sample((4, 5), rng=0, exclude=[0, 1, 3, 0])
log_q: float = neg.log_prob(3)
inputs, candidates, labels = neg.pairs(np.array([[0, 1], [3, 0]]), 2, rng=0)
print(drawn.shape, value, values, slots, idx.shape, mean_weight, draws.shape, same, probabilities.sum(),
      negatives.shape, log_q, inputs.shape, candidates.shape, labels.shape)
