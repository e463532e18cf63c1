"""Input checks for the torch-level packages (nn, decoding, distill, compress).

Imported only by those packages, which need torch anyway; the compiled core
never imports this module. Each error names the argument and the bad value.
"""

from __future__ import annotations

import torch

__all__ = ["check_features", "check_targets", "check_finite", "check_module", "check_fraction",
           "named_layers"]


def check_features(x, dim: int, name: str = "input") -> torch.Tensor:
    """``x`` as a floating tensor of shape ``(..., dim)``, flattened to 2-D."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got {tuple(x.shape)}")
    return x.reshape(-1, dim)


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


def check_module(model, name: str = "model"):
    """``model`` if it is a ``torch.nn.Module``, else a TypeError."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_fraction(x, name: str) -> float:
    """A real number in ``[0, 1)``: a share of weights or units to remove."""
    from dlkernels._lib.validation import check_real

    x = check_real(x, name, low=0.0)
    if x >= 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {x}")
    return x


def named_layers(model, types: tuple, layers=None, name: str = "layers") -> list[tuple[str, object]]:
    """``(name, module)`` of the layers of ``model`` to work on, in module order.

    ``layers=None`` takes every module of one of ``types``; otherwise it is a list
    of module names or modules of ``model``, each of one of ``types``.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, types)]
    if layers is None:
        return found
    if isinstance(layers, (str, torch.nn.Module)):
        layers = [layers]
    by_name = dict(model.named_modules())
    by_id = {id(m): n for n, m in by_name.items()}
    picked = []
    for item in layers:
        if isinstance(item, str):
            if item not in by_name:
                raise ValueError(f"{name} names {item!r}, which is not a module of the model")
            layer_name = item
        elif isinstance(item, torch.nn.Module):
            if id(item) not in by_id:
                raise ValueError(f"{name} holds a {type(item).__name__} that is not part of the model")
            layer_name = by_id[id(item)]
        else:
            raise TypeError(f"{name} must hold module names or modules, got {type(item).__name__}")
        module = by_name[layer_name]
        if not isinstance(module, types):
            kinds = ", ".join(t.__name__ for t in types)
            raise TypeError(f"{name}: {layer_name!r} is a {type(module).__name__}; "
                            f"only {kinds} can be used here")
        if (layer_name, module) not in picked:
            picked.append((layer_name, module))
    return picked
