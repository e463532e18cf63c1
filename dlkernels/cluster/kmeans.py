"""k-means: exact and Lloyd clustering of 1-D values, Lloyd in n dimensions."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dlkernels._lib.arrays import like_input, to_numpy
from dlkernels._lib.random import check_rng, draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import (
    as_array,
    as_float_array,
    check_choice,
    check_count,
    check_finite_total,
    check_real,
)
from dlkernels.cluster import _kmeans, _kmeans_1d

__all__ = ["KMeansResult", "kmeans", "kmeans_1d"]

_METHODS_1D = ("optimal", "lloyd")
_INITS_1D = ("linear", "density", "random", "k-means++")


class KMeansResult(NamedTuple):
    """What a k-means call returns.

    Attributes
    ----------
    centers : numpy.ndarray or torch.Tensor, shape (k,) or (k, d)
        Cluster centres, in the dtype of the data (float32 stays float32,
        anything else is float64). From :func:`kmeans_1d` they are sorted
        ascending.
    labels : numpy.ndarray or torch.Tensor of int64, shape (n,)
        The cluster of each point, in the order of the input.
    inertia : float
        Sum over the points of ``sample_weight`` times the squared distance to
        its centre, in float64.
    n_iter : int
        Lloyd iterations run (0 for the exact 1-D method, which has none).
    """

    centers: object
    labels: object
    inertia: float
    n_iter: int


def _float_dtype(arr: np.ndarray):
    """float32 stays float32; every other real dtype computes and returns float64."""
    return np.float32 if arr.dtype == np.float32 else np.float64


def _distinct_1d(x: np.ndarray, sample_weight):
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


def _init_1d(init: str, v: np.ndarray, w: np.ndarray, k: int, rng) -> np.ndarray:
    """Sorted starting centres for Lloyd, on the distinct centred values ``v``."""
    if init == "linear":
        # Evenly spaced between the smallest and the largest value (Han et al.).
        return np.linspace(v[0], v[-1], k) if k > 1 else np.array([0.5 * (v[0] + v[-1])])
    if init == "density":
        # Quantiles of the weighted CDF at (j + 1/2) / k: dense regions get more centres.
        cdf = np.cumsum(w)
        targets = (np.arange(k) + 0.5) / k * cdf[-1]
        return v[np.minimum(np.searchsorted(cdf, targets, side="left"), v.size - 1)]
    generator = check_rng(rng)
    if init == "random":
        # k distinct values, drawn in proportion to their weight without replacement.
        return np.sort(v[generator.choice(v.size, size=k, replace=False, p=w / w.sum())])
    centers = np.empty(k)
    _kmeans_1d.kmeans_plus_plus(v, w, centers, draw_key(generator))
    return np.sort(centers)


def kmeans_1d(x, k, method: str = "optimal", init: str = "linear", sample_weight=None, *,
              max_iter: int = 10_000, rng=None, n_threads: int | None = None) -> KMeansResult:
    """Cluster 1-D values into ``k`` groups: the exact optimum, or Lloyd's method.

    Both methods sort the values once (duplicates are merged into one weighted
    value) and then work on sorted runs: in one dimension every nearest-centre
    cluster is an interval.

    * ``"optimal"``: the clustering of least inertia, exactly (up to float64
      rounding), by dynamic programming over the sorted values with SMAWK row
      minima, O(k m) time and O(m) memory for m distinct values (see Notes).
      ``init`` and ``max_iter`` are ignored.
    * ``"lloyd"``: Lloyd's iterations from ``init`` until no boundary moves. On
      sorted values with prefix sums one iteration costs O(k log m): the k - 1
      boundaries are binary searches for the midpoints between neighbouring
      centres, and each new centre is a difference of prefix sums.

    Parameters
    ----------
    x : array-like or torch.Tensor, shape (n,)
        Finite real values, at least ``k`` of them distinct. float32 values give
        float32 centres; any other real dtype gives float64. All arithmetic is
        in float64.
    k : int
        Number of clusters, ``1 <= k <=`` the number of distinct values (with
        positive weight).
    method : {"optimal", "lloyd"}, default "optimal"
    init : {"linear", "density", "random", "k-means++"}, default "linear"
        Lloyd's starting centres: evenly spaced between the smallest and the
        largest value ("linear", found best for network weights by Han et al.,
        "Deep Compression", ICLR 2016); the weighted quantiles at ``(j + 1/2) / k``
        ("density"); k distinct values drawn in proportion to their weight
        ("random"); or D² seeding ("k-means++", Arthur and Vassilvitskii 2007).
    sample_weight : array-like or torch.Tensor, shape (n,), optional
        Finite non-negative weight of each value (default: all 1). Values of
        weight 0 do not move the centres; they are labelled with their nearest
        centre.
    max_iter : int, default 10000, keyword-only
        Most Lloyd iterations (each costs O(k log m), so many are cheap).
    rng : None, int or numpy.random.Generator, keyword-only
        Randomness of the "random" and "k-means++" inits.
    n_threads : int or None, keyword-only
        Threads for the exact method (it uses at most two: the forward and the
        backward half of each split). The result does not depend on it.

    Returns
    -------
    KMeansResult
        ``centers`` (k,) sorted ascending, ``labels`` (n,) int64 in the order of
        ``x`` (the index of the nearest centre; a value exactly between two
        centres goes to the lower one), ``inertia`` (float) and ``n_iter``.
        Numpy in, numpy out; a tensor in gives tensors on its device.

    Raises
    ------
    ValueError
        ``k`` < 1 or more than the distinct values, NaN or infinite values,
        negative or non-finite weights, a wrong shape, an unknown method or init.
    TypeError
        Non-real data, or ``k``/``max_iter`` not an int.

    Notes
    -----
    The exact method is the dynamic programme of Wang and Song (Ckmeans.1d.dp,
    R Journal 2011) with each layer's row minima found by SMAWK (Aggarwal et
    al., Algorithmica 1987), which the quadrangle inequality of squared
    deviations allows. Instead of a k-by-m table of argmins the boundaries are
    recovered by splitting in the middle (Hirschberg's trick): the best
    boundary between the first ``k // 2`` clusters and the rest is where a
    forward and a backward programme meet, and each side is solved again.
    This costs about twice the forward pass. Values are centred on their mean
    and scaled into [-1, 1] before the prefix sums of ``w x**2`` are formed, to
    limit cancellation and so that no square overflows or underflows;
    among clusterings whose inertias agree to rounding, any may be returned.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.cluster import kmeans_1d
    >>> res = kmeans_1d([1.0, 1.1, 5.0, 5.2, 9.0], k=3)
    >>> res.centers.round(2).tolist(), res.labels.tolist()
    ([1.05, 5.1, 9.0], [0, 0, 1, 1, 2])
    >>> round(res.inertia, 3)
    0.025
    """
    method = check_choice(method, "method", _METHODS_1D)
    init = check_choice(init, "init", _INITS_1D)
    k = check_count(k, "k", minimum=1)
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
    v, w = _distinct_1d(values, weights)
    if k > v.size:
        what = "distinct values of x" + (" with positive sample_weight" if weights is not None else "")
        raise ValueError(f"k must be at most the number of {what} ({v.size}), got {k}")
    check_finite_total(w, "sample_weight")

    # The fit sees the values centred, so that the prefix sums of w v^2 cancel
    # far less, and scaled into [-1, 1], so that no square overflows or
    # underflows (neither changes the clusterings or their order by inertia).
    unit = max(abs(float(v[0])), abs(float(v[-1]))) or 1.0
    mean = float(np.sum(w * (v / unit)) / np.sum(w))
    spread = max(abs(float(v[0]) / unit - mean), abs(float(v[-1]) / unit - mean)) or 1.0
    u, v = v, (v / unit - mean) / spread

    def original(c):  # fitted units -> the units of x
        return (c * spread + mean) * unit

    bounds = np.empty(k + 1, dtype=np.int64)
    centers = np.empty(k)
    n_iter = 0
    p0, p1, p2 = (np.empty(v.size + 1) for _ in range(3))
    _kmeans_1d.prefix_sums(v, w, p0, p1, p2)
    if method == "optimal":
        _kmeans_1d.optimal(p0, p1, p2, bounds, n_threads)
    else:
        centers[:] = _init_1d(init, v, w, k, rng)
        n_iter = _kmeans_1d.lloyd(v, p0, p1, centers, bounds, max_iter)
    _kmeans_1d.means(v, w, bounds, centers)
    # The centres are the means of the original values of each run (a run of
    # equal values gives exactly that value back; transformed values can round
    # together); an empty run, or a sum beyond float64, keeps the fitted centre.
    fitted = original(centers)
    with np.errstate(over="ignore", invalid="ignore"):
        direct = fitted.copy()
        _kmeans_1d.means(u, w, bounds, direct)
    centers = np.where(np.isfinite(direct), direct, fitted)
    # Labels and inertia from the final centres in the units of x, as a reader
    # would recompute them (an inertia beyond float64 is inf).
    _kmeans_1d.nearest(u, centers, bounds)
    inertia = _kmeans_1d.inertia(u, w, bounds, centers)
    labels = np.empty(values.size, dtype=np.int64)
    _kmeans_1d.label_values(values, 0.0, 0.5 * centers[:-1] + 0.5 * centers[1:], labels, n_threads)
    out_centers = centers.astype(dtype)
    return KMeansResult(like_input(out_centers, x), like_input(labels, x), float(inertia), n_iter)


def _as_points(X, name: str = "X") -> np.ndarray:
    """A C-contiguous 2-D float32/float64 array of finite values (float32 kept)."""
    arr = as_array(X, name)
    if arr.dtype.kind not in "biuf":
        what = "real" if arr.dtype.kind == "c" else "numeric"
        raise TypeError(f"{name} must be {what}, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (points by coordinates), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point of at least one coordinate, "
                         f"got shape {arr.shape}")
    dtype = _float_dtype(arr)
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below
        arr = np.ascontiguousarray(arr, dtype=dtype)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite, got {arr[row, col]} at point {row}, coordinate {col}")
    return arr


def _init_centers(init, X: np.ndarray, k: int, xnorm: np.ndarray, rng, n_threads: int) -> np.ndarray:
    n, d = X.shape
    if isinstance(init, str):
        if init == "k-means++":
            centers = np.empty((k, d), dtype=X.dtype)
            # 2 + log(k) candidates per step, as scikit-learn's greedy k-means++.
            _kmeans.kmeans_plus_plus(X, xnorm, centers, 2 + int(np.log(k)), draw_key(rng), n_threads)
            return centers
        return X[np.sort(check_rng(rng).choice(n, size=k, replace=False))].copy()
    return init


def _check_init(init, k: int, d: int, dtype):
    if isinstance(init, str):
        return check_choice(init, "init", ("k-means++", "random"))
    arr = as_array(init, "init")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"init must be 'k-means++', 'random' or an array of centres, got dtype {arr.dtype}")
    if arr.shape != (k, d):
        raise ValueError(f"init must have shape (k, d) = ({k}, {d}), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError("init must be finite")
    return arr


def kmeans(X, k, init="k-means++", max_iter: int = 300, tol: float = 1e-4, rng=None,
           n_threads: int | None = None) -> KMeansResult:
    """Lloyd's k-means on the rows of ``X``, in parallel and deterministic.

    Each iteration assigns every point to its nearest centre, then recomputes
    each centre as the float64 mean of its points, cluster by cluster in point
    order, so the result is the same at any thread count. Assignments run over
    fixed chunks of points in parallel with a register-tiled distance kernel
    (the squared-norm trick, AVX2+FMA where the CPU has it), and Hamerly's
    bounds (SIAM SDM 2010) skip the points that provably keep their centre. The stopping rule is
    scikit-learn's: stop when no label changes, or when the centres moved by a
    total squared distance of at most ``tol`` times the mean variance of the
    coordinates, or after ``max_iter`` iterations.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape (n, d)
        Finite coordinates. float32 is kept (the distance kernel runs in it);
        any other real dtype is computed in float64.
    k : int
        Number of clusters, ``1 <= k <= n``.
    init : "k-means++", "random" or array-like of shape (k, d), default "k-means++"
        Greedy k-means++ seeding (2 + log k candidates per centre, as
        scikit-learn), k distinct rows drawn uniformly, or the starting centres.
    max_iter : int, default 300
        Most Lloyd iterations.
    tol : float, default 1e-4
        Relative tolerance on the centre shift (see above); 0 iterates until no
        label changes or ``max_iter``.
    rng : None, int or numpy.random.Generator
        Randomness of the seeding.
    n_threads : int or None
        Threads (None: OpenMP's default). The result does not depend on it.

    Returns
    -------
    KMeansResult
        ``centers`` (k, d) in the dtype of ``X``, ``labels`` (n,) int64 (the
        nearest final centre of each point; the first on ties), ``inertia``
        (float64 sum of squared distances to those centres) and ``n_iter``.
        Numpy in, numpy out; a tensor in gives tensors on its device (a CUDA
        tensor is copied to the host for the computation).

    Raises
    ------
    ValueError
        ``k`` < 1 or > n, NaN or infinite coordinates, a wrong shape, a bad
        ``init`` array, ``tol`` < 0.
    TypeError
        Non-real data, or ``k``/``max_iter`` not an int.

    Notes
    -----
    A cluster that loses all its points is given the point farthest from its
    own centre (the next farthest for a second empty cluster, and so on), as
    scikit-learn does. With fewer than ``k`` distinct points some centres
    coincide.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.cluster import kmeans
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    >>> res = kmeans(X, 2, init=X[[0, 2]])
    >>> res.centers.tolist(), res.labels.tolist(), res.inertia, res.n_iter
    ([[0.0, 0.5], [10.0, 0.5]], [0, 0, 1, 1], 1.0, 2)
    """
    k = check_count(k, "k", minimum=1)
    max_iter = check_count(max_iter, "max_iter", minimum=1)
    tol = check_real(tol, "tol", low=0.0)
    n_threads = check_n_threads(n_threads)
    points = _as_points(X)
    n, d = points.shape
    if k > n:
        raise ValueError(f"k must be at most the number of points ({n}), got {k}")
    init = _check_init(init, k, d, points.dtype)
    if isinstance(init, str):
        rng = check_rng(rng)

    xnorm = np.empty(n, dtype=points.dtype)
    _kmeans.row_norms(points, xnorm, n_threads)
    if not np.isfinite(xnorm).all():
        row = int(np.flatnonzero(~np.isfinite(xnorm))[0])
        raise ValueError(f"X is too large for {points.dtype.name}: the squared norm of point {row} "
                         f"overflows; scale X down")
    centers = _init_centers(init, points, k, xnorm, rng, n_threads)
    # scikit-learn's tolerance: relative to the mean variance of the coordinates.
    threshold = tol * float(np.mean(np.var(points, axis=0, dtype=np.float64)))

    kp = _kmeans.padded(k)
    ct = np.empty((d, kp), dtype=points.dtype)
    cn = np.empty(kp, dtype=points.dtype)
    labels = np.zeros(n, dtype=np.int64)
    old = np.empty(n, dtype=np.int64)
    upper, lower = np.empty(n), np.empty(n)
    shift, half_gap = np.zeros(k), np.empty(k)
    sums = np.empty((k, d))
    counts = np.empty(k, dtype=np.int64)
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        np.copyto(old, labels)
        _kmeans.transpose_centers(centers, ct, cn)
        _kmeans.assign_bounded(points, xnorm, centers, ct, cn, labels, upper, lower, shift,
                               half_gap, n_iter == 1, n_threads)
        if n_iter > 1 and np.array_equal(labels, old):
            converged = True  # the centres are already the means of these labels
            break
        _kmeans.update(points, labels, sums, counts, n_threads)
        new = np.empty_like(centers)
        nonempty = counts > 0
        new[nonempty] = (sums[nonempty] / counts[nonempty, None]).astype(points.dtype)
        empty = np.flatnonzero(~nonempty)
        if empty.size:
            # The farthest points from their centres, farthest first (ties by index).
            dist = np.empty(n)
            _kmeans.sq_distances(points, centers, labels, dist, n_threads)
            new[empty] = points[np.argsort(-dist, kind="stable")[:empty.size]]
        moves = np.sum((new.astype(np.float64) - centers) ** 2, axis=1)
        shift = np.sqrt(moves) * (1 + 1e-12)
        _kmeans.half_gaps(new, half_gap, n_threads)
        centers = new
        if moves.sum() <= threshold and not empty.size:
            break
    if not converged:
        _kmeans.transpose_centers(centers, ct, cn)
        _kmeans.assign_bounded(points, xnorm, centers, ct, cn, labels, upper, lower, shift,
                               half_gap, False, n_threads)
    inertia = _kmeans.inertia(points, centers, labels, n_threads)
    return KMeansResult(like_input(centers, X), like_input(labels, X), float(inertia), n_iter)
