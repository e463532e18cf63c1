"""The ``reduction`` option every loss in dlkernels takes, as torch's losses do."""

from __future__ import annotations

import torch

from dlkernels._lib.validation import check_choice

__all__ = ["REDUCTIONS", "check_reduction", "reduce_loss"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    """``"mean"``, ``"sum"`` or ``"none"``; anything else is a ValueError naming it."""
    return check_choice(reduction, "reduction", REDUCTIONS)


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-example ``loss`` averaged, summed or returned as it is."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
