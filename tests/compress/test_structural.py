"""prune_units: a smaller model with the outputs of the masked original."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlkernels.compress import prune_units  # noqa: E402

from .conftest import mlp  # noqa: E402


def masked_original(model, small_model_units: dict):
    """The original with the removed units masked: rows, biases and consumer inputs zeroed.

    ``small_model_units``: layer index -> (kept output units, per-unit input width of the
    consumer index, consumer index), built from brute-force norms below.
    """
    import copy

    masked = copy.deepcopy(model)
    with torch.no_grad():
        for i, (kept, per_unit, consumer) in small_model_units.items():
            drop = np.setdiff1d(np.arange(masked[i].weight.shape[0]), kept)
            masked[i].weight[drop] = 0
            if masked[i].bias is not None:
                masked[i].bias[drop] = 0
            cols = (drop[:, None] * per_unit + np.arange(per_unit)).reshape(-1)
            masked[consumer].weight[:, cols] = 0
    return masked


def brute_kept(weight, amount, norm):
    rows = weight.detach().reshape(weight.shape[0], -1).double().numpy()
    score = np.abs(rows).sum(1) if norm == "l1" else np.sqrt((rows**2).sum(1))
    n_remove = min(int(amount * len(score)), len(score) - 1)
    return np.sort(np.argsort(score, kind="stable")[n_remove:])


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9, 0.999])
def test_mlp_matches_masked_original(norm, amount):
    model = mlp()
    small = prune_units(model, amount, norm=norm)
    units = {0: (brute_kept(model[0].weight, amount, norm), 1, 2),
             2: (brute_kept(model[2].weight, amount, norm), 1, 4)}
    assert small[0].out_features == len(units[0][0]) and small[2].in_features == len(units[0][0])
    assert small[4].out_features == 10
    torch.testing.assert_close(small[0].weight, model[0].weight[units[0][0]])
    x = torch.randn(50, 64)
    torch.testing.assert_close(small(x), masked_original(model, units)(x), rtol=1e-5, atol=1e-5)


def test_batchnorm_and_conv_flatten_linear():
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 6, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(6 * 3 * 3, 12), torch.nn.Tanh(), torch.nn.Linear(12, 4))
    model.train()
    model(torch.randn(16, 3, 8, 8))   # non-trivial running statistics
    model.eval()
    small = prune_units(model, 0.5)
    assert small[0].out_channels == 4 and small[1].num_features == 4 and small[3].in_channels == 4
    assert small[3].out_channels == 3 and small[7].in_features == 27 and small[7].out_features == 6
    units = {0: (brute_kept(model[0].weight, 0.5, "l1"), 1, 3),
             3: (brute_kept(model[3].weight, 0.5, "l1"), 9, 7),
             7: (brute_kept(model[7].weight, 0.5, "l1"), 1, 9)}
    masked = masked_original(model, units)
    x = torch.randn(5, 3, 8, 8)
    torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(small[1].running_var, model[1].running_var[units[0][0]])


def test_named_consumers_in_custom_model():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.bn = torch.nn.Linear(10, 20), torch.nn.BatchNorm1d(20)
            self.fc2, self.out = torch.nn.Linear(20, 7), torch.nn.Linear(7, 2)

        def forward(self, x):
            return self.out(torch.relu(self.fc2(torch.relu(self.bn(self.fc1(x))))))

    torch.manual_seed(0)
    net = Net().eval()
    small = prune_units(net, 0.5, consumers={"fc1": ["bn", "fc2"], "fc2": "out"})
    assert (small.fc1.out_features, small.bn.num_features, small.fc2.in_features) == (10, 10, 10)
    assert small.out.in_features == 4
    with torch.no_grad():
        for name, consumer, keep in (("fc1", "fc2", brute_kept(net.fc1.weight, 0.5, "l1")),
                                     ("fc2", "out", brute_kept(net.fc2.weight, 0.5, "l1"))):
            drop = np.setdiff1d(np.arange(getattr(net, name).out_features), keep)
            getattr(net, consumer).weight[:, drop] = 0
    x = torch.randn(8, 10)
    torch.testing.assert_close(small(x), net(x), rtol=1e-5, atol=1e-5)


def test_original_is_untouched():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prune_units(model, 0.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("model, exc, name", [
    (torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LSTM(8, 8), torch.nn.Linear(8, 2)),
     TypeError, "LSTM"),
    (torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=2), torch.nn.Conv2d(8, 2, 1)),
     TypeError, "groups"),
    (torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Softmax(dim=1), torch.nn.Linear(8, 2)),
     TypeError, "Softmax"),
    (torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Unflatten(1, (2, 4)),
                         torch.nn.Conv2d(2, 3, 1)), TypeError, "Unflatten"),
])
def test_unprunable_layers(model, exc, name, assert_model_unchanged):
    assert_model_unchanged(model, lambda: prune_units(model, 0.5), exc, name)


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"amount": 1.0}, ValueError, "amount"),
    ({"amount": -1}, ValueError, "amount"),
    ({"amount": 0.5, "norm": "l3"}, ValueError, "norm"),
    ({"amount": 0.5, "consumers": {"0": "9"}}, ValueError, "'9'"),
    ({"amount": 0.5, "consumers": {"0": "1"}}, TypeError, "'1'"),
    ({"amount": 0.5, "consumers": ["0"]}, TypeError, "consumers"),
])
def test_bad_arguments(kwargs, exc, name, assert_model_unchanged):
    model = mlp((6, 5, 2))
    assert_model_unchanged(model, lambda: prune_units(model, **kwargs), exc, name)


def test_nonfinite_and_not_sequential(assert_model_unchanged):
    model = mlp((6, 5, 2))
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    assert_model_unchanged(model, lambda: prune_units(model, 0.5), ValueError, "0.weight")

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 3)

    with pytest.raises(TypeError, match="consumers"):
        prune_units(Plain(), 0.5)


def test_half_the_units_leave_a_quarter_of_the_hidden_matrix():
    """The work of inference shrinks as the brief's speed target needs (timed in bench/)."""
    model = mlp((256, 1024, 1024, 10))
    small = prune_units(model, 0.5)
    shapes = [tuple(m.weight.shape) for m in small if isinstance(m, torch.nn.Linear)]
    assert shapes == [(512, 256), (512, 512), (10, 512)]
    macs = sum(a * b for a, b in shapes)
    full = sum(m.weight.numel() for m in model if isinstance(m, torch.nn.Linear))
    assert full / macs > 2.6
