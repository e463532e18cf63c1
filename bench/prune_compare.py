"""Structural pruning, dlkernels against Torch-Pruning, in one process.

    python bench/prune_compare.py                  # every model, 50% of units, 1 thread
    python bench/prune_compare.py resnet18 --repeat 30 --threads 2

For each model (defined in ``tests/compress/shapes.py``: torchvision's compiled
operators do not load against the pinned CPU torch) both libraries remove 50%
of every prunable group's units by L1 norm, keeping the output layer whole,
without rounding (Torch-Pruning's default; ``--round-to 8`` rounds both):

* ``dlkernels``: :func:`dlkernels.compress.prune_units`;
* ``torch-pruning``: ``torch_pruning.pruner.MetaPruner`` with
  ``MagnitudeImportance(p=1)`` (``pip install torch-pruning``; skipped when
  missing).

It prints the parameters left, CPU inference time of the unpruned model
divided by that of each pruned one (interleaved repeats in rotating order,
best of each, torch at ``--threads`` threads, no autograd), the time of the
pruning call itself (best of interleaved calls), the dlkernels / Torch-Pruning
ratios, and whether both pruned models hold tensors of the same shapes (then
they do the same work, and any difference in their times is noise). A row
that one library cannot prune says why.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks._compress_peers import prune_with, shapes  # noqa: E402

shapes = shapes()


def conv1d_chain():
    return nn.Sequential(nn.Conv1d(16, 128, 5), nn.ReLU(), nn.Conv1d(128, 128, 5), nn.ReLU(),
                         nn.Conv1d(128, 128, 5), nn.ReLU(), nn.Conv1d(128, 10, 5))


# name -> (model builder, input builder, output layer name)
MODELS = {
    "mlp": (lambda: shapes.mlp((784, 1024, 1024, 10)), lambda: torch.randn(256, 784), "4"),
    "cnn": (lambda: shapes.cnn((3, 64, 128, 256)), lambda: torch.randn(32, 3, 32, 32), "11"),
    "resnet18": (lambda: shapes.ResNet18(), lambda: torch.randn(2, 3, 224, 224), "fc"),
    "transformer": (lambda: shapes.ProjectedTransformer(features=64, dim=256, heads=8, ff=1024),
                    lambda: torch.randn(16, 64, 64), "head"),
    "mobilenet_v2": (lambda: shapes.MobileNetV2(), lambda: torch.randn(2, 3, 224, 224), "classifier.1"),
    "conv1d_chain": (conv1d_chain, lambda: torch.randn(32, 16, 256), "6"),
}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def timed_prune(fn, *args):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fn(*args)
    return model, time.perf_counter() - start


def infer_times(models: dict, x, repeat: int) -> dict:
    """Best time per model; interleaved, in a rotating order (the model run first or last
    in a round is not always the same one: cache and frequency effects hit all alike)."""
    best = {k: float("inf") for k in models}
    names = list(models)
    with torch.no_grad():
        for m in models.values():
            m(x)  # warm-up
        for r in range(repeat):
            for k in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                models[k](x)
                best[k] = min(best[k], time.perf_counter() - start)
    return best


def run(name: str, repeat: int, round_to: int, prune_repeat: int) -> str:
    build, data, out_name = MODELS[name]
    torch.manual_seed(0)
    model = shapes.randomize_norms(build()).eval()
    x = data()
    pruned, prune_s, notes = {}, {}, []
    impls = {impl: functools.partial(prune_with, impl) for impl in ("dlkernels", "torch-pruning")}
    # The pruning calls, interleaved; the best of prune_repeat + 1 (the first pays one-off warm-up).
    for _ in range(prune_repeat + 1):
        for impl, fn in list(impls.items()):
            try:
                small, seconds = timed_prune(fn, model, x, out_name, round_to)
                small(x)
            except ImportError:
                notes.append(f"{impl}: not installed")
                del impls[impl]
            except Exception as exc:  # the row says why
                notes.append(f"{impl}: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
                del impls[impl]
            else:
                pruned[impl], prune_s[impl] = small, min(seconds, prune_s.get(impl, seconds))
    times = infer_times({"unpruned": model, **pruned}, x, repeat)
    cells = [f"{name:<13}", f"{n_params(model) / 1e6:6.2f}M"]
    for impl in ("dlkernels", "torch-pruning"):
        if impl in pruned:
            cells.append(f"{n_params(pruned[impl]) / 1e6:6.2f}M {times['unpruned'] / times[impl]:5.2f}x "
                         f"{prune_s[impl]:6.2f}s")
        else:
            cells.append(f"{'-':>21}")
    if len(pruned) == 2:
        same = [p.shape for p in pruned["dlkernels"].parameters()] == \
            [p.shape for p in pruned["torch-pruning"].parameters()]
        cells.append(f"{times['torch-pruning'] / times['dlkernels']:5.2f}x "
                     f"{n_params(pruned['dlkernels']) / n_params(pruned['torch-pruning']):5.3f} "
                     f"{prune_s['torch-pruning'] / prune_s['dlkernels']:5.2f}x  {'yes' if same else 'no'}")
    return " | ".join(cells) + ("" if not notes else "   (" + "; ".join(notes) + ")")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=[], help=f"any of {list(MODELS)} (default: all)")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--round-to", type=int, default=1)
    parser.add_argument("--prune-repeat", type=int, default=3, help="timed pruning calls per library")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"50% of units, L1, round_to={args.round_to}, {args.threads} thread(s), inference best of "
          f"{args.repeat}, pruning best of {args.prune_repeat}")
    print("model         | params  | dlkernels: params, speed-up, prune | torch-pruning: same "
          "| TP time / dlkernels time, dlkernels / TP params, TP prune / dlkernels prune, "
          "same tensor shapes")
    for name in args.models or MODELS:
        print(run(name, args.repeat, args.round_to, args.prune_repeat), flush=True)


if __name__ == "__main__":
    main()
