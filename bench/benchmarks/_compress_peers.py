"""Benchmark cases of dlkernels.compress, registered in ``_peers``.

``units_infer``: CPU inference (batch 256, no autograd) of a 1024-4096-4096-10
ReLU MLP after removing 50% of the hidden units:

* ``dlkernels``: :func:`dlkernels.compress.prune_units` (a physically smaller model);
* ``unpruned``: the original model;
* ``torch-prune``: ``torch.nn.utils.prune.ln_structured`` on the hidden layers
  (the same units masked to zero; the matrices keep their size).

``units_infer_digits``: the same for the 64-300-100-10 MLP of the digits
pipeline (batch 256), where call overhead is a large share.

torch's intra-op thread count is set to ``n_threads`` for every implementation.
"""

from __future__ import annotations

import functools

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
