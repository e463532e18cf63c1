"""asv benchmarks for dlkernels.nn (and dlkernels.decoding), each against its peers.

Set-up lives in ``_nn_peers.py``; an implementation whose package is missing is
skipped (n/a).
"""

from .sampling import _Case


class SoftmaxStep(_Case):
    """Forward + backward of an output layer: V=100000, d=256, batch 512, Zipf targets."""

    case = "softmax_step"
    timeout = 600  # the full softmax takes seconds per call

    def time_step(self, impl, n_threads):
        self.run()


class VonMisesFisherStep(_Case):
    """Forward + backward of VonMisesFisherLoss vs nn.Linear + cross_entropy:
    V=100000, d=300, batch 512."""

    case = "vmf_step"
    timeout = 600

    def time_step(self, impl, n_threads):
        self.run()


class BinaryCodeStep(_Case):
    """Forward + backward of BinaryCodeSoftmax vs nn.Linear + cross_entropy and the Huffman
    HierarchicalSoftmax: V=100000, d=300, batch 512."""

    case = "binary_code_step"
    timeout = 600

    def time_step(self, impl, n_threads):
        self.run()


class LSHAttentionStep(_Case):
    """Forward + backward of one attention head, seq 4096, dim 64: LSHAttention (bucket 64,
    4 rounds) vs reformer-pytorch's and full attention."""

    case = "lsh_attention"
    timeout = 600

    def time_step(self, impl, n_threads):
        self.run()


class BeamSearch(_Case):
    """A 20-step beam search, batch 16, beam 5, V=10000, d=256 recurrent step_fn
    (divide by 20 for the time per step)."""

    case = "beam_step"

    def time_search(self, impl, n_threads):
        self.run()
