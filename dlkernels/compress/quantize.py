"""Weight sharing: a codebook and an index tensor per layer (Deep Compression, step 2).

A quantized tensor ``weight`` of a module is replaced by

* ``weight_codebook``, a ``Parameter`` of the K shared non-zero values, and
* ``weight_index``, an ``int32`` buffer of the weight's shape: 0 means "zero"
  (pruned weights stay exactly zero, and the zero is no parameter), ``i >= 1``
  means ``weight_codebook[i - 1]``.

A forward pre-hook rebuilds ``module.weight = cat([0], codebook)[index]`` before
each call (outside a call, ``module.weight`` is a detached copy as of the last
call or of :func:`quantize`: after an optimizer step it is current again from
the next forward on). Autograd of that gather sums the gradients of all the weights that
share a centroid into the centroid's gradient, which is the paper's fine-tuning
rule, so any optimizer over ``model.parameters()`` (created *after*
:func:`quantize`) fine-tunes the codebooks.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dlkernels._lib.array_types import RngLike
from dlkernels._lib.random import check_rng
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.torch_checks import check_finite, check_module, named_layers
from dlkernels._lib.validation import check_choice, check_count

__all__ = ["quantize", "dequantize", "quantized_tensors", "round_codebooks", "DEFAULT_BITS"]

DEFAULT_BITS = {"Linear": 5, "Conv2d": 8}
_METHODS = ("kmeans", "optimal", "ternary")
_QUANTIZABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_TYPE_NAMES = {t.__name__ for t in _QUANTIZABLE}
# Explicit mantissa bits of each float dtype (torch.finfo does not say).
MANTISSA_BITS = {torch.float16: 10, torch.bfloat16: 7, torch.float32: 23, torch.float64: 52}


def _check_bits(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 1 <= value <= 16:
        raise ValueError(f"{name} must lie in 1..16, got {value}")
    return int(value)


def _bits_per_type(bits) -> dict[str, int] | int:
    if isinstance(bits, dict):
        out = {}
        for key, value in bits.items():
            if not isinstance(key, str):
                raise TypeError(f"bits keys must be layer type names such as 'Linear', got {key!r}")
            if key not in _TYPE_NAMES:
                raise ValueError(f"bits names {key!r}, which is none of the layer types that "
                                 f"can be quantized: {sorted(_TYPE_NAMES)}")
            out[key] = _check_bits(value, f"bits[{key!r}]")
        return out
    return _check_bits(bits, "bits")


def _refresh(module, args=None) -> None:
    """Forward pre-hook: rebuild each quantized tensor from its codebook and index."""
    for name in module._dlkernels_quantized:
        codebook = module._parameters[f"{name}_codebook"]
        index = module._buffers[f"{name}_index"]
        table = torch.cat([codebook.new_zeros(1), codebook])
        # index_select's backward sums the gradients of weights sharing a centroid.
        value = table.index_select(0, index.reshape(-1)).view(index.shape)
        object.__setattr__(module, name, value)


def _settle(module, args=None, output=None) -> None:
    """Forward hook: leave a detached copy behind, so the module deep-copies and pickles
    (a tensor with autograd history does neither) and holds no graph between calls."""
    for name in module._dlkernels_quantized:
        object.__setattr__(module, name, module.__dict__[name].detach())


def _codebook(values: np.ndarray, n_codes: int, method: str, init: str, rng, n_threads) -> tuple:
    """(codebook of non-zero values, index per value with 0 for zero)."""
    index = np.zeros(values.size, dtype=np.int64)
    nonzero = np.flatnonzero(values)
    if nonzero.size == 0:
        return np.zeros(0), index
    x = values[nonzero]
    if method == "ternary":
        # Ternary weight networks (Li & Liu 2016): threshold 0.7 * mean |w|; each
        # side's value is then the mean of its weights (trainable separately, as
        # in trained ternary quantization, Zhu et al. 2017).
        delta = 0.7 * np.abs(x).mean()
        pos, neg = x > delta, x < -delta
        scale = np.abs(x[pos | neg]).mean() if (pos | neg).any() else np.abs(x).mean()
        wp = x[pos].mean() if pos.any() else scale
        wn = -x[neg].mean() if neg.any() else scale
        index[nonzero[neg]] = 1
        index[nonzero[pos]] = 2
        return np.array([-wn, wp]), index
    from dlkernels.cluster import kmeans_1d

    k = min(n_codes, np.unique(x).size)
    result = kmeans_1d(x, k, method="optimal" if method == "optimal" else "lloyd",
                       init=init, rng=rng, n_threads=n_threads)
    index[nonzero] = np.asarray(result.labels) + 1
    return np.asarray(result.centers, dtype=np.float64), index


def quantize(model: torch.nn.Module, bits: int | Mapping[str, int] | None = None,
             init: str = "linear", method: str = "kmeans", *,
             layers: Sequence[str | torch.nn.Module] | str | torch.nn.Module | None = None,
             bias_bits: int | None = None,
             budget_bytes: int | None = None, batches: Iterable[tuple[Any, Any]] | None = None,
             loss_fn: Callable[[Any, Any], torch.Tensor] | None = None, rng: RngLike = None,
             n_threads: int | None = None, progress: bool = False) -> dict[str, int]:
    """Share the weights of each layer among a few values (in place).

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place: see the module documentation for what replaces a
        quantized ``weight``.
    bits : int or dict, default ``{"Linear": 5, "Conv2d": 8}``
        Index bits per layer type name (an int: every ``Linear`` and
        ``Conv1d/2d/3d``). Each in 1..16. With ``b`` bits a layer has
        ``2**b - 1`` shared non-zero values plus the zero. Layer types not in
        the dict are left alone.
    init : {"linear", "density", "random", "k-means++"}
        Initial centroids for ``method="kmeans"`` (Han et al. found "linear",
        evenly spaced over the weight range, best).
    method : {"kmeans", "optimal", "ternary"}
        ``"kmeans"``: Lloyd's iterations; ``"optimal"``: the exact 1-D k-means
        optimum (dynamic programming); ``"ternary"``: ``{-a_n, 0, +a_p}`` per
        layer with the threshold ``0.7 * mean |w|`` (``bits`` is ignored).
    layers : list of str or torch.nn.Module, optional
        Only these layers.
    bias_bits : int, optional
        Also share each quantized layer's bias among ``2**bias_bits - 1``
        values (k-means; biases are few, but they count in the file size).
    budget_bytes : int, optional
        Instead of ``bits``: choose each layer's bits (2..8) so that the file
        :func:`save_compressed` writes takes at most this many bytes, losing
        the least (the loss increase of each layer at each width is measured
        on ``batches``; an exact knapsack picks the widths; see
        :mod:`dlkernels.compress.allocate`). Fine-tune afterwards.
    batches : iterable of (inputs, targets), optional
        Data for ``budget_bytes``.
    loss_fn : callable, optional
        ``loss_fn(model(inputs), targets)`` for ``budget_bytes``; default
        cross-entropy.
    rng : None, int or numpy.random.Generator
        For ``init="random"`` and ``"k-means++"``.
    n_threads : int, optional
        Threads of the k-means kernel (the result does not depend on it).
    progress : bool
        Show a tqdm bar over the tensors being clustered (needs tqdm).

    Returns
    -------
    dict
        Tensor name (``"0.weight"``) -> number of shared non-zero values.

    Raises
    ------
    ValueError
        If a bit count is outside 1..16, ``method`` or ``init`` is unknown, or
        a weight is NaN or infinite; the model is unchanged then.
    TypeError
        If ``model`` is not a module or ``bits`` is not an int or a dict.

    Notes
    -----
    Weights that are exactly zero (pruned) keep index 0 and stay zero through
    fine-tuning. Clustering runs on the CPU in float64 (a copy of each layer);
    the codebook and index are put back on the layer's device and dtype.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import quantize
    >>> layer = torch.nn.Sequential(torch.nn.Linear(16, 8))
    >>> quantize(layer, bits=2)
    {'0.weight': 3}
    >>> torch.unique(layer[0].weight).numel() <= 4
    True
    """
    check_module(model)
    per_layer = None
    if budget_bytes is not None:
        if bits is not None:
            raise ValueError("give bits or budget_bytes, not both")
        if batches is None:
            raise ValueError("budget_bytes needs batches to measure each layer's sensitivity on")
        if method == "ternary":
            raise ValueError("budget_bytes chooses bit widths; method='ternary' has none")
        from dlkernels.compress.allocate import choose_bits

        bias_bits = None if bias_bits is None else _check_bits(bias_bits, "bias_bits")
        per_layer = choose_bits(model, check_count(budget_bytes, "budget_bytes", minimum=1),
                                batches, layers=layers, bias_bits=bias_bits, loss_fn=loss_fn)
        bits = 8
    per_type = _bits_per_type(DEFAULT_BITS if bits is None else bits)
    check_choice(method, "method", _METHODS)
    check_choice(init, "init", ("linear", "density", "random", "k-means++"))
    if bias_bits is not None:
        bias_bits = _check_bits(bias_bits, "bias_bits")
    rng = check_rng(rng)
    n_threads = check_n_threads(n_threads)
    plan = []
    for name, module in named_layers(model, _QUANTIZABLE, layers):
        b = per_type if isinstance(per_type, int) else per_type.get(type(module).__name__)
        if per_layer is not None:
            b = per_layer.get(name)
        if b is None:
            continue
        if module._parameters.get("weight") is None:
            raise ValueError(f"layers: {name!r} is quantized already")
        plan.append((name, module, "weight", b))
        if bias_bits is not None and module._parameters.get("bias") is not None:
            plan.append((name, module, "bias", bias_bits))
    for name, module, attr, _ in plan:
        check_finite(module._parameters[attr].detach(), f"{name}.{attr}")
    # Cluster everything before changing anything, so a failure leaves the model as it was.
    results = []
    steps = plan
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(plan, desc="quantize")
    for name, module, attr, b in steps:
        values = module._parameters[attr].detach().cpu().double().numpy().reshape(-1)
        results.append(_codebook(values, 2**b - 1, method if attr == "weight" else "kmeans",
                                 init, rng, n_threads))
    summary = {}
    for (name, module, attr, _), (codebook, index) in zip(plan, results):
        param = module._parameters[attr]
        shape, device, dtype = param.shape, param.device, param.dtype
        del module._parameters[attr]
        if attr == "weight" and "weight_mask" in module._buffers:
            # The zero code keeps pruned weights at zero: the mask has done its job.
            del module._buffers["weight_mask"]
            handle = module.__dict__.pop("_dlkernels_prune_hook", None)
            if handle is not None:
                handle.remove()
        module.register_parameter(f"{attr}_codebook", torch.nn.Parameter(
            torch.as_tensor(codebook, dtype=dtype, device=device), requires_grad=param.requires_grad))
        module.register_buffer(f"{attr}_index", torch.as_tensor(
            index.reshape(shape), dtype=torch.int32, device=device))
        _mark(module, attr)
        summary[f"{name}.{attr}"] = int(codebook.size)
    return summary


def _mark(module, attr: str) -> None:
    done = getattr(module, "_dlkernels_quantized", ())
    if not done:
        module._dlkernels_quantized_hooks = (module.register_forward_pre_hook(_refresh),
                                          module.register_forward_hook(_settle))
    module._dlkernels_quantized = (*done, attr)
    _refresh(module)
    _settle(module)


def quantized_tensors(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Tensor name -> ``(codebook, index)`` of every quantized tensor of ``model``."""
    check_module(model)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for mname, module in model.named_modules():
        for attr in getattr(module, "_dlkernels_quantized", ()):
            key = f"{mname}.{attr}" if mname else attr
            out[key] = (module._parameters[f"{attr}_codebook"], module._buffers[f"{attr}_index"])
    return out


def dequantize(model: torch.nn.Module) -> int:
    """Turn quantized tensors back into plain parameters holding the shared values.

    After fine-tuning, this gives a model of ordinary layers (same outputs).

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place.

    Returns
    -------
    int
        Number of tensors turned back.
    """
    check_module(model)
    count = 0
    for module in model.modules():
        names = getattr(module, "_dlkernels_quantized", ())
        if not names:
            continue
        _refresh(module)
        with torch.no_grad():
            for attr in names:
                codebook = module._parameters.pop(f"{attr}_codebook")
                del module._buffers[f"{attr}_index"]
                value = module.__dict__.pop(attr).detach().clone()
                module.register_parameter(attr, torch.nn.Parameter(
                    value, requires_grad=codebook.requires_grad))
                count += 1
        for handle in module._dlkernels_quantized_hooks:
            handle.remove()
        del module._dlkernels_quantized, module._dlkernels_quantized_hooks
    return count


def round_codebooks(model: torch.nn.Module, mantissa_bits: int) -> dict[str, int]:
    """Round every codebook value to ``mantissa_bits`` bits of mantissa (in place).

    A codebook is stored in the file with only the mantissa bits it uses
    (:func:`save_compressed` is lossless), so rounding it is what makes it
    small: 31 float32 values take 124 bytes at full precision and about 45 at
    7 mantissa bits (the precision of bfloat16). Round after the last
    fine-tuning step; the model then computes with the rounded values, so the
    file still reproduces its outputs exactly.

    Parameters
    ----------
    model : torch.nn.Module
        With quantized tensors (:func:`quantize`); modified in place.
    mantissa_bits : int
        Explicit mantissa bits kept, at least 1 and at most the dtype's (23
        for float32). Round half to even, as IEEE arithmetic does.

    Returns
    -------
    dict
        Tensor name -> number of values rounded.

    Raises
    ------
    ValueError
        If ``mantissa_bits`` is out of range for a codebook's dtype; the model is
        unchanged then.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import quantize, round_codebooks
    >>> layer = torch.nn.Sequential(torch.nn.Linear(16, 8))
    >>> _ = quantize(layer, bits=2)
    >>> _ = round_codebooks(layer, 3)
    >>> book = layer[0].weight_codebook.detach()
    >>> bool((torch.frexp(book).mantissa * 16 % 1 == 0).all())
    True
    """
    check_module(model)
    found = quantized_tensors(model)
    mantissa_bits = check_count(mantissa_bits, "mantissa_bits", minimum=1)
    for name, (codebook, _) in found.items():
        limit = MANTISSA_BITS[codebook.dtype]
        if mantissa_bits > limit:
            raise ValueError(f"mantissa_bits must be at most {limit} for {name} "
                             f"({codebook.dtype}), got {mantissa_bits}")
    out: dict[str, int] = {}
    with torch.no_grad():
        for name, (codebook, _) in found.items():
            mantissa, exponent = torch.frexp(codebook)      # mantissa in [0.5, 1)
            scale = float(2 ** (mantissa_bits + 1))
            codebook.copy_(torch.ldexp(torch.round(mantissa * scale) / scale, exponent))
            out[name] = codebook.numel()
    refresh(model)
    return out


def refresh(model: torch.nn.Module) -> None:
    """Rebuild every quantized tensor of ``model`` from its codebook (after editing one)."""
    for module in model.modules():
        if getattr(module, "_dlkernels_quantized", ()):
            _refresh(module)
            _settle(module)
