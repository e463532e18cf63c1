"""Low-rank factorisation of a Linear layer by truncated SVD."""

from __future__ import annotations

from typing import NamedTuple

import torch

from dlkernels._lib.torch_checks import check_finite
from dlkernels._lib.validation import check_count, check_real

__all__ = ["low_rank", "LowRankResult"]


class LowRankResult(NamedTuple):
    """What :func:`low_rank` returns.

    Attributes
    ----------
    module : torch.nn.Sequential
        ``Linear(in, rank, bias=False)`` then ``Linear(rank, out)``.
    rank : int
    error : float
        ``||W - W_rank||_F / ||W||_F``, the relative error of the weight
        (0 for an all-zero weight).
    params_before, params_after : int
        Parameter counts of the original layer and of the factorised pair.
    """

    module: torch.nn.Sequential
    rank: int
    error: float
    params_before: int
    params_after: int


def low_rank(module: torch.nn.Linear, rank: int | None = None,
             energy: float | None = None) -> LowRankResult:
    """Factorise a ``Linear`` layer into two smaller ones, ``W ~ B @ A``.

    Parameters
    ----------
    module : torch.nn.Linear
        Not modified.
    rank : int, optional
        Rank to keep, ``1 <= rank <= min(in, out)``.
    energy : float, optional
        Or: the smallest rank whose singular values keep this share of
        ``sum(s**2)`` (``0 < energy <= 1``). Give exactly one of the two.

    Returns
    -------
    LowRankResult
        The factorised pair, its rank and the relative Frobenius error. By the
        Eckart-Young theorem no rank-``r`` matrix is closer to ``W``.

    Raises
    ------
    TypeError
        If ``module`` is not an ``nn.Linear``.
    ValueError
        If neither or both of ``rank`` and ``energy`` are given, either is out
        of range, the layer has no input or no output feature, or the weight
        holds NaN or inf.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import low_rank
    >>> layer = torch.nn.Linear(300, 100)
    >>> res = low_rank(layer, rank=20)
    >>> res.module(torch.zeros(2, 300)).shape, res.params_after < res.params_before
    (torch.Size([2, 100]), True)
    """
    if not isinstance(module, torch.nn.Linear):
        raise TypeError(f"module must be a torch.nn.Linear, got {type(module).__name__}")
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank and energy, got "
                         f"rank={rank!r}, energy={energy!r}")
    weight = module.weight.detach()
    check_finite(weight, "module.weight")
    out_f, in_f = weight.shape
    full = min(out_f, in_f)
    if full == 0:
        raise ValueError(f"module must have at least one input and one output feature, got "
                         f"in_features={in_f}, out_features={out_f}")
    if rank is not None:
        rank = check_count(rank, "rank", minimum=1)
        if rank > full:
            raise ValueError(f"rank must be at most min(in, out) = {full}, got {rank}")
    else:
        energy = check_real(energy, "energy", low=0.0, high=1.0, low_open=True)
    # SVD in float64 for an exact error figure; the factors go back to the layer's dtype.
    u, s, vh = torch.linalg.svd(weight.to(torch.float64), full_matrices=False)
    # Shares of the largest singular value's square: squares of weights near
    # float64's range would overflow, and the shares and the error need only ratios.
    power = (s / s[0]).pow(2) if float(s[0]) > 0 else torch.zeros_like(s)
    total = float(power.sum())
    if rank is None:
        if total == 0:
            rank = 1
        else:
            share = torch.cumsum(power, 0) / total
            # The smallest r with share[r-1] >= energy (a tiny slack for rounding).
            rank = int(torch.searchsorted(share, torch.tensor(energy - 1e-12, dtype=share.dtype))) + 1
            rank = min(rank, full)
    error = (float(power[rank:].sum()) / total) ** 0.5 if total > 0 else 0.0
    root = s[:rank].sqrt()
    first = torch.nn.Linear(in_f, rank, bias=False, device=weight.device, dtype=weight.dtype)
    second = torch.nn.Linear(rank, out_f, bias=module.bias is not None, device=weight.device,
                             dtype=weight.dtype)
    with torch.no_grad():
        # Split the singular values evenly between the two factors (balanced scales).
        first.weight.copy_(root[:, None] * vh[:rank])
        second.weight.copy_(u[:, :rank] * root[None, :])
        if module.bias is not None:
            second.bias.copy_(module.bias)
    before = sum(p.numel() for p in module.parameters())
    pair = torch.nn.Sequential(first, second)
    return LowRankResult(pair, rank, error, before, sum(p.numel() for p in pair.parameters()))
