"""Binary code prediction (Oda et al., ACL 2017): O(log V) output layer."""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkernels._lib.array_types import ArrayLike, Tensor
from dlkernels._lib.torch_checks import check_features, check_targets
from dlkernels._lib.torch_reduction import check_reduction, reduce_loss
from dlkernels._lib.validation import as_float_array, check_choice, check_count
from dlkernels.nn._params import init_rows, make_rows
from dlkernels.nn._topk import check_k, shaped
from dlkernels.nn._trellis import Trellis

__all__ = ["BinaryCodeSoftmax"]

# Rate-1/2 convolutional code of constraint length 7, generators 171 and 133
# (octal): the common K = 7 code (free distance 10).
CONVOLUTIONAL_GENERATORS = (0o171, 0o133)
CODES = ("binary", "convolutional")


class BinaryCodeSoftmax(nn.Module):
    """A distribution over ``n_classes`` from independent bits of each class's code.

    Every class gets an integer code; its ``B = ceil(log2 V)`` bits (or, with
    ``code="convolutional"``, the bits of their convolutional encoding) are
    predicted by independent sigmoids of ``w_j . x + b_j``, so the layer has
    O(log V) parameters and a training step costs O(log V · dim) per example.
    A class's probability is the product of its bits' probabilities,
    renormalised over the codes that name a class (``2^B - V`` codes name none,
    and a convolutional code's other bit patterns are not codewords):
    :meth:`log_prob` sums to 1, and :meth:`forward` is its exact negative
    log-likelihood. The normaliser costs O(log V) per example (a pass over the
    code's trellis), not O(V).

    Parameters
    ----------
    dim : int
        Size of each input vector.
    n_classes : int
        At least 2.
    counts : array-like or torch.Tensor, shape (n_classes,), optional
        Class frequencies: codes are given by falling frequency (the most
        frequent class gets code 0), and the hybrid head takes the most
        frequent classes. Without counts, class ids are the order.
    n_softmax : int, default 0
        The hybrid model: the ``n_softmax`` most frequent classes get a softmax
        (plus one "other" entry), and only the others are coded; ``p(rare) =
        p(other) * p(code)``. At most ``n_classes - 2``.
    code : {"binary", "convolutional"}, default "binary"
        ``"convolutional"``: the paper's error-correcting variant; the ``B``
        bits are encoded by a rate-1/2 convolutional code of constraint length
        7 (generators 171 and 133, octal), ``2 (B + 6)`` output bits, and
        :meth:`predict` is Viterbi decoding (its k-best extension).
    bias : bool, default True
    reduction : {"mean", "sum", "none"}, default "mean"
    device, dtype

    Attributes
    ----------
    weight : torch.nn.Parameter, shape (n_bits, dim)
    bias : torch.nn.Parameter or None, shape (n_bits,)
    head : torch.nn.Linear or None
        The hybrid softmax over ``n_softmax + 1`` entries (the last: "other").
    n_bits : int
        Output bits per class.
    code_of_class : torch.Tensor of int64, shape (n_classes,)
        Each class's code, -1 for classes of the softmax head (a buffer).

    Notes
    -----
    :meth:`predict` is exact: a beam of width k runs over the code's input
    bits, each prefix scored by its log-probability plus that of its best
    valid completion (a Viterbi pass computed first), which is the exact top-k
    of :meth:`log_prob` without scoring all V classes: O(k log V) per example.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.nn import BinaryCodeSoftmax
    >>> layer = BinaryCodeSoftmax(16, 1000)
    >>> x, y = torch.randn(4, 16), torch.tensor([0, 5, 999, 3])
    >>> layer(x, y).shape
    torch.Size([])
    >>> bool(torch.allclose(layer.log_prob(x).exp().sum(1), torch.ones(4)))
    True
    >>> layer.predict(x, 2).shape
    torch.Size([4, 2])
    """

    dim: int
    n_classes: int
    n_softmax: int
    code: str
    reduction: str
    trellis: Trellis
    n_bits: int
    code_of_class: torch.Tensor
    weight: nn.Parameter
    bias: nn.Parameter | None
    head: nn.Linear | None

    def __init__(self, dim: int, n_classes: int, *, counts: ArrayLike | Tensor | None = None,
                 n_softmax: int = 0, code: str = "binary", bias: bool = True,
                 reduction: str = "mean", device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim", minimum=1)
        self.n_classes = V = check_count(n_classes, "n_classes", minimum=2)
        self.n_softmax = N = check_count(n_softmax, "n_softmax")
        if N > V - 2:
            raise ValueError(f"n_softmax must be at most n_classes - 2 = {V - 2} (at least two "
                             f"classes are coded), got {N}")
        self.code = check_choice(code, "code", CODES)
        self.reduction = check_reduction(reduction)
        if counts is None:
            order = np.arange(V)
        else:
            counts = as_float_array(counts, "counts", nonnegative=True)
            if counts.shape != (V,):
                raise ValueError(f"counts must have one entry per class: shape {counts.shape} "
                                 f"for n_classes={V}")
            order = np.argsort(-counts, kind="stable")
        generators = CONVOLUTIONAL_GENERATORS if code == "convolutional" else (1,)
        self.trellis = Trellis(V - N, generators)
        self.n_bits = self.trellis.n_out
        code_of_class = np.full(V, -1, dtype=np.int64)
        code_of_class[order[N:]] = np.arange(V - N)
        head_of_class = np.full(V, -1, dtype=np.int64)
        head_of_class[order[:N]] = np.arange(N)
        for name, value in (("code_of_class", code_of_class), ("head_of_class", head_of_class),
                            ("class_of_code", order[N:]), ("class_of_head", order[:N])):
            self.register_buffer(name, torch.as_tensor(value, device=device))
        factory = {"device": device, "dtype": dtype}
        self.weight, self.bias = make_rows(self.n_bits, self.dim, bias, factory)
        self.head = nn.Linear(self.dim, N + 1, bias=bias, **factory) if N else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_rows(self.weight, self.bias)
        if self.head is not None:
            self.head.reset_parameters()

    def _code_scores(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bit logits ``z``, ``sum_j log sigmoid(-z_j)`` and the trellis step scores."""
        z = F.linear(flat, self.weight, self.bias)
        lp0 = F.logsigmoid(-z)
        return z, lp0, self.trellis.step_scores(z, lp0)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the targets, ``-log_prob(input)[target]``.

        Parameters
        ----------
        input : torch.Tensor, shape (..., dim)
        target : torch.Tensor of int, shape (...)
            Class ids in ``[0, n_classes)``.

        Returns
        -------
        torch.Tensor
            A scalar, or per-example losses (shape of ``target``) with
            ``reduction="none"``.
        """
        flat = check_features(input, self.dim)
        t = check_targets(target, self.n_classes, input.shape[:-1]).to(flat.device)
        z, lp0, scores = self._code_scores(flat)
        code = self.code_of_class[t]
        bits = self.trellis.encode(code.clamp_min(0), z.dtype)
        code_lp = lp0.sum(1) + (bits * z).sum(1) - self.trellis.log_partition(scores)
        if self.head is None:
            nll = -code_lp
        else:
            head_lp = F.log_softmax(self.head(flat), dim=1)
            in_head = self.head_of_class[t]
            picked = head_lp.gather(1, in_head.clamp_min(0)[:, None]).squeeze(1)
            nll = -torch.where(in_head >= 0, picked, head_lp[:, -1] + code_lp)
        return reduce_loss(nll.reshape(target.shape), self.reduction)

    def log_prob(self, input: torch.Tensor) -> torch.Tensor:
        """The full log-distribution over classes, ``(..., n_classes)``; it sums to 1.

        Scores every class's codeword (O(V log V) per example): meant for
        evaluation (perplexity, sampling), not for training.
        """
        flat = check_features(input, self.dim)
        z, lp0, scores = self._code_scores(flat)
        codes = torch.arange(self.trellis.n_codes, device=flat.device)
        words = self.trellis.encode(codes, z.dtype)                       # (V_code, n_bits)
        code_lp = (lp0.sum(1) - self.trellis.log_partition(scores))[:, None] + z @ words.T
        out = z.new_empty(flat.shape[0], self.n_classes)
        if self.head is None:
            out[:, self.class_of_code] = code_lp
        else:
            head_lp = F.log_softmax(self.head(flat), dim=1)
            out[:, self.class_of_head] = head_lp[:, :-1]
            out[:, self.class_of_code] = head_lp[:, -1:] + code_lp
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
        """The ``k`` most probable classes of each example: exactly the top k of
        :meth:`log_prob`, found by a search over the code bits.

        Parameters
        ----------
        input : torch.Tensor, shape (..., dim)
        k : int, default 1
            At most ``n_classes``.
        return_log_prob : bool, default False
            Also return the classes' log-probabilities.

        Returns
        -------
        classes : torch.Tensor of int64, shape (..., k)
            Most probable first (ties between exactly equal probabilities in
            any order).
        log_prob : torch.Tensor, shape (..., k)
            Only with ``return_log_prob``.
        """
        flat = check_features(input, self.dim)
        k = check_k(k, self.n_classes)
        _, _, scores = self._code_scores(flat)
        kc = min(k, self.trellis.n_codes)
        codes, lp = self.trellis.top_k(scores, kc)
        lp = lp - self.trellis.log_partition(scores)[:, None]
        classes = self.class_of_code[codes]
        if self.head is not None:
            head_lp = F.log_softmax(self.head(flat), dim=1)
            top_head, pos = head_lp[:, :-1].topk(min(k, self.n_softmax), dim=1)
            lp = torch.cat([top_head, head_lp[:, -1:] + lp], 1)
            classes = torch.cat([self.class_of_head[pos], classes], 1)
            lp, pick = lp.topk(k, dim=1)
            classes = classes.gather(1, pick)
        return shaped(classes, lp, input.shape[:-1], return_log_prob)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_classes={self.n_classes}, code={self.code!r}, "
                f"n_bits={self.n_bits}, n_softmax={self.n_softmax}, "
                f"bias={self.bias is not None}, reduction={self.reduction!r}")
