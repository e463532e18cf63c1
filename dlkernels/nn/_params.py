"""Parameter set-up shared by the output layers."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["make_rows", "init_rows"]


def make_rows(n_rows: int, in_features: int, bias: bool,
              factory: dict[str, Any]) -> tuple[nn.Parameter, nn.Parameter | None]:
    """A ``(n_rows, in_features)`` weight and an optional ``(n_rows,)`` bias, uninitialised."""
    weight = nn.Parameter(torch.empty(n_rows, in_features, **factory))
    return weight, (nn.Parameter(torch.empty(n_rows, **factory)) if bias else None)


@torch.no_grad()
def init_rows(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Uniform(-1/sqrt(d), 1/sqrt(d)) weights, as ``nn.Linear``, and zero biases."""
    bound = 1.0 / math.sqrt(weight.shape[1])
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.zeros_(bias)
