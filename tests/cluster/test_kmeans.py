"""n-D kmeans: against a numpy Lloyd reference and scikit-learn, determinism,
dtypes, torch, empty clusters, bad input."""

import re

import numpy as np
import pytest

from dlkernels.cluster import KMeansResult, kmeans


def numpy_lloyd(X, centers, max_iter, tol):
    """The textbook loop with scikit-learn's stopping rule, in float64."""
    X = np.asarray(X, dtype=np.float64)
    centers = np.array(centers, dtype=np.float64)
    threshold = tol * np.mean(np.var(X, axis=0))
    old = None
    for it in range(1, max_iter + 1):
        labels = np.argmin(((X[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
        if old is not None and np.array_equal(labels, old):
            break
        new = np.array([X[labels == j].mean(0) for j in range(len(centers))])
        shift = ((new - centers) ** 2).sum()
        centers, old = new, labels
        if shift <= threshold:
            break
    labels = np.argmin(((X[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
    return centers, labels, ((X - centers[labels]) ** 2).sum(), it


def blobs(rng, n=600, d=5, k=6, spread=0.5):
    means = rng.normal(0, 5, size=(k, d))
    return means[rng.integers(0, k, n)] + rng.normal(0, spread, size=(n, d))


def check_labels_nearest(X, res):
    X = np.asarray(X, dtype=np.float64)
    c = np.asarray(res.centers, dtype=np.float64)
    d2 = ((X[:, None, :] - c[None]) ** 2).sum(-1)
    labels = np.asarray(res.labels)
    # Nearest up to float32 rounding of the norm trick.
    np.testing.assert_allclose(d2[np.arange(len(X)), labels], d2.min(1), rtol=1e-4, atol=1e-4)
    assert res.inertia == pytest.approx(d2[np.arange(len(X)), labels].sum(), rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_numpy_lloyd_from_the_same_init(dtype, rng):
    X = blobs(rng).astype(dtype)
    init = X[rng.choice(len(X), 6, replace=False)]
    res = kmeans(X, 6, init=init, max_iter=100, tol=0.0)
    assert isinstance(res, KMeansResult)
    centers, labels, inertia, n_iter = numpy_lloyd(X, init, 100, 0.0)
    np.testing.assert_array_equal(res.labels, labels)
    np.testing.assert_allclose(res.centers, centers, rtol=1e-5 if dtype == np.float32 else 1e-10,
                               atol=1e-5 if dtype == np.float32 else 1e-10)
    assert res.inertia == pytest.approx(inertia, rel=1e-5)
    assert res.n_iter == n_iter
    assert res.centers.dtype == dtype and res.labels.dtype == np.int64


@pytest.mark.parametrize("d, k", [(1, 3), (3, 17), (20, 40), (33, 5)])
def test_matches_sklearn_from_the_same_init(d, k, rng):
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    X = rng.normal(size=(1500, d))
    init = X[:k].copy()
    ours = kmeans(X, k, init=init)
    theirs = sklearn_cluster.KMeans(k, init=init, n_init=1).fit(X)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-7)
    np.testing.assert_array_equal(ours.labels, theirs.labels_)
    assert ours.n_iter == theirs.n_iter_


def test_inertia_close_to_sklearn_with_kmeans_plus_plus(rng):
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    X = blobs(rng, n=3000, d=8, k=20, spread=1.0)
    ours = [kmeans(X, 20, rng=s).inertia for s in range(3)]
    theirs = [sklearn_cluster.KMeans(20, n_init=1, random_state=s).fit(X).inertia_ for s in range(3)]
    # Same algorithm, different random draws: the medians of three runs agree to 5%.
    assert np.median(ours) <= np.median(theirs) * 1.05


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_result_is_a_lloyd_fixed_point(init, rng):
    X = blobs(rng, n=800, d=4, k=8)
    res = kmeans(X, 8, init=init, tol=0.0, rng=3)
    check_labels_nearest(X, res)
    for j in range(8):
        np.testing.assert_allclose(res.centers[j], X[res.labels == j].mean(0), rtol=1e-10, atol=1e-10)


def test_thread_invariant(assert_thread_invariant, rng):
    X = rng.normal(size=(3000, 7)).astype(np.float32)
    assert_thread_invariant(lambda t: tuple(kmeans(X, 30, rng=1, n_threads=t)[:2]))


def test_same_rng_same_result(rng):
    X = rng.normal(size=(500, 3))
    a, b = kmeans(X, 7, rng=11), kmeans(X, 7, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(a.centers, b.centers)
    assert kmeans(X, 7, rng=12).inertia != a.inertia


def test_kmeans_plus_plus_spreads_the_seeds(rng):
    # Ten tight, far-apart blobs: D^2 seeding with greedy trials puts one seed in
    # each, so Lloyd finds the planted clustering (inertia of the blobs alone).
    means = np.arange(10)[:, None] * 100.0 * np.ones((1, 2))
    X = np.repeat(means, 30, axis=0) + rng.normal(0, 0.1, size=(300, 2))
    res = kmeans(X, 10, rng=0, max_iter=1)
    assert np.unique(res.labels).size == 10
    planted = sum(((X[i * 30:(i + 1) * 30] - X[i * 30:(i + 1) * 30].mean(0)) ** 2).sum()
                  for i in range(10))
    assert res.inertia == pytest.approx(planted, rel=1e-6)


def test_empty_cluster_gets_the_farthest_point():
    # Centre 2 starts far from every point: it is empty after the first
    # assignment and must take the point farthest from its centre (x = 10).
    X = np.array([[0.0], [0.1], [0.2], [10.0], [10.1]])
    res = kmeans(X, 3, init=[[0.0], [5.0], [1000.0]], tol=0.0)
    assert np.unique(res.labels).size == 3
    np.testing.assert_allclose(np.sort(res.centers.ravel()), [0.1, 10.0, 10.1])


def test_k_equals_n_and_duplicates():
    X = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    res = kmeans(X, 3, rng=0)
    assert res.inertia == 0.0
    res = kmeans(X, 1)
    np.testing.assert_allclose(res.centers, [[4 / 3, 4 / 3]])


def test_torch_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    X = rng.normal(size=(400, 3)).astype(np.float32)
    res = kmeans(torch.from_numpy(X), 5, rng=0)
    ref = kmeans(X, 5, rng=0)
    assert isinstance(res.centers, torch.Tensor) and res.centers.dtype == torch.float32
    assert isinstance(res.labels, torch.Tensor) and res.labels.dtype == torch.int64
    np.testing.assert_array_equal(res.centers.numpy(), ref.centers)
    np.testing.assert_array_equal(res.labels.numpy(), ref.labels)


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"n_clusters": 0}, ValueError, "n_clusters must be >= 1"),
    ({"n_clusters": 5}, ValueError, "n_clusters must be at most the number of points (4)"),
    ({"n_clusters": 2.5}, TypeError, "n_clusters must be"),
    ({"X": [[0.0, np.nan]] * 4}, ValueError, "X must be finite, got nan at point 0, coordinate 1"),
    ({"X": [0.0, 1.0, 2.0]}, ValueError, "X must be 2-dimensional"),
    ({"X": np.zeros((0, 2))}, ValueError, "X must hold at least one point"),
    ({"X": [["a", "b"]] * 4}, TypeError, "X must be numeric"),
    ({"init": "kmeans++"}, ValueError, "init must be one of"),
    ({"init": np.zeros((3, 2))}, ValueError, "init must have shape (n_clusters, d) = (2, 2)"),
    ({"init": [[0.0, np.inf], [1.0, 1.0]]}, ValueError, "init must be finite"),
    ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
    ({"tol": -1.0}, ValueError, "tol must be >= 0"),
    ({"tol": "small"}, TypeError, "tol must be a real number"),
    ({"rng": -1}, ValueError, "rng must be a non-negative int seed"),
    ({"n_threads": 1.5}, TypeError, "n_threads must be an int"),
])
def test_bad_input(kwargs, exc, name):
    args = {"X": [[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]], "n_clusters": 2, **kwargs}
    with pytest.raises(exc, match=re.escape(name)):
        kmeans(**args)


def test_overflowing_norms_are_refused():
    X = np.array([[1e20, 0.0], [0.0, 1.0], [3.0, 3.0]], dtype=np.float32)
    with pytest.raises(ValueError, match=re.escape("X is too large for float32: the squared norm "
                                                   "of point 0 overflows")):
        kmeans(X, 2, rng=0)
    res = kmeans(X.astype(np.float64), 2, rng=0)  # float64 holds the squares
    assert sorted(np.bincount(res.labels).tolist()) == [1, 2]


def test_max_iter_warns(rng):
    from dlkernels.cluster import ConvergenceWarning

    X = blobs(rng, n=2000, d=3, k=10, spread=2.0)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        res = kmeans(X, 10, max_iter=1, tol=0.0, rng=0)
    assert res.n_iter == 1
    check_labels_nearest(X, res)  # the labels are those of the returned centres


def test_options_are_keyword_only(rng):
    X = rng.normal(size=(20, 2))
    with pytest.raises(TypeError):
        kmeans(X, 2, "random")
    with pytest.raises(TypeError):
        kmeans(X, 2, "k-means++", 300, 1e-4, 0)


def test_max_points_per_centroid_trains_on_a_sample(rng):
    X = blobs(rng, n=6000, d=4, k=8, spread=1.0)
    full = kmeans(X, 8, rng=0)
    sampled = kmeans(X, 8, rng=0, max_points_per_centroid=50)
    # Every point is labelled by its nearest final centre, and the inertia is
    # over all of them.
    check_labels_nearest(X, sampled)
    assert sampled.labels.shape == (6000,)
    # The centres are a Lloyd fixed point of a 400-point sample, not of X: they
    # differ from the full fit, and fit X almost as well.
    assert not np.array_equal(sampled.centers, full.centers)
    assert sampled.inertia <= full.inertia * 1.05
    # Deterministic, and the same at any thread count.
    again = kmeans(X, 8, rng=0, max_points_per_centroid=50, n_threads=3)
    np.testing.assert_array_equal(sampled.centers, again.centers)


def test_max_points_per_centroid_off_when_it_changes_nothing(rng):
    X = rng.normal(size=(300, 3))
    a = kmeans(X, 5, rng=4)
    b = kmeans(X, 5, rng=4, max_points_per_centroid=60)  # 5 * 60 = n: no sample
    np.testing.assert_array_equal(a.centers, b.centers)
    with pytest.raises(ValueError, match="max_points_per_centroid must be >= 1"):
        kmeans(X, 5, max_points_per_centroid=0)
