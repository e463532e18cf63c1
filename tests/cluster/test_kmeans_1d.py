"""kmeans_1d: the exact method against brute force, Lloyd against its fixed-point
conditions, and both against each other and scikit-learn."""

import numpy as np
import pytest

from dlkernels.cluster import kmeans_1d

INITS = ("linear", "density", "random", "k-means++")


# -- exact method against brute force -------------------------------------------------------

@pytest.mark.parametrize("trial", range(40))
def test_optimal_equals_brute_force(trial, brute_force, check_consistent):
    rng = np.random.default_rng(trial)
    n = int(rng.integers(1, 12))
    # Rounding to 0-2 decimals makes duplicates and ties common.
    x = rng.normal(size=n).round(int(rng.integers(0, 3)))
    w = rng.random(n) + 0.05 if trial % 2 else None
    m = np.unique(x).size
    for k in range(1, m + 1):
        res = kmeans_1d(x, k, sample_weight=w)
        check_consistent(x, res, k, w)
        assert res.inertia == pytest.approx(brute_force(x, k, w), rel=1e-9, abs=1e-12)
        assert res.n_iter == 0


@pytest.mark.parametrize("x, k, expected", [
    ([3.0], 1, 0.0),                                   # one point
    ([2.0, 2.0, 2.0, 5.0], 2, 0.0),                    # k = number of distinct values
    ([0.0, 1.0, 2.0, 3.0], 2, 1.0),                    # symmetric: {0,1},{2,3}
    ([0.0, 1.0, 2.0], 2, 0.5),                         # a tie: {0},{1,2} or {0,1},{2}
    ([-1e6, 0.0, 1e-6, 1e6], 3, 0.5e-12),              # far apart with a close pair
])
def test_optimal_adversarial(x, k, expected, brute_force, check_consistent):
    res = kmeans_1d(x, k)
    check_consistent(x, res, k)
    assert res.inertia == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert res.inertia == pytest.approx(brute_force(x, k), rel=1e-9, abs=1e-15)


def test_k_equals_distinct_values_is_exact():
    x = np.repeat([-3.0, 0.5, 7.0, 9.0], [5, 1, 3, 2])
    np.random.default_rng(0).shuffle(x)
    for method in ("optimal", "lloyd"):
        res = kmeans_1d(x, 4, method=method)
        assert res.inertia == 0.0
        np.testing.assert_array_equal(res.centers, [-3.0, 0.5, 7.0, 9.0])
        np.testing.assert_array_equal(res.centers[res.labels], x)


@pytest.mark.parametrize("method, base", [
    # Odd last bits: the midpoint of base and the next float up rounds (to even)
    # onto the upper one.
    *((method, base) for method in ("optimal", "lloyd")
      for base in (np.nextafter(-7.0, 0.0), np.nextafter(1.0, 2.0), np.nextafter(1e300, 2e300))),
    # Not Lloyd: scaling a subnormal into [-1, 1] can round it onto its neighbour.
    ("optimal", 3e-310)])
@pytest.mark.parametrize("weighted", [False, True])
def test_centres_one_ulp_apart_keep_their_values(method, base, weighted):
    # Found by hypothesis: with weights, w * v / w came back one ulp off, onto a
    # neighbouring value; and the midpoint of centres one ulp apart rounds onto
    # one of them, where a value went to the lower centre with its neighbour.
    up = np.nextafter(base, np.inf)
    x = np.array([base - 1.0, base, up, up, base + 1.0] if abs(base) < 1e100 else [base, up])
    w = np.linspace(0.5, 3.0, x.size) if weighted else None
    k = np.unique(x).size
    res = kmeans_1d(x, k, method=method, init="linear", sample_weight=w)
    assert res.inertia == 0.0
    np.testing.assert_array_equal(res.centers[res.labels], x)


def test_weighted_single_value_runs_keep_their_values():
    # Found by hypothesis: w * v / w came back one ulp off for a run of one
    # value, onto its neighbour, and the clustering lost a cluster.
    x = np.array([0.0, -7.0, -6.999999993875, -6.9999999934375, -6.999999993, -6.9999999965,
                  -6.99999999475, -6.999999999999999])
    res = kmeans_1d(x, 8, sample_weight=np.linspace(0.5, 3.0, x.size))
    assert res.inertia == 0.0
    np.testing.assert_array_equal(res.centers[res.labels], x)


def test_optimal_larger_against_dp_reference(rng):
    """An O(k n^2) dynamic programme written the obvious way (n = 300)."""
    x = np.concatenate([rng.normal(0, 1, 150), rng.normal(6, 0.3, 100), rng.uniform(-9, -8, 50)])
    xs = np.sort(x)
    n = xs.size
    c1, c2 = np.concatenate([[0], np.cumsum(xs)]), np.concatenate([[0], np.cumsum(xs ** 2)])

    def cost(a, b):  # half-open run [a, b)
        s = c1[b] - c1[a]
        return c2[b] - c2[a] - s * s / (b - a)

    for k in (1, 2, 5, 17):
        D = np.array([cost(0, i) if i else np.inf for i in range(n + 1)])
        for _ in range(2, k + 1):
            D = np.array([min((D[l] + cost(l, i) for l in range(1, i)), default=np.inf)
                          for i in range(n + 1)])
        res = kmeans_1d(x, k)
        assert res.inertia == pytest.approx(D[n], rel=1e-9)


# -- Lloyd -------------------------------------------------------------------------------------

@pytest.mark.parametrize("init", INITS)
def test_lloyd_is_a_fixed_point(init, rng, check_consistent):
    x = np.concatenate([rng.normal(size=3000), rng.normal(5, 0.1, 500)])
    w = rng.random(x.size)
    res = kmeans_1d(x, 12, method="lloyd", init=init, sample_weight=w, rng=1)
    check_consistent(x, res, 12, w)
    assert 1 <= res.n_iter < 10_000
    labels = np.asarray(res.labels)
    for j in range(12):
        members = labels == j
        assert members.any(), f"cluster {j} is empty"
        assert res.centers[j] == pytest.approx(np.average(x[members], weights=w[members]), rel=1e-9,
                                               abs=1e-12)


@pytest.mark.parametrize("trial", range(10))
def test_optimal_never_worse_than_lloyd(trial):
    rng = np.random.default_rng(100 + trial)
    x = np.concatenate([rng.normal(size=400), rng.standard_t(2, size=100)])
    k = int(rng.integers(2, 30))
    best = kmeans_1d(x, k).inertia
    for init in INITS:
        lloyd = kmeans_1d(x, k, method="lloyd", init=init, rng=trial).inertia
        assert best <= lloyd * (1 + 1e-12)


def test_empty_cluster_is_reseeded():
    # Linear init puts most centres in the gap where there is no data: they start
    # empty and must be moved onto data, ending with every cluster in use.
    x = np.concatenate([np.linspace(0, 1, 50), np.linspace(99, 100, 50)])
    res = kmeans_1d(x, 10, method="lloyd", init="linear")
    assert np.unique(res.labels).size == 10
    assert res.inertia <= kmeans_1d(x, 2, method="optimal").inertia


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("x", [
    [0.0, 1, -1, 2, -2, 3, -3, 4, -4, 5, 6, 7, 4.29290671e-38],
    # Found by hypothesis: here the empty cluster's centre maps back to exactly 0,
    # below the mean of the merged pair, and the centres came back unsorted.
    [0.0, 1, -1, 2, -2, 3, -3, 4, -4, -5, 5, 6, 4.29290671e-38],
])
def test_values_merged_by_centring_converge(init, x, recwarn, check_consistent):
    # 0 and 4.3e-38 are distinct, but centring on the mean rounds both to the
    # same value: one of 13 clusters must stay empty. Lloyd used to move it
    # back and forth until max_iter; it must stop at once, with sorted centres
    # and the optimum's inertia up to the merged pair.
    x = np.array(x)
    res = kmeans_1d(x, 13, method="lloyd", init=init, rng=0)
    assert not [w for w in recwarn if "max_iter" in str(w.message)]
    check_consistent(x, res, 13)
    assert res.n_iter < 100
    assert res.inertia <= 1e-74


def test_against_sklearn(rng):
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    x = rng.normal(size=5000)
    km = sklearn_cluster.KMeans(16, n_init=1, random_state=0).fit(x[:, None])
    ours = kmeans_1d(x, 16)
    assert ours.inertia <= km.inertia_ * (1 + 1e-9)


# -- weights, dtypes, torch -------------------------------------------------------------------

@pytest.mark.parametrize("method", ["optimal", "lloyd"])
def test_integer_weights_equal_repeats(method, rng):
    x = rng.normal(size=200).round(2)
    counts = rng.integers(0, 4, size=200)
    a = kmeans_1d(x, 7, method=method, sample_weight=counts)
    b = kmeans_1d(np.repeat(x, counts), 7, method=method)
    np.testing.assert_allclose(a.centers, b.centers, rtol=1e-12)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-12)
    np.testing.assert_array_equal(np.repeat(a.labels, counts), b.labels)


def test_zero_weight_values_get_their_nearest_centre():
    x = np.array([0.0, 0.1, 10.0, 10.1, 4.0, 6.0])
    w = np.array([1, 1, 1, 1, 0, 0])
    res = kmeans_1d(x, 2, sample_weight=w)
    np.testing.assert_allclose(res.centers, [0.05, 10.05])
    np.testing.assert_array_equal(res.labels, [0, 0, 1, 1, 0, 1])
    assert res.inertia == pytest.approx(0.01)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.float16])
def test_dtypes(dtype, rng, check_consistent):
    x = (rng.normal(size=300) * 10).astype(dtype)
    res = kmeans_1d(x, 5)
    assert res.centers.dtype == (np.float32 if dtype == np.float32 else np.float64)
    check_consistent(x, res, 5)
    assert res.inertia == pytest.approx(kmeans_1d(x.astype(np.float64), 5).inertia, rel=1e-9)


def test_torch_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=500).astype(np.float32)
    res = kmeans_1d(torch.from_numpy(x), 8, sample_weight=torch.ones(500))
    ref = kmeans_1d(x, 8)
    assert isinstance(res.centers, torch.Tensor) and res.centers.dtype == torch.float32
    assert isinstance(res.labels, torch.Tensor) and res.labels.dtype == torch.int64
    np.testing.assert_array_equal(res.centers.numpy(), ref.centers)
    np.testing.assert_array_equal(res.labels.numpy(), ref.labels)


def test_thread_invariant(assert_thread_invariant, rng):
    x = rng.normal(size=20_000)
    assert_thread_invariant(lambda t: tuple(kmeans_1d(x, 40, n_threads=t)[:2]))


@pytest.mark.parametrize("init", ["random", "k-means++"])
def test_same_rng_same_result(init, rng):
    x = rng.normal(size=3000)
    a = kmeans_1d(x, 9, method="lloyd", init=init, rng=5)
    b = kmeans_1d(x, 9, method="lloyd", init=init, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.centers, b.centers)


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, name", [
    ({"n_clusters": 0}, ValueError, "n_clusters must be >= 1"),
    ({"n_clusters": 4}, ValueError, "n_clusters must be at most the number of distinct values of x (3)"),
    ({"n_clusters": 2.0}, TypeError, "n_clusters must be"),
    ({"n_clusters": True}, TypeError, "n_clusters must be"),
    ({"x": [1.0, np.nan, 2.0]}, ValueError, "x must be finite, got nan at position 1"),
    ({"x": [1.0, np.inf]}, ValueError, "x must be finite"),
    ({"x": [[1.0, 2.0]]}, ValueError, "x must be 1-dimensional"),
    ({"x": []}, ValueError, "x must not be empty"),
    ({"x": ["a", "b"]}, TypeError, "x must be numeric"),
    ({"x": [1j, 2j]}, TypeError, "x must be real"),
    ({"sample_weight": [1.0, -1.0, 1.0, 1.0]}, ValueError, "sample_weight must be non-negative"),
    ({"sample_weight": [1.0, np.nan, 1.0, 1.0]}, ValueError, "sample_weight must be finite"),
    ({"sample_weight": [1.0, 1.0]}, ValueError, "sample_weight must have the shape of x"),
    ({"sample_weight": [0.0, 0.0, 1.0, 1.0], "n_clusters": 3}, ValueError,
     "with positive sample_weight (2)"),
    ({"method": "exact"}, ValueError, "method must be one of"),
    ({"init": "kmeans++"}, ValueError, "init must be one of"),
    ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"method": "lloyd", "init": "random", "rng": "seed"}, TypeError, "rng must be"),
])
def test_bad_input(kwargs, exc, name):
    import re

    args = {"x": [1.0, 2.0, 2.0, 3.0], "n_clusters": 2, **kwargs}
    with pytest.raises(exc, match=re.escape(name)):
        kmeans_1d(**args)


def test_input_is_not_modified(rng):
    x = rng.normal(size=100)
    w = rng.random(100)
    x0, w0 = x.copy(), w.copy()
    kmeans_1d(x, 5, method="lloyd", sample_weight=w)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("method", ["optimal", "lloyd"])
@pytest.mark.parametrize("factor", [1e300, 1e-300, -1e150])
def test_scale_invariant_at_extreme_magnitudes(method, factor, rng):
    # Squares of 1e300 overflow and of 1e-300 underflow: the clustering must not
    # change, only the units of the centres and the inertia.
    x = np.concatenate([rng.normal(size=60), rng.normal(5, 0.5, 40)])
    ref = kmeans_1d(x, 4, method=method)
    res = kmeans_1d(x * factor, 4, method=method)
    order = np.argsort(ref.centers * factor)
    np.testing.assert_array_equal(np.argsort(order)[ref.labels], res.labels)
    np.testing.assert_allclose(res.centers, np.sort(ref.centers * factor), rtol=1e-9)
    expected = ref.inertia * factor * factor
    if np.isfinite(expected):
        assert res.inertia == pytest.approx(expected, rel=1e-9)
    else:
        assert res.inertia == np.inf


# -- defaults near the optimum, warnings, keyword-only options ---------------------------------

def distributions(rng, n):
    return {
        "normal": rng.normal(size=n),
        "laplace": rng.laplace(size=n),
        "student-t3": rng.standard_t(3, size=n),
        "90% zeros": np.where(rng.random(n) < 0.9, 0.0, rng.normal(size=n)),
    }


def check_defaults_near_optimum(n, seed):
    rng = np.random.default_rng(seed)
    for name, x in distributions(rng, n).items():
        x = x.astype(np.float32)
        for k in (16, 32, 256):
            best = kmeans_1d(x, k)                    # the default call: exact
            lloyd = kmeans_1d(x, k, method="lloyd")   # Lloyd's default init
            assert best.inertia <= lloyd.inertia * (1 + 1e-12), (name, k)
            assert lloyd.inertia <= best.inertia * 1.01, (name, k, lloyd.inertia / best.inertia)


def test_defaults_near_optimum():
    check_defaults_near_optimum(20_000, 0)


@pytest.mark.slow
def test_defaults_near_optimum_large():
    check_defaults_near_optimum(2_000_000, 1)


def test_linear_init_is_far_from_the_optimum_where_binned_is_not(rng):
    # Why "binned" replaced "linear" as the default: on bell-shaped data Lloyd
    # from evenly spaced centres stalls far above the optimum.
    x = rng.normal(size=50_000)
    best = kmeans_1d(x, 64).inertia
    assert kmeans_1d(x, 64, method="lloyd", init="linear").inertia > best * 1.05
    assert kmeans_1d(x, 64, method="lloyd").inertia < best * 1.001


def test_max_iter_warns(rng):
    from dlkernels.cluster import ConvergenceWarning

    x = rng.normal(size=5000)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        res = kmeans_1d(x, 50, method="lloyd", init="linear", max_iter=2)
    assert res.n_iter == 2
    assert issubclass(ConvergenceWarning, UserWarning)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        kmeans_1d([1.0, 2.0, 3.0], 2, "lloyd")
