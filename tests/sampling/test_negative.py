"""NegativeSampler: smoothed unigram noise, exclusions, training pairs, log Q.

Chi-square tests draw at a fixed seed; each has false-alarm rate ALPHA = 1e-4
(see tests/conftest.py).
"""

import pickle
import time

import numpy as np
import pytest

from dlkernels.sampling import NegativeSampler

ROW_CHUNK = 256  # rows per random stream when excluding


def noise(counts, power):
    """counts**power normalised, with count 0 -> probability 0 (also for power 0)."""
    c = np.asarray(counts, dtype=np.float64)
    q = np.where(c > 0, c ** power, 0.0)
    return q / q.sum()


def conditional_expectation(p, exclude, cols):
    """Expected count of each id when row r draws ``cols`` ids from p renormalised
    without the ids in ``exclude[r]`` (-1 is padding)."""
    exclude = np.asarray(exclude)
    rows, n = exclude.shape[0], p.size
    q = np.tile(np.append(p, 0.0), (rows, 1))  # last column absorbs the padding
    np.put_along_axis(q, np.where(exclude >= 0, exclude, n), 0.0, axis=1)
    return cols * (q[:, :n] / q.sum(axis=1, keepdims=True)).sum(axis=0)


@pytest.fixture
def counts(rng):
    c = rng.zipf(1.3, 60).astype(np.int64)
    c[[3, 17, 40]] = 0
    return c


class TestDistribution:
    @pytest.mark.parametrize("power", [0.75, 1.0, 0.5, 0.0, 1.7])
    def test_probabilities(self, counts, power):
        sampler = NegativeSampler(counts, power=power)
        assert len(sampler) == counts.size and sampler.power == power
        np.testing.assert_allclose(sampler.probabilities, noise(counts, power), rtol=1e-13, atol=0)

    def test_default_power(self, counts):
        np.testing.assert_allclose(NegativeSampler(counts).probabilities, noise(counts, 0.75), rtol=1e-13)

    @pytest.mark.parametrize("power", [0.75, 0.0])
    def test_frequencies_and_zero_counts(self, counts, seed, assert_chisquare, power):
        draws = NegativeSampler(counts, power=power).sample(300_000, rng=seed)
        assert_chisquare(draws, noise(counts, power))  # asserts count-0 ids never appear

    def test_large_counts_with_power_above_one(self):
        # counts**power overflows float64; either refuse naming an argument, or get it right.
        try:
            sampler = NegativeSampler([1e200, 1.0, 0.0], power=2.0)
        except ValueError as exc:
            assert "counts" in str(exc) or "power" in str(exc)
        else:
            np.testing.assert_allclose(sampler.probabilities, [1.0, 0.0, 0.0], atol=1e-300)

    @pytest.mark.parametrize("shape, want", [(7, (7,)), ((3, 4), (3, 4)), ((2, 3, 4), (2, 3, 4)),
                                             (0, (0,)), ((), ())])
    def test_shapes(self, counts, shape, want):
        got = NegativeSampler(counts).sample(shape, rng=0)
        assert got.shape == want and got.dtype == np.int64
        assert (counts[got] > 0).all()

    def test_shared(self, counts, seed):
        sampler = NegativeSampler(counts)
        got = sampler.sample(1000, rng=seed)
        assert got.shape == (1000,) and (counts[got] > 0).all()
        np.testing.assert_array_equal(got, sampler.sample(1000, rng=seed))
        assert sampler.sample(0, rng=0).shape == (0,)


class TestExclude:
    def test_one_id_per_row(self, counts, rng, seed, assert_chisquare):
        sampler = NegativeSampler(counts)
        positive = np.flatnonzero(counts)
        exclude = rng.choice(positive, 40_000)
        got = sampler.sample((40_000, 5), rng=seed, exclude=exclude)
        assert got.shape == (40_000, 5)
        assert not (got == exclude[:, None]).any()
        expected = conditional_expectation(sampler.probabilities, exclude[:, None], 5)
        assert_chisquare(got, expected)

    def test_padded_rows(self, counts, rng, seed, assert_chisquare):
        sampler = NegativeSampler(counts)
        rows = 20_000
        exclude = rng.integers(0, counts.size, (rows, 4))
        exclude[rng.random((rows, 4)) < 0.4] = -1  # padding
        exclude[:, 0] = 0  # heavy id 0 excluded everywhere
        got = sampler.sample((rows, 2, 3), rng=seed, exclude=exclude)
        assert got.shape == (rows, 2, 3)
        flat = got.reshape(rows, -1)
        assert not (flat[:, :, None] == exclude[:, None, :]).any()
        assert (counts[flat] > 0).all()
        expected = conditional_expectation(sampler.probabilities, exclude, 6)
        assert_chisquare(flat, expected)

    def test_exclusion_of_almost_all_mass(self, seed, assert_chisquare):
        # Id 0 holds 99.99% of the mass: rejection would need ~1e4 tries per draw,
        # so this goes through the exact fallback. It must be quick and exact.
        counts = np.ones(101)
        counts[0] = 999_900.0
        sampler = NegativeSampler(counts, power=1.0)
        assert sampler.probabilities[0] == pytest.approx(0.9999)
        start = time.perf_counter()
        got = sampler.sample((4000, 25), rng=seed, exclude=np.zeros(4000, np.int64))
        assert time.perf_counter() - start < 10.0
        assert not (got == 0).any()
        assert_chisquare(got, np.r_[0.0, np.ones(100)])

    def test_exclusion_of_almost_all_mass_large_vocabulary(self, seed):
        counts = np.ones(50_000)
        counts[7] = 5e8  # 99.99% of the mass
        sampler = NegativeSampler(counts, power=1.0)
        start = time.perf_counter()
        got = sampler.sample((300, 10), rng=seed, exclude=np.full(300, 7))
        assert time.perf_counter() - start < 20.0
        assert not (got == 7).any()
        # Uniform over the other 49 999 ids: 3000 draws hit about 2912 distinct ids,
        # with a standard deviation under 10.
        assert np.unique(got).size > 2800

    def test_all_mass_excluded_is_refused(self, assert_raises_unchanged):
        sampler = NegativeSampler([5, 0, 3, 1])
        exclude = np.array([[0, 2, -1], [0, 2, 3], [3, -1, -1]])
        assert_raises_unchanged(sampler, lambda: sampler.sample((3, 2), rng=0, exclude=exclude),
                                ValueError, "exclude")
        # Repeats, padding and zero-count ids do not count as drawable ids.
        exclude = np.array([[0, 0, 1, 2, -1, 3], [1, 1, 1, 1, 1, 1]])
        assert_raises_unchanged(sampler, lambda: sampler.sample((2, 2), rng=0, exclude=exclude),
                                ValueError, "exclude")
        only = NegativeSampler([0, 4, 0])
        assert_raises_unchanged(only, lambda: only.sample((1, 1), rng=0, exclude=[1]),
                                ValueError, "exclude")

    def test_rows_that_keep_one_id(self):
        sampler = NegativeSampler([5, 0, 3, 1])
        got = sampler.sample((3, 50), rng=0, exclude=[[0, 2], [3, 0], [2, 3]])
        np.testing.assert_array_equal(got, np.array([[3], [2], [0]]).repeat(50, axis=1))

    def test_empty_rows_and_columns(self, counts):
        sampler = NegativeSampler(counts)
        assert sampler.sample((0, 5), rng=0, exclude=np.empty(0, np.int64)).shape == (0, 5)
        assert sampler.sample((4, 0), rng=0, exclude=[0, 1, 2, 4]).shape == (4, 0)
        got = sampler.sample((3, 4), rng=0, exclude=np.empty((3, 0), np.int64))
        assert got.shape == (3, 4) and (counts[got] > 0).all()

    def test_same_at_any_thread_count(self, counts, rng, seed, assert_thread_invariant):
        sampler = NegativeSampler(counts)
        rows = 3 * ROW_CHUNK + 17
        exclude = rng.integers(0, counts.size, (rows, 3))
        exclude[:, 0] = 0
        assert_thread_invariant(lambda t: sampler.sample((rows, 7), rng=seed, exclude=exclude, n_threads=t))
        assert_thread_invariant(lambda t: sampler.sample(3 * 65536 + 5, rng=seed, n_threads=t))

    def test_same_at_any_thread_count_with_fallback(self, seed, assert_thread_invariant):
        counts = np.ones(300)
        counts[0] = 1e7
        sampler = NegativeSampler(counts, power=1.0)
        exclude = np.zeros(2 * ROW_CHUNK + 3, np.int64)
        assert_thread_invariant(lambda t: sampler.sample((exclude.size, 4), rng=seed, exclude=exclude,
                                                         n_threads=t))

    def test_rng_forms(self, counts, seed):
        sampler = NegativeSampler(counts)
        ex = np.zeros(400, np.int64)

        def draw(rng):
            return sampler.sample((400, 3), rng=rng, exclude=ex)

        np.testing.assert_array_equal(draw(seed), draw(np.random.default_rng(seed)))
        assert not np.array_equal(draw(seed), draw(seed + 1))
        assert not np.array_equal(draw(None), draw(None))


class TestPairs:
    def test_layout(self, counts, rng, seed):
        sampler = NegativeSampler(counts)
        positive = np.flatnonzero(counts)
        pairs = np.stack([rng.integers(0, 1000, 500), rng.choice(positive, 500)], axis=1)
        ratio = 4
        inputs, candidates, labels = sampler.pairs(pairs, n_negatives=ratio, rng=seed)
        m = 500 * (1 + ratio)
        assert inputs.shape == candidates.shape == labels.shape == (m,)
        assert inputs.dtype == candidates.dtype == np.int64 and labels.dtype == np.float32
        np.testing.assert_array_equal(inputs, np.repeat(pairs[:, 0], 1 + ratio))
        np.testing.assert_array_equal(labels, np.tile(np.r_[1.0, np.zeros(ratio)], 500))
        cand = candidates.reshape(500, 1 + ratio)
        np.testing.assert_array_equal(cand[:, 0], pairs[:, 1])
        assert not (cand[:, 1:] == pairs[:, 1:2]).any()
        assert (counts[cand[:, 1:]] > 0).all()

    def test_ratio_zero_and_no_pairs(self, counts):
        sampler = NegativeSampler(counts)
        inputs, candidates, labels = sampler.pairs([[9, 1], [8, 2]], n_negatives=0, rng=0)
        np.testing.assert_array_equal(candidates, [1, 2])
        np.testing.assert_array_equal(labels, [1.0, 1.0])
        np.testing.assert_array_equal(inputs, [9, 8])
        out = sampler.pairs(np.empty((0, 2), np.int64), n_negatives=3, rng=0)
        assert all(x.shape == (0,) for x in out)

    def test_same_rng_same_pairs(self, counts):
        sampler = NegativeSampler(counts)
        a = sampler.pairs([[0, 1], [2, 5]] * 50, n_negatives=3, rng=4)
        b = sampler.pairs([[0, 1], [2, 5]] * 50, n_negatives=3, rng=np.random.default_rng(4))
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        gen = np.random.default_rng(4)
        assert not np.array_equal(sampler.pairs([[0, 1]] * 50, 3, rng=gen)[1],
                                  sampler.pairs([[0, 1]] * 50, 3, rng=gen)[1])


class TestLogProb:
    def test_values(self, counts):
        sampler = NegativeSampler(counts, power=0.75)
        ids = np.arange(counts.size)
        with np.errstate(divide="ignore"):
            want = np.log(noise(counts, 0.75))
        got = sampler.log_prob(ids)
        assert got.shape == ids.shape
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert np.isneginf(got[counts == 0]).all()
        np.testing.assert_allclose(sampler.log_prob(ids.reshape(6, 10)), want.reshape(6, 10), rtol=1e-12)

    def test_scalar_in_float_out(self, counts):
        sampler = NegativeSampler(counts)
        got = sampler.log_prob(np.int64(5))
        assert type(got) is float and got == pytest.approx(np.log(noise(counts, 0.75)[5]), rel=1e-12)
        assert sampler.log_prob(3) == -np.inf
        zero_d = sampler.log_prob(np.array(5))  # an array stays an array, whatever its shape
        assert isinstance(zero_d, np.ndarray) and zero_d.shape == () and zero_d == got

    def test_bad_ids(self, counts, assert_raises_unchanged):
        sampler = NegativeSampler(counts)
        for ids, exc in [(60, IndexError), (-1, IndexError), ([0, 99], IndexError), (1.0, TypeError),
                         (True, TypeError), (["a"], TypeError)]:
            assert_raises_unchanged(sampler, lambda: sampler.log_prob(ids), exc, "ids")


class TestTorch:
    @pytest.fixture
    def torch(self):
        return pytest.importorskip("torch")

    def test_tensor_counts(self, torch, counts):
        sampler = NegativeSampler(torch.tensor(counts))
        got = sampler.sample((4, 5), rng=1, exclude=torch.tensor([0, 1, 2, 4]))
        assert isinstance(got, torch.Tensor) and tuple(got.shape) == (4, 5)
        np.testing.assert_array_equal(got.numpy(), NegativeSampler(counts).sample((4, 5), rng=1,
                                                                                   exclude=[0, 1, 2, 4]))
        assert isinstance(sampler.sample(6, rng=1), torch.Tensor)
        assert isinstance(sampler.probabilities, torch.Tensor)
        assert isinstance(sampler.log_prob(torch.tensor([0, 1])), torch.Tensor)

    def test_tensor_pairs(self, torch, counts):
        sampler = NegativeSampler(counts)
        out = sampler.pairs(torch.tensor([[0, 1], [5, 2]]), n_negatives=2, rng=0)
        assert all(isinstance(x, torch.Tensor) for x in out)
        assert out[2].tolist() == [1.0, 0.0, 0.0] * 2


class TestBadInput:
    @pytest.mark.parametrize("kwargs, exc, name", [
        (dict(counts=[1.0, np.nan]), ValueError, "counts"), (dict(counts=[np.inf]), ValueError, "counts"),
        (dict(counts=[1, -1]), ValueError, "counts"), (dict(counts=[]), ValueError, "counts"),
        (dict(counts=[0, 0, 0]), ValueError, "counts"), (dict(counts=[[1, 2]]), ValueError, "counts"),
        (dict(counts=["a"]), TypeError, "counts"), (dict(counts=np.array([1], dtype=object)), TypeError, "counts"),
        (dict(counts=[1j]), TypeError, "counts"),
        (dict(counts=[1, 2], power=-0.5), ValueError, "power"), (dict(counts=[1, 2], power=np.nan), ValueError, "power"),
        (dict(counts=[1, 2], power=True), TypeError, "power"), (dict(counts=[1, 2], power="1"), TypeError, "power"),
    ])
    def test_constructor(self, kwargs, exc, name):
        with pytest.raises(exc, match=name):
            NegativeSampler(**kwargs)

    @pytest.mark.parametrize("kwargs, exc, name", [
        (dict(size=-1), ValueError, "size"), (dict(size=(2, -1)), ValueError, "size"),
        (dict(size=1.5), TypeError, "size"), (dict(size=True), TypeError, "size"),
        (dict(size=(3, 2), exclude=[0, 1]), ValueError, "exclude"),
        (dict(size=(3, 2), exclude=[[[0]], [[1]], [[2]]]), ValueError, "exclude"),
        (dict(size=(), exclude=[0]), ValueError, "size"),
        (dict(size=(3, 2), exclude=[0, 1, 60]), IndexError, "exclude"),
        (dict(size=(3, 2), exclude=[0, 1, -2]), IndexError, "exclude"),
        (dict(size=(3, 2), exclude=[0.0, 1.0, 2.0]), TypeError, "exclude"),
        (dict(size=(3, 2), exclude=[True, False, True]), TypeError, "exclude"),
        (dict(size=(3, 2), exclude=["a", "b", "c"]), TypeError, "exclude"),
        (dict(size=(3, 2), rng=-1), ValueError, "rng"), (dict(size=(3, 2), rng="x"), TypeError, "rng"),
        (dict(size=(3, 2), exclude=[0, 1, 2], rng=-1), ValueError, "rng"),
        (dict(size=(3, 2), n_threads=0), ValueError, "n_threads"),
        (dict(size=(3, 2), exclude=[0, 1, 2], n_threads=0), ValueError, "n_threads"),
        (dict(size=(3, 2), exclude=[0, 1, 2], n_threads=1.5), TypeError, "n_threads"),
    ])
    def test_sample(self, counts, assert_raises_unchanged, kwargs, exc, name):
        sampler = NegativeSampler(counts)
        assert_raises_unchanged(sampler, lambda: sampler.sample(**kwargs), exc, name)

    @pytest.mark.parametrize("args, exc, name", [
        (([[0, 1, 2]], 1), ValueError, "positive_pairs"), (([0, 1], 1), ValueError, "positive_pairs"),
        (([[0, 60]], 1), IndexError, "positive_pairs"), (([[0, -1]], 1), IndexError, "positive_pairs"),
        (([[0.0, 1.0]], 1), TypeError, "positive_pairs"), (([[True, False]], 1), TypeError, "positive_pairs"),
        (([[0, 1]], -1), ValueError, "n_negatives"), (([[0, 1]], 1.5), TypeError, "n_negatives"),
        (([[0, 1]], True), TypeError, "n_negatives"),
    ])
    def test_pairs(self, counts, assert_raises_unchanged, args, exc, name):
        sampler = NegativeSampler(counts)
        assert_raises_unchanged(sampler, lambda: sampler.pairs(*args, rng=0), exc, name)

    def test_pair_whose_target_holds_all_mass(self, assert_raises_unchanged):
        # pairs() has no `exclude` argument: the message must name the one given.
        sampler = NegativeSampler([0, 7, 0])
        assert_raises_unchanged(sampler, lambda: sampler.pairs([[0, 1]], n_negatives=2, rng=0),
                                ValueError, "positive_pairs")

    @pytest.mark.parametrize("n, exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
    def test_shared(self, counts, assert_raises_unchanged, n, exc):
        sampler = NegativeSampler(counts)
        assert_raises_unchanged(sampler, lambda: sampler.sample(n, rng=0), exc, "size must")


class TestPersistence:
    def test_save_load(self, counts, tmp_path):
        sampler = NegativeSampler(counts, power=0.6)
        sampler.save(tmp_path / "neg.npz")
        _assert_same(NegativeSampler.load(tmp_path / "neg.npz"), sampler)

    def test_pickle(self, counts):
        sampler = NegativeSampler(counts, power=0.6)
        _assert_same(pickle.loads(pickle.dumps(sampler)), sampler)


def _assert_same(a, b):
    assert len(a) == len(b) and a.power == b.power
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    ex = np.arange(300) % len(a)
    ex[b.probabilities[ex] == 0] = -1
    np.testing.assert_array_equal(a.sample((300, 6), rng=2, exclude=ex), b.sample((300, 6), rng=2, exclude=ex))
    np.testing.assert_array_equal(a.pairs([[0, 1]] * 20, 3, rng=2)[1], b.pairs([[0, 1]] * 20, 3, rng=2)[1])
