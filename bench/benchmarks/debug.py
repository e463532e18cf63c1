"""asv benchmarks for dlkernels.debug: the MemoryProfiler's overhead on a training step.

``impl`` is ``dlkernels`` (one training step inside ``with MemoryProfiler(model,
optimizer):``) or ``no-profiler`` (the same step, bare); the ratio of the two is
the profiler's overhead (target: below 10%). ``n_threads`` is torch's thread
count. Set-up lives in ``_peers.py``; without torch every case is skipped.
For numbers to quote on a busy machine use ``python bench/profiler_overhead.py``,
which interleaves the two.
"""

from .sampling import _Case


class ProfileMLPStep(_Case):
    """Adam step of a 784-512-512-10 MLP on a batch of 128, with and without the profiler."""

    case = "profile_mlp_step"

    def time_step(self, impl, n_threads):
        self.run()


class ProfileCNNStep(_Case):
    """Adam step of a two-conv CNN on 64 images of 3x32x32, with and without the profiler."""

    case = "profile_cnn_step"

    def time_step(self, impl, n_threads):
        self.run()
