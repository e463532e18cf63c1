"""dlkernels._lib.random: the ``rng`` argument (SPEC 7) and the kernels' 64-bit keys."""

import numpy as np
import pytest

from dlkernels._lib.random import check_rng, draw_key


class TestCheckRng:
    def test_none_gives_fresh_entropy(self):
        a, b = check_rng(None), check_rng(None)
        assert isinstance(a, np.random.Generator) and isinstance(b, np.random.Generator)
        # Two independent 64-bit draws collide with probability 2**-64.
        assert a.integers(2**63) != b.integers(2**63)

    @pytest.mark.parametrize("seed", [0, 7, 2**40, 2**70, np.int64(7), np.uint32(7)])
    def test_int_seed_is_default_rng(self, seed):
        got = check_rng(seed)
        assert isinstance(got, np.random.Generator)
        np.testing.assert_array_equal(got.random(8), np.random.default_rng(int(seed)).random(8))

    def test_generator_is_passed_through(self):
        gen = np.random.default_rng(3)
        assert check_rng(gen) is gen

    def test_seed_sequence(self):
        got = check_rng(np.random.SeedSequence(11))
        want = np.random.default_rng(np.random.SeedSequence(11))
        np.testing.assert_array_equal(got.random(8), want.random(8))

    @pytest.mark.parametrize("seed", [-1, np.int64(-5), -(2**70)])
    def test_negative_seed(self, seed):
        with pytest.raises(ValueError, match="rng"):
            check_rng(seed)

    @pytest.mark.parametrize("bad", [True, False, np.bool_(True), 1.5, 2.0, "3", b"3", [1, 2],
                                     np.random.RandomState(0), object()])
    def test_wrong_type(self, bad):
        with pytest.raises(TypeError, match="rng"):
            check_rng(bad)

    def test_message_names_the_argument(self):
        with pytest.raises(TypeError, match="seed"):
            check_rng("x", name="seed")
        with pytest.raises(ValueError, match="seed"):
            check_rng(-3, name="seed")


class TestDrawKey:
    def test_key_is_a_64_bit_python_int(self):
        key = draw_key(5)
        assert type(key) is int and 0 <= key < 2**64

    def test_same_seed_same_key(self):
        assert draw_key(5) == draw_key(5) == draw_key(np.random.default_rng(5))
        assert draw_key(np.random.SeedSequence(9)) == draw_key(np.random.default_rng(np.random.SeedSequence(9)))

    def test_generator_advances(self):
        gen = np.random.default_rng(5)
        before = gen.bit_generator.state
        first, second = draw_key(gen), draw_key(gen)
        assert gen.bit_generator.state != before
        assert first != second
        replay = np.random.default_rng(5)
        assert [draw_key(replay), draw_key(replay)] == [first, second]

    def test_different_seeds_different_keys(self):
        keys = {draw_key(s) for s in range(200)}
        assert len(keys) == 200

    def test_none_differs_between_calls(self):
        assert draw_key(None) != draw_key(None)

    def test_keys_use_all_64_bits(self):
        # The top bit of a uniform 64-bit key is a fair coin: among 2000 keys the
        # count of set top bits is Binomial(2000, 1/2), outside [900, 1100] with
        # probability about 7e-6 (the false-alarm rate).
        gen = np.random.default_rng(1)
        keys = [draw_key(gen) for _ in range(2000)]
        assert 900 <= sum(k >= 2**63 for k in keys) <= 1100

    def test_bad_rng_is_refused(self):
        with pytest.raises(ValueError, match="rng"):
            draw_key(-1)
        with pytest.raises(TypeError, match="seed"):
            draw_key(np.random.RandomState(0), name="seed")


def _failing_calls():
    from dlkernels.sampling import AliasSampler, NegativeSampler, PrioritizedSampler, SumTree

    tree = SumTree.from_weights([1.0, 0.0, 2.0])
    per = PrioritizedSampler(3)
    per.update([0, 2], [1.0, 2.0])
    alias = AliasSampler([1.0, 0.0, 2.0])
    neg = NegativeSampler([5, 1, 2, 0])
    return {
        "SumTree.sample n_threads": lambda g: tree.sample(3, rng=g, n_threads=0),
        "SumTree.sample stratified n_threads": lambda g: tree.sample(3, rng=g, stratified=True, n_threads=0),
        "SumTree.sample empty": lambda g: SumTree(3).sample(3, rng=g),
        "PrioritizedSampler.sample n_threads": lambda g: per.sample(3, rng=g, n_threads=0),
        "PrioritizedSampler.sample beta": lambda g: per.sample(3, beta=2.0, rng=g),
        "AliasSampler.sample n_threads": lambda g: alias.sample(3, rng=g, n_threads=0),
        "AliasSampler.sample size": lambda g: alias.sample(-1, rng=g),
        "NegativeSampler.sample n_threads": lambda g: neg.sample(3, rng=g, n_threads=0),
        "NegativeSampler.sample exclude": lambda g: neg.sample((3, 2), rng=g, exclude=[0, 1, 9]),
        "NegativeSampler.sample exclude n_threads": lambda g: neg.sample((3, 2), rng=g, exclude=[0, 1, 2],
                                                                         n_threads=0),
        "NegativeSampler.sample all excluded": lambda g: neg.sample((1, 2), rng=g, exclude=[[0, 1, 2]]),
        "NegativeSampler.sample size": lambda g: neg.sample(-1, rng=g),
        "NegativeSampler.pairs n_negatives": lambda g: neg.pairs([[0, 1]], ratio=-1, rng=g),
        "NegativeSampler.pairs target": lambda g: neg.pairs([[0, 9]], n_negatives=1, rng=g),
        "NegativeSampler.pairs n_threads": lambda g: neg.pairs([[0, 1]], n_negatives=1, rng=g, n_threads=0),
    }


@pytest.mark.parametrize("call", sorted(_failing_calls()))
def test_failed_calls_leave_the_callers_generator_alone(call):
    # A call refused for bad input must not advance the Generator it was given,
    # so that fixing the input and retrying gives the draws the first call would have.
    gen = np.random.default_rng(0)
    before = gen.bit_generator.state
    with pytest.raises((ValueError, TypeError, IndexError)):
        _failing_calls()[call](gen)
    assert gen.bit_generator.state == before
