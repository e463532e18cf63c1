"""n-D k-means (Lloyd, k-means++ seeding) and the result type of both k-means functions."""

from __future__ import annotations

import sys
import warnings
from typing import Any, Generic, TypeVar, overload

import numpy as np
import numpy.typing as npt

from dlkernels._lib.array_types import FloatArray, IntArray, RngLike, Tensor
from dlkernels._lib.arrays import like_input
from dlkernels._lib.exceptions import ConvergenceWarning
from dlkernels._lib.random import check_rng, draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import as_array, check_choice, check_count, check_real
from dlkernels.cluster import _kmeans

if sys.version_info >= (3, 11):
    from typing import NamedTuple
else:  # a generic NamedTuple needs Python 3.11, or typing_extensions' back-port
    from typing_extensions import NamedTuple

__all__ = ["ConvergenceWarning", "KMeansResult", "kmeans"]

# The types of a result's centres and labels: numpy arrays (float32 centres for
# float32 data, else float64; int64 labels), or tensors for a tensor input.
Centers = TypeVar("Centers")
Labels = TypeVar("Labels")


class KMeansResult(NamedTuple, Generic[Centers, Labels]):
    """What a k-means call returns.

    Attributes
    ----------
    centers : numpy.ndarray or torch.Tensor, shape (n_clusters,) or (n_clusters, d)
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

    centers: Centers
    labels: Labels
    inertia: float
    n_iter: int


def _float_dtype(arr: np.ndarray) -> type[np.floating[Any]]:
    """float32 stays float32; every other real dtype computes and returns float64."""
    return np.float32 if arr.dtype == np.float32 else np.float64


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
        return X[np.sort(rng.choice(n, size=k, replace=False))].copy()
    return init


def _check_init(init, k: int, d: int, dtype):
    if isinstance(init, str):
        return check_choice(init, "init", ("k-means++", "random"))
    arr = as_array(init, "init")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"init must be 'k-means++', 'random' or an array of centres, got dtype {arr.dtype}")
    if arr.shape != (k, d):
        raise ValueError(f"init must have shape (n_clusters, d) = ({k}, {d}), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError("init must be finite")
    return arr


def _lloyd(points: np.ndarray, xnorm: np.ndarray, centers: np.ndarray, max_iter: int,
           threshold: float, n_threads: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Lloyd's iterations from ``centers``: (centres, the nearest centre of each point,
    iterations, whether the stopping rule was met before ``max_iter``)."""
    n, d = points.shape
    k = centers.shape[0]
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
            return centers, labels, n_iter, True  # the centres are the means of these labels
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
            converged = True
            break
    # The labels are those of the centres before the last update: assign once more.
    _kmeans.transpose_centers(centers, ct, cn)
    _kmeans.assign_bounded(points, xnorm, centers, ct, cn, labels, upper, lower, shift,
                           half_gap, False, n_threads)
    return centers, labels, n_iter, converged


@overload
def kmeans(X: Tensor, n_clusters: int, *, init: str | npt.ArrayLike = "k-means++",
           max_iter: int = 300, tol: float = 1e-4, max_points_per_centroid: int | None = None,
           rng: RngLike = None, n_threads: int | None = None) -> KMeansResult[Tensor, Tensor]: ...
@overload
def kmeans(X: npt.NDArray[np.float32], n_clusters: int, *,
           init: str | npt.ArrayLike = "k-means++", max_iter: int = 300, tol: float = 1e-4,
           max_points_per_centroid: int | None = None, rng: RngLike = None,
           n_threads: int | None = None) -> KMeansResult[npt.NDArray[np.float32], IntArray]: ...
@overload
def kmeans(X: npt.ArrayLike, n_clusters: int, *, init: str | npt.ArrayLike = "k-means++",
           max_iter: int = 300, tol: float = 1e-4, max_points_per_centroid: int | None = None,
           rng: RngLike = None,
           n_threads: int | None = None) -> KMeansResult[FloatArray, IntArray]: ...


def kmeans(X: npt.ArrayLike | Tensor, n_clusters: int, *,
           init: str | npt.ArrayLike = "k-means++", max_iter: int = 300, tol: float = 1e-4,
           max_points_per_centroid: int | None = None, rng: RngLike = None,
           n_threads: int | None = None) -> KMeansResult[Any, Any]:
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
    n_clusters : int
        Number of clusters, ``1 <= n_clusters <= n``.
    init : "k-means++", "random" or array-like of shape (n_clusters, d), default "k-means++", keyword-only
        Greedy k-means++ seeding (2 + log k candidates per centre, as
        scikit-learn), distinct rows drawn uniformly, or the starting centres.
    max_iter : int, default 300, keyword-only
        Most Lloyd iterations.
    tol : float, default 1e-4, keyword-only
        Relative tolerance on the centre shift (see above); 0 iterates until no
        label changes or ``max_iter``.
    max_points_per_centroid : int or None, default None, keyword-only
        If set and ``n > n_clusters * max_points_per_centroid``, seed and
        iterate on that many points drawn uniformly without replacement (as
        faiss does, whose default is 256), then label every point by its
        nearest final centre. Much faster on large ``X``, at a slightly higher
        inertia; None (the default) uses every point.
    rng : None, int or numpy.random.Generator, keyword-only
        Randomness of the seeding and of the sample.
    n_threads : int or None, keyword-only
        Threads (None: OpenMP's default). The result does not depend on it.

    Returns
    -------
    KMeansResult
        ``centers`` (n_clusters, d) in the dtype of ``X``, ``labels`` (n,)
        int64 (the nearest final centre of each point; the first on ties),
        ``inertia`` (float64 sum of squared distances to those centres, over
        every point) and ``n_iter``. Numpy in, numpy out; a tensor in gives
        tensors on its device (a CUDA tensor is copied to the host for the
        computation).

    Raises
    ------
    ValueError
        ``n_clusters`` < 1 or > n, NaN or infinite coordinates, a wrong shape,
        a bad ``init`` array, ``tol`` < 0, ``max_points_per_centroid`` < 1.
    TypeError
        Non-real data, or ``n_clusters``/``max_iter`` not an int.

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` iterations ran without meeting the stopping rule.

    Notes
    -----
    A cluster that loses all its points is given the point farthest from its
    own centre (the next farthest for a second empty cluster, and so on), as
    scikit-learn does. With fewer than ``n_clusters`` distinct points some
    centres coincide.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.cluster import kmeans
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    >>> res = kmeans(X, 2, init=X[[0, 2]])
    >>> res.centers.tolist(), res.labels.tolist(), res.inertia, res.n_iter
    ([[0.0, 0.5], [10.0, 0.5]], [0, 0, 1, 1], 1.0, 2)
    """
    k = check_count(n_clusters, "n_clusters", minimum=1)
    max_iter = check_count(max_iter, "max_iter", minimum=1)
    tol = check_real(tol, "tol", low=0.0)
    if max_points_per_centroid is not None:
        max_points_per_centroid = check_count(max_points_per_centroid, "max_points_per_centroid",
                                              minimum=1)
    n_threads = check_n_threads(n_threads)
    points = _as_points(X)
    n, d = points.shape
    if k > n:
        raise ValueError(f"n_clusters must be at most the number of points ({n}), got {k}")
    init = _check_init(init, k, d, points.dtype)
    sampled = max_points_per_centroid is not None and n > k * max_points_per_centroid
    if isinstance(init, str) or sampled:
        rng = check_rng(rng)

    xnorm = np.empty(n, dtype=points.dtype)
    _kmeans.row_norms(points, xnorm, n_threads)
    if not np.isfinite(xnorm).all():
        row = int(np.flatnonzero(~np.isfinite(xnorm))[0])
        raise ValueError(f"X is too large for {points.dtype.name}: the squared norm of point {row} "
                         f"overflows; scale X down")
    train, tnorm = points, xnorm
    if sampled:
        rows = np.sort(rng.choice(n, size=k * max_points_per_centroid, replace=False))
        train, tnorm = points[rows], xnorm[rows]
    centers = _init_centers(init, train, k, tnorm, rng, n_threads)
    # scikit-learn's tolerance: relative to the mean variance of the coordinates.
    threshold = tol * float(np.mean(np.var(train, axis=0, dtype=np.float64)))
    centers, labels, n_iter, converged = _lloyd(train, tnorm, centers, max_iter, threshold, n_threads)
    if not converged:
        warnings.warn(f"kmeans stopped after max_iter={max_iter} iterations before it converged; "
                      f"raise max_iter or tol", ConvergenceWarning, stacklevel=2)
    if sampled:
        # Label every point by the final centres (one full assignment).
        kp = _kmeans.padded(k)
        ct, cn = np.empty((d, kp), dtype=points.dtype), np.empty(kp, dtype=points.dtype)
        _kmeans.transpose_centers(centers, ct, cn)
        labels = np.zeros(n, dtype=np.int64)
        _kmeans.assign_bounded(points, xnorm, centers, ct, cn, labels, np.empty(n), np.empty(n),
                               np.zeros(k), np.empty(k), True, n_threads)
    inertia = _kmeans.inertia(points, centers, labels, n_threads)
    return KMeansResult(like_input(centers, X), like_input(labels, X), float(inertia), n_iter)
