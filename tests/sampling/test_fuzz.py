"""Hypothesis: random shapes and values against numpy models, and bad inputs for
every facade (the error names the argument and the object is left as it was)."""

import math
import re

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from dlkernels.sampling import AliasSampler, NegativeSampler, PrioritizedSampler, SumTree

# -- strategies ----------------------------------------------------------------------------

sizes = st.integers(1, 300)


@st.composite
def integer_weights(draw, min_size=1, max_size=300, positive=True):
    """Integer-valued float64 weights (exact sums), at least one positive if asked."""
    n = draw(st.integers(min_size, max_size))
    w = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 10**6))).astype(np.float64)
    if positive and not w.any():
        w[draw(st.integers(0, n - 1))] = draw(st.integers(1, 10**6))
    return w


@st.composite
def float_weights(draw, max_size=300, low=1e-6, high=1e6):
    """Positive floats over many orders of magnitude, with exact zeros mixed in."""
    n = draw(st.integers(1, max_size))
    w = draw(hnp.arrays(np.float64, n, elements=st.one_of(
        st.just(0.0), st.floats(low, high, allow_nan=False, allow_infinity=False))))
    if not w.any():
        w[draw(st.integers(0, n - 1))] = 1.0
    return w


@st.composite
def index_batches(draw, capacity, max_size=200):
    """Indices into ``capacity`` slots (repeats likely), any shape up to 2-D."""
    shape = draw(st.one_of(st.tuples(st.integers(0, max_size)),
                           st.tuples(st.integers(0, 15), st.integers(0, 15))))
    return draw(hnp.arrays(np.int64, shape, elements=st.integers(0, capacity - 1)))


def corrupt_floats(draw, arr, *, nonnegative=True):
    """A broken copy of a valid 1-D float array, and the exception it must raise."""
    arr = np.array(arr, dtype=np.float64, copy=True)
    kinds = ["nan", "inf", "-inf", "object", "str", "complex"] + (["neg"] if nonnegative else [])
    if arr.size == 0:
        kinds = ["object", "str", "complex"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("nan", "inf", "-inf", "neg"):
        pos = draw(st.integers(0, arr.size - 1))
        arr[pos] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf,
                    "neg": -draw(st.floats(1e-300, 1e300))}[kind]
        return arr, ValueError
    if kind == "object":
        return arr.astype(object), TypeError
    if kind == "str":
        return arr.astype(str), TypeError
    return arr + 1j, TypeError


def corrupt_indices(draw, idx, size):
    """A broken copy of a valid index array, and the exception it must raise."""
    idx = np.array(idx, dtype=np.int64, copy=True)
    kinds = ["float", "bool", "str"] + (["high", "low"] if idx.size else [])
    kind = draw(st.sampled_from(kinds))
    if kind in ("high", "low"):
        pos = tuple(draw(st.integers(0, d - 1)) for d in idx.shape)
        idx[pos] = (draw(st.integers(size, size + 10**12)) if kind == "high"
                    else -draw(st.integers(2, 10**12)))  # -1 is padding in `exclude`
        return idx, IndexError
    if idx.size == 0:
        idx = np.zeros(1, dtype=np.int64)
    return {"float": idx.astype(np.float64), "bool": idx.astype(bool) | True,
            "str": idx.astype(str)}[kind], TypeError


bad_counts = st.one_of(
    st.integers(-(10**9), -1).map(lambda n: (n, ValueError)),
    st.sampled_from([1.0, 2.5, True, False, "3", None, np.float64(3.0), np.bool_(True)]).map(
        lambda n: (n, TypeError)),
)


def assert_raises_named(exc, name, call):
    with pytest.raises(exc, match=re.escape(name)):
        call()


# -- SumTree -----------------------------------------------------------------------------------

@given(data=st.data())
def test_sumtree_follows_a_numpy_model(data):
    w = data.draw(integer_weights(positive=False))
    capacity = w.size
    tree, ref = SumTree.from_weights(w), w.copy()
    for _ in range(data.draw(st.integers(1, 6))):
        idx = data.draw(index_batches(capacity))
        if data.draw(st.booleans()):
            vals = float(data.draw(st.integers(0, 10**6)))
        else:
            vals = data.draw(hnp.arrays(np.int64, idx.shape, elements=st.integers(0, 10**6))).astype(float)
        tree.update(idx, vals)
        ref[idx] = vals
        np.testing.assert_array_equal(tree.values, ref)
        assert tree.total == math.fsum(ref)
        if ref.any():
            assert tree.min() == ref[ref > 0].min()
        else:
            with pytest.raises(ValueError):
                tree.min()
        probe = data.draw(index_batches(capacity, max_size=20))
        np.testing.assert_array_equal(tree.get(probe), ref[probe])
    assume(ref.any())
    total = math.fsum(ref)
    v = np.array(data.draw(st.lists(st.floats(0, total, exclude_max=True), min_size=1, max_size=50)))
    edges = np.cumsum(ref)
    v = np.concatenate([v, edges[edges < total]])
    np.testing.assert_array_equal(tree.find(v), np.searchsorted(edges, v, side="right"))


@given(w=float_weights(), data=st.data())
def test_sumtree_find_near_boundaries(w, data):
    tree = SumTree.from_weights(w)
    total = tree.total
    cum = np.cumsum(w)
    j = data.draw(st.integers(0, w.size - 1))
    v = cum[j]
    for _ in range(data.draw(st.integers(-3, 3)) % 7):
        v = np.nextafter(v, data.draw(st.sampled_from([0.0, np.inf])))
    v = min(max(v, 0.0), np.nextafter(total, 0))
    found = int(tree.find([v])[0])
    assert w[found] > 0
    tol = 1e-12 * total
    assert cum[found] - w[found] - tol <= v < cum[found] + tol, (v, found, cum[found] - w[found], cum[found])


@given(w=float_weights(max_size=2000), n=st.integers(0, 1500), stratified=st.booleans(),
       seed=st.integers(0, 2**64 - 1))
def test_sumtree_sample_support_and_threads(assert_thread_invariant, w, n, stratified, seed):
    tree = SumTree.from_weights(w)
    draws = assert_thread_invariant(lambda t: tree.sample(n, rng=seed, stratified=stratified, n_threads=t))
    assert draws.shape == (n,) and draws.dtype == np.int64
    assert (w[draws] > 0).all()
    if stratified:
        assert (np.diff(draws) >= 0).all()


@given(data=st.data())
def test_sumtree_bad_updates_change_nothing(assert_raises_unchanged, data):
    w = data.draw(integer_weights())
    tree = SumTree.from_weights(w)
    idx = data.draw(index_batches(w.size)).ravel()
    vals = np.ones(idx.size)
    which = data.draw(st.sampled_from(["indices", "values", "length"]))
    if which == "indices":
        idx, exc = corrupt_indices(data.draw, idx, w.size)
        vals = np.ones(idx.size)
    elif which == "values":
        assume(idx.size > 0)
        vals, exc = corrupt_floats(data.draw, vals)
    else:
        wrong = idx.size + data.draw(st.sampled_from([-1, 1, 2]))
        assume(wrong >= 0)
        vals, exc, which = np.ones(wrong), ValueError, "values"
    assert_raises_unchanged(tree, lambda: tree.update(idx, vals), exc, which)


@given(data=st.data())
def test_sumtree_bad_construction_and_queries(data):
    w = data.draw(integer_weights())
    bad, exc = corrupt_floats(data.draw, w)
    assert_raises_named(exc, "weights", lambda: SumTree.from_weights(bad))
    n, exc = data.draw(bad_counts)
    assert_raises_named(exc, "capacity", lambda: SumTree(n))
    tree = SumTree.from_weights(w)
    assert_raises_named(exc, "size must", lambda: tree.sample(n, rng=0))
    v = data.draw(st.one_of(st.floats(max_value=0.0, exclude_max=True, allow_nan=False),
                            st.floats(min_value=tree.total), st.just(np.nan)))
    assert_raises_named(ValueError, "prefix_sums", lambda: tree.find([tree.total / 2, v]))
    bad, exc = corrupt_floats(data.draw, [0.0], nonnegative=False)
    assert_raises_named(exc, "prefix_sums", lambda: tree.find(bad))


# -- PrioritizedSampler -----------------------------------------------------------------------

@given(p=float_weights(), alpha=st.floats(0, 2), beta=st.floats(0, 1), n=st.integers(0, 700),
       stratified=st.booleans(), seed=st.integers(0, 2**32))
def test_prioritized_weights(assert_thread_invariant, p, alpha, beta, n, stratified, seed):
    sampler = PrioritizedSampler(p.size, alpha=alpha, beta=0.5)
    sampler.update(np.arange(p.size), p)
    want = np.where(p > 0, p ** alpha, 0.0)
    np.testing.assert_allclose(sampler.tree.values, want, rtol=1e-14)
    assert sampler.max_priority == max(1.0, p.max())
    idx, w = assert_thread_invariant(
        lambda t: sampler.sample(n, beta=beta, rng=seed, stratified=stratified, n_threads=t))
    assert (want[idx] > 0).all()
    np.testing.assert_allclose(w, (want[idx] / want[want > 0].min()) ** (-beta), rtol=1e-12)
    assert ((w > 0) & (w <= 1)).all()


@given(data=st.data())
def test_prioritized_bad_updates_change_nothing(assert_raises_unchanged, data):
    p = data.draw(float_weights(max_size=50))
    sampler = PrioritizedSampler(p.size, alpha=data.draw(st.floats(0.1, 1.5)))
    sampler.update(np.arange(p.size), p)
    idx = data.draw(index_batches(p.size)).ravel()
    if data.draw(st.booleans()):
        bad, exc = corrupt_indices(data.draw, idx, p.size)
        assert_raises_unchanged(sampler, lambda: sampler.update(bad, 2.0), exc, "indices")
    else:
        assume(idx.size > 0)
        bad, exc = corrupt_floats(data.draw, np.full(idx.size, 3.0))
        assert_raises_unchanged(sampler, lambda: sampler.update(idx, bad), exc, "priorities")
    n, exc = data.draw(bad_counts)
    assert_raises_unchanged(sampler, lambda: sampler.sample(n, rng=0), exc, "size must")
    beta = data.draw(st.one_of(st.floats(1, exclude_min=True), st.floats(max_value=0, exclude_max=True),
                               st.just(np.nan)))
    assert_raises_unchanged(sampler, lambda: sampler.sample(4, beta=beta, rng=0), ValueError, "beta")


# -- AliasSampler ---------------------------------------------------------------------------------

@given(w=float_weights(max_size=500, low=1e-300, high=1e300),
       size=st.one_of(st.integers(0, 70_000), hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)),
       seed=st.integers(0, 2**64 - 1))
def test_alias_probabilities_and_support(assert_thread_invariant, w, size, seed):
    sampler = AliasSampler(w)
    scaled = w / w.max()
    p = sampler.probabilities
    np.testing.assert_allclose(p, scaled / scaled.sum(), rtol=1e-12, atol=1e-300)
    assert abs(p.sum() - 1) < 1e-12
    draws = assert_thread_invariant(lambda t: sampler.sample(size, rng=seed, n_threads=t))
    assert draws.shape == ((size,) if isinstance(size, int) else size)
    assert (w[draws] > 0).all()


@given(data=st.data())
def test_alias_bad_input(assert_raises_unchanged, data):
    w = data.draw(float_weights(max_size=50))
    bad, exc = corrupt_floats(data.draw, w)
    assert_raises_named(exc, "weights", lambda: AliasSampler(bad))
    assert_raises_named(ValueError, "weights", lambda: AliasSampler(np.zeros(w.size)))
    sampler = AliasSampler(w)
    n, exc = data.draw(bad_counts)
    assert_raises_unchanged(sampler, lambda: sampler.sample(n, rng=0), exc, "size")
    assert_raises_unchanged(sampler, lambda: sampler.sample((2, n), rng=0), exc, "size")


# -- NegativeSampler -----------------------------------------------------------------------------

@given(counts=integer_weights(max_size=60), power=st.floats(0, 1.5), rows=st.integers(0, 600),
       cols=st.integers(0, 5), width=st.integers(0, 4), data=st.data())
def test_negative_exclusions(assert_thread_invariant, counts, power, rows, cols, width, data):
    sampler = NegativeSampler(counts, power=power)
    want = np.where(counts > 0, counts ** power, 0.0)
    np.testing.assert_allclose(sampler.probabilities, want / want.sum(), rtol=1e-12)
    exclude = data.draw(hnp.arrays(np.int64, (rows, width), elements=st.integers(-1, counts.size - 1)))
    positive = set(np.flatnonzero(counts).tolist())
    blocked = [positive <= set(row.tolist()) for row in exclude]
    if any(blocked):
        with pytest.raises(ValueError, match="exclude"):
            sampler.sample((rows, cols), rng=0, exclude=exclude)
        return
    seed = data.draw(st.integers(0, 2**64 - 1))
    got = assert_thread_invariant(lambda t: sampler.sample((rows, cols), rng=seed, exclude=exclude, n_threads=t))
    assert got.shape == (rows, cols)
    assert (counts[got] > 0).all()
    assert not (got[:, :, None] == exclude[:, None, :]).any()


@given(counts=integer_weights(max_size=40), ratio=st.integers(0, 6), data=st.data())
def test_negative_pairs(counts, ratio, data):
    sampler = NegativeSampler(counts)
    positive = np.flatnonzero(counts)
    assume(positive.size >= 2)
    targets = data.draw(hnp.arrays(np.int64, st.integers(0, 50), elements=st.sampled_from(positive.tolist())))
    pairs = np.stack([np.arange(targets.size), targets], axis=1)
    inputs, cands, labels = sampler.pairs(pairs, n_negatives=ratio, rng=data.draw(st.integers(0, 2**32)))
    k = 1 + ratio
    np.testing.assert_array_equal(inputs, np.repeat(pairs[:, 0], k))
    np.testing.assert_array_equal(labels, np.tile(np.r_[1.0, np.zeros(ratio)], targets.size))
    cands = cands.reshape(targets.size, k)
    np.testing.assert_array_equal(cands[:, 0], targets)
    assert not (cands[:, 1:] == targets[:, None]).any()
    assert (counts[cands] > 0).all()


@given(data=st.data())
def test_negative_bad_input(assert_raises_unchanged, data):
    counts = data.draw(integer_weights(max_size=40))
    bad, exc = corrupt_floats(data.draw, counts)
    assert_raises_named(exc, "counts", lambda: NegativeSampler(bad))
    sampler = NegativeSampler(counts)
    rows = data.draw(st.integers(1, 20))
    bad, exc = corrupt_indices(data.draw, np.full((rows, 2), -1), counts.size)
    if bad.ndim == 1:  # an empty batch was replaced by one bad id
        bad = np.resize(bad, (rows, 1))
    assert_raises_unchanged(sampler, lambda: sampler.sample((rows, 3), rng=0, exclude=bad), exc, "exclude")
    n, exc = data.draw(bad_counts)
    assert_raises_unchanged(sampler, lambda: sampler.sample((rows, n), rng=0), exc, "size")
    assert_raises_unchanged(sampler, lambda: sampler.sample(n, rng=0), exc, "size must")
    assert_raises_unchanged(sampler, lambda: sampler.pairs([[0, 0]], n_negatives=n, rng=0), exc, "n_negatives")
    ids, exc = corrupt_indices(data.draw, np.arange(counts.size), counts.size)
    assert_raises_unchanged(sampler, lambda: sampler.log_prob(ids), exc, "ids")
