"""Benchmark cases of the torch layer (dlkernels.nn, dlkernels.decoding), registered in ``_peers``.

``softmax_step``: one training step (forward + backward, gradients freed
between calls) of an output layer with V = 100,000 classes, d = 256, batch 512,
targets drawn from a Zipf (s = 1) unigram distribution:

* ``dlkernels``: HierarchicalSoftmax over the Huffman tree of the counts;
* ``dlkernels-balanced``: HierarchicalSoftmax over a balanced tree;
* ``dlkernels-sparse``: Huffman tree, sparse weight gradients;
* ``torch-adaptive``: nn.AdaptiveLogSoftmaxWithLoss, cutoffs [2000, 10000, 50000], div_value 4;
* ``torch-linear``: nn.Linear + cross_entropy (the full softmax).

``vmf_step`` and ``binary_code_step``: the same step at the issue's size,
V = 100,000, d = 300, batch 512 (:func:`output_step` builds every layer, also
for ``bench/nn_layers.py``): VonMisesFisherLoss and BinaryCodeSoftmax against
nn.Linear + cross_entropy (and the Huffman HierarchicalSoftmax).

``lsh_attention``: forward + backward of one head, seq 4096, dim 64, bucket 64,
4 rounds (:func:`attention_step`): dlkernels LSHAttention, reformer-pytorch's
LSHAttention with the same bucket size and rounds, and full attention.

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


@_register("softmax_step", "dlkernels", threaded=True)
def _hs_huffman(n_threads):
    def build(torch, counts):
        from dlkernels.nn import HierarchicalSoftmax
        return HierarchicalSoftmax(SOFTMAX_D, SOFTMAX_V, counts=counts)
    return _softmax_step(n_threads, build, lambda torch, m, x, y: m(x, y))


@_register("softmax_step", "dlkernels-balanced", threaded=True)
def _hs_balanced(n_threads):
    def build(torch, counts):
        from dlkernels.nn import HierarchicalSoftmax
        return HierarchicalSoftmax(SOFTMAX_D, SOFTMAX_V)
    return _softmax_step(n_threads, build, lambda torch, m, x, y: m(x, y))


@_register("softmax_step", "dlkernels-sparse", threaded=True)
def _hs_sparse(n_threads):
    def build(torch, counts):
        from dlkernels.nn import HierarchicalSoftmax
        return HierarchicalSoftmax(SOFTMAX_D, SOFTMAX_V, counts=counts, sparse=True)
    return _softmax_step(n_threads, build, lambda torch, m, x, y: m(x, y))


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


# -- beam search ------------------------------------------------------------------------
#
# ``beam_step``: a whole beam search divided by its number of steps, batch 16,
# beam 5, 20 steps, over a one-layer recurrent model (d = 256, V = 10,000) whose
# EOS is made unlikely so that both implementations run all 20 steps.
#
# * ``dlkernels``: dlkernels.decoding.beam_search, one step_fn call per step for all rows;
# * ``python-loop``: the textbook loop over batch items and beams, calling the same
#   step_fn on one hypothesis at a time and sorting candidates in Python.

BEAM_BATCH, BEAM_SIZE, BEAM_STEPS, BEAM_V, BEAM_D = 16, 5, 20, 10_000, 256


def _beam_model(torch):
    g = torch.Generator().manual_seed(0)
    E = torch.randn(BEAM_V + 1, BEAM_D, generator=g) * 0.3
    A = torch.randn(BEAM_D, BEAM_D, generator=g) / BEAM_D ** 0.5
    W = torch.randn(BEAM_D, BEAM_V, generator=g) / BEAM_D ** 0.5
    eos_penalty = torch.zeros(BEAM_V)
    eos_penalty[0] = -30.0

    def step_fn(tokens, state):
        h = torch.tanh(state @ A + E[tokens[:, -1]])
        return torch.log_softmax(h @ W + eos_penalty, dim=1), h

    init = torch.randn(BEAM_BATCH, BEAM_D, generator=g)
    return step_fn, init


def python_loop_beam_search(step_fn, init_state, batch_size, beam_size, max_length, bos_id,
                            eos_id, length_penalty=1.0):
    """The plain reference: loops over items and hypotheses, one step_fn call per hypothesis."""
    import torch

    results = []
    for b in range(batch_size):
        beams = [([bos_id], 0.0, init_state[b:b + 1])]
        finished = []
        for t in range(1, max_length + 1):
            candidates = []
            for tokens, score, state in beams:
                log_probs, new_state = step_fn(torch.tensor([tokens]), state)
                top_lp, top_tok = log_probs[0].topk(2 * beam_size)
                for lp, tok in zip(top_lp.tolist(), top_tok.tolist()):
                    candidates.append((score + lp, tokens + [tok], new_state))
            candidates.sort(key=lambda c: -c[0])
            beams = []
            for score, tokens, state in candidates[:2 * beam_size]:
                if tokens[-1] == eos_id or t == max_length:
                    finished.append((score / t ** length_penalty, tokens[1:]))
                elif len(beams) < beam_size:
                    beams.append((tokens, score, state))
            if not beams:
                break
        finished.sort(key=lambda f: -f[0])
        results.append(finished[0])
    return results


@_register("beam_step", "dlkernels", threaded=True)
def _beam_dlkernels(n_threads):
    torch = _require("torch")
    torch.set_num_threads(n_threads)
    from dlkernels.decoding import beam_search

    step_fn, init = _beam_model(torch)
    return lambda: beam_search(step_fn, init, BEAM_BATCH, BEAM_SIZE, BEAM_STEPS,
                               bos_id=BEAM_V, eos_id=0)


@_register("beam_step", "python-loop", threaded=True)
def _beam_loop(n_threads):
    torch = _require("torch")
    torch.set_num_threads(n_threads)
    step_fn, init = _beam_model(torch)
    return lambda: python_loop_beam_search(step_fn, init, BEAM_BATCH, BEAM_SIZE, BEAM_STEPS,
                                           bos_id=BEAM_V, eos_id=0)


# -- output layers at the size, shared with bench/nn_layers.py ---------------------

OUT_V, OUT_D, OUT_BATCH = 100_000, 300, 512
OUTPUT_LAYERS = {
    "linear": "nn.Linear + cross_entropy",
    "hierarchical": "HierarchicalSoftmax (Huffman)",
    "binary": "BinaryCodeSoftmax",
    "binary-hybrid": "BinaryCodeSoftmax (hybrid, 1024 softmax)",
    "binary-convolutional": "BinaryCodeSoftmax (convolutional)",
    "vmf": "VonMisesFisherLoss",
}


def output_step(torch, name: str, V: int = OUT_V, d: int = OUT_D, batch: int = OUT_BATCH,
                device: str = "cpu"):
    """``(step, layer)``: one training step (gradients freed, forward, backward) of the
    output layer ``name`` (a key of OUTPUT_LAYERS) on a fixed Zipf batch."""
    import dlkernels.nn as dnn

    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    counts = 1.0 / np.arange(1, V + 1)
    targets = torch.as_tensor(rng.choice(V, batch, p=counts / counts.sum()), device=device)
    x = torch.randn(batch, d, device=device, requires_grad=True)
    if name == "linear":
        layer = torch.nn.Linear(d, V, device=device)
        loss = lambda: torch.nn.functional.cross_entropy(layer(x), targets)  # noqa: E731
    else:
        if name == "vmf":
            layer = dnn.VonMisesFisherLoss(torch.randn(V, d))
        elif name == "hierarchical":
            layer = dnn.HierarchicalSoftmax(d, V, counts=counts)
        else:
            options = {"binary": {}, "binary-hybrid": {"n_softmax": 1024},
                       "binary-convolutional": {"code": "convolutional"}}[name]
            layer = dnn.BinaryCodeSoftmax(d, V, counts=counts, **options)
        loss = lambda: layer(x, targets)  # noqa: E731
    layer.to(device)

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        loss().backward()

    return step, layer


for _case, _names in (("vmf_step", ("vmf", "linear")),
                      ("binary_code_step", ("binary", "linear", "hierarchical"))):
    for _name in _names:
        _impl = "dlkernels" if _name == _names[0] else {
            "linear": "torch-linear", "hierarchical": "dlkernels-hierarchical"}[_name]

        def _build(n_threads, name=_name):
            torch = _require("torch")
            torch.set_num_threads(n_threads)
            return output_step(torch, name)[0]

        _register(_case, _impl, threaded=True)(_build)


# -- LSH attention ------------------------------------------------------------------------

ATTENTION_N, ATTENTION_DIM, ATTENTION_BUCKET, ATTENTION_HASHES = 4096, 64, 64, 4
ATTENTIONS = {
    "dlkernels": "dlkernels LSHAttention",
    "reformer-pytorch": "reformer-pytorch LSHAttention",
    "full": "full attention (scores materialised)",
    "sdpa": "torch scaled_dot_product_attention",
}


def full_shared_qk_attention(torch, qk, v):
    """Full shared-QK attention as the Reformer defines it: keys are the normalised
    queries, scores scaled by 1/sqrt(d), a token masked from itself."""
    n, d = qk.shape[-2:]
    keys = torch.nn.functional.normalize(qk, dim=-1)
    scores = qk @ keys.transpose(-1, -2) / d ** 0.5
    scores = scores.masked_fill(torch.eye(n, dtype=torch.bool, device=qk.device), -5e4)
    return torch.softmax(scores, -1) @ v


def attention_step(torch, name: str, n: int = ATTENTION_N, dim: int = ATTENTION_DIM,
                   bucket: int = ATTENTION_BUCKET, n_hashes: int = ATTENTION_HASHES,
                   backward: bool = True, device: str = "cpu"):
    """One call (forward, and backward if asked) of attention ``name`` (a key of
    ATTENTIONS) on one head of ``n`` random tokens."""
    torch.manual_seed(0)
    qk = torch.randn(1, n, dim, device=device, requires_grad=backward)
    v = torch.randn(1, n, dim, device=device, requires_grad=backward)
    if name == "dlkernels":
        from dlkernels.nn import LSHAttention

        attn = LSHAttention(bucket, n_hashes=n_hashes, rng=0)
        run = lambda: attn(qk, v)  # noqa: E731
    elif name == "reformer-pytorch":
        reformer = _require("reformer_pytorch")
        attn = reformer.LSHAttention(bucket_size=bucket, n_hashes=n_hashes)
        run = lambda: attn(qk, v)[0]  # noqa: E731
    elif name == "full":
        run = lambda: full_shared_qk_attention(torch, qk, v)  # noqa: E731
    else:
        keys = torch.nn.functional.normalize(qk.detach(), dim=-1)
        not_self = ~torch.eye(n, dtype=torch.bool, device=device)
        run = lambda: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
            qk, keys, v, attn_mask=not_self)

    def step():
        qk.grad = v.grad = None
        out = run()
        if backward:
            out.sum().backward()

    return step


for _impl in ("dlkernels", "reformer-pytorch", "full"):
    def _build_attention(n_threads, name=_impl):
        torch = _require("torch")
        torch.set_num_threads(n_threads)
        return attention_step(torch, name)

    _register("lsh_attention", _impl, threaded=True)(_build_attention)
