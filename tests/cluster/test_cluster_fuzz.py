"""Hypothesis: random data against slow references, and broken inputs for both
facades (the error names the argument)."""

import re

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from dlkernels.cluster import kmeans, kmeans_1d

# Few distinct magnitudes and repeated values: ties and duplicates are common.
values = st.one_of(st.integers(-5, 5).map(float),
                   st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32))


@given(x=hnp.arrays(np.float64, st.integers(1, 9), elements=values),
       data=st.data())
def test_optimal_is_brute_force(x, data, brute_force, check_consistent):
    m = np.unique(x).size
    k = data.draw(st.integers(1, m))
    w = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, x.size,
                                                    elements=st.floats(0.5, 4.0))))
    res = kmeans_1d(x, k, sample_weight=w)
    check_consistent(x, res, k, w)
    assert res.inertia == pytest.approx(brute_force(x, k, w), rel=1e-7, abs=1e-9)


@given(x=hnp.arrays(np.float64, st.integers(1, 200), elements=values), data=st.data())
def test_lloyd_never_beats_optimal(x, data, check_consistent):
    m = np.unique(x).size
    k = data.draw(st.integers(1, min(m, 20)))
    init = data.draw(st.sampled_from(["linear", "density", "random", "k-means++"]))
    lloyd = kmeans_1d(x, k, method="lloyd", init=init, rng=0)
    check_consistent(x, lloyd, k)
    assert kmeans_1d(x, k).inertia <= lloyd.inertia * (1 + 1e-9) + 1e-9


@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 60), st.integers(1, 6)), elements=values),
       data=st.data())
def test_kmeans_labels_nearest_and_threads(X, data):
    k = data.draw(st.integers(1, X.shape[0]))
    res = kmeans(X, k, rng=0, n_threads=1)
    d2 = ((X[:, None, :] - res.centers[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d2[np.arange(len(X)), res.labels], d2.min(1), rtol=1e-9, atol=1e-6)
    assert res.inertia == pytest.approx(d2[np.arange(len(X)), res.labels].sum(), rel=1e-9,
                                        abs=1e-9)
    again = kmeans(X, k, rng=0, n_threads=3)
    np.testing.assert_array_equal(res.centers, again.centers)
    np.testing.assert_array_equal(res.labels, again.labels)


bad_x = st.sampled_from([
    ([1.0, np.nan], ValueError, "x must be finite"),
    ([1.0, -np.inf], ValueError, "x must be finite"),
    ([[1.0], [2.0]], ValueError, "x must be 1-dimensional"),
    (np.array(["1", "2"]), TypeError, "x must be numeric"),
    (np.array([1 + 1j, 2]), TypeError, "x must be real"),
    (np.array([1.0, 2.0], dtype=object), TypeError, "x must be a numeric array"),
])


@given(case=bad_x, k=st.integers(1, 2))
def test_kmeans_1d_bad_x(case, k):
    x, exc, message = case
    with pytest.raises(exc, match=re.escape(message)):
        kmeans_1d(x, k)


@given(k=st.one_of(st.integers(-10**6, 0), st.integers(4, 10**6),
                   st.sampled_from([1.5, "2", None, True])))
def test_kmeans_bad_k(k):
    X = np.arange(6.0).reshape(3, 2)
    exc = ValueError if isinstance(k, int) and not isinstance(k, bool) else TypeError
    with pytest.raises(exc, match="n_clusters must be"):
        kmeans(X, k)
    assume(not (isinstance(k, int) and not isinstance(k, bool) and k > 3))
    with pytest.raises(exc, match="n_clusters must be"):
        kmeans_1d(X[:, 0], k)
