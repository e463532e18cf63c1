"""asv benchmarks for dlkernels.compress: structural pruning and inference after it.

Set-up lives in ``_compress_peers.py``; without torch every case is skipped.
``bench/compress_pipeline.py`` runs the end-to-end digits compression.
"""

from .sampling import _Case


class UnitsInfer(_Case):
    """Batch-256 inference of a 1024-4096-4096-10 MLP, 50% of hidden units removed/masked."""

    case = "units_infer"

    def time_infer(self, impl, n_threads):
        self.run()


class UnitsInferDigits(_Case):
    """Batch-256 inference of the 64-300-100-10 digits MLP, 50% of hidden units removed/masked."""

    case = "units_infer_digits"

    def time_infer(self, impl, n_threads):
        self.run()


class PruneInferResnet18(_Case):
    """One 224x224 image through a resnet18-shaped network, 50% of all channels removed."""

    case = "prune_infer_resnet18"

    def time_infer(self, impl, n_threads):
        self.run()


class PruneCallResnet18(_Case):
    """The structural pruning call on a resnet18-shaped network (50% of all channels)."""

    case = "prune_call_resnet18"

    def time_prune(self, impl, n_threads):
        self.run()
