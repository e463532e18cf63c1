"""Perplexity of output layers on a synthetic Zipf language-modelling task.

    python bench/nn_perplexity.py [--vocab 10000] [--steps 400]

The language: the next token is ``(r + shift(previous)) mod V`` with rank ``r``
drawn from a Zipf (s = 1.1) distribution over V and ``shift`` a fixed function of
the previous token with 16 values, so the unigram distribution stays Zipf-like
and the best possible perplexity is that of the Zipf law, ``exp(H)`` (printed).
Each model embeds the previous token (d = 64) and predicts the next one through
its output layer; all train with Adam on the same batches and are scored on the
same held-out tokens with their exact full distribution (``log_prob``). Prints
perplexity, top-1 accuracy (of ``predict`` where the layer has one) and the time
of a training step, side by side.

VonMisesFisherLoss predicts a vector, not a distribution: its target embeddings
are fixed random unit vectors, its head is a linear map to ``e_hat``, and its
perplexity is that of the distribution the vMF densities induce on the
vocabulary, ``p(w) ∝ exp(e_hat . e(w))`` (the normaliser ``C_m(|e_hat|)`` is the
same for every word); its accuracy is that of the nearest embedding by cosine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkernels.nn import (BinaryCodeSoftmax, ClassBasedSoftmax, HierarchicalSoftmax,
                          SampledSoftmaxLoss, VonMisesFisherLoss)


def make_language(V: int, rng: np.random.Generator):
    ranks = np.arange(1, V + 1)
    zipf = ranks ** -1.1
    zipf /= zipf.sum()
    shift = rng.integers(0, V, 16)[rng.integers(0, 16, V)]  # previous token -> shift
    entropy = -(zipf * np.log(zipf)).sum()

    def sample(n):
        prev = rng.choice(V, n, p=zipf)
        nxt = (rng.choice(V, n, p=zipf) + shift[prev]) % V
        return torch.as_tensor(prev), torch.as_tensor(nxt)

    return sample, float(np.exp(entropy)), float(zipf[0])


class Model(nn.Module):
    def __init__(self, V, d, head):
        super().__init__()
        self.embed = nn.Embedding(V, d)
        self.head = head

    def features(self, prev):
        return torch.tanh(self.embed(prev))


def argmax(log_prob):
    return lambda h: log_prob(h).argmax(-1)


def build(name, V, d, counts):
    """(head module, loss of (features, targets), log_prob of features, top-1 of features)."""
    if name.startswith("dlkernels HierarchicalSoftmax"):
        head = HierarchicalSoftmax(d, V, counts=counts if "Huffman" in name else None)
    elif name == "dlkernels ClassBasedSoftmax":
        head = ClassBasedSoftmax(d, V, counts=counts)
    elif name == "dlkernels SampledSoftmaxLoss (512)":
        head = SampledSoftmaxLoss(d, V, counts=counts, n_negatives=512, rng=0)
        return head, head, head.log_prob, argmax(head.log_prob)
    elif name.startswith("dlkernels BinaryCodeSoftmax"):
        options = {"dlkernels BinaryCodeSoftmax": {},
                   "dlkernels BinaryCodeSoftmax (hybrid 256)": {"n_softmax": 256},
                   "dlkernels BinaryCodeSoftmax (convolutional)": {"code": "convolutional"}}
        head = BinaryCodeSoftmax(d, V, counts=counts, **options[name])
    elif name == "dlkernels VonMisesFisherLoss":
        table = torch.nn.functional.normalize(torch.randn(V, d), dim=1)
        loss = VonMisesFisherLoss(table)
        project = nn.Linear(d, d)

        def log_prob(h):
            return F.log_softmax(project(h) @ loss.embeddings.T, dim=-1)

        return project, lambda h, y: loss(project(h), y), log_prob, lambda h: loss.predict(
            project(h)).squeeze(-1)
    elif name == "torch AdaptiveLogSoftmaxWithLoss":
        cutoffs = [c for c in (V // 20, V // 4) if 0 < c < V]
        head = nn.AdaptiveLogSoftmaxWithLoss(d, V, cutoffs, div_value=2.0)
        return head, lambda h, y: head(h, y).loss, head.log_prob, head.predict
    elif name == "torch Linear + cross_entropy":
        head = nn.Linear(d, V)

        def log_prob(h):
            return F.log_softmax(head(h), 1)

        return head, lambda h, y: F.cross_entropy(head(h), y), log_prob, argmax(log_prob)
    else:
        raise ValueError(name)
    return head, head, head.log_prob, lambda h: head.predict(h).squeeze(-1)


NAMES = ["dlkernels HierarchicalSoftmax (Huffman)", "dlkernels HierarchicalSoftmax (balanced)",
         "dlkernels ClassBasedSoftmax", "dlkernels SampledSoftmaxLoss (512)",
         "dlkernels BinaryCodeSoftmax", "dlkernels BinaryCodeSoftmax (hybrid 256)",
         "dlkernels BinaryCodeSoftmax (convolutional)", "dlkernels VonMisesFisherLoss",
         "torch AdaptiveLogSoftmaxWithLoss", "torch Linear + cross_entropy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    V, d = args.vocab, args.dim
    rng = np.random.default_rng(args.seed)
    sample, best, best_accuracy = make_language(V, rng)
    batches = [sample(args.batch) for _ in range(args.steps)]
    counts = np.bincount(torch.cat([y for _, y in batches]).numpy(), minlength=V) + 1.0
    test_prev, test_next = sample(10_000)
    print(f"Zipf language: V={V}, d={d}, batch {args.batch}, {args.steps} Adam steps; "
          f"best possible perplexity {best:.1f} (accuracy {best_accuracy:.3f}), unigram perplexity "
          f"{float(np.exp(-(np.log(counts / counts.sum())[test_next.numpy()]).mean())):.1f}")
    print(f"{'output layer':46} {'perplexity':>11} {'accuracy':>9} {'ms/step':>9}")
    for name in NAMES:
        torch.manual_seed(args.seed)
        head, loss_of, log_prob, top1 = build(name, V, d, counts)
        model = Model(V, d, head)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        start = None
        for i, (prev, nxt) in enumerate(batches):
            if i == 1:  # the first step pays for lazy set-up: leave it out
                start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_of(model.features(prev), nxt).backward()
            opt.step()
        per_step = (time.perf_counter() - start) / (args.steps - 1)
        with torch.no_grad():
            pairs = list(zip(test_prev.split(2000), test_next.split(2000)))
            nll = torch.cat([-log_prob(model.features(p)).gather(1, y[:, None]).squeeze(1)
                             for p, y in pairs])
            hits = torch.cat([top1(model.features(p)) == y for p, y in pairs])
        print(f"{name:46} {float(nll.mean().exp()):11.1f} {float(hits.float().mean()):9.3f} "
              f"{per_step * 1e3:9.1f}", flush=True)


if __name__ == "__main__":
    main()
