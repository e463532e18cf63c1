"""Hypothesis: random nests of tensors for the checks, random MLPs for the profiler."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dlkernels.debug import MemoryProfiler, check_training_step  # noqa: E402
from dlkernels.debug.memory_results import OUTSIDE  # noqa: E402

N = 4


@st.composite
def nests(draw, depth=0):
    """A tensor, or a tuple, list or dict of nests (keys are short strings)."""
    if depth >= 3 or draw(st.booleans()):
        return torch.randn(N, draw(st.integers(1, 3)))
    kind = draw(st.sampled_from(["tuple", "list", "dict"]))
    items = draw(st.lists(nests(depth + 1), min_size=1, max_size=3))
    if kind == "dict":
        return {f"k{i}": v for i, v in enumerate(items)}
    return tuple(items) if kind == "tuple" else list(items)


def paths(nest, prefix=""):
    """The paths of the tensors in ``nest``, in the checks' notation (``[0]['k1']``)."""
    if isinstance(nest, torch.Tensor):
        return [prefix]
    keys = nest.keys() if isinstance(nest, dict) else range(len(nest))
    return [p for k in keys for p in paths(nest[k], f"{prefix}[{k!r}]")]


def replace(nest, target, fn, prefix=""):
    """``nest`` rebuilt with ``fn(leaf)`` at path ``target``."""
    if prefix == target:
        return fn(nest)
    if isinstance(nest, torch.Tensor):
        return nest
    if isinstance(nest, dict):
        return {k: replace(v, target, fn, f"{prefix}[{k!r}]") for k, v in nest.items()}
    return type(nest)(replace(v, target, fn, f"{prefix}[{k!r}]") for k, v in enumerate(nest))


def leaves(nest):
    if isinstance(nest, torch.Tensor):
        return [nest]
    values = nest.values() if isinstance(nest, dict) else nest
    return [t for v in values for t in leaves(v)]


class SumAll(nn.Module):
    """Takes any nest (tuple inputs arrive unpacked) and returns a nest shaped by ``shape``."""

    def __init__(self, shape):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.shape = shape

    def forward(self, *args):
        total = sum(t.sum(dim=1, keepdim=True) for t in leaves(list(args)))
        return self._fill(self.shape, self.lin(total))

    def _fill(self, shape, value):
        if isinstance(shape, torch.Tensor):
            return value * 1.0
        if isinstance(shape, dict):
            return {k: self._fill(v, value) for k, v in shape.items()}
        return type(shape)(self._fill(v, value) for v in shape)


def state(model):
    return [p.detach().clone() for p in model.parameters()]


@given(inputs=nests(), bad=st.sampled_from([None, 3, "x", np.zeros(2)]), data=st.data())
def test_a_bad_leaf_is_named_by_its_path(inputs, bad, data):
    model = SumAll(torch.zeros(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs]
    spots = paths(inputs)
    path = spots[data.draw(st.integers(0, len(spots) - 1))]
    inputs = replace(inputs, path, lambda t: bad)
    before = state(model)
    with pytest.raises(TypeError, match=re.escape(f"batch[0]{path} must be a torch.Tensor")):
        check_training_step(model, lambda out, y: (out - y).pow(2).mean(),
                            (inputs, torch.zeros(N, 1)), opt)
    assert all(torch.equal(a, b) for a, b in zip(before, state(model)))


@given(inputs=nests(), outputs=nests(), data=st.data())
def test_any_nest_trains_and_a_nan_output_is_named(inputs, outputs, data):
    model = SumAll(outputs)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = lambda out, y: sum(t.pow(2).mean() for t in leaves(out))  # noqa: E731
    report = check_training_step(model, loss_fn, (inputs, torch.zeros(N, 1)), opt)
    assert report.ok, report.problems()
    # Poison one output leaf: the report names exactly that path.
    out_paths = paths(outputs)
    target = out_paths[data.draw(st.integers(0, len(out_paths) - 1))]

    class Poison(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, *args):
            return replace(self.inner(*args), target, lambda t: t * float("nan"))

    report = check_training_step(Poison(), loss_fn, (inputs, torch.zeros(N, 1)), opt)
    assert report.nonfinite["outputs"] == [f"outputs{target}"]


@settings(max_examples=25)
@given(widths=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       batch=st.integers(1, 17), d_in=st.integers(1, 30), d_out=st.integers(1, 5),
       acts=st.lists(st.sampled_from([nn.ReLU, nn.Tanh, nn.Sigmoid]), min_size=4, max_size=4))
def test_random_mlps_match_the_hand_count(widths, batch, d_in, d_out, acts):
    layers, sizes = [], [d_in, *widths, d_out]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths):
            layers.append(acts[i]())
    model = nn.Sequential(*layers)
    x, y = torch.randn(batch, d_in), torch.randn(batch, d_out)
    with MemoryProfiler(model) as prof:
        nn.functional.mse_loss(model(x), y).backward()
    # The first Linear saves x; each activation saves its output (which the next
    # Linear saves again, same storage); the loss saves the output and the target.
    assert prof.saved_bytes == 4 * batch * (d_in + sum(widths) + 2 * d_out)
    assert prof.module(OUTSIDE).saved_bytes == 4 * batch * 2 * d_out
    for k, width in enumerate(widths):
        assert prof.module(str(2 * k + 1)).saved_bytes == 4 * batch * width
