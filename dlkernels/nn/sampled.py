"""Sampled output losses: negative sampling, NCE and sampled softmax.

All three score a class ``y`` as ``s(y) = w_y . x + b_y`` with an output
matrix they own, and draw their noise from :class:`dlkernels.sampling.NegativeSampler`
(``counts ** power``, alias method, on the CPU; ids are moved to the input's
device). Each reduces its per-example losses as ``reduction`` says (default:
their mean, as torch's losses).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkernels._lib.array_types import ArrayLike, NDArray, RngLike, Size, Tensor
from dlkernels._lib.random import check_rng
from dlkernels._lib.torch_checks import check_features, check_targets
from dlkernels._lib.torch_reduction import check_reduction, reduce_loss
from dlkernels._lib.validation import as_float_array, check_count
from dlkernels.nn._params import init_rows, make_rows
from dlkernels.sampling import NegativeSampler

__all__ = ["NegativeSamplingLoss", "NCELoss", "SampledSoftmaxLoss"]


class _SampledLoss(nn.Module):
    """Output vectors and the noise sampler shared by the three losses."""

    dim: int
    n_classes: int
    n_negatives: int
    reduction: str
    sampler: NegativeSampler[NDArray[Any]]
    rng: np.random.Generator
    log_noise: torch.Tensor
    weight: nn.Parameter
    bias: nn.Parameter | None

    def __init__(self, dim: int, n_classes: int, counts: ArrayLike | Tensor, n_negatives: int,
                 power: float, rng: RngLike, bias: bool, reduction: str,
                 device: str | torch.device | None, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim", minimum=1)
        self.n_classes = check_count(n_classes, "n_classes", minimum=2)
        self.n_negatives = check_count(n_negatives, "n_negatives", minimum=1)
        self.reduction = check_reduction(reduction)
        counts = as_float_array(counts, "counts", nonnegative=True)
        if counts.shape != (self.n_classes,):
            raise ValueError(f"counts must have one entry per class: shape {counts.shape} "
                             f"for n_classes={self.n_classes}")
        self.sampler = NegativeSampler(counts, power=power)
        self.rng = check_rng(rng)
        # log Q(y) of every class, on the parameters' device (-inf for count 0).
        factory = {"device": device, "dtype": dtype}
        self.register_buffer("log_noise", torch.as_tensor(
            self.sampler.log_prob(range(self.n_classes)), **factory).to(
                dtype or torch.get_default_dtype()))
        self.weight, self.bias = make_rows(self.n_classes, self.dim, bias, factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_rows(self.weight, self.bias)

    def _check(self, input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = check_features(input, self.dim)
        t = check_targets(target, self.n_classes, input.shape[:-1])
        return flat, t.to(flat.device)

    def _reduce(self, loss: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return reduce_loss(loss.reshape(target.shape), self.reduction)

    def _draw(self, shape: Size, device: torch.device,
              exclude: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.sampler.sample(shape, rng=self.rng, exclude=exclude)
        return torch.as_tensor(ids, device=device)

    def _scores(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``s(ids[i, j])`` for row ``x[i]`` (ids ``(n, m)``) -> ``(n, m)``."""
        s = torch.bmm(F.embedding(ids, self.weight), x.unsqueeze(2)).squeeze(2)
        return s + self.bias[ids] if self.bias is not None else s

    def logits(self, input: torch.Tensor) -> torch.Tensor:
        """Scores ``s(y)`` of all classes, shape ``(..., n_classes)``, for evaluation."""
        flat = check_features(input, self.dim)
        return F.linear(flat, self.weight, self.bias).reshape(*input.shape[:-1], self.n_classes)

    def log_prob(self, input: torch.Tensor) -> torch.Tensor:
        """The full softmax of :meth:`logits` (for evaluation; O(V d) per example)."""
        return F.log_softmax(self.logits(input), dim=-1)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_classes={self.n_classes}, n_negatives={self.n_negatives}, "
                f"power={self.sampler.power}, bias={self.bias is not None}, "
                f"reduction={self.reduction!r}")


class NegativeSamplingLoss(_SampledLoss):
    """word2vec's negative-sampling objective (Mikolov et al., 2013).

    ``-log sigmoid(s(y)) - sum_j log sigmoid(-s(n_j))`` with ``n_negatives``
    negatives per example drawn from the noise distribution, never equal to
    that example's target.

    Parameters
    ----------
    dim, n_classes : int
        Input size and number of classes.
    counts : array-like or torch.Tensor, shape (n_classes,)
        Class frequencies; the noise is ``counts ** power``, normalised.
    n_negatives : int, default 5
    power : float, default 0.75
    rng : None, int or numpy.random.Generator
        Drives every draw; the same seed gives the same sequence of losses.
    bias : bool, default True
    reduction : {"mean", "sum", "none"}, default "mean"
    device, dtype

    Examples
    --------
    >>> import torch
    >>> from dlkernels.nn import NegativeSamplingLoss
    >>> loss = NegativeSamplingLoss(16, 50, counts=torch.arange(50, 0, -1), rng=0)
    >>> loss(torch.randn(4, 16), torch.tensor([1, 2, 3, 4])).shape
    torch.Size([])
    """

    _only_class: int

    def __init__(self, dim: int, n_classes: int, *, counts: ArrayLike | Tensor,
                 n_negatives: int = 5, power: float = 0.75, rng: RngLike = None,
                 bias: bool = True, reduction: str = "mean",
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(dim, n_classes, counts, n_negatives, power, rng, bias, reduction,
                         device, dtype)
        # The one class noise can draw, if there is only one (-1 otherwise): a
        # target of that class has no negative.
        drawable = np.flatnonzero(self.sampler.probabilities > 0)
        self._only_class = int(drawable[0]) if drawable.size == 1 else -1

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat, t = self._check(input, target)
        if self._only_class >= 0 and bool((t == self._only_class).any()):
            pos = int((t == self._only_class).nonzero()[0, 0])
            raise ValueError(f"target holds class {self._only_class} at position {pos}, the only "
                             f"class with a nonzero count: no negative can differ from it")
        neg = self._draw((t.numel(), self.n_negatives), flat.device, exclude=t.cpu())
        pos_s = self._scores(flat, t[:, None]).squeeze(1)
        neg_s = self._scores(flat, neg)
        loss = -F.logsigmoid(pos_s) - F.logsigmoid(-neg_s).sum(1)
        return self._reduce(loss, target)


class NCELoss(_SampledLoss):
    """Noise-contrastive estimation (Gutmann & Hyvarinen, 2010; Mnih & Teh, 2012).

    Each example's target is told apart from ``n_negatives`` draws of the noise
    distribution ``Q`` by logistic regression on ``s(y) - log(n_negatives * Q(y))``,
    with ``s`` an unnormalised log-probability (the partition function is taken
    as 1, which the model learns to satisfy).

    Parameters
    ----------
    dim, n_classes : int
    counts : array-like or torch.Tensor, shape (n_classes,)
    n_negatives : int, default 25
        Noise samples per example.
    power : float, default 0.75
        Noise ``counts ** power`` (1 is the unigram distribution of Mnih & Teh).
    rng, bias, reduction, device, dtype
        As in :class:`NegativeSamplingLoss`.

    Notes
    -----
    Noise draws are independent of the target (NCE's derivation needs them from
    ``Q`` itself), so a noise draw may equal the target.
    """

    def __init__(self, dim: int, n_classes: int, *, counts: ArrayLike | Tensor,
                 n_negatives: int = 25, power: float = 0.75, rng: RngLike = None,
                 bias: bool = True, reduction: str = "mean",
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(dim, n_classes, counts, n_negatives, power, rng, bias, reduction,
                         device, dtype)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat, t = self._check(input, target)
        noise = self._draw((t.numel(), self.n_negatives), flat.device)
        log_k = math.log(self.n_negatives)
        # A target with zero noise probability gets log Q = -inf: its delta is +inf
        # and its term -log sigmoid(inf) = 0, the right limit.
        pos = self._scores(flat, t[:, None]).squeeze(1) - (self.log_noise[t] + log_k)
        neg = self._scores(flat, noise) - (self.log_noise[noise] + log_k)
        loss = -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(1)
        return self._reduce(loss, target)


class SampledSoftmaxLoss(_SampledLoss):
    """Sampled softmax with the logQ correction (Bengio & Senecal, 2008; Jean et al., 2015).

    One set of ``n_negatives`` classes is drawn (with replacement) from ``Q`` for
    the whole minibatch. Each example's loss is the cross-entropy of its target
    against the target plus the samples, where a sampled class ``c`` scores
    ``s(c) - log(n_negatives * Q(c))`` and samples equal to the example's own
    target (accidental hits) are removed.

    Parameters
    ----------
    dim, n_classes : int
    counts : array-like or torch.Tensor, shape (n_classes,)
    n_negatives : int, default 1024
        Classes sampled per minibatch (shared by its examples).
    power : float, default 0.75
    rng, bias, reduction, device, dtype
        As in :class:`NegativeSamplingLoss`.

    Notes
    -----
    With this correction ``sum_j exp(s(c_j)) / (n Q(c_j))`` over the samples
    that are not the target is an unbiased estimate of the partition function
    without the target, and the target adds its own ``exp(s(y))`` exactly. So
    as ``n_negatives`` grows the loss tends to the full softmax cross-entropy and
    its gradient to the full gradient (tested). The target's own score is
    therefore not corrected.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.nn import SampledSoftmaxLoss
    >>> loss = SampledSoftmaxLoss(16, 1000, counts=torch.ones(1000), n_negatives=64, rng=0)
    >>> x = torch.randn(4, 16, requires_grad=True)
    >>> loss(x, torch.tensor([1, 2, 3, 4])).backward()
    """

    def __init__(self, dim: int, n_classes: int, *, counts: ArrayLike | Tensor,
                 n_negatives: int = 1024, power: float = 0.75, rng: RngLike = None,
                 bias: bool = True, reduction: str = "mean",
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(dim, n_classes, counts, n_negatives, power, rng, bias, reduction,
                         device, dtype)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat, t = self._check(input, target)
        sampled = self._draw(self.n_negatives, flat.device)             # shared (n,)
        pos = self._scores(flat, t[:, None])                             # (b, 1)
        neg = F.linear(flat, self.weight[sampled],
                       self.bias[sampled] if self.bias is not None else None)  # (b, n)
        neg = neg - (self.log_noise[sampled] + math.log(self.n_negatives))
        neg = neg.masked_fill(sampled[None, :] == t[:, None], -math.inf)  # accidental hits
        logits = torch.cat([pos, neg], dim=1)
        loss = torch.logsumexp(logits, dim=1) - pos.squeeze(1)
        return self._reduce(loss, target)
