"""Bit allocation: how much to prune and how many bits to give each layer, for a file size.

Deep Compression sets a pruning threshold and a bit width per layer by hand,
from sensitivity curves. Here they are chosen from measurements:

1. **Sensitivity.** For each layer alone, and for each candidate (share
   pruned, index bits), the layer is pruned by magnitude and quantized in a
   copy of the model; the increase of the loss on ``eval_batches`` is its
   cost, and the bytes of its section in the file (the real encoder) its size.
2. **Allocation.** One option per layer, the set with the smallest summed
   loss increase whose file fits the budget: an exact multiple-choice
   knapsack over the layers' Pareto fronts (size, loss).
3. **Pruning in steps** toward the chosen shares (the kept share shrinks
   geometrically), fine-tuning with :func:`fine_tune` after each step; before
   each later step, steps 1 and 2 run again on the fine-tuned model (it has
   adapted, so its sensitivities have changed), with no layer pruned less than
   it is. Then quantizing at the chosen bits, fine-tuning the codebooks, and
   rounding them to the fewest mantissa bits that leave the loss where it was
   (:func:`round_codebooks`).
4. **Check.** The file is encoded; while it is above the budget, the layer
   whose next option saves bytes at the least loss is pruned further and the
   model fine-tuned and quantized again.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dlkernels._lib.torch_checks import check_module, named_layers
from dlkernels._lib.validation import check_count, check_real
from dlkernels.compress.fine_tune import fine_tune

__all__ = ["compress_to_size", "Allocation", "AMOUNTS", "choose_bits"]

# Shares pruned per layer that the allocation chooses among.
AMOUNTS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.84, 0.87, 0.89, 0.9, 0.91, 0.92, 0.93, 0.94,
           0.945, 0.95, 0.955, 0.96, 0.965, 0.97, 0.975, 0.98, 0.985, 0.99)
_WEIGHTED = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_MAX_FRONT = 4096      # Pareto points kept while merging layers (the front is rarely this long)


@dataclass
class Allocation:
    """What :func:`compress_to_size` chose and got.

    Attributes
    ----------
    amounts : dict
        Layer name -> share of its weights pruned.
    bits : dict
        Layer name -> index bits of its codebook.
    mantissa_bits : int
        Mantissa bits the codebooks were rounded to.
    file_bytes : int
        The size of the file :func:`save_compressed` writes for the model now.
    float32_bytes : int
        4 bytes per entry of the ``state_dict``.
    budget_bytes : int
        The budget it was given (or derived from ``target_ratio``).
    predicted_loss : float
        Summed loss increase of the chosen options, as measured layer by layer.
    losses : list of float
        Mean training loss of each fine-tuning epoch, in order.
    """

    amounts: dict[str, float] = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)
    mantissa_bits: int = 0
    file_bytes: int = 0
    float32_bytes: int = 0
    budget_bytes: int = 0
    predicted_loss: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """``float32_bytes / file_bytes``."""
        return self.float32_bytes / self.file_bytes if self.file_bytes else math.inf


def _loss(model, batches, loss_fn) -> float:
    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in batches:
            total += float(loss_fn(model(inputs), targets)) * len(inputs)
            count += len(inputs)
    model.train(was)
    if count == 0:
        raise ValueError("eval_batches must yield at least one (inputs, targets) pair, got none")
    return total / count


def _layer_bytes(weight: torch.Tensor, amount: float, bits: int, mantissa_bits: int | None) -> tuple:
    """(section bytes, pruned-and-quantized weight) of one layer under one option; the
    codebook rounded to ``mantissa_bits`` (None: as k-means leaves it)."""
    from dlkernels.cluster import kmeans_1d
    from dlkernels.compress._format2 import encode_tensor

    w = weight.detach().cpu().double().reshape(-1)
    k_drop = int(amount * w.numel())
    if k_drop:
        order = torch.sort(w.abs(), stable=True).indices
        w = w.clone()
        w[order[:k_drop]] = 0
    values = w.numpy()
    nz = np.flatnonzero(values)
    index = np.zeros(values.size, dtype=np.int64)
    codebook = np.zeros(0)
    if nz.size:
        k = min(2**bits - 1, np.unique(values[nz]).size)
        res = kmeans_1d(values[nz], k, method="lloyd", init="linear")
        codebook = np.asarray(res.centers, dtype=np.float64)
        if mantissa_bits is not None:
            codebook = _round(codebook, mantissa_bits)
        index[nz] = np.asarray(res.labels) + 1
    dtype = weight.dtype
    book = torch.as_tensor(codebook, dtype=dtype)
    from dlkernels.compress.storage import _numpy

    size = encode_tensor((_numpy(book), index), str(dtype).removeprefix("torch.")).size
    table = torch.cat([torch.zeros(1, dtype=dtype), book])
    return size, table[torch.from_numpy(index)].reshape(weight.shape)


def _round(values: np.ndarray, mantissa_bits: int) -> np.ndarray:
    mantissa, exponent = np.frexp(values)
    scale = 2.0 ** (mantissa_bits + 1)
    return np.ldexp(np.round(mantissa * scale) / scale, exponent)


def _options(model, chosen, amounts, bits_options, eval_batches, loss_fn, mantissa_bits, progress):
    """Per layer: a list of (bytes, loss increase, amount, bits), measured on a copy."""
    base = _loss(model, eval_batches, loss_fn)
    probe = copy.deepcopy(model)
    modules = dict(probe.named_modules())
    per_layer = []
    todo = [(name, a, b) for name, _ in chosen for a in amounts for b in bits_options]
    steps = todo
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(todo, desc="sensitivity")
    results = {}
    for name, a, b in steps:
        layer = modules[name]
        original = layer.weight.detach().clone()
        size, value = _layer_bytes(original, a, b, mantissa_bits)
        with torch.no_grad():
            layer.weight.copy_(value.to(original.device))
            loss = _loss(probe, eval_batches, loss_fn)
            layer.weight.copy_(original)
        results[name, a, b] = (size, loss - base)
    for name, _ in chosen:
        per_layer.append([(*results[name, a, b], a, b) for a in amounts for b in bits_options])
    return per_layer


def _front(options):
    """The Pareto front (fewest bytes for each loss) of (bytes, loss, payload) points."""
    out = []
    for size, loss, payload in sorted(options, key=lambda o: (o[0], o[1])):
        if not out or loss < out[-1][1]:
            out.append((size, loss, payload))
    return out


def _allocate(per_layer, budget: int):
    """One option per layer, summed bytes <= budget, least summed loss (None if none fits)."""
    front = [(0, 0.0, ())]
    for options in per_layer:
        merged = [(s + size, l + loss, (*p, payload)) for s, l, p in front
                  for size, loss, payload in options]
        merged = [m for m in merged if m[0] <= budget]
        front = _front(merged)
        if len(front) > _MAX_FRONT:      # thin evenly; the ends are kept
            keep = np.unique(np.linspace(0, len(front) - 1, _MAX_FRONT).round().astype(int))
            front = [front[i] for i in keep]
        if not front:
            return None
    return min(front, key=lambda f: f[1])


def _fixed_bytes(model, chosen, bias_bits) -> int:
    """Bytes of the file outside the chosen layers' weight sections (header, biases, ...),
    with biases quantized at ``bias_bits`` as they will be."""
    from dlkernels.compress.quantize import quantize
    from dlkernels.compress.storage import encode_model

    probe = copy.deepcopy(model)
    if bias_bits is not None:
        quantize(probe, bits=1, layers=[name for name, _ in chosen], bias_bits=bias_bits)
    weights = {f"{name}.weight" for name, _ in chosen}
    data, entries = encode_model(probe)
    return len(data) - sum(e["bytes"] for e in entries if e["name"] in weights)


def choose_bits(model: torch.nn.Module, budget_bytes: int, eval_batches: Iterable[tuple[Any, Any]], *,
                layers: Sequence[str | torch.nn.Module] | str | torch.nn.Module | None = None,
                bits_options: Iterable[int] = range(2, 9), bias_bits: int | None = None,
                loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
                progress: bool = False) -> dict[str, int]:
    """Index bits per layer for a file of at most ``budget_bytes`` (no pruning), by sensitivity.

    Used by :func:`dlkernels.compress.quantize` with ``budget_bytes``.
    """
    check_module(model)
    loss_fn = torch.nn.functional.cross_entropy if loss_fn is None else loss_fn
    chosen = named_layers(model, _WEIGHTED, layers)
    fixed = _fixed_bytes(model, chosen, bias_bits)
    current = [(1.0 - float((m.weight != 0).float().mean()) if m.weight.numel() else 0.0)
               for _, m in chosen]
    per_layer = []
    for (name, _), share in zip(chosen, current):
        opts = _options(model, [(name, None)], [share], list(bits_options), eval_batches,
                        loss_fn, None, progress)[0]
        per_layer.append(opts)
    best = _allocate([[(size, loss, b) for size, loss, _, b in opts] for opts in per_layer],
                     budget_bytes - fixed)
    if best is None:
        smallest = fixed + sum(min(o[0] for o in opts) for opts in per_layer)
        raise ValueError(f"budget_bytes={budget_bytes} is below the smallest file these bits "
                         f"give ({smallest} bytes); allow fewer bits or prune first")
    return {name: b for (name, _), b in zip(chosen, best[2])}


def compress_to_size(model: torch.nn.Module, batches: Iterable[tuple[Any, Any]], *,
                     budget_bytes: int | None = None, target_ratio: float | None = None,
                     bits: int | None = 5, bias_bits: int | None = 4,
                     eval_batches: Iterable[tuple[Any, Any]] | None = None,
                     loss_fn: Callable[[Any, Any], torch.Tensor] | None = None, steps: int = 3,
                     epochs: int = 1, lr: float = 1e-3, codebook_lr: float = 3e-4,
                     amounts: Sequence[float] = AMOUNTS, bits_options: Iterable[int] = range(2, 9),
                     margin: float = 0.02, max_rounds: int = 3,
                     progress: bool = False) -> Allocation:
    """Prune and quantize ``model`` (in place) so that its file fits a size, losing least.

    The share pruned of each layer, and its bits when ``bits`` is None, are
    chosen by measured sensitivity (see the module documentation), with
    :func:`fine_tune` after each pruning step and after quantizing.

    Parameters
    ----------
    model : torch.nn.Module
        Trained, not yet pruned or quantized; modified in place.
    batches : iterable of (inputs, targets)
        Training data for fine-tuning (re-iterated each epoch).
    budget_bytes : int, optional
        The most bytes the file may take. Give this or ``target_ratio``.
    target_ratio : float, optional
        Float32 size of the ``state_dict`` divided by the file size, at least.
    bits : int or None, default 5
        Index bits of every weight layer, or None to choose them per layer
        from ``bits_options``.
    bias_bits : int or None, default 4
        Bits of the biases' codebooks (None keeps biases as floats).
    eval_batches : iterable of (inputs, targets), optional
        Data the sensitivities and the codebook precision are measured on
        (default: ``batches``).
    loss_fn : callable, optional
        ``loss_fn(model(inputs), targets)``, default cross-entropy.
    steps : int
        Pruning steps (fine-tuning after each).
    epochs : int
        Fine-tuning epochs after each step, and for the codebooks.
    lr, codebook_lr : float
        Learning rates of the fine-tuning after pruning and after quantizing.
    amounts : sequence of float
        Candidate shares pruned per layer.
    bits_options : iterable of int
        Candidate bits when ``bits`` is None.
    margin : float
        Share of the budget kept free when allocating (the estimate precedes
        fine-tuning, which changes the values a little).
    max_rounds : int
        Corrections after the first try when the file is still too large.
    progress : bool
        Show tqdm bars.

    Returns
    -------
    Allocation

    Raises
    ------
    ValueError
        If neither or both of ``budget_bytes`` and ``target_ratio`` are given,
        a value is out of range, the model is quantized or pruned already, or
        no option fits the budget; the model is unchanged then. Also if the
        file is still over the budget after ``max_rounds`` corrections (the
        model is then pruned and quantized as far as it got).

    Examples
    --------
    >>> import torch
    >>> from dlkernels.compress import compress_to_size
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(512, 16)
    >>> y = (X[:, :3].sum(1) > 0).long()
    >>> model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    >>> batches = [(X[i:i + 64], y[i:i + 64]) for i in range(0, 512, 64)]
    >>> result = compress_to_size(model, batches, target_ratio=8, epochs=3, steps=2)
    >>> result.ratio >= 8
    True
    """
    from dlkernels.compress.prune import prune_magnitude
    from dlkernels.compress.quantize import quantize, quantized_tensors, round_codebooks
    from dlkernels.compress.storage import encode_model

    check_module(model)
    if (budget_bytes is None) == (target_ratio is None):
        raise ValueError("give exactly one of budget_bytes and target_ratio")
    float32_bytes = 4 * sum(t.numel() for t in model.state_dict().values())
    if target_ratio is not None:
        target_ratio = check_real(target_ratio, "target_ratio", low=1.0)
        budget_bytes = int(float32_bytes / target_ratio)
    budget_bytes = check_count(budget_bytes, "budget_bytes", minimum=1)
    if bits is not None:
        bits = check_count(bits, "bits", minimum=1, maximum=16)
    bits_options = [bits] if bits is not None else [check_count(b, "bits_options", 1, 16)
                                                    for b in bits_options]
    if bias_bits is not None:
        bias_bits = check_count(bias_bits, "bias_bits", minimum=1, maximum=16)
    steps = check_count(steps, "steps", minimum=1)
    epochs = check_count(epochs, "epochs", minimum=1)
    margin = check_real(margin, "margin", low=0.0, high=0.5)
    amounts = sorted({check_real(a, "amounts", low=0.0, high=0.999) for a in amounts})
    if quantized_tensors(model):
        raise ValueError("model is quantized already: compress_to_size starts from a trained "
                         "float model")
    chosen = named_layers(model, _WEIGHTED, None)
    if any("weight_mask" in m._buffers for _, m in chosen):
        raise ValueError("model is pruned already: compress_to_size does its own pruning")
    loss_fn = torch.nn.functional.cross_entropy if loss_fn is None else loss_fn
    eval_batches = batches if eval_batches is None else eval_batches
    mantissa_bits = 7
    fixed = _fixed_bytes(model, chosen, bias_bits)
    room = int(budget_bytes * (1 - margin)) - fixed
    names = [name for name, _ in chosen]

    def allocate(floor):
        """Measure the options on the model as it is now; the best plan, or a ValueError."""
        grid = [sorted({a for a in amounts if a >= floor[name]} | {floor[name]}) for name in names]
        per_layer = [_options(model, [(name, None)], g, bits_options, eval_batches, loss_fn,
                              mantissa_bits, progress)[0] for name, g in zip(names, grid)]
        best = _allocate([[(size, loss, (a, b)) for size, loss, a, b in opts]
                          for opts in per_layer], room)
        if best is None:
            smallest = fixed + sum(min(o[0] for o in opts) for opts in per_layer)
            raise ValueError(f"budget_bytes={budget_bytes} is below the smallest file the "
                             f"options give ({smallest} bytes): allow larger amounts or "
                             f"fewer bits")
        return dict(zip(names, best[2])), per_layer, best[1]

    plan, per_layer, predicted = allocate({name: 0.0 for name in names})
    result = Allocation(budget_bytes=budget_bytes, float32_bytes=float32_bytes,
                        predicted_loss=predicted)
    snapshot = copy.deepcopy(model)
    for round_ in range(max_rounds + 1):
        if round_:   # start again from the trained model, with the tightened plan
            _dequantize_and_unmask(model)
            model.load_state_dict(snapshot.state_dict())
        for step in range(steps):
            if step and not round_:
                # Sensitivities change as the model adapts: measure again, prune no less.
                plan, per_layer, result.predicted_loss = allocate(_pruned_shares(model, chosen))
            current = _pruned_shares(model, chosen)
            for name, (amount, _) in plan.items():
                # The kept share shrinks geometrically over the remaining steps.
                kept_now, kept_goal = 1.0 - current[name], 1.0 - amount
                kept = kept_now * (kept_goal / kept_now) ** (1.0 / (steps - step))
                if kept < kept_now:
                    prune_magnitude(model, 1.0 - kept, scope="layer", layers=[name])
            result.losses += fine_tune(model, batches, loss_fn, epochs=epochs, lr=lr)
        for name, (_, b) in plan.items():
            quantize(model, bits=b, layers=[name], bias_bits=bias_bits)
        result.losses += fine_tune(model, batches, loss_fn, epochs=epochs, lr=codebook_lr)
        result.mantissa_bits = _round_codebooks(model, eval_batches, loss_fn, round_codebooks)
        data, _ = encode_model(model)
        result.file_bytes = len(data)
        if len(data) <= budget_bytes or round_ == max_rounds:
            break
        plan = _tighten(plan, per_layer, chosen)
    result.amounts = {name: a for name, (a, _) in plan.items()}
    result.bits = {name: b for name, (_, b) in plan.items()}
    if result.file_bytes > budget_bytes:
        raise ValueError(f"the file takes {result.file_bytes} bytes after {max_rounds} "
                         f"corrections, above budget_bytes={budget_bytes}")
    return result


def _pruned_shares(model, chosen) -> dict:
    """Share of each chosen layer's weights that are zero now."""
    modules = dict(model.named_modules())
    return {name: float((modules[name].weight.detach() == 0).float().mean()) for name, _ in chosen}


def _round_codebooks(model, eval_batches, loss_fn, round_codebooks) -> int:
    """Fewest mantissa bits (3..10) whose rounding raises the loss by at most 0.5%."""
    from dlkernels.compress.quantize import MANTISSA_BITS, quantized_tensors

    books = {name: cb.detach().clone() for name, (cb, _) in quantized_tensors(model).items()}
    base = _loss(model, eval_batches, loss_fn)
    limit = min(MANTISSA_BITS[cb.dtype] for cb in books.values())
    for m in range(3, min(10, limit) + 1):
        round_codebooks(model, m)
        if _loss(model, eval_batches, loss_fn) <= base + 0.005 * abs(base):
            return m
        _restore(model, books)
    return limit


def _restore(model, books) -> None:
    from dlkernels.compress.quantize import quantized_tensors, refresh

    with torch.no_grad():
        for name, (cb, _) in quantized_tensors(model).items():
            cb.copy_(books[name])
    refresh(model)


def _dequantize_and_unmask(model) -> None:
    from dlkernels.compress.prune import remove_pruning
    from dlkernels.compress.quantize import dequantize

    dequantize(model)
    remove_pruning(model)


def _tighten(plan, per_layer, chosen):
    """Move the layer whose next larger amount saves bytes at the least loss per byte."""
    best = None
    for (name, _), opts in zip(chosen, per_layer):
        amount, b = plan[name]
        now = next(o for o in opts if o[2] == amount and o[3] == b)
        for size, loss, a, bb in opts:
            if bb == b and a > amount and size < now[0]:
                rate = (loss - now[1]) / (now[0] - size)
                if best is None or rate < best[0]:
                    best = (rate, name, a)
                break
    if best is None:
        return plan
    return {**plan, best[1]: (best[2], plan[best[1]][1])}
