"""The ``k`` argument and the result shapes of the layers' ``predict`` methods."""

from __future__ import annotations

import torch

from dlkernels._lib.validation import check_count

__all__ = ["check_k", "shaped"]


def check_k(k: int, n_classes: int) -> int:
    """``k`` as an int in ``[1, n_classes]``; a TypeError or ValueError naming it otherwise."""
    k = check_count(k, "k", minimum=1)
    if k > n_classes:
        raise ValueError(f"k must be at most n_classes={n_classes}, got {k}")
    return k


def shaped(classes: torch.Tensor, scores: torch.Tensor, batch_shape: tuple[int, ...],
           with_scores: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``(n, k)`` results as ``(*batch_shape, k)``: the classes, and the scores if asked."""
    shape = (*batch_shape, classes.shape[-1])
    classes = classes.reshape(shape)
    return (classes, scores.reshape(shape)) if with_scores else classes
