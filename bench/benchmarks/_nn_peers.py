"""Benchmark cases of the torch layer (fastdl.nn, fastdl.decoding), registered in ``_peers``.

``softmax_step``: one training step (forward + backward, gradients freed
between calls) of an output layer with V = 100,000 classes, d = 256, batch 512,
targets drawn from a Zipf (s = 1) unigram distribution:

* ``fastdl``: HierarchicalSoftmax over the Huffman tree of the counts;
* ``fastdl-balanced``: HierarchicalSoftmax over a balanced tree;
* ``fastdl-sparse``: Huffman tree, sparse weight gradients;
* ``torch-adaptive``: nn.AdaptiveLogSoftmaxWithLoss, cutoffs [2000, 10000, 50000], div_value 4;
* ``torch-linear``: nn.Linear + cross_entropy (the full softmax).

torch's intra-op thread count is set to ``n_threads`` for every implementation
(they are all torch code).
"""

from __future__ import annotations

import functools

import numpy as np

from ._peers import _register, _require

SOFTMAX_V, SOFTMAX_D, SOFTMAX_BATCH = 100_000, 256, 512
ADAPTIVE_CUTOFFS = [2_000, 10_000, 50_000]


@functools.lru_cache(maxsize=None)
def _softmax_data():
    counts = 1.0 / np.arange(1, SOFTMAX_V + 1)
    targets = np.random.default_rng(5).choice(SOFTMAX_V, SOFTMAX_BATCH, p=counts / counts.sum())
    return counts, targets


def _softmax_step(n_threads, build, loss_of):
    torch = _require("torch")
    torch.set_num_threads(n_threads)
    torch.manual_seed(0)
    counts, targets = _softmax_data()
    layer = build(torch, counts)
    x = torch.randn(SOFTMAX_BATCH, SOFTMAX_D, requires_grad=True)
    y = torch.as_tensor(targets)

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        loss_of(torch, layer, x, y).backward()

    return step


@_register("softmax_step", "fastdl", threaded=True)
def _hs_huffman(n_threads):
    def build(torch, counts):
        from fastdl.nn import HierarchicalSoftmax
        return HierarchicalSoftmax(SOFTMAX_D, SOFTMAX_V, counts=counts)
    return _softmax_step(n_threads, build, lambda torch, m, x, y: m(x, y).mean())


@_register("softmax_step", "fastdl-balanced", threaded=True)
def _hs_balanced(n_threads):
    def build(torch, counts):
        from fastdl.nn import HierarchicalSoftmax
        return HierarchicalSoftmax(SOFTMAX_D, SOFTMAX_V)
    return _softmax_step(n_threads, build, lambda torch, m, x, y: m(x, y).mean())


@_register("softmax_step", "fastdl-sparse", threaded=True)
def _hs_sparse(n_threads):
    def build(torch, counts):
        from fastdl.nn import HierarchicalSoftmax
        return HierarchicalSoftmax(SOFTMAX_D, SOFTMAX_V, counts=counts, sparse=True)
    return _softmax_step(n_threads, build, lambda torch, m, x, y: m(x, y).mean())


@_register("softmax_step", "torch-adaptive", threaded=True)
def _adaptive(n_threads):
    def build(torch, counts):
        return torch.nn.AdaptiveLogSoftmaxWithLoss(SOFTMAX_D, SOFTMAX_V, ADAPTIVE_CUTOFFS,
                                                   div_value=4.0)
    return _softmax_step(n_threads, build, lambda torch, m, x, y: m(x, y).loss)


@_register("softmax_step", "torch-linear", threaded=True)
def _linear(n_threads):
    def build(torch, counts):
        return torch.nn.Linear(SOFTMAX_D, SOFTMAX_V)
    return _softmax_step(n_threads, build,
                         lambda torch, m, x, y: torch.nn.functional.cross_entropy(m(x), y))
