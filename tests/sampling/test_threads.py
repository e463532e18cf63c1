"""The thread-safety contract of the samplers, stressed with four threads per object.

Writers swap the whole distribution between two disjoint supports (even slots,
then odd slots) in one update; readers check that what they see comes from one
of the two, never from half of each: a read that overlapped a write unguarded
would mix them (and, for prioritized replay, could return weights above 1).
"""

import numpy as np
import pytest

from dlkernels.sampling import AliasSampler, NegativeSampler, PrioritizedSampler, SumTree

N = 4096
EVEN = np.where(np.arange(N) % 2 == 0, 1.0 + np.arange(N) % 7, 0.0)
ODD = np.where(np.arange(N) % 2 == 1, 2.0 + np.arange(N) % 5, 0.0)


def _one_support(idx) -> bool:
    parity = np.asarray(idx) % 2
    return bool((parity == parity.flat[0]).all())


def test_sumtree_reads_never_see_half_an_update(concurrently):
    tree = SumTree.from_weights(EVEN)
    totals = {EVEN.sum(), ODD.sum()}

    def write(i):
        tree.update(np.arange(N), ODD if i % 2 == 0 else EVEN)

    def sample(i):
        return _one_support(tree.sample(20_000, rng=i, n_threads=2))

    def read(i):
        values = tree.values
        return tree.total in totals and (np.array_equal(values, EVEN) or
                                         np.array_equal(values, ODD))

    results = concurrently(write, sample, sample, read)
    assert all(results[1]) and all(results[2]) and all(results[3])


def test_prioritized_weights_stay_normalised_during_updates(concurrently):
    per = PrioritizedSampler(N, alpha=0.6, beta=0.4)
    per.update(np.arange(N), EVEN)

    def write(i):
        per.update(np.arange(N), ODD * (1 + i % 3) if i % 2 == 0 else EVEN / (1 + i % 5))

    def sample(i):
        idx, weights = per.sample(4096, rng=i, n_threads=2)
        return _one_support(idx) and bool(((weights > 0) & (weights <= 1.0)).all())

    results = concurrently(write, sample, sample, sample)
    assert all(all(r) for r in results[1:])


@pytest.mark.parametrize("make", [lambda: AliasSampler(EVEN + ODD),
                                  lambda: NegativeSampler(EVEN + ODD)])
def test_immutable_samplers_give_each_thread_its_own_exact_draws(concurrently, make):
    sampler = make()
    expected = {seed: sampler.sample(50_000, rng=seed, n_threads=1) for seed in range(8)}

    def draw(i):
        seed = i % 8
        return np.array_equal(sampler.sample(50_000, rng=seed, n_threads=2), expected[seed])

    results = concurrently(draw, draw, draw, draw)
    assert all(all(r) for r in results)


def test_prioritized_weights_of_far_apart_priorities_are_positive():
    # (N * P(i))^-beta / (N * P_min)^-beta overflows as a ratio; in logs it does not.
    per = PrioritizedSampler(2, alpha=0.6, beta=0.4)
    per.update([0, 1], [1e-300, 1e300])
    idx, weights = per.sample(1000, rng=0)
    want = {0: 1.0, 1: np.exp(-0.4 * 0.6 * (np.log(1e300) - np.log(1e-300)))}
    assert want[1] > 0
    np.testing.assert_allclose(weights, [want[i] for i in idx], rtol=1e-12)
    assert set(idx.tolist()) == {1}   # slot 0 has probability ~1e-360


@pytest.mark.parametrize("call, name", [
    (lambda: SumTree(2**64), "capacity"),
    (lambda: SumTree(2**62), "capacity"),
    (lambda: NegativeSampler([1, 1]).sample((2**33, 2**33)), "size"),
    (lambda: AliasSampler([1.0]).sample(2**62), "size"),
    (lambda: PrioritizedSampler(4).sample((2**40,)), "size"),
])
def test_absurd_sizes_are_refused_by_name(call, name):
    with pytest.raises(ValueError, match=f"{name} asks for .* more than this machine's memory"):
        call()


def test_masked_arrays_are_refused():
    weights = np.ma.masked_array([1.0, 5.0, 2.0], mask=[False, True, False])
    for make in (AliasSampler, SumTree.from_weights, NegativeSampler):
        with pytest.raises(TypeError, match="masked array"):
            make(weights)


def test_bfloat16_tensors_are_named():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="weights has a dtype numpy cannot hold"):
        AliasSampler(torch.ones(3, dtype=torch.bfloat16))
