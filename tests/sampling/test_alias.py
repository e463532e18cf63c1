"""AliasSampler: Vose's alias method, numpy and torch in and out.

Chi-square tests draw at a fixed seed; each has false-alarm rate ALPHA = 1e-4
(see tests/conftest.py).
"""

import pickle

import numpy as np
import pytest

from dlkernels._lib.persist import save_arrays
from dlkernels.sampling import AliasSampler

ALIAS_CHUNK = 65536  # draws per random stream in the kernel


def skewed_weights(rng, n, zeros=0.1):
    w = rng.pareto(1.0, n)
    w[rng.random(n) < zeros] = 0.0
    w[rng.integers(n)] = 1.0
    return w


def equal_mass_groups(p, n_groups):
    """Group id per category: consecutive categories of about equal total mass."""
    mid = np.cumsum(p) - p / 2
    return np.minimum((mid * n_groups).astype(np.int64), n_groups - 1)


class TestProbabilities:
    @pytest.mark.parametrize("n", [1, 2, 10, 1000])
    def test_are_normalised_weights(self, rng, n):
        w = skewed_weights(rng, n)
        sampler = AliasSampler(w)
        p = sampler.probabilities
        assert len(sampler) == n and p.dtype == np.float64 and p.shape == (n,)
        np.testing.assert_allclose(p, w / w.sum(), rtol=1e-13, atol=0)
        assert abs(p.sum() - 1.0) < 1e-12

    def test_is_a_copy(self):
        sampler = AliasSampler([1.0, 3.0])
        sampler.probabilities[0] = 0.9
        np.testing.assert_array_equal(sampler.probabilities, [0.25, 0.75])

    def test_extreme_ratios(self, seed):
        sampler = AliasSampler([1e-300, 1.0, 0.0, 1e300])  # warnings are errors: no overflow warning
        p = sampler.probabilities
        assert np.isfinite(p).all() and abs(p.sum() - 1.0) < 1e-15
        assert p[2] == 0.0 and p[3] == pytest.approx(1.0, abs=1e-15)
        assert p[1] == pytest.approx(1e-300, rel=1e-12)
        draws = sampler.sample(100_000, rng=seed)
        assert not (draws == 2).any()
        assert (draws == 3).all()  # the others have probability ~1e-300

    @pytest.mark.parametrize("w", [[1e308, 1e308, 0.0, 1e308], [1e-320, 1e-320, 0.0, 1e-320],
                                   [np.finfo(float).max] * 2 + [0.0, np.finfo(float).max]])
    def test_sums_beyond_float_range(self, seed, assert_chisquare, w):
        sampler = AliasSampler(w)
        np.testing.assert_allclose(sampler.probabilities, [1 / 3, 1 / 3, 0.0, 1 / 3], rtol=1e-14)
        assert_chisquare(sampler.sample(60_000, rng=seed), [1, 1, 0, 1])


class TestSample:
    def test_frequencies(self, rng, seed, assert_chisquare):
        w = skewed_weights(rng, 200)
        assert_chisquare(AliasSampler(w).sample(400_000, rng=seed), w)

    def test_integer_weights_with_exact_thirds(self, seed, assert_chisquare):
        w = [3, 0, 1, 1, 0, 7, 2]
        assert_chisquare(AliasSampler(w).sample((300, 400), rng=seed), w)

    def test_one_million_skewed_categories(self, seed, assert_chisquare):
        # 1e6 pareto weights, 10% zero. The heaviest 1000 categories are tested
        # one by one, everything else in 1000 groups of equal expected mass.
        gen = np.random.default_rng(seed)
        n = 1_000_000
        w = skewed_weights(gen, n)
        sampler = AliasSampler(w)
        p = w / w.sum()
        draws = sampler.sample(5_000_000, rng=seed)
        assert draws.min() >= 0 and draws.max() < n
        assert not (w[draws] == 0).any(), "a zero-weight category was drawn"
        counts = np.bincount(draws, minlength=n)
        top = np.argsort(p)[-1000:]
        rest = np.ones(n, bool)
        rest[top] = False
        groups = equal_mass_groups(np.where(rest, p, 0.0) / p[rest].sum(), 1000)
        observed = np.concatenate([counts[top], np.bincount(groups[rest], counts[rest], 1000)])
        expected = np.concatenate([p[top], np.bincount(groups[rest], p[rest], 1000)])
        assert_chisquare(observed, expected, counts=True)

    def test_single_category(self):
        np.testing.assert_array_equal(AliasSampler([0.3]).sample(1000, rng=0), np.zeros(1000))
        np.testing.assert_array_equal(AliasSampler([0.0, 2.0, 0.0]).sample(1000, rng=0), np.ones(1000))

    @pytest.mark.parametrize("size, shape", [(5, (5,)), (np.int64(5), (5,)), ((2, 3, 4), (2, 3, 4)),
                                             ([2, 3], (2, 3)), (0, (0,)), ((3, 0), (3, 0)), ((), ())])
    def test_sizes(self, size, shape):
        w = [1.0, 0.0, 2.0, 5.0]
        got = AliasSampler(w).sample(size, rng=1)
        assert isinstance(got, np.ndarray) and got.shape == shape and got.dtype == np.int64
        assert np.isin(got, [0, 2, 3]).all()

    def test_empty_size_gives_one_draw_as_a_0d_array(self):
        sampler = AliasSampler([1.0, 0.0, 2.0])
        got = sampler.sample((), rng=1)
        assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == np.int64
        assert {int(sampler.sample((), rng=s)) for s in range(200)} == {0, 2}

    def test_size_is_required(self):
        with pytest.raises(TypeError, match="size"):
            AliasSampler([1.0, 2.0]).sample(rng=0)

    def test_same_at_any_thread_count(self, rng, seed, assert_thread_invariant):
        sampler = AliasSampler(skewed_weights(rng, 5000))
        size = 3 * ALIAS_CHUNK + 123  # several chunks and a ragged last one
        assert_thread_invariant(lambda t: sampler.sample(size, rng=seed, n_threads=t))

    def test_rng_forms(self, seed):
        sampler = AliasSampler(np.arange(1.0, 101.0))
        np.testing.assert_array_equal(sampler.sample(500, rng=seed), sampler.sample(500, rng=seed))
        np.testing.assert_array_equal(sampler.sample(500, rng=np.random.default_rng(seed)),
                                      sampler.sample(500, rng=np.random.default_rng(seed)))
        assert not np.array_equal(sampler.sample(500, rng=seed), sampler.sample(500, rng=seed + 1))
        assert not np.array_equal(sampler.sample(500), sampler.sample(500))
        gen = np.random.default_rng(seed)
        assert not np.array_equal(sampler.sample(500, rng=gen), sampler.sample(500, rng=gen))


class TestTorch:
    @pytest.fixture
    def torch(self):
        return pytest.importorskip("torch")

    @pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
    def test_cpu_tensor_in_tensor_out(self, torch, seed, dtype):
        w = np.array([1.0, 0.0, 2.0, 5.0])
        sampler = AliasSampler(torch.tensor(w).to(getattr(torch, dtype)))
        got = sampler.sample((3, 50), rng=seed)
        assert isinstance(got, torch.Tensor) and got.device.type == "cpu"
        assert got.dtype == torch.int64 and tuple(got.shape) == (3, 50)
        np.testing.assert_array_equal(got.numpy(), AliasSampler(w).sample((3, 50), rng=seed))
        p = sampler.probabilities
        assert isinstance(p, torch.Tensor)
        np.testing.assert_allclose(p.numpy(), w / w.sum(), rtol=1e-15)
        assert tuple(sampler.sample((), rng=seed).shape) == ()

    def test_tensor_requiring_grad(self, torch):
        w = torch.tensor([1.0, 2.0], requires_grad=True)
        assert isinstance(AliasSampler(w).sample(4, rng=0), torch.Tensor)


@pytest.mark.gpu
class TestCuda:
    @pytest.fixture
    def torch(self):
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        return torch

    def test_table_and_draws_on_the_gpu(self, torch, rng, seed, assert_chisquare):
        w = skewed_weights(rng, 300)
        sampler = AliasSampler(torch.tensor(w, device="cuda"))
        p = sampler.probabilities
        assert isinstance(p, torch.Tensor) and p.device.type == "cuda"
        np.testing.assert_allclose(p.cpu().numpy(), w / w.sum(), rtol=1e-13)
        draws = sampler.sample((500, 800), rng=seed)
        assert isinstance(draws, torch.Tensor) and draws.device.type == "cuda"
        assert draws.dtype == torch.int64 and tuple(draws.shape) == (500, 800)
        assert_chisquare(draws.cpu().numpy(), w)
        one = sampler.sample((), rng=seed)
        assert tuple(one.shape) == () and w[int(one)] > 0

    def test_same_rng_same_draws(self, torch, seed):
        sampler = AliasSampler(torch.tensor([1.0, 0.0, 3.0, 2.0], device="cuda"))
        a, b = sampler.sample(10_000, rng=seed), sampler.sample(10_000, rng=seed)
        assert torch.equal(a, b)
        assert not torch.equal(a, sampler.sample(10_000, rng=seed + 1))


class TestBadInput:
    @pytest.mark.parametrize("weights, exc", [
        ([1.0, np.nan], ValueError), ([np.inf, 1.0], ValueError), ([-np.inf, 1.0], ValueError),
        ([1.0, -0.5], ValueError), ([], ValueError), ([0.0, 0.0], ValueError), ([[1.0, 2.0]], ValueError),
        (2.0, ValueError), (["a", "b"], TypeError), (np.array([1.0], dtype=object), TypeError),
        ([1 + 1j], TypeError), ([[1.0], [1.0, 2.0]], TypeError), (None, TypeError),
    ])
    def test_weights(self, weights, exc):
        with pytest.raises(exc, match="weights"):
            AliasSampler(weights)

    @pytest.mark.parametrize("kwargs, exc, name", [
        (dict(size=-1), ValueError, "size"), (dict(size=(2, -1)), ValueError, "size"),
        (dict(size=1.5), TypeError, "size"), (dict(size=True), TypeError, "size"),
        (dict(size=(2, 1.5)), TypeError, "size"), (dict(size="3"), TypeError, "size"),
        (dict(size=3, rng=-1), ValueError, "rng"), (dict(size=3, rng="x"), TypeError, "rng"),
        (dict(size=3, n_threads=0), ValueError, "n_threads"),
        (dict(size=3, n_threads=1.5), TypeError, "n_threads"),
    ])
    def test_sample(self, assert_raises_unchanged, kwargs, exc, name):
        sampler = AliasSampler([1.0, 0.0, 2.0])
        assert_raises_unchanged(sampler, lambda: sampler.sample(**kwargs), exc, name)


class TestPersistence:
    def test_save_load(self, rng, tmp_path):
        sampler = AliasSampler(skewed_weights(rng, 1000))
        sampler.save(tmp_path / "alias.npz")
        _assert_same(AliasSampler.load(tmp_path / "alias.npz"), sampler)

    def test_pickle(self, rng):
        sampler = AliasSampler(skewed_weights(rng, 1000))
        _assert_same(pickle.loads(pickle.dumps(sampler)), sampler)

    def test_pickle_torch_backed(self):
        torch = pytest.importorskip("torch")
        sampler = AliasSampler(torch.tensor([1.0, 0.0, 2.0]))
        clone = pickle.loads(pickle.dumps(sampler))
        assert isinstance(clone.sample(5, rng=0), torch.Tensor)
        assert torch.equal(clone.sample(50, rng=0), sampler.sample(50, rng=0))

    def test_tampered_table_is_refused_or_harmless(self, tmp_path):
        # A file claiming to be an AliasSampler whose aliases point outside the table.
        save_arrays(tmp_path / "bad.npz", "AliasSampler", probabilities=np.array([0.5, 0.5]),
                    prob=np.array([0.0, 0.0]), alias=np.array([5, 2**40]))
        try:
            sampler = AliasSampler.load(tmp_path / "bad.npz")
        except ValueError:
            return
        draws = sampler.sample(1000, rng=0)
        assert draws.min() >= 0 and draws.max() < 2, f"draws outside [0, 2): {np.unique(draws)}"


def _assert_same(a, b):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    np.testing.assert_array_equal(a.sample(10_000, rng=5), b.sample(10_000, rng=5))

    def test_table_that_draws_another_distribution_is_refused(self, tmp_path):
        # A valid-looking table (ids in range, prob in [0, 1], no zero-probability
        # id reachable) that draws 3/4 : 1/4 while the file claims 1/2 : 1/2.
        save_arrays(tmp_path / "swapped.npz", "AliasSampler", probabilities=np.array([0.5, 0.5]),
                    prob=np.array([1.0, 0.5]), alias=np.array([0, 0]))
        with pytest.raises(ValueError, match="does not draw from its stored probabilities"):
            AliasSampler.load(tmp_path / "swapped.npz")

    @pytest.mark.parametrize("weights", ["skewed", "zipf", "extreme"])
    def test_saved_tables_pass_the_check(self, rng, tmp_path, weights):
        w = {"skewed": skewed_weights(rng, 100_000),
             "zipf": 1.0 / np.arange(1, 1_000_001),
             "extreme": np.r_[1e300, np.full(1000, 1e-300), 0.0, 1.0]}[weights]
        sampler = AliasSampler(w)
        sampler.save(tmp_path / "alias.npz")
        _assert_same(AliasSampler.load(tmp_path / "alias.npz"), sampler)
