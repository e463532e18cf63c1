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


class BeamSearch(_Case):
    """A 20-step beam search, batch 16, beam 5, V=10000, d=256 recurrent step_fn
    (divide by 20 for the time per step)."""

    case = "beam_step"

    def time_search(self, impl, n_threads):
        self.run()
