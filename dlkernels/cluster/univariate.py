"""1-D k-means: the exact optimum, and Lloyd's method on the sorted values."""

from __future__ import annotations

import warnings
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from dlkernels._lib.array_types import FloatArray, IntArray, RngLike, Tensor
from dlkernels._lib.arrays import like_input, to_numpy
from dlkernels._lib.exceptions import ConvergenceWarning
from dlkernels._lib.random import check_rng, draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import (
    as_array,
    as_float_array,
    check_choice,
    check_count,
    check_finite_total,
)
from dlkernels.cluster import _kmeans_1d, _optimal_1d
from dlkernels.cluster.kmeans import KMeansResult, _float_dtype

__all__ = ["kmeans_1d"]

_METHODS = ("optimal", "lloyd")
_INITS = ("binned", "linear", "density", "random", "k-means++")
# The "binned" init solves the exact problem on this many runs of equal weight
# per cluster (at least _MIN_BINS runs in all).
_BINS_PER_CLUSTER = 32
_MIN_BINS = 4096


def _distinct(x: np.ndarray, sample_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``x`` with positive weight, and their total weights."""
    if sample_weight is None:
        xs = np.sort(x)
        starts = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
        counts = np.diff(np.append(starts, xs.size)).astype(np.float64)
        return xs[starts], counts
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], sample_weight[order]
    keep = ws > 0
    xs, ws = xs[keep], ws[keep]
    if xs.size == 0:
        return xs, ws
    starts = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
    return xs[starts], np.add.reduceat(ws, starts)


def _exact_bounds(v: np.ndarray, w: np.ndarray, k: int, n_threads: int) -> np.ndarray:
    """Boundaries of an optimal k-clustering of sorted distinct values in [-2, 2]."""
    bounds = np.empty(k + 1, dtype=np.int64)
    shift = float(np.sum(w * v) / np.sum(w))
    _optimal_1d.optimal(v, w, shift, bounds, n_threads)
    return bounds


def _run_means(v: np.ndarray, w: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    centers = np.zeros(bounds.size - 1)
    _kmeans_1d.means(v, w, bounds, centers)
    return centers


def _binned(u: np.ndarray, w: np.ndarray, k: int, n_threads: int) -> np.ndarray:
    """The exact optimum of the values merged into runs, refined by Lloyd afterwards.

    Optimal clusters are denser where the data are (about as density ** (1/3)
    for smooth data), so the runs are cut at equal steps of two measures and
    both sets of cuts are kept: the weight, and the sum of
    ``w ** (1/3) * gap ** (2/3)`` (the density ** (1/3) the gaps imply), which
    gives the sparse tails, where optimal clusters hold few values, runs of
    their own. About 32 runs per cluster of each.
    """
    n_bins = max(_BINS_PER_CLUSTER * k, _MIN_BINS)
    if u.size > 2 * n_bins:
        gaps = np.diff(u)
        gaps = np.concatenate((gaps[:1], 0.5 * (gaps[1:] + gaps[:-1]), gaps[-1:]))  # around each value
        starts = [np.zeros(1, dtype=np.int64)]
        for measure in (w, np.cbrt(w) * np.cbrt(gaps) ** 2):
            cum = np.cumsum(measure)
            cuts = np.searchsorted(cum, np.arange(1, n_bins) * (cum[-1] / n_bins), side="right")
            starts.append(cuts[cuts < u.size])
        starts = np.unique(np.concatenate(starts))
        if starts.size >= k:
            bw = np.add.reduceat(w, starts)
            bu = np.add.reduceat(w * u, starts) / bw
            return _run_means(bu, bw, _exact_bounds(bu, bw, k, n_threads))
    return _run_means(u, w, _exact_bounds(u, w, k, n_threads))


def _init(init: str, u: np.ndarray, w: np.ndarray, k: int, rng, n_threads: int) -> np.ndarray:
    """Sorted starting centres for Lloyd, on the distinct centred values ``u``."""
    if init == "binned":
        return _binned(u, w, k, n_threads)
    if init == "linear":
        # Evenly spaced between the smallest and the largest value (Han et al.).
        return np.linspace(u[0], u[-1], k) if k > 1 else np.array([0.5 * (u[0] + u[-1])])
    if init == "density":
        # Quantiles of the weighted CDF at (j + 1/2) / k: dense regions get more centres.
        cdf = np.cumsum(w)
        targets = (np.arange(k) + 0.5) / k * cdf[-1]
        return u[np.minimum(np.searchsorted(cdf, targets, side="left"), u.size - 1)]
    generator = check_rng(rng)
    if init == "random":
        # k distinct values, drawn in proportion to their weight without replacement.
        return np.sort(u[generator.choice(u.size, size=k, replace=False, p=w / w.sum())])
    centers = np.empty(k)
    _kmeans_1d.kmeans_plus_plus(u, w, centers, draw_key(generator))
    return np.sort(centers)


@overload
def kmeans_1d(x: Tensor, n_clusters: int, *, method: str = "optimal", init: str = "binned",
              sample_weight: npt.ArrayLike | None = None, max_iter: int = 10_000,
              rng: RngLike = None,
              n_threads: int | None = None) -> KMeansResult[Tensor, Tensor]: ...
@overload
def kmeans_1d(x: npt.NDArray[np.float32], n_clusters: int, *, method: str = "optimal",
              init: str = "binned", sample_weight: npt.ArrayLike | None = None,
              max_iter: int = 10_000, rng: RngLike = None, n_threads: int | None = None
              ) -> KMeansResult[npt.NDArray[np.float32], IntArray]: ...
@overload
def kmeans_1d(x: npt.ArrayLike, n_clusters: int, *, method: str = "optimal", init: str = "binned",
              sample_weight: npt.ArrayLike | None = None, max_iter: int = 10_000,
              rng: RngLike = None, n_threads: int | None = None
              ) -> KMeansResult[FloatArray, IntArray]: ...


def kmeans_1d(x: npt.ArrayLike | Tensor, n_clusters: int, *, method: str = "optimal",
              init: str = "binned", sample_weight: npt.ArrayLike | None = None,
              max_iter: int = 10_000, rng: RngLike = None, n_threads: int | None = None) -> KMeansResult[Any, Any]:
    """Cluster 1-D values into ``n_clusters`` groups: the exact optimum, or Lloyd's method.

    Both methods sort the values once (duplicates are merged into one weighted
    value) and then work on sorted runs: in one dimension every nearest-centre
    cluster is an interval.

    * ``"optimal"`` (default): the clustering of least inertia. A search over a
      price per cluster, each price solved in O(m) for m distinct values, and
      for very few clusters a layered dynamic programme (see Notes); O(m)
      memory. ``init``, ``max_iter`` and ``rng`` are ignored.
    * ``"lloyd"``: Lloyd's iterations from ``init`` until no boundary moves. On
      sorted values with prefix sums one iteration costs O(k log m): the k - 1
      boundaries are binary searches for the midpoints between neighbouring
      centres, and each new centre is a difference of prefix sums.

    Parameters
    ----------
    x : array-like or torch.Tensor, shape (n,)
        Finite real values, at least ``n_clusters`` of them distinct. float32
        values give float32 centres; any other real dtype gives float64. All
        arithmetic is in float64.
    n_clusters : int
        Number of clusters, ``1 <= n_clusters <=`` the number of distinct
        values (with positive weight).
    method : {"optimal", "lloyd"}, default "optimal", keyword-only
    init : {"binned", "linear", "density", "random", "k-means++"}, default "binned", keyword-only
        Lloyd's starting centres: the exact optimum of the values merged into
        some ``64 * n_clusters`` runs (cut at equal steps of weight and of the
        implied density ** (1/3), at least 8192 runs), which Lloyd then refines
        ("binned": within 1% of the optimum on the distributions we tested); evenly spaced between the smallest and the largest value
        ("linear", found best for network weights by Han et al., "Deep
        Compression", ICLR 2016, but slow to converge and far from the least
        inertia on bell-shaped data); the weighted quantiles at ``(j + 1/2) / k``
        ("density"); distinct values drawn in proportion to their weight
        ("random"); or D² seeding ("k-means++", Arthur and Vassilvitskii 2007).
    sample_weight : array-like or torch.Tensor, shape (n,), optional, keyword-only
        Finite non-negative weight of each value (default: all 1). Values of
        weight 0 do not move the centres; they are labelled with their nearest
        centre.
    max_iter : int, default 10000, keyword-only
        Most Lloyd iterations (each costs O(k log m), so many are cheap).
    rng : None, int or numpy.random.Generator, keyword-only
        Randomness of the "random" and "k-means++" inits.
    n_threads : int or None, keyword-only
        Threads for the labels of the values and the exact method (which uses
        at most two, on the halves of its larger row-minima problems). The
        result does not depend on it.

    Returns
    -------
    KMeansResult
        ``centers`` (n_clusters,) sorted ascending, ``labels`` (n,) int64 in the
        order of ``x`` (the index of the nearest centre; a value exactly between
        two centres goes to the lower one), ``inertia`` (float) and ``n_iter``.
        Numpy in, numpy out; a tensor in gives tensors on its device.

    Raises
    ------
    ValueError
        ``n_clusters`` < 1 or more than the distinct values, NaN or infinite
        values, negative or non-finite weights, a wrong shape, an unknown
        method or init.
    TypeError
        Non-real data, or ``n_clusters``/``max_iter`` not an int.

    Warns
    -----
    ConvergenceWarning
        When Lloyd's method ran ``max_iter`` iterations and boundaries still moved.

    Notes
    -----
    The optimal inertia g(k) is convex in k, and a path through the sorted
    values that pays a price ``lam`` per cluster, minimising inertia + lam k,
    is one concave least-weight-subsequence problem that Wilber's algorithm
    (J. Algorithms 1988) solves in O(m) with SMAWK row minima. A search over
    ``lam`` (secant steps on log lam, then chords of g) finds a price whose
    optimum has exactly ``n_clusters`` clusters; where g is straight and no
    price does, the optima with fewer and more clusters at the price where
    they tie are spliced into one with exactly ``n_clusters``, which is optimal
    too (Grønlund, Larsen, Mathiasen, Nielsen, Schneider and Song, "Fast exact
    k-means, k-medians and Bregman divergence clustering in 1D", 2017). That is
    a few to a few tens of O(m) passes whatever ``n_clusters`` is. For 2 or 3
    clusters the layered programme of Wang and Song (Ckmeans.1d.dp, 2011) is
    faster and is used instead.

    Run costs come from compensated prefix sums of the values scaled by a
    power of two (exactly) and centred, so a difference of prefixes is
    accurate to the run itself. Where the bound on the rounding of that
    result exceeds 1e-9 of its inertia (values far from the centre with a
    tiny spread, such as clusters near 0 and near 1e9 together), the problem
    is solved again with every doubtful run cost recomputed from summaries
    anchored at a value of the run, accurate to its own cost at any scale:
    the returned clustering is within a relative 1e-9 of the least inertia,
    and usually within rounding.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.cluster import kmeans_1d
    >>> res = kmeans_1d([1.0, 1.1, 5.0, 5.2, 9.0], 3)
    >>> res.centers.round(2).tolist(), res.labels.tolist()
    ([1.05, 5.1, 9.0], [0, 0, 1, 1, 2])
    >>> round(res.inertia, 3)
    0.025
    """
    method = check_choice(method, "method", _METHODS)
    init = check_choice(init, "init", _INITS)
    k = check_count(n_clusters, "n_clusters", minimum=1)
    max_iter = check_count(max_iter, "max_iter", minimum=1)
    n_threads = check_n_threads(n_threads)
    if init in ("random", "k-means++") and method == "lloyd":
        check_rng(rng)  # refuse a bad rng before any work
    raw = as_array(to_numpy(x), "x")
    if raw.dtype.kind not in "biuf":
        what = "real" if raw.dtype.kind == "c" else "numeric"
        raise TypeError(f"x must be {what}, got dtype {raw.dtype}")
    dtype = _float_dtype(raw)
    values = as_float_array(raw, "x")
    weights = None
    if sample_weight is not None:
        weights = as_float_array(sample_weight, "sample_weight", nonnegative=True)
        if weights.shape != values.shape:
            raise ValueError(f"sample_weight must have the shape of x {values.shape}, "
                             f"got {weights.shape}")
    v, w = _distinct(values, weights)
    if k > v.size:
        what = "distinct values of x" + (" with positive sample_weight" if weights is not None else "")
        raise ValueError(f"n_clusters must be at most the number of {what} ({v.size}), got {k}")
    check_finite_total(w, "sample_weight")

    # The fit sees the values scaled by a power of two into [-1, 1]: exact, so
    # differences of values keep every digit, and no square overflows or
    # underflows (it changes neither the clusterings nor their order).
    exponent = int(np.frexp(max(abs(float(v[0])), abs(float(v[-1]))))[1])
    vs = np.ldexp(v, -exponent)
    shift = float(np.sum(w * vs) / np.sum(w))
    bounds = np.empty(k + 1, dtype=np.int64)
    n_iter = 0
    if method == "optimal":
        _optimal_1d.optimal(vs, w, shift, bounds, n_threads)
        fitted = _run_means(vs, w, bounds)
    else:
        # Lloyd works on the centred values, whose prefix sums cancel less.
        u = vs - shift
        p0, p1 = np.empty(u.size + 1), np.empty(u.size + 1)
        _kmeans_1d.prefix_sums(u, w, p0, p1)
        fitted = np.array(_init(init, u, w, k, rng, n_threads), dtype=np.float64)
        n_iter, converged = _kmeans_1d.lloyd(u, p0, p1, fitted, bounds, max_iter)
        if not converged:
            warnings.warn(f"kmeans_1d stopped after max_iter={max_iter} Lloyd iterations before "
                          f"it converged; raise max_iter or use init='binned'",
                          ConvergenceWarning, stacklevel=2)
        _kmeans_1d.means(u, w, bounds, fitted)
        fitted = fitted + shift
    # The centres are the means of the original values of each run (a run of
    # equal values gives exactly that value back); an empty run (Lloyd stopped
    # by max_iter), or a sum beyond float64, keeps the fitted centre.
    fitted = np.ldexp(fitted, exponent)
    with np.errstate(over="ignore", invalid="ignore"):
        direct = fitted.copy()
        _kmeans_1d.means(v, w, bounds, direct)
    # Sorted again: values that centring merged are apart here, so a run's mean
    # can pass the fitted centre of an empty cluster beside it.
    centers = np.sort(np.where(np.isfinite(direct), direct, fitted))
    # Labels and inertia from the final centres in the units of x, as a reader
    # would recompute them (an inertia beyond float64 is inf).
    _kmeans_1d.nearest(v, centers, bounds)
    inertia = _kmeans_1d.inertia(v, w, bounds, centers)
    labels = np.empty(values.size, dtype=np.int64)
    _kmeans_1d.label_values(values, 0.5 * centers[:-1] + 0.5 * centers[1:], centers, labels,
                            n_threads)
    out_centers = centers.astype(dtype)
    return KMeansResult(like_input(out_centers, x), like_input(labels, x), float(inertia), n_iter)
