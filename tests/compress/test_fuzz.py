"""Hypothesis: random shapes and arguments for the public facades; errors are clean."""

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dlkernels.compress import (PruningWarning, load_compressed, prune_magnitude,  # noqa: E402
                                prune_units, quantize, save_compressed)

from .conftest import assert_same_snapshot, snapshot  # noqa: E402

sizes = st.lists(st.integers(1, 12), min_size=2, max_size=4)
anything = st.one_of(st.floats(allow_nan=True), st.integers(-5, 20), st.text(max_size=3),
                     st.none(), st.booleans())


def make(dims, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


@given(sizes, st.floats(0, 0.999), st.sampled_from(["global", "layer"]), st.integers(0, 99))
def test_prune_magnitude_counts(dims, amount, scope, seed):
    model = make(dims, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PruningWarning)
        result = prune_magnitude(model, amount, scope=scope)
    emptied = [name for name, share in result.items() if share == 1.0]
    # The warning comes exactly when a layer lost every weight, and names each such layer.
    assert len(caught) == (1 if emptied and amount > 0 else 0)
    for name in emptied if caught else ():
        assert repr(name) in str(caught[0].message)
    ws = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in ws)
    if scope == "global":
        assert zeros >= int(amount * sum(w.numel() for w in ws))
    for name, share in result.items():
        assert 0 <= share <= 1


@given(sizes, st.floats(0, 0.999), st.sampled_from(["l1", "l2"]), st.sampled_from([1, 2, 8]),
       st.integers(0, 99))
def test_prune_units_shapes_and_outputs(dims, amount, importance, round_to, seed):
    model = make(dims, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)   # nothing to remove at small amounts
        small = prune_units(model, amount, importance=importance, round_to=round_to)
    x = torch.randn(3, dims[0])
    assert small(x).shape == (3, dims[-1])
    linears = [m for m in small if isinstance(m, torch.nn.Linear)]
    for m, d in zip(linears[:-1], dims[1:-1]):
        # floor(amount * d) removed, the rest rounded up to a multiple of round_to (at most d)
        assert m.out_features == min(d, -(-(d - int(amount * d)) // round_to) * round_to)


@given(sizes, st.integers(1, 6), st.sampled_from(["kmeans", "optimal", "ternary"]),
       st.floats(0, 0.95), st.integers(0, 99))
def test_quantize_save_load(dims, bits, method, amount, seed):
    import tempfile

    model = make(dims, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruningWarning)   # a 1-weight layer may go: not tested here
        prune_magnitude(model, amount)
    quantize(model, bits=bits, method=method, bias_bits=bits)
    x = torch.randn(2, dims[0])
    with tempfile.TemporaryDirectory() as tmp:
        save_compressed(model, f"{tmp}/m.fdlz")
        loaded = load_compressed(f"{tmp}/m.fdlz")
    assert torch.equal(loaded(x), model(x))
    for m in model:
        if isinstance(m, torch.nn.Linear):
            assert torch.unique(m.weight).numel() <= (3 if method == "ternary" else 2**bits)


@given(anything, anything, anything)
def test_bad_arguments_leave_model_alone(magnitude_amount, bits, amount):
    model = make([4, 3, 2], 0)
    for call in (lambda: prune_magnitude(model, magnitude_amount),
                 lambda: quantize(model, bits=bits),
                 lambda: prune_units(model, amount)):
        before = snapshot(model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PruningWarning)
                call()
        except (TypeError, ValueError):
            assert_same_snapshot(before, snapshot(model))
        else:
            model = make([4, 3, 2], 0)


@given(st.binary(max_size=300), st.integers(0, 10**6))
def test_random_bytes_never_load(blob, salt):
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "b.fdlz")
        with open(path, "wb") as f:
            f.write(b"FDLZ\x01" + blob if salt % 2 else blob)
        with pytest.raises(ValueError):
            load_compressed(path)
