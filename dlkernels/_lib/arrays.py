"""numpy <-> torch at the edge of the public API.

The compiled core imports no torch: a tensor is recognised only if the caller
already imported torch, CPU tensors are viewed without a copy, and CUDA tensors
are copied to the host (the docs of each function that does so say it).
Outputs follow inputs: numpy in, numpy out; torch in, torch out on the same device.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["is_tensor", "is_cuda_tensor", "to_numpy", "like_input"]


def is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_cuda_tensor(x) -> bool:
    return is_tensor(x) and x.device.type == "cuda"


def to_numpy(x):
    """A numpy view of a CPU tensor, a host copy of a device tensor, else ``x`` unchanged."""
    if is_tensor(x):
        return x.detach().cpu().resolve_conj().resolve_neg().numpy()
    return x


def like_input(result: np.ndarray, template):
    """Return ``result`` as a tensor on ``template``'s device if ``template`` is a tensor."""
    if is_tensor(template):
        import torch

        # (np.ascontiguousarray would turn a 0-d result into shape (1,).)
        result = result if result.flags.c_contiguous else result.copy(order="C")
        return torch.from_numpy(result).to(template.device)
    return result
