"""Input checks for the torch-level packages (nn, decoding, distill).

Imported only by those packages, which need torch anyway; the compiled core
never imports this module. Each error names the argument and the bad value.
"""

from __future__ import annotations

import torch

__all__ = ["check_features", "check_targets", "check_finite"]


def check_features(x, in_features: int, name: str = "x") -> torch.Tensor:
    """``x`` as a floating tensor of shape ``(..., in_features)``, flattened to 2-D."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != in_features:
        raise ValueError(f"{name} must have shape (..., {in_features}), got {tuple(x.shape)}")
    return x.reshape(-1, in_features)


def check_targets(target, n_classes: int, batch_shape, name: str = "target") -> torch.Tensor:
    """``target`` as a flat int64 tensor of class ids in ``[0, n_classes)``, one per row."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class ids, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(batch_shape):
        raise ValueError(f"{name} must have shape {tuple(batch_shape)} (one class per row of "
                         f"the input), got {tuple(target.shape)}")
    flat = target.reshape(-1).long()
    if flat.numel():
        bad = (flat < 0) | (flat >= n_classes)
        if bool(bad.any()):
            pos = int(bad.nonzero()[0, 0])
            raise IndexError(f"{name} must lie in [0, {n_classes}), got {int(flat[pos])} "
                             f"at position {pos}")
    return flat


def check_finite(t: torch.Tensor, name: str) -> None:
    """Refuse NaN or infinite entries (the first one is named)."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        pos = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} must be finite, got {t[pos].item()} at index {pos}")
