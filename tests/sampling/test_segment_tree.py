"""SumTree against numpy: values, sums, inverse-CDF lookups and sampling.

Exact comparisons with ``searchsorted(cumsum(w), v, side="right")`` use integer
weights, whose partial sums are exact in float64 whatever order the tree and
numpy add them in.

Chi-square tests draw at a fixed seed; each has false-alarm rate ALPHA = 1e-4
(see tests/conftest.py).
"""

import math
import pickle

import numpy as np
import pytest

from dlkernels.sampling import SumTree

# Not powers of two, powers of two and their neighbours, one, and sizes with
# several levels whatever the fan-out.
CAPACITIES = [1, 2, 3, 7, 8, 9, 63, 64, 65, 100, 513, 4099]


def integer_weights(rng, capacity, zeros=0.3, high=1000):
    """Integer-valued float weights, about ``zeros`` of them 0, at least one positive."""
    w = rng.integers(1, high, capacity).astype(np.float64)
    w[rng.random(capacity) < zeros] = 0.0
    if not w.any():
        w[rng.integers(capacity)] = 1.0
    return w


def searchsorted_ref(w, v):
    """The slot ``find`` must return: first i with cumsum[i] > v."""
    return np.searchsorted(np.cumsum(w), v, side="right")


def stratum_bounds(w, n):
    """For draw k of a stratified sample of n: the lowest and highest slot it may hit.

    Draw k uses some v in [k/n * total, (k+1)/n * total] (computed in float64 the
    way the bounds are, so rounding cannot push v outside); find() is monotone in v.
    """
    total = math.fsum(w)
    k = np.arange(n)
    lo = searchsorted_ref(w, (k / n) * total)
    hi = searchsorted_ref(w, ((k + 1) / n) * total)
    last_positive = np.flatnonzero(w)[-1]
    return lo, np.minimum(hi, last_positive)


class TestConstruction:
    @pytest.mark.parametrize("capacity", CAPACITIES)
    def test_new_tree_is_all_zero(self, capacity):
        tree = SumTree(capacity)
        assert len(tree) == tree.capacity == capacity
        np.testing.assert_array_equal(tree.values, np.zeros(capacity))
        assert tree.values.dtype == np.float64
        assert tree.total == 0.0
        with pytest.raises(ValueError, match="positive"):
            tree.min()
        with pytest.raises(ValueError, match="total"):
            tree.sample(3, rng=0)
        with pytest.raises(ValueError, match="total"):
            tree.find([0.0])

    @pytest.mark.parametrize("capacity", CAPACITIES)
    def test_from_weights(self, rng, capacity):
        w = integer_weights(rng, capacity)
        tree = SumTree.from_weights(w)
        assert len(tree) == tree.capacity == capacity
        np.testing.assert_array_equal(tree.values, w)
        assert tree.total == math.fsum(w)
        assert tree.min() == w[w > 0].min()

    def test_from_weights_accepts_lists_ints_and_float32(self):
        for w in ([3, 0, 1], np.array([3, 0, 1], np.int16), np.array([3, 0, 1], np.float32)):
            tree = SumTree.from_weights(w)
            np.testing.assert_array_equal(tree.values, [3.0, 0.0, 1.0])
            assert tree.total == 4.0 and tree.min() == 1.0

    def test_values_is_a_copy(self):
        tree = SumTree.from_weights([1.0, 2.0])
        tree.values[0] = 100.0
        assert tree.values[0] == 1.0 and tree.total == 3.0

    def test_min_is_smallest_positive(self):
        tree = SumTree.from_weights([0.0, 5.0, 0.25, 0.0, 3.0])
        assert tree.min() == 0.25
        tree.update(2, 0.0)
        assert tree.min() == 3.0
        tree.update([1, 4], 0.0)
        with pytest.raises(ValueError):
            tree.min()
        tree.update(3, 1e-300)
        assert tree.min() == 1e-300


class TestReadWrite:
    def test_get_and_getitem(self, rng):
        w = integer_weights(rng, 100)
        tree = SumTree.from_weights(w)
        for i in (0, 17, 99, np.int64(42)):
            got = tree[i]
            assert type(got) is float and got == w[int(i)]
        idx = rng.integers(0, 100, (4, 5))
        got = tree.get(idx)
        assert got.shape == (4, 5)
        np.testing.assert_array_equal(got, w[idx])
        assert tree.get([]).shape == (0,)
        zero_d = tree.get(np.array(17))  # an array stays an array, whatever its shape
        assert isinstance(zero_d, np.ndarray) and zero_d.shape == () and zero_d == w[17]

    @pytest.mark.parametrize("capacity", [1, 9, 100, 4099])
    def test_update_last_repeat_wins(self, rng, capacity):
        tree, ref = SumTree(capacity), np.zeros(capacity)
        for _ in range(5):
            idx = rng.integers(0, capacity, 3 * capacity)  # many repeats
            vals = rng.integers(0, 50, idx.size).astype(np.float64)
            tree.update(idx, vals)
            ref[idx] = vals  # numpy fancy assignment: the last repeat wins
            np.testing.assert_array_equal(tree.values, ref)
            assert tree.total == math.fsum(ref)

    def test_scalar_value_is_broadcast(self):
        tree, ref = SumTree(10), np.zeros(10)
        tree.update([1, 3, 5], 2.0)
        ref[[1, 3, 5]] = 2.0
        tree.update(np.array([[7, 8], [9, 1]]), 4.0)
        ref[[7, 8, 9, 1]] = 4.0
        tree.update(0, 6.0)
        ref[0] = 6.0
        np.testing.assert_array_equal(tree.values, ref)
        assert tree.total == ref.sum() and tree.min() == 2.0

    def test_setitem(self):
        tree = SumTree(4)
        tree[[0, 2]] = [1.0, 3.0]
        tree[3] = 0.5
        np.testing.assert_array_equal(tree.values, [1.0, 0.0, 3.0, 0.5])

    def test_empty_update_changes_nothing(self):
        tree = SumTree.from_weights([1.0, 2.0])
        tree.update([], [])
        tree.update(np.array([], dtype=np.int64), 3.0)
        np.testing.assert_array_equal(tree.values, [1.0, 2.0])

    def test_sums_do_not_drift(self, rng):
        # Values over 15 orders of magnitude, then huge ones replaced by small ones:
        # a tree that adjusted its sums by differences would keep ~1e-4 of garbage.
        capacity = 1000
        tree, ref = SumTree(capacity), np.zeros(capacity)
        for batch in range(100):  # 100 000 updates
            idx = rng.integers(0, capacity, 1000)
            vals = 10.0 ** rng.uniform(-6, 9, idx.size)
            if batch % 10 == 9:
                vals[:] = 1e12
            tree.update(idx, vals)
            ref[idx] = vals
        tree.update(np.arange(capacity), rng.random(capacity))
        ref[:] = tree.values
        np.testing.assert_array_equal(tree.values, ref)
        assert tree.total == pytest.approx(math.fsum(ref), rel=1e-12, abs=0)
        for i in rng.permutation(capacity)[:300]:  # single updates, too
            tree[int(i)] = ref[i] = rng.random()
        assert tree.total == pytest.approx(math.fsum(ref), rel=1e-12, abs=0)
        assert tree.min() == ref[ref > 0].min()


    @pytest.mark.parametrize("capacity, batch", [(100_000, 10), (100_000, 5000), (70, 1000)])
    def test_every_level_equals_a_fresh_build(self, rng, capacity, batch):
        # Small batches refresh entry by entry, large ones whole levels: either
        # way each internal sum and min must be bit for bit what a build gives.
        tree = SumTree.from_weights(rng.random(capacity))
        for _ in range(20):
            idx = rng.integers(0, capacity, batch)
            vals = np.where(rng.random(batch) < 0.2, 0.0, 10.0 ** rng.uniform(-3, 3, batch))
            tree.update(idx, vals)
        fresh = SumTree.from_weights(tree.values)
        np.testing.assert_array_equal(tree._sums, fresh._sums)
        np.testing.assert_array_equal(tree._mins, fresh._mins)

    def test_batch_that_only_looks_like_overflow_is_written(self):
        # A quick bound (total + n * largest) overflows, the exact new total does not.
        tree = SumTree.from_weights([1e308, 0.0])
        tree.update([0, 0], [1e308, 1.0])
        np.testing.assert_array_equal(tree.values, [1.0, 0.0])
        assert tree.total == 1.0


class TestFind:
    @pytest.mark.parametrize("capacity", CAPACITIES)
    def test_matches_searchsorted_exactly(self, rng, capacity):
        w = integer_weights(rng, capacity)
        tree = SumTree.from_weights(w)
        total = math.fsum(w)
        cum = np.cumsum(w)
        v = np.concatenate([
            rng.uniform(0, total, 3000),
            cum[cum < total], cum[cum < total] - 0.5,  # on and just below every boundary
            np.nextafter(cum[cum < total], 0),
            [0.0, np.nextafter(total, 0), total - 0.5],
        ])
        v = v[(v >= 0) & (v < total)]
        found = tree.find(v)
        assert found.dtype == np.int64
        np.testing.assert_array_equal(found, searchsorted_ref(w, v))
        assert (w[found] > 0).all()

    def test_dyadic_weights(self, rng):
        w = rng.integers(0, 4096, 777) / 1024.0
        tree = SumTree.from_weights(w)
        v = np.concatenate([rng.uniform(0, w.sum(), 5000), np.cumsum(w)[:-1]])
        v = v[v < w.sum()]
        np.testing.assert_array_equal(tree.find(v), searchsorted_ref(w, v))

    @pytest.mark.parametrize("capacity", [8, 64, 65, 513, 4099])
    def test_float_weights_near_boundaries(self, rng, capacity):
        # Pairwise tree sums and numpy's sequential cumsum round differently, so
        # near a boundary either neighbour is acceptable; a zero slot, or a slot
        # whose range is far from v, is not.
        for trial in range(20):
            w = rng.lognormal(0, 2, capacity)
            w[rng.random(capacity) < 0.3] = 0.0
            w[rng.integers(capacity)] = rng.lognormal()
            tree = SumTree.from_weights(w)
            total = tree.total
            cum = np.cumsum(w)
            edges = cum[(cum > 0) & (cum < total)]
            v = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf),
                                [0.0, np.nextafter(total, 0), np.nextafter(np.nextafter(total, 0), 0)]])
            v = v[(v >= 0) & (v < total)]
            found = tree.find(v)
            assert (w[found] > 0).all(), f"zero slot returned (trial {trial})"
            tol = 1e-12 * total
            before = cum[found] - w[found]
            bad = (v < before - tol) | (v >= cum[found] + tol)
            assert not bad.any(), (f"trial {trial}: v={v[bad][:3]} gave slots {found[bad][:3]} "
                                   f"covering [{before[bad][:3]}, {cum[found][bad][:3]})")

    def test_shapes(self):
        tree = SumTree.from_weights([1.0, 0.0, 3.0])
        got = tree.find(np.array([[0.5, 1.0], [3.9, 0.0]]))
        assert got.shape == (2, 2)
        np.testing.assert_array_equal(got, [[0, 2], [2, 0]])
        assert np.asarray(tree.find(2.0)).shape == () and int(tree.find(2.0)) == 2
        assert tree.find([]).shape == (0,)

    def test_torch_in_torch_out(self):
        torch = pytest.importorskip("torch")
        tree = SumTree.from_weights([1.0, 0.0, 3.0])
        got = tree.find(torch.tensor([0.5, 1.0, 3.9], dtype=torch.float64))
        assert isinstance(got, torch.Tensor)
        assert got.tolist() == [0, 2, 2]
        got = tree.get(torch.tensor([2, 0]))
        assert isinstance(got, torch.Tensor) and got.tolist() == [3.0, 1.0]

    def test_capacity_one(self):
        tree = SumTree.from_weights([2.5])
        np.testing.assert_array_equal(tree.find([0.0, 1.0, np.nextafter(2.5, 0)]), [0, 0, 0])
        np.testing.assert_array_equal(tree.sample(10, rng=0), np.zeros(10))
        np.testing.assert_array_equal(tree.sample(10, rng=0, stratified=True), np.zeros(10))
        tree[0] = 0.0
        with pytest.raises(ValueError, match="total"):
            tree.sample(1, rng=0)


class TestSample:
    @pytest.mark.parametrize("capacity", [3, 100, 4099])
    def test_frequencies(self, rng, seed, assert_chisquare, capacity):
        w = integer_weights(rng, capacity, high=20)
        tree = SumTree.from_weights(w)
        draws = tree.sample(300_000, rng=seed)
        assert draws.dtype == np.int64 and draws.shape == (300_000,)
        assert_chisquare(draws, w)  # also asserts zero slots are never drawn

    def test_frequencies_after_updates(self, rng, seed, assert_chisquare):
        tree, ref = SumTree(1000), np.zeros(1000)
        for _ in range(20):
            idx = rng.integers(0, 1000, 400)
            vals = rng.integers(0, 30, 400).astype(float)
            tree.update(idx, vals)
            ref[idx] = vals
        assert_chisquare(tree.sample(300_000, rng=seed), ref)

    @pytest.mark.parametrize("capacity, n", [(37, 1), (37, 10), (37, 1000), (1000, 1000),
                                             (1000, 4099), (5, 300)])
    def test_stratified_one_draw_per_slice(self, rng, seed, capacity, n):
        w = integer_weights(rng, capacity)
        tree = SumTree.from_weights(w)
        for call in range(5):
            idx = tree.sample(n, rng=seed + call, stratified=True)
            lo, hi = stratum_bounds(w, n)
            outside = (idx < lo) | (idx > hi)
            assert not outside.any(), f"draw {np.flatnonzero(outside)[:5]} outside its slice"
            assert (np.diff(idx) >= 0).all()
            assert (w[idx] > 0).all()
            # A slot of mass fraction p meets at most n*p + 2 slices and holds at least n*p - 2.
            counts = np.bincount(idx, minlength=capacity)
            expected = n * w / w.sum()
            assert (counts >= np.floor(expected) - 1).all() and (counts <= np.ceil(expected) + 1).all()

    def test_stratified_frequencies_over_many_calls(self, rng, seed, assert_chisquare):
        # Stratified draws within a call are negatively correlated, so the pooled
        # counts vary less than multinomial ones: the chi-square test is
        # conservative here (false-alarm rate at most ALPHA).
        w = integer_weights(rng, 50, high=10)
        tree = SumTree.from_weights(w)
        gen = np.random.default_rng(seed)
        draws = np.concatenate([tree.sample(7, rng=gen, stratified=True) for _ in range(20_000)])
        assert_chisquare(draws, w)

    def test_zero_draws(self):
        tree = SumTree.from_weights([1.0, 2.0])
        for stratified in (False, True):
            got = tree.sample(0, rng=0, stratified=stratified)
            assert got.shape == (0,) and got.dtype == np.int64


class TestDeterminism:
    @pytest.mark.parametrize("stratified", [False, True])
    def test_sample_same_at_any_thread_count(self, rng, seed, assert_thread_invariant, stratified):
        tree = SumTree.from_weights(rng.lognormal(0, 1, 3000))
        n = 256 * 7 + 13  # several chunks and a ragged last one
        assert_thread_invariant(lambda t: tree.sample(n, rng=seed, stratified=stratified, n_threads=t))

    def test_find_same_at_any_thread_count(self, rng, assert_thread_invariant):
        tree = SumTree.from_weights(rng.lognormal(0, 1, 3000))
        v = rng.uniform(0, tree.total, 256 * 9 + 5)
        assert_thread_invariant(lambda t: tree.find(v, n_threads=t))

    @pytest.mark.parametrize("stratified", [False, True])
    def test_rng_forms(self, seed, stratified):
        tree = SumTree.from_weights(np.arange(1.0, 101.0))

        def draw(rng):
            return tree.sample(500, rng=rng, stratified=stratified)

        np.testing.assert_array_equal(draw(seed), draw(seed))
        np.testing.assert_array_equal(draw(np.random.default_rng(seed)),
                                      draw(np.random.default_rng(seed)))
        assert not np.array_equal(draw(seed), draw(seed + 1))
        assert not np.array_equal(draw(None), draw(None))
        gen = np.random.default_rng(seed)
        assert not np.array_equal(draw(gen), draw(gen))


class TestBadInput:
    @pytest.fixture
    def tree(self):
        return SumTree.from_weights([1.0, 0.0, 3.0, 2.0, 0.5])

    @pytest.mark.parametrize("capacity, exc", [(0, ValueError), (-1, ValueError), (True, TypeError),
                                               (2.0, TypeError), ("3", TypeError), (None, TypeError)])
    def test_capacity(self, capacity, exc):
        with pytest.raises(exc, match="capacity"):
            SumTree(capacity)

    @pytest.mark.parametrize("weights, exc", [
        ([1.0, np.nan], ValueError), ([np.inf, 1.0], ValueError), ([1.0, -0.5], ValueError),
        ([], ValueError), ([[1.0, 2.0]], ValueError), (3.0, ValueError),
        (["a", "b"], TypeError), (np.array([1.0], dtype=object), TypeError), ([1j], TypeError),
    ])
    def test_from_weights(self, weights, exc):
        with pytest.raises(exc, match="weights"):
            SumTree.from_weights(weights)

    @pytest.mark.parametrize("indices, values, exc, name", [
        ([0, 1, 5], [1.0, 1.0, 1.0], IndexError, "indices"),
        ([0, 1, -1], 1.0, IndexError, "indices"),
        ([0, 1, 2], [1.0, 2.0, np.nan], ValueError, "values"),
        ([0, 1, 2], [1.0, 2.0, np.inf], ValueError, "values"),
        ([0, 1, 2], [1.0, 2.0, -1.0], ValueError, "values"),
        ([0, 1, 2], [1.0, 2.0], ValueError, "values"),
        ([0, 1], [1.0, 2.0, 3.0], ValueError, "values"),
        ([0.0, 1.0], [1.0, 2.0], TypeError, "indices"),
        ([True, False], [1.0, 2.0], TypeError, "indices"),
        (["0"], [1.0], TypeError, "indices"),
        ([0, 1], ["a", "b"], TypeError, "values"),
        ([0, 1], [1j, 2j], TypeError, "values"),
        ([0, 1], np.array([1.0, 2.0], dtype=object), TypeError, "values"),
    ])
    def test_update_is_all_or_nothing(self, tree, assert_raises_unchanged, indices, values, exc, name):
        assert_raises_unchanged(tree, lambda: tree.update(indices, values), exc, name)
        assert_raises_unchanged(tree, lambda: tree.__setitem__(indices, values), exc, name)

    @pytest.mark.parametrize("indices, exc", [(5, IndexError), (-1, IndexError), ([0, 9], IndexError),
                                              (1.0, TypeError), (True, TypeError), ("a", TypeError)])
    def test_get(self, tree, assert_raises_unchanged, indices, exc):
        assert_raises_unchanged(tree, lambda: tree.get(indices), exc, "indices")
        assert_raises_unchanged(tree, lambda: tree[indices], exc, "indices")

    @pytest.mark.parametrize("prefix_sums, exc", [
        ([-0.1], ValueError), ([6.5], ValueError), ([1.0, 7.0], ValueError), ([np.nan], ValueError),
        ([np.inf], ValueError), (["a"], TypeError), ([1j], TypeError),
        (np.array([1.0], dtype=object), TypeError),
    ])
    def test_find(self, tree, assert_raises_unchanged, prefix_sums, exc):
        assert tree.total == 6.5
        assert_raises_unchanged(tree, lambda: tree.find(prefix_sums), exc, "prefix_sums")

    @pytest.mark.parametrize("kwargs, exc, name", [
        (dict(size=-1), ValueError, "size must"), (dict(size=2.0), TypeError, "size must"),
        (dict(size=True), TypeError, "size must"), (dict(size="3"), TypeError, "size must"),
        (dict(size=3, rng=-1), ValueError, "rng"), (dict(size=3, rng="x"), TypeError, "rng"),
        (dict(size=3, rng=np.random.RandomState(0)), TypeError, "rng"),
        (dict(size=3, n_threads=0), ValueError, "n_threads"),
        (dict(size=3, n_threads=1.5), TypeError, "n_threads"),
        (dict(size=3, n_threads=True), TypeError, "n_threads"),
    ])
    def test_sample(self, tree, assert_raises_unchanged, kwargs, exc, name):
        assert_raises_unchanged(tree, lambda: tree.sample(**kwargs), exc, name)

    def test_find_n_threads(self, tree, assert_raises_unchanged):
        assert_raises_unchanged(tree, lambda: tree.find([1.0], n_threads=0), ValueError, "n_threads")

    def test_total_that_overflows(self):
        # Every value is finite but their sum is not: refuse, or still sample in
        # proportion (each slot about half the draws).
        try:
            tree = SumTree.from_weights([1e308, 1e308])
        except ValueError as exc:
            assert "weights" in str(exc)
        else:
            counts = np.bincount(tree.sample(1000, rng=0), minlength=2)
            assert 400 <= counts[0] <= 600, counts  # Binomial(1000, 1/2): false alarm ~ 3e-10
        tree = SumTree.from_weights([1e308, 0.0])
        try:
            tree.update(1, 1e308)
        except ValueError as exc:
            assert "values" in str(exc)
            np.testing.assert_array_equal(tree.values, [1e308, 0.0])
        else:
            counts = np.bincount(tree.sample(1000, rng=0), minlength=2)
            assert 400 <= counts[0] <= 600, counts


class TestPersistence:
    def test_save_load(self, rng, tmp_path):
        w = rng.lognormal(0, 3, 1001)
        w[::7] = 0.0
        tree = SumTree.from_weights(w)
        tree.update([3, 10], [0.0, 2.5])
        tree.save(tmp_path / "tree.npz")
        loaded = SumTree.load(tmp_path / "tree.npz")
        assert isinstance(loaded, SumTree)
        np.testing.assert_equal(_state(loaded), _state(tree))

    def test_pickle(self, rng):
        tree = SumTree.from_weights(rng.lognormal(0, 3, 100))
        clone = pickle.loads(pickle.dumps(tree))
        np.testing.assert_equal(_state(clone), _state(tree))
        clone.update(0, 123.0)  # independent copies
        assert tree[0] != 123.0


def _state(tree):
    return {"values": tree.values, "total": tree.total, "min": tree.min(), "len": len(tree),
            "draws": tree.sample(500, rng=1), "find": tree.find(np.linspace(0, tree.total, 50)[:-1])}
