"""prune_magnitude: exactly the smallest weights, kept at zero by every optimizer."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlkernels.compress import PruningWarning, prune_magnitude, remove_pruning  # noqa: E402

from .conftest import mlp  # noqa: E402


def weights(model):
    return [m.weight for m in model if isinstance(m, torch.nn.Linear)]


def reference_mask(values: np.ndarray, amount: float) -> np.ndarray:
    """Keep-mask of the brute-force rule: drop floor(s*n) smallest |w|, ties by position."""
    k = int(amount * values.size)
    keep = np.ones(values.size, dtype=bool)
    keep[np.argsort(np.abs(values), kind="stable")[:k]] = False
    return keep


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.9, 0.999])
def test_global_matches_reference(amount):
    model = mlp()
    before = np.concatenate([w.detach().numpy().ravel() for w in weights(model)])
    keep = reference_mask(before, amount)
    bounds = np.cumsum([0] + [w.numel() for w in weights(model)])
    emptied = [name for name, a, b in zip(("0", "2", "4"), bounds[:-1], bounds[1:]) if not keep[a:b].any()]
    if emptied:
        with pytest.warns(PruningWarning, match=", ".join(f"'{n}'" for n in emptied)):
            result = prune_magnitude(model, amount)
    else:
        result = prune_magnitude(model, amount)
    after = np.concatenate([w.detach().numpy().ravel() for w in weights(model)])
    np.testing.assert_array_equal(after, np.where(keep, before, 0))
    masks = np.concatenate([m.weight_mask.numpy().ravel() for m in model if hasattr(m, "weight_mask")])
    np.testing.assert_array_equal(masks, keep)
    assert set(result) == {"0", "2", "4"}


def test_global_threshold_that_empties_a_layer_warns_with_its_name():
    """The README's case: 90% of a 64-128-10 MLP by one threshold zeroes the whole output layer."""
    model = mlp((64, 128, 10))
    with torch.no_grad():
        model[2].weight.mul_(0.01)   # the output layer's weights are all smaller than the first's
    with pytest.warns(PruningWarning, match="every weight of '2'"):
        result = prune_magnitude(model, 0.9)
    assert result["2"] == 1.0 and bool((model[2].weight == 0).all())
    other = mlp((64, 128, 10))
    with torch.no_grad():
        other[2].weight.mul_(0.01)
    result = prune_magnitude(other, 0.9, scope="layer")   # per layer: no warning (errors are on)
    assert result["2"] < 1.0


def test_layer_scope_and_ties():
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 3))
    with torch.no_grad():
        model[0].weight.fill_(0.5)          # all tied: the first positions go
        model[1].weight.copy_(torch.arange(15.0).reshape(3, 5) - 7)
    result = prune_magnitude(model, 0.5, scope="layer")
    assert result == {"0": 10 / 20, "1": 7 / 15}
    assert (model[0].weight.reshape(-1)[:10] == 0).all() and (model[0].weight.reshape(-1)[10:] == 0.5).all()
    kept = model[1].weight.reshape(-1).abs()
    assert sorted(kept[kept > 0].tolist()) == [4, 4, 5, 5, 6, 6, 7, 7]


def test_only_named_layers():
    model = mlp()
    last = model[4].weight.detach().clone()
    with pytest.warns(PruningWarning, match="'2'"):   # one threshold for both: '2' is all below it
        prune_magnitude(model, 0.8, layers=["0", model[2]])
    assert torch.equal(model[4].weight, last)
    assert not hasattr(model[4], "weight_mask")


def test_masks_only_grow():
    model = mlp()
    prune_magnitude(model, 0.5)
    first = [m.weight_mask.clone() for m in (model[0], model[2], model[4])]
    with pytest.warns(PruningWarning, match="'2'"):
        prune_magnitude(model, 0.8)
    for m, old in zip((model[0], model[2], model[4]), first):
        assert not (m.weight_mask & ~old).any()
    total = sum(m.weight_mask.numel() for m in (model[0], model[2], model[4]))
    assert sum(int((~m.weight_mask).sum()) for m in (model[0], model[2], model[4])) == int(0.8 * total)


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    lambda p: torch.optim.AdamW(p, lr=1e-2),
], ids=["sgd-momentum-wd", "nesterov", "adam-wd", "adamw"])
def test_pruned_weights_stay_exactly_zero(make_opt):
    model = mlp((20, 30, 5))
    opt = make_opt(model.parameters())
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()  # momentum / moments exist before pruning
    prune_magnitude(model, 0.7)
    masks = [model[0].weight_mask.clone(), model[2].weight_mask.clone()]
    kept_before = [w.detach().clone() for w in weights(model)]
    for _ in range(5):
        step()
        for w, mask in zip(weights(model), masks):
            assert (w[~mask] == 0).all()
            assert (w.grad[~mask] == 0).all()
    # ...and the kept weights did train.
    assert not all(torch.equal(a, b) for a, b in zip(kept_before, weights(model)))


def test_mask_is_one_byte_per_weight_and_not_saved():
    model = mlp()
    keys = set(model.state_dict())
    prune_magnitude(model, 0.5)
    assert model[0].weight_mask.dtype == torch.bool
    assert set(model.state_dict()) == keys
    assert not any("orig" in n for n, _ in model.named_parameters())


def test_remove_pruning_keeps_zeros():
    model = mlp((8, 6, 3))
    prune_magnitude(model, 0.5)
    zeros = model[0].weight == 0
    assert remove_pruning(model) == 2
    assert not hasattr(model[0], "weight_mask")
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model(torch.randn(4, 8)).sum().backward()
    assert (model[0].weight[zeros] == 0).all()          # zeros are still there...
    opt.step()
    assert (model[0].weight[zeros] != 0).any()           # ...but free to train again


def test_conv_and_device_move():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    prune_magnitude(model, 0.6, scope="layer")
    model = model.to(torch.float64)
    model(torch.randn(2, 3, 9, 9, dtype=torch.float64)).sum().backward()
    assert (model[0].weight.grad[~model[0].weight_mask] == 0).all()


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"amount": 1.0}, ValueError, "amount"),
    ({"amount": -0.1}, ValueError, "amount"),
    ({"amount": float("nan")}, ValueError, "amount"),
    ({"amount": "0.5"}, TypeError, "amount"),
    ({"amount": 0.5, "scope": "model"}, ValueError, "scope"),
    ({"amount": 0.5, "layers": ["9"]}, ValueError, "layers"),
    ({"amount": 0.5, "layers": ["1"]}, TypeError, "layers"),
    ({"amount": 0.5, "layers": [3]}, TypeError, "layers"),
])
def test_bad_arguments_change_nothing(kwargs, exc, name, assert_model_unchanged):
    model = mlp((6, 5, 2))
    assert_model_unchanged(model, lambda: prune_magnitude(model, **kwargs), exc, name)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_weights_change_nothing(bad, assert_model_unchanged):
    model = mlp((6, 5, 2))
    prune_magnitude(model, 0.2)
    with torch.no_grad():
        model[2].weight[1, 0] = bad
    assert_model_unchanged(model, lambda: prune_magnitude(model, 0.5), ValueError, "2.weight")


def test_not_a_module():
    with pytest.raises(TypeError, match="model"):
        prune_magnitude([torch.zeros(3)], 0.5)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_keep_masking(how):
    import copy
    import pickle

    model = mlp((8, 6, 3))
    prune_magnitude(model, 0.6)
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    mask = clone[0].weight_mask.clone()
    assert torch.equal(mask, model[0].weight_mask)
    opt = torch.optim.Adam(clone.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        clone(torch.randn(5, 8)).square().sum().backward()
        assert (clone[0].weight.grad[~mask] == 0).all()
        opt.step()
    assert (clone[0].weight[~mask] == 0).all()
    # The original's hooks still serve the original only.
    model(torch.randn(5, 8)).sum().backward()
    assert (model[0].weight.grad[~model[0].weight_mask] == 0).all()
