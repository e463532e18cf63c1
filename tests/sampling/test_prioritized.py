"""PrioritizedSampler: priority**alpha in a SumTree, draws with importance weights.

Chi-square tests draw at a fixed seed; each has false-alarm rate ALPHA = 1e-4
(see tests/conftest.py).
"""

import pickle

import numpy as np
import pytest

from dlkernels.sampling import PrioritizedSampler


def stored(priorities, alpha):
    """What the tree must hold: priority**alpha, and 0 (never drawn) for priority 0."""
    p = np.asarray(priorities, dtype=np.float64)
    return np.where(p > 0, p ** alpha, 0.0)


def importance_weights(values, idx, beta):
    """(N P(i))**-beta / max_j (N P(j))**-beta = (p_i / p_min)**-beta, by hand."""
    return (values[idx] / values[values > 0].min()) ** (-beta)


@pytest.fixture
def per(rng):
    sampler = PrioritizedSampler(500, alpha=0.6, beta=0.4)
    priorities = rng.lognormal(0, 1.5, 500)
    priorities[rng.random(500) < 0.2] = 0.0
    sampler.update(np.arange(500), priorities)
    return sampler, priorities


class TestUpdate:
    def test_defaults_and_empty_state(self):
        sampler = PrioritizedSampler(10)
        assert (sampler.alpha, sampler.beta, sampler.capacity, len(sampler)) == (0.6, 0.4, 10, 10)
        assert sampler.max_priority == 1.0
        np.testing.assert_array_equal(sampler.tree.values, np.zeros(10))
        with pytest.raises(ValueError, match="total"):
            sampler.sample(4, rng=0)

    @pytest.mark.parametrize("alpha", [0.6, 1.0, 0.25, 2.0])
    def test_tree_holds_priority_to_the_alpha(self, per, alpha):
        _, priorities = per
        sampler = PrioritizedSampler(500, alpha=alpha)
        sampler.update(np.arange(500), priorities)
        np.testing.assert_allclose(sampler.tree.values, stored(priorities, alpha), rtol=1e-14)

    def test_alpha_zero_is_uniform_over_slots_with_a_priority(self):
        sampler = PrioritizedSampler(4, alpha=0.0)
        sampler.update([0, 1, 2, 3], [0.0, 1.0, 5.0, 0.0])
        np.testing.assert_array_equal(sampler.tree.values, [0.0, 1.0, 1.0, 0.0])
        idx, _ = sampler.sample(100, rng=0, stratified=False)
        assert set(idx.tolist()) <= {1, 2}

    def test_last_repeat_wins_and_scalar_broadcasts(self, rng):
        sampler, ref = PrioritizedSampler(50, alpha=0.5), np.zeros(50)
        idx = rng.integers(0, 50, 200)
        prio = rng.uniform(0, 4, 200)
        sampler.update(idx, prio)
        ref[idx] = prio
        sampler.update([3, 4], 9.0)
        ref[[3, 4]] = 9.0
        np.testing.assert_allclose(sampler.tree.values, stored(ref, 0.5), rtol=1e-14)

    def test_max_priority(self):
        sampler = PrioritizedSampler(5)
        seen = [1.0]
        for idx, prio in [([0], [0.5]), ([1, 2], [3.0, 2.0]), ([3], 2.5), ([0, 4], [7.0, 0.0]), ([], [])]:
            sampler.update(idx, prio)
            seen.extend(np.ravel(prio).tolist())
            assert sampler.max_priority == max(seen)


class TestSample:
    @pytest.mark.parametrize("stratified", [True, False])
    @pytest.mark.parametrize("beta", [None, 0.0, 0.4, 1.0])
    def test_importance_weights(self, per, seed, stratified, beta):
        sampler, _ = per
        idx, w = sampler.sample(2000, beta=beta, rng=seed, stratified=stratified)
        assert idx.shape == w.shape == (2000,)
        assert idx.dtype == np.int64 and w.dtype == np.float64
        values = sampler.tree.values
        assert (values[idx] > 0).all()
        want = importance_weights(values, idx, sampler.beta if beta is None else beta)
        np.testing.assert_allclose(w, want, rtol=1e-13)
        assert ((w > 0) & (w <= 1)).all()

    def test_weight_one_for_the_smallest_priority(self):
        sampler = PrioritizedSampler(3, alpha=1.0, beta=1.0)
        sampler.update([0, 1, 2], [1.0, 0.0, 4.0])
        idx, w = sampler.sample(400, rng=0, stratified=False)
        np.testing.assert_array_equal(w[idx == 0], 1.0)
        np.testing.assert_allclose(w[idx == 2], 0.25, rtol=1e-15)

    def test_default_is_stratified_and_sorted(self, per, seed):
        sampler, _ = per
        idx, _ = sampler.sample(256, rng=seed)
        assert (np.diff(idx) >= 0).all()
        np.testing.assert_array_equal(idx, sampler.tree.sample(256, rng=seed, stratified=True))

    def test_frequencies(self, per, seed, assert_chisquare):
        sampler, priorities = per
        idx, _ = sampler.sample(300_000, rng=seed, stratified=False)
        assert_chisquare(idx, stored(priorities, 0.6))

    def test_stratified_frequencies_over_many_calls(self, per, seed, assert_chisquare):
        # Pooled over many small stratified batches; within a batch draws are
        # negatively correlated, which makes the chi-square test conservative
        # (false-alarm rate at most ALPHA).
        sampler, priorities = per
        gen = np.random.default_rng(seed)
        idx = np.concatenate([sampler.sample(32, rng=gen)[0] for _ in range(6000)])
        assert_chisquare(idx, stored(priorities, 0.6))

    def test_zero_draws(self, per):
        sampler, _ = per
        idx, w = sampler.sample(0, rng=0)
        assert idx.shape == w.shape == (0,)

    @pytest.mark.parametrize("stratified", [True, False])
    def test_same_at_any_thread_count(self, per, seed, assert_thread_invariant, stratified):
        sampler, _ = per
        assert_thread_invariant(
            lambda t: sampler.sample(256 * 5 + 7, rng=seed, stratified=stratified, n_threads=t))

    def test_rng_forms(self, per, seed):
        sampler, _ = per
        a = sampler.sample(300, rng=seed)
        np.testing.assert_array_equal(a, sampler.sample(300, rng=np.random.default_rng(seed)))
        assert not np.array_equal(a[0], sampler.sample(300, rng=seed + 1)[0])
        assert not np.array_equal(sampler.sample(300)[0], sampler.sample(300)[0])


class TestBadInput:
    @pytest.mark.parametrize("kwargs, exc, name", [
        (dict(capacity=0), ValueError, "capacity"), (dict(capacity=-2), ValueError, "capacity"),
        (dict(capacity=True), TypeError, "capacity"), (dict(capacity=3.0), TypeError, "capacity"),
        (dict(capacity=3, alpha=-0.1), ValueError, "alpha"), (dict(capacity=3, alpha=np.nan), ValueError, "alpha"),
        (dict(capacity=3, alpha=np.inf), ValueError, "alpha"), (dict(capacity=3, alpha=True), TypeError, "alpha"),
        (dict(capacity=3, alpha="1"), TypeError, "alpha"),
        (dict(capacity=3, beta=1.5), ValueError, "beta"), (dict(capacity=3, beta=-0.1), ValueError, "beta"),
        (dict(capacity=3, beta=np.nan), ValueError, "beta"), (dict(capacity=3, beta=None), TypeError, "beta"),
    ])
    def test_constructor(self, kwargs, exc, name):
        with pytest.raises(exc, match=name):
            PrioritizedSampler(**kwargs)

    @pytest.mark.parametrize("indices, priorities, exc, name", [
        ([0, 1, 2], [1.0, 2.0, np.nan], ValueError, "priorities"),
        ([0, 1, 2], [1.0, 2.0, np.inf], ValueError, "priorities"),
        ([0, 1, 2], [1.0, 2.0, -1.0], ValueError, "priorities"),
        ([0, 1], -1.0, ValueError, "priorities"),
        ([0, 1, 2], [1.0, 2.0], ValueError, "priorities"),
        ([0, 1, 2], [1.0, 2.0, 3.0, 4.0], ValueError, "priorities"),
        ([0, 1, 500], [1.0, 2.0, 3.0], IndexError, "indices"),
        ([0, -1], [1.0, 2.0], IndexError, "indices"),
        ([0.0], [1.0], TypeError, "indices"), ([True], [1.0], TypeError, "indices"),
        ([0], ["a"], TypeError, "priorities"), ([0], [1j], TypeError, "priorities"),
    ])
    def test_update_is_all_or_nothing(self, per, assert_raises_unchanged, indices, priorities, exc, name):
        sampler, _ = per
        sampler.update([7], [42.0])  # a max_priority that a failed call must not move
        assert_raises_unchanged(sampler, lambda: sampler.update(indices, priorities), exc, name)

    def test_priority_to_the_alpha_overflow(self, assert_raises_unchanged):
        sampler = PrioritizedSampler(4, alpha=2.0)
        sampler.update([0, 1], [1.0, 2.0])
        # Each priority is finite, but 1e300**2 is not: refuse, naming the argument.
        assert_raises_unchanged(sampler, lambda: sampler.update([2, 3], [5.0, 1e300]),
                                ValueError, "priorities")

    @pytest.mark.parametrize("kwargs, exc, name", [
        (dict(size=-1), ValueError, "size must"), (dict(size=1.0), TypeError, "size must"),
        (dict(size=True), TypeError, "size must"),
        (dict(size=3, beta=1.5), ValueError, "beta"), (dict(size=3, beta=-1.0), ValueError, "beta"),
        (dict(size=3, beta=np.nan), ValueError, "beta"), (dict(size=3, beta="x"), TypeError, "beta"),
        (dict(size=3, rng=-1), ValueError, "rng"), (dict(size=3, rng=1.5), TypeError, "rng"),
        (dict(size=3, n_threads=0), ValueError, "n_threads"), (dict(size=3, n_threads=2.5), TypeError, "n_threads"),
    ])
    def test_sample(self, per, assert_raises_unchanged, kwargs, exc, name):
        sampler, _ = per
        assert_raises_unchanged(sampler, lambda: sampler.sample(**kwargs), exc, name)


class TestPersistence:
    def test_save_load(self, per, tmp_path):
        sampler = PrioritizedSampler(500, alpha=0.7, beta=0.9)
        sampler.update(np.arange(500), per[1])
        sampler.update([3], [50.0])
        sampler.save(tmp_path / "per.npz")
        loaded = PrioritizedSampler.load(tmp_path / "per.npz")
        _assert_same(loaded, sampler)

    def test_pickle(self, per):
        sampler, _ = per
        clone = pickle.loads(pickle.dumps(sampler))
        _assert_same(clone, sampler)
        clone.update(0, 1e3)
        assert sampler.max_priority != 1e3


def _assert_same(a, b):
    assert (a.alpha, a.beta, a.max_priority, a.capacity) == (b.alpha, b.beta, b.max_priority, b.capacity)
    np.testing.assert_array_equal(a.tree.values, b.tree.values)
    assert a.tree.total == b.tree.total
    for x, y in zip(a.sample(700, rng=3), b.sample(700, rng=3)):
        np.testing.assert_array_equal(x, y)
