"""A small training loop for pruned and quantized models."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from dlkernels._lib.torch_checks import check_module
from dlkernels._lib.validation import check_count, check_real

__all__ = ["fine_tune"]


def fine_tune(model: torch.nn.Module, batches: Iterable[tuple[Any, Any]],
              loss_fn: Callable[[Any, Any], torch.Tensor] | None = None, *, epochs: int = 1,
              optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
              progress: bool = False) -> list[float]:
    """Train a pruned and/or quantized model for a few epochs.

    Nothing here is special to compression, and that is the point: after
    :func:`prune_magnitude` the masks keep pruned weights at zero under any
    optimizer, and after :func:`quantize` the codebooks are the parameters, so
    each centroid's gradient is the sum of the gradients of the weights that
    share it (Deep Compression's fine-tuning rule). Use your own loop just as well.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place (put in training mode, and back in the mode it had).
    batches : iterable of (inputs, targets)
        Re-iterated each epoch (a list or a ``DataLoader``).
    loss_fn : callable, optional
        ``loss_fn(model(inputs), targets)``; default cross-entropy.
    epochs : int
        At least 1.
    optimizer : torch.optim.Optimizer, optional
        Default: Adam over the parameters that require gradients, at ``lr``.
        Create it after :func:`quantize` (quantizing replaces the weights).
    lr : float
        Learning rate of the default optimizer.
    progress : bool
        Show a tqdm bar per epoch (needs tqdm).

    Returns
    -------
    list of float
        The mean loss of each epoch.

    Raises
    ------
    ValueError
        If ``epochs < 1``, ``lr <= 0`` or ``batches`` is empty.
    TypeError
        If ``model`` is not a module or ``optimizer`` not an optimizer.
    """
    check_module(model)
    epochs = check_count(epochs, "epochs", minimum=1)
    lr = check_real(lr, "lr", low=0.0, low_open=True)
    if optimizer is None:
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    loss_fn = torch.nn.functional.cross_entropy if loss_fn is None else loss_fn
    was_training = model.training
    model.train()
    history: list[float] = []
    try:
        for epoch in range(epochs):
            iterator = batches
            if progress:
                from tqdm.auto import tqdm
                iterator = tqdm(batches, desc=f"fine-tune {epoch}")
            total, count = 0.0, 0
            for inputs, targets in iterator:
                optimizer.zero_grad()
                loss = loss_fn(model(inputs), targets)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                count += 1
            if count == 0:
                raise ValueError("batches must yield at least one (inputs, targets) pair, got none")
            history.append(total / count)
    finally:
        model.train(was_training)
    return history
