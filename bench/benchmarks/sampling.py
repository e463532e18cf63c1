"""asv benchmarks for dlkernels.sampling, each against its peers in the same table.

Every class is parametrized over ``impl`` (dlkernels or a peer) and ``n_threads``.
Set-up lives in ``_peers.py``; a missing peer, or a peer at an ``n_threads`` it
has no knob for, is skipped (shown as n/a), never failed.
"""

from ._peers import N_THREADS, implementations, make, not_applicable


class _Case:
    """One kernel: ``case`` names its implementations in ``_peers.CASES``."""

    case: str
    param_names = ["impl", "n_threads"]

    def __init_subclass__(cls):
        cls.params = [implementations(cls.case), N_THREADS]
        # asv skips these without running setup (what asv_runner's
        # @skip_for_params sets), so they show as n/a with no stderr noise.
        cls.skip_params = not_applicable(cls.case)

    def setup(self, impl, n_threads):
        self.run = make(self.case, impl, n_threads)


class PERSample(_Case):
    """1024 indices and importance weights from 2**20 priorities."""

    case = "per_sample"

    def time_sample(self, impl, n_threads):
        self.run()


class PERUpdate(_Case):
    """1024 priorities written at random indices of 2**20, a fresh batch each call."""

    case = "per_update"

    def time_update(self, impl, n_threads):
        self.run()


class PERUpdateSameBatch(_Case):
    """The same 1024 indices rewritten each call: the all-cached best case."""

    case = "per_update_same_batch"

    def time_update(self, impl, n_threads):
        self.run()


class PERStep(_Case):
    """One replay step: draw 1024 of 2**20, then write their new priorities."""

    case = "per_step"

    def time_step(self, impl, n_threads):
        self.run()


class SumTreeBuild(_Case):
    """A tree over 2**20 values (peer: the cumsum an inverse-CDF lookup needs)."""

    case = "sumtree_build"

    def time_build(self, impl, n_threads):
        self.run()


class SumTreeSample(_Case):
    """1024 draws in proportion to 2**20 values (peer: searchsorted on a cumsum)."""

    case = "sumtree_sample"

    def time_sample(self, impl, n_threads):
        self.run()


class SumTreeFind(_Case):
    """1024 inverse-CDF lookups in 2**20 values (peer: searchsorted on a cumsum)."""

    case = "sumtree_find"

    def time_find(self, impl, n_threads):
        self.run()


class AliasBuild(_Case):
    """The alias table of 1e6 categories (peer: numpy's normalised cumsum)."""

    case = "alias_build"

    def time_build(self, impl, n_threads):
        self.run()


class AliasSample(_Case):
    """1e7 draws from 1e6 categories; numpy-integers is the uniform, memory-bound floor."""

    case = "alias_sample"
    timeout = 180  # numpy's choice takes several seconds per call

    def time_sample(self, impl, n_threads):
        self.run()


class NegativeSample(_Case):
    """(1024, 5) negatives avoiding 1024 positives, from a 1e5-word Zipf vocabulary."""

    case = "negative_sample"

    def time_sample(self, impl, n_threads):
        self.run()


class NegativePairs(_Case):
    """Training pairs for 1e5 positives, 5 negatives each."""

    case = "negative_pairs"

    def time_pairs(self, impl, n_threads):
        self.run()
