"""Two-level class-based softmax (Goodman, 2001; Mikolov et al., 2011)."""

from __future__ import annotations

import math
from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkernels._lib.array_types import ArrayLike, Tensor
from dlkernels._lib.torch_checks import check_features, check_targets
from dlkernels._lib.torch_reduction import check_reduction, reduce_loss
from dlkernels._lib.validation import as_float_array, check_count
from dlkernels.nn._params import init_rows, make_rows
from dlkernels.nn._topk import check_k

__all__ = ["ClassBasedSoftmax"]


def frequency_clusters(counts: np.ndarray, n_clusters: int) -> np.ndarray:
    """Cluster of each class: classes sorted by falling count, cut into
    ``n_clusters`` contiguous runs of about equal total ``sqrt(count)``.

    Equal *count* mass (Mikolov et al.) leaves one huge cluster of rare words;
    the square root balances the cluster-level and word-level costs better
    (a Zipf vocabulary gets clusters of at most about ``2 V / n_clusters``).
    Every cluster gets at least one class.
    """
    V = counts.size
    order = np.argsort(-counts, kind="stable")
    mass = np.sqrt(counts[order])
    cum = np.cumsum(mass)
    total = cum[-1]
    if total > 0:
        # Run boundaries where the cumulative mass crosses c * total / n_clusters,
        # then forced strictly increasing so no cluster is empty.
        cuts = np.searchsorted(cum, total * np.arange(1, n_clusters) / n_clusters, side="right")
    else:
        cuts = np.arange(1, n_clusters) * V // n_clusters
    # Cut c (1-based) must lie in [c, V - n_clusters + c] and the cuts must rise
    # strictly: clip, then make cuts - c non-decreasing.
    step = np.arange(1, n_clusters)
    cuts = np.clip(cuts, step, V - n_clusters + step)
    cuts = np.maximum.accumulate(cuts - step) + step
    rank_cluster = np.searchsorted(cuts, np.arange(V), side="right")
    cluster = np.empty(V, dtype=np.int64)
    cluster[order] = rank_cluster
    return cluster


class ClassBasedSoftmax(nn.Module):
    """``p(y | x) = p(cluster(y) | x) * p(y | cluster(y), x)``: two small softmaxes.

    Parameters
    ----------
    dim : int
        Size of each input vector.
    n_classes : int
        At least 2.
    n_clusters : int, optional
        Default ``round(sqrt(n_classes))``, which makes both levels cost about
        ``sqrt(V)`` per example.
    counts : array-like or torch.Tensor, shape (n_classes,), optional
        Class frequencies: clusters are runs of classes sorted by frequency
        (see Notes). Without counts, clusters are runs of equal size in class
        order.
    bias : bool, default True
    reduction : {"mean", "sum", "none"}, default "mean"
        How :meth:`forward` reduces the per-example losses.
    device, dtype

    Attributes
    ----------
    cluster : torch.Tensor of int64, shape (n_classes,)
        The cluster of each class (a buffer).
    head : torch.nn.Linear
        Cluster logits.
    weight, bias : torch.nn.Parameter
        Class vectors and biases, stored in *cluster order*: rows
        ``offsets[c]:offsets[c + 1]`` belong to cluster ``c``; ``order[r]`` is
        the class of row ``r``.

    Notes
    -----
    Clusters cut the classes, sorted by falling count, into runs of about
    equal total ``sqrt(count)``: frequent classes share small clusters and
    rare ones large clusters, and no cluster of a Zipf vocabulary is much
    larger than ``2 V / n_clusters``.

    :meth:`forward` gathers the rows of each target's cluster, padded to the
    largest cluster ``S``, and costs O((n_clusters + S) d) time and O(S d)
    memory per example, with no Python loop. :meth:`log_prob` and
    :meth:`predict` cost O(V d) per example.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.nn import ClassBasedSoftmax
    >>> cbs = ClassBasedSoftmax(8, 100)
    >>> x = torch.randn(3, 8)
    >>> bool(torch.allclose(cbs.log_prob(x).exp().sum(1), torch.ones(3)))
    True
    """

    dim: int
    n_classes: int
    n_clusters: int
    reduction: str
    cluster: torch.Tensor
    head: nn.Linear
    weight: nn.Parameter
    bias: nn.Parameter | None

    def __init__(self, dim: int, n_classes: int, *, n_clusters: int | None = None,
                 counts: ArrayLike | Tensor | None = None, bias: bool = True,
                 reduction: str = "mean", device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim", minimum=1)
        self.n_classes = V = check_count(n_classes, "n_classes", minimum=2)
        if n_clusters is None:
            n_clusters = max(1, round(math.sqrt(V)))
        self.n_clusters = check_count(n_clusters, "n_clusters", minimum=1)
        if self.n_clusters > V:
            raise ValueError(f"n_clusters must be at most n_classes={V}, got {n_clusters}")
        self.reduction = check_reduction(reduction)
        if counts is None:
            cluster = np.arange(V) * self.n_clusters // V
        else:
            counts = as_float_array(counts, "counts", nonnegative=True)
            if counts.shape != (V,):
                raise ValueError(f"counts must have one entry per class: shape {counts.shape} "
                                 f"for n_classes={V}")
            cluster = frequency_clusters(counts, self.n_clusters)
        order = np.argsort(cluster, kind="stable")          # row -> class
        row = np.empty(V, dtype=np.int64)
        row[order] = np.arange(V)                            # class -> row
        sizes = np.bincount(cluster, minlength=self.n_clusters)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.register_buffer("offsets", torch.as_tensor(offsets, device=device))
        self.register_buffer("span", torch.arange(int(sizes.max()), device=device))
        self.register_buffer("cluster", torch.as_tensor(cluster, device=device))
        self.register_buffer("order", torch.as_tensor(order, device=device))
        self.register_buffer("row", torch.as_tensor(row, device=device))
        # Position of each class inside its cluster, and each row's cluster.
        self.register_buffer("position", torch.as_tensor(row - offsets[cluster], device=device))
        self.register_buffer("row_cluster", torch.as_tensor(cluster[order], device=device))
        factory = {"device": device, "dtype": dtype}
        self.head = nn.Linear(self.dim, self.n_clusters, bias=bias, **factory)
        self.weight, self.bias = make_rows(V, self.dim, bias, factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.head.reset_parameters()
        init_rows(self.weight, self.bias)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the targets: reduced, or the shape of ``target``
        with ``reduction="none"``."""
        flat = check_features(input, self.dim)
        t = check_targets(target, self.n_classes, input.shape[:-1])
        cl = self.cluster[t]
        nll = -F.log_softmax(self.head(flat), dim=1).gather(1, cl[:, None]).squeeze(1)
        # Rows of each target's cluster, padded to the largest cluster: one gather
        # and one batched product for the whole batch.
        start = self.offsets[cl]                                         # (n,)
        rows = start[:, None] + self.span                                # (n, S)
        valid = rows < self.offsets[cl + 1][:, None]
        rows = torch.where(valid, rows, start[:, None])
        logits = torch.bmm(F.embedding(rows, self.weight), flat.unsqueeze(2)).squeeze(2)
        if self.bias is not None:
            logits = logits + self.bias[rows]
        logits = logits.masked_fill(~valid, -math.inf)
        pos = self.position[t]
        within = torch.logsumexp(logits, dim=1) - logits.gather(1, pos[:, None]).squeeze(1)
        return reduce_loss((nll + within).reshape(target.shape), self.reduction)

    def log_prob(self, input: torch.Tensor) -> torch.Tensor:
        """The full log-distribution over classes, ``(..., n_classes)``; it sums to 1."""
        flat = check_features(input, self.dim)
        n = flat.shape[0]
        head = F.log_softmax(self.head(flat), dim=1)                     # (n, C)
        logits = F.linear(flat, self.weight, self.bias)                  # (n, V), row order
        index = self.row_cluster.expand(n, -1)
        # Log-sum-exp inside each cluster, stably: subtract the cluster's own max.
        peak = torch.full((n, self.n_clusters), -math.inf, dtype=logits.dtype,
                          device=logits.device)
        peak = peak.scatter_reduce(1, index, logits.detach(), reduce="amax")
        shifted = (logits - peak.gather(1, index)).exp()
        total = torch.zeros_like(peak).scatter_add(1, index, shifted)
        lse = total.log() + peak
        by_row = logits - lse.gather(1, index) + head.gather(1, index)
        out = by_row[:, self.row]                                        # class order
        return out.reshape(*input.shape[:-1], self.n_classes)

    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *,
                return_log_prob: Literal[False] = False) -> torch.Tensor: ...
    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *,
                return_log_prob: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *,
                return_log_prob: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...

    @torch.no_grad()
    def predict(self, input: torch.Tensor, k: int = 1, *, return_log_prob: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` most probable classes (exact: ``topk`` of :meth:`log_prob`)."""
        values, classes = self.log_prob(input).topk(check_k(k, self.n_classes), dim=-1)
        return (classes, values) if return_log_prob else classes

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_classes={self.n_classes}, n_clusters={self.n_clusters}, "
                f"bias={self.bias is not None}, reduction={self.reduction!r}")
