"""LSHIndex with hashing="random": SimHash and p-stable collision probabilities
(binomial tests at the suite's false-alarm rate ALPHA, tests/conftest.py: with
correct hash functions each fails at a random seed with probability ALPHA; at
the fixed seed the outcome is deterministic), probes that cover every bucket,
the automatic bucket width, and hashing of tensors (CPU and CUDA).
"""

import math

import numpy as np
import pytest
from scipy import stats

from dlkernels.neighbors import LSHIndex, split_csr

from .lsh_support import DTYPES, assert_topk_of, brute_distances, clustered, tolerance

ALPHA = 1e-4  # as in tests/conftest.py


class TestProbes:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_all_candidates_equals_brute_force(self, rng, metric, dtype):
        # One bit per table and two probes: both buckets of both tables are
        # visited, so every point is a candidate and the result is the exact top k.
        X = clustered(rng, 400, 9)
        Q = clustered(rng, 30, 9)
        index = LSHIndex(9, hashing="random", metric=metric, n_tables=2, n_bits=1,
                         dtype=dtype, bucket_width=0.5 if metric == "l2" else "auto", rng=1)
        index.add(X)
        ids, off = index.candidates(Q, n_probes=2)
        if metric == "cosine":
            assert np.all(np.diff(off) == 400)
        dist, found = index.query(Q, k=12, n_probes=2)
        assert dist.dtype == np.dtype(dtype) and found.dtype == np.int64
        stored = index.vectors
        pools = split_csr(ids, off)
        assert_topk_of(index, Q, dist, found, 12, pools, lambda i: stored[i])
        if metric == "cosine":
            for i, q in enumerate(Q):
                want = np.argsort(brute_distances(stored, q, metric), kind="stable")[:12]
                d_want = brute_distances(stored[want], q, metric)
                np.testing.assert_allclose(dist[i], d_want, **tolerance(dtype))

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_large_width_l2_equals_brute_force(self, rng, dtype):
        X = rng.standard_normal((300, 5)) * 3
        Q = rng.standard_normal((25, 5)) * 3
        index = LSHIndex(5, hashing="random", metric="l2", n_tables=3, n_bits=2,
                         bucket_width=1e4, dtype=dtype, rng=2)
        index.add(X)
        dist, found = index.query(Q, k=7)
        stored = index.vectors
        for i, q in enumerate(Q):
            d = brute_distances(stored, q, "l2")
            np.testing.assert_allclose(dist[i], np.sort(d)[:7], **tolerance(dtype, 10))
            np.testing.assert_array_equal(found[i], np.argsort(d, kind="stable")[:7])

    def test_auto_width(self, rng):
        index = LSHIndex(4, hashing="random", metric="l2", rng=21)
        with pytest.raises(ValueError, match="first add"):
            index.hash(np.ones((1, 4)))
        X = rng.standard_normal((300, 4)) * 7.0
        index.add(X)
        w = index.bucket_width
        assert isinstance(w, float) and w > 0
        # Proportional to the data's scale.
        other = LSHIndex(4, hashing="random", metric="l2", rng=21)
        other.add(X / 7.0)
        assert other.bucket_width == pytest.approx(w / 7.0, rel=1e-6)
        # Degenerate first batches still give a usable width.
        for data in (np.ones((5, 4)), np.array([[3.0, 0, 0, 0]]), np.zeros((2, 4))):
            one = LSHIndex(4, hashing="random", metric="l2", rng=21)
            one.add(data)
            assert one.bucket_width > 0


def binomial_ok(successes, trials, p):
    return stats.binomtest(int(successes), int(trials), p).pvalue > ALPHA


def pair_at_angle(rng, dim, angle):
    u = rng.standard_normal(dim)
    u /= np.linalg.norm(u)
    v = rng.standard_normal(dim)
    v -= (v @ u) * u
    v /= np.linalg.norm(v)
    return np.stack([u, math.cos(angle) * u + math.sin(angle) * v]) * rng.uniform(0.5, 3)


def datar(c, w):
    """Collision probability of one p-stable (Gaussian) hash of width w at distance c
    (Datar, Immorlica, Indyk & Mirrokni, SoCG 2004)."""
    r = w / c
    return (1 - 2 * stats.norm.cdf(-r)
            - 2 / (math.sqrt(2 * math.pi) * r) * (1 - math.exp(-r * r / 2)))


class TestHash:
    def test_shape_dtype_and_sign_symmetry(self, rng):
        index = LSHIndex(7, hashing="random", n_tables=5, n_bits=64, dtype="float64", rng=22)
        X = rng.standard_normal((40, 7))
        codes = index.hash(X)
        assert codes.shape == (40, 5) and codes.dtype == np.uint64
        # SimHash: -x flips every bit; a positive scale changes none.
        np.testing.assert_array_equal(index.hash(-X), ~codes)
        np.testing.assert_array_equal(index.hash(3.5 * X), codes)
        few = LSHIndex(7, hashing="random", n_tables=5, n_bits=6, rng=22)
        assert few.hash(X).max() < 2**6

    def test_l2_hash_is_translation_sensitive_and_deterministic(self, rng):
        index = LSHIndex(3, hashing="random", metric="l2", n_tables=4, n_bits=3,
                         bucket_width=0.1, rng=23)
        X = rng.standard_normal((30, 3))
        np.testing.assert_array_equal(index.hash(X), index.hash(X.copy()))
        assert (index.hash(X + 10.0) != index.hash(X)).all()

    @pytest.mark.parametrize("angle", [math.pi / 8, math.pi / 3, math.pi / 2, 0.8 * math.pi])
    def test_simhash_bit_collision_probability(self, rng, angle):
        # 4096 independent hyperplanes: agreements ~ Binomial(4096, 1 - angle/pi).
        index = LSHIndex(16, hashing="random", n_tables=64, n_bits=64, dtype="float64", rng=rng)
        a, b = index.hash(pair_at_angle(rng, 16, angle))
        agree = 4096 - sum(bin(int(x)).count("1") for x in (a ^ b))
        assert binomial_ok(agree, 4096, 1 - angle / math.pi), (agree / 4096, 1 - angle / math.pi)

    @pytest.mark.parametrize("ratio", [0.3, 1.0, 2.5, 6.0])
    def test_pstable_collision_probability(self, rng, ratio):
        # n_bits=1: one p-stable hash per table, 4096 independent tables; two
        # points at distance c share a bucket with Datar et al.'s p(c).
        w, dim = 2.0, 10
        c = w / ratio
        index = LSHIndex(dim, hashing="random", metric="l2", n_tables=4096, n_bits=1,
                         bucket_width=w,
                         dtype="float64", rng=rng)
        x = rng.standard_normal(dim)
        step = rng.standard_normal(dim)
        pair = np.stack([x, x + c * step / np.linalg.norm(step)])
        a, b = index.hash(pair)
        assert binomial_ok(np.sum(a == b), 4096, datar(c, w)), (np.mean(a == b), datar(c, w))

    def test_torch_hash_equals_numpy_hash(self, rng, metric):
        torch = pytest.importorskip("torch")
        X = rng.standard_normal((500, 33)) * 4
        for dtype in DTYPES:
            index = LSHIndex(33, hashing="random", metric=metric, n_tables=7,
                             n_bits=64 if metric == "cosine" else 9,
                             bucket_width=0.7 if metric == "l2" else "auto", dtype=dtype, rng=24)
            want = index.hash(X)
            for t in (torch.from_numpy(X), torch.from_numpy(X.astype(np.float32))):
                got = index.hash(t)
                assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
                want_t = index.hash(t.numpy())
                np.testing.assert_array_equal(got.numpy().view(np.uint64), want_t)
            np.testing.assert_array_equal(index.hash(torch.from_numpy(X)).numpy().view(np.uint64),
                                          want)
            ints = torch.arange(66).reshape(2, 33)
            np.testing.assert_array_equal(index.hash(ints).numpy().view(np.uint64),
                                          index.hash(ints.numpy()))

    def test_torch_hash_bad_input(self, metric):
        torch = pytest.importorskip("torch")
        index = LSHIndex(3, hashing="random", metric=metric,
                         bucket_width=1.0 if metric == "l2" else "auto", rng=25)
        with pytest.raises(ValueError, match="X must have shape"):
            index.hash(torch.ones(2, 4))
        with pytest.raises(ValueError, match="X must be finite"):
            index.hash(torch.tensor([[1.0, float("nan"), 0.0]]))
        with pytest.raises(TypeError, match="X must be a real tensor"):
            index.hash(torch.ones(2, 3, dtype=torch.complex64))
        with pytest.raises(TypeError, match="X must be a real tensor"):
            index.hash(torch.ones(2, 3, dtype=torch.bool))

    @pytest.mark.gpu
    def test_cuda_hash_equals_numpy_hash(self, rng, metric):
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        X = rng.standard_normal((1000, 64))
        index = LSHIndex(64, hashing="random", metric=metric, n_tables=8,
                         n_bits=32 if metric == "cosine" else 10,
                         bucket_width=0.5 if metric == "l2" else "auto", rng=26)
        got = index.hash(torch.from_numpy(X).cuda())
        assert got.device.type == "cuda" and got.dtype == torch.int64
        # float64 on both sides: codes may differ only where a projection is within
        # rounding of a boundary, which random data never hits at this size.
        np.testing.assert_array_equal(got.cpu().numpy().view(np.uint64), index.hash(X))



def test_split_csr():
    parts = split_csr(np.array([4, 7, 1]), np.array([0, 2, 2, 3]))
    assert [p.tolist() for p in parts] == [[4, 7], [], [1]]
    assert split_csr(np.array([], dtype=np.int64), np.array([0])) == []  # zero queries
    for off in ([0, 2], [1, 3], [0, 3, 2, 3], [[0, 3]], [0.0, 3.0]):
        with pytest.raises(ValueError, match="offsets"):
            split_csr(np.arange(3), np.array(off))
