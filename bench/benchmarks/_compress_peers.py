"""Benchmark cases of dlkernels.compress, registered in ``_peers``.

``units_infer``: CPU inference (batch 256, no autograd) of a 1024-4096-4096-10
ReLU MLP after removing 50% of the hidden units:

* ``dlkernels``: :func:`dlkernels.compress.prune_units` (a physically smaller model);
* ``unpruned``: the original model;
* ``torch-prune``: ``torch.nn.utils.prune.ln_structured`` on the hidden layers
  (the same units masked to zero; the matrices keep their size).

``units_infer_digits``: the same for the 64-300-100-10 MLP of the digits
pipeline (batch 256), where call overhead is a large share.

``prune_infer_resnet18``: CPU inference (one 224x224 image) of a resnet18-shaped
network (``tests/compress/shapes.py``) after removing 50% of every group's
channels by L1 norm, the classifier's outputs kept:

* ``dlkernels``: :func:`dlkernels.compress.prune_units`;
* ``torch-pruning``: Torch-Pruning's ``MetaPruner`` with ``MagnitudeImportance(p=1)``;
* ``unpruned``: the original network.

``prune_call_resnet18``: the pruning call itself, dlkernels against Torch-Pruning.

torch's intra-op thread count is set to ``n_threads`` for every implementation.
"""

from __future__ import annotations

import copy
import functools
import os
import sys

from ._peers import _register, _require

BIG = (1024, 4096, 4096, 10)
SMALL = (64, 300, 100, 10)
BATCH = 256


@functools.lru_cache(maxsize=None)
def _models(sizes: tuple):
    torch = _require("torch")
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).eval()
    return model, torch.randn(BATCH, sizes[0])


def _infer(sizes: tuple, kind: str, n_threads: int):
    torch = _require("torch")
    import copy

    model, x = _models(sizes)
    if kind == "dlkernels":
        from dlkernels.compress import prune_units

        model = prune_units(model, 0.5)
    elif kind == "torch-prune":
        from torch.nn.utils import prune

        model = copy.deepcopy(model)
        for layer in list(model)[:-1]:
            if isinstance(layer, torch.nn.Linear):
                prune.ln_structured(layer, "weight", amount=0.5, n=1, dim=0)

    def run():
        torch.set_num_threads(n_threads)  # global to the process: set on every call
        with torch.no_grad():
            model(x)
    return run


for _name, _sizes in (("units_infer", BIG), ("units_infer_digits", SMALL)):
    for _kind in ("dlkernels", "unpruned", "torch-prune"):
        _register(_name, _kind, threaded=True)(functools.partial(_infer, _sizes, _kind))


def shapes():
    """The look-alike networks of the tests (torchvision's compiled operators do not load here)."""
    _require("torch")
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "compress")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import shapes as module

    return module


def prune_with(impl: str, model, x, out_name: str, round_to: int = 1):
    """``model`` with 50% of its units removed by L1 norm, by ``impl``; its output layer whole."""
    if impl == "dlkernels":
        from dlkernels.compress import prune_units

        return prune_units(model, 0.5, example_inputs=x[:1], round_to=round_to)
    tp = _require("torch_pruning")
    model = copy.deepcopy(model)
    pruner = tp.pruner.MetaPruner(model, x[:1], importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=[model.get_submodule(out_name)],
                                  round_to=None if round_to == 1 else round_to)
    pruner.step()
    return model


@functools.lru_cache(maxsize=None)
def _resnet():
    torch = _require("torch")
    torch.manual_seed(0)
    model = shapes().randomize_norms(shapes().ResNet18()).eval()
    return model, torch.randn(1, 3, 224, 224)


def _resnet_infer(kind: str, n_threads: int):
    torch = _require("torch")
    model, x = _resnet()
    if kind != "unpruned":
        model = prune_with(kind, model, x, "fc")

    def run():
        torch.set_num_threads(n_threads)
        with torch.no_grad():
            model(x)
    return run


def _resnet_prune(kind: str, n_threads: int):
    torch = _require("torch")
    model, x = _resnet()
    prune_with(kind, model, x, "fc")  # imports and one-off warm-up out of the timing

    def run():
        torch.set_num_threads(n_threads)
        prune_with(kind, model, x, "fc")
    return run


for _kind in ("dlkernels", "torch-pruning", "unpruned"):
    _register("prune_infer_resnet18", _kind, threaded=True)(functools.partial(_resnet_infer, _kind))
for _kind in ("dlkernels", "torch-pruning"):
    _register("prune_call_resnet18", _kind, threaded=True)(functools.partial(_resnet_prune, _kind))
