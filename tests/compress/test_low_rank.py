"""low_rank: the truncated SVD, its exact relative error, the rank from an energy share."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlkernels.compress import low_rank  # noqa: E402


@pytest.mark.parametrize("rank", [1, 7, 20])
def test_matches_numpy_svd(rank):
    torch.manual_seed(0)
    layer = torch.nn.Linear(30, 20)
    res = low_rank(layer, rank=rank)
    w = layer.weight.detach().double().numpy()
    u, s, vh = np.linalg.svd(w, full_matrices=False)
    best = (u[:, :rank] * s[:rank]) @ vh[:rank]
    approx = (res.module[1].weight @ res.module[0].weight).detach().double().numpy()
    np.testing.assert_allclose(approx, best, atol=1e-5)
    assert res.error == pytest.approx(np.linalg.norm(w - best) / np.linalg.norm(w), rel=1e-6)
    assert res.rank == rank and res.params_after == rank * 50 + 20 and res.params_before == 620
    x = torch.randn(5, 30)
    torch.testing.assert_close(res.module(x), x @ torch.as_tensor(best, dtype=torch.float32).T + layer.bias,
                               atol=1e-4, rtol=1e-4)


def test_energy_picks_smallest_rank():
    layer = torch.nn.Linear(6, 6, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0, 0.0])))
    # energies: 16, 9, 4, 1 of 30
    assert low_rank(layer, energy=16 / 30).rank == 1
    assert low_rank(layer, energy=0.6).rank == 2
    assert low_rank(layer, energy=29 / 30).rank == 3
    res = low_rank(layer, energy=1.0)
    assert res.rank == 4 and res.error == 0.0
    assert res.module[1].bias is None


@pytest.mark.parametrize("kwargs, exc, name", [
    ({}, ValueError, "exactly one"),
    ({"rank": 2, "energy": 0.5}, ValueError, "exactly one"),
    ({"rank": 0}, ValueError, "rank"),
    ({"rank": 5}, ValueError, "rank"),
    ({"rank": 2.0}, TypeError, "rank"),
    ({"energy": 0.0}, ValueError, "energy"),
    ({"energy": 1.5}, ValueError, "energy"),
])
def test_bad_arguments(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        low_rank(torch.nn.Linear(4, 6), **kwargs)


def test_bad_module_and_nan():
    with pytest.raises(TypeError, match="module"):
        low_rank(torch.nn.Conv2d(2, 2, 1), rank=1)
    layer = torch.nn.Linear(3, 3)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="module.weight"):
        low_rank(layer, rank=1)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0, 0)])
def test_empty_layer_is_refused(shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "Initializing zero-element tensors is a no-op"
        layer = torch.nn.Linear(*shape)
    with pytest.raises(ValueError, match="module must have at least one input and one output"):
        low_rank(layer, energy=0.9)


# -- hypothesis ------------------------------------------------------------------------
from hypothesis import given, strategies as st  # noqa: E402


@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 6)), double=st.booleans(),
       scale=st.sampled_from([0.0, 1e-30, 1.0, 1e30, 1e200]), by_rank=st.booleans(),
       seed=st.integers(0, 2**31 - 1), data=st.data())
def test_fuzz_is_the_truncated_svd(shape, double, scale, by_rank, seed, data):
    # Weights at any scale: the error and the energy shares are ratios, and squares
    # of weights near 1e200 used to overflow into inf / inf = NaN.
    dtype = torch.float64 if double else torch.float32
    if not double and scale > 1e30:
        scale = 1e30
    out_f, in_f = shape
    layer = torch.nn.Linear(in_f, out_f).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out_f, in_f, generator=g, dtype=torch.float64) * scale)
    full = min(shape)
    kwargs = ({"rank": data.draw(st.integers(1, full))} if by_rank
              else {"energy": data.draw(st.floats(1e-6, 1.0))})
    res = low_rank(layer, **kwargs)
    w = layer.weight.detach().double().numpy()
    top = np.abs(w).max()
    w = w / top if top > 0 else w        # the same matrix up to scale, safe to square
    u, s, vh = np.linalg.svd(w, full_matrices=False)
    if by_rank:
        assert res.rank == kwargs["rank"]
    elif s[0] > 0:
        share = np.cumsum(s**2) / np.sum(s**2)
        # The smallest rank keeping the share (within the slack for rounding).
        assert share[res.rank - 1] >= kwargs["energy"] - 1e-9
        assert res.rank == 1 or share[res.rank - 2] < kwargs["energy"] + 1e-9
    r = res.rank
    tail = np.sqrt(np.sum(s[r:] ** 2) / np.sum(s**2)) if s[0] > 0 else 0.0
    assert res.error == pytest.approx(tail, rel=1e-6, abs=1e-9) and 0.0 <= res.error <= 1.0
    approx = (res.module[1].weight @ res.module[0].weight).detach().double().numpy()
    best = (u[:, :r] * s[:r]) @ vh[:r]
    tol = 1e-9 if double else 1e-5
    np.testing.assert_allclose(approx / top if top > 0 else approx, best, atol=tol * max(1, full))
