"""prune_units and unit_groups: options, their rules by brute force, and clean errors."""

import re

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from dlkernels.compress import PruningWarning, prune_units, unit_groups  # noqa: E402

from . import shapes  # noqa: E402
from .conftest import mlp  # noqa: E402
from .masking import assert_exact, lowest, scores  # noqa: E402


def hidden_sizes(model):
    return [m.out_features for m in model if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9, 0.999])
def test_mlp_matches_brute_force(kind, amount):
    model = mlp()
    small, _, _ = assert_exact(model, torch.randn(7, 64), amount, kind=kind)
    assert hidden_sizes(small) == [300 - int(amount * 300), 100 - int(amount * 100), 10]


def test_round_to_keeps_multiples():
    small = prune_units(mlp((64, 300, 100, 6, 10)), 0.5)
    # 150 -> 152 and 50 -> 56 kept (rounded up, never more removed than asked); 6 < 8 stays.
    assert hidden_sizes(small) == [152, 56, 6, 10]
    with pytest.warns(PruningWarning, match="removed nothing"):
        prune_units(mlp((64, 30, 10)), 0.1)       # 30 - 3 = 27 -> 30: all kept
    net = nn.Sequential(nn.Conv2d(3, 24, 3), nn.GroupNorm(3, 24), nn.ReLU(), nn.Conv2d(24, 4, 1))
    small = prune_units(net, 0.5, example_inputs=torch.randn(1, 3, 5, 5), round_to=2)
    assert small[0].out_channels == 12 and small[1].num_channels == 12    # lcm(2, 3 groups) = 6
    small = prune_units(net, 0.6, example_inputs=torch.randn(1, 3, 5, 5), round_to=2)
    assert small[0].out_channels == 12                                     # 24 - 14 = 10 -> 12


def test_global_scope_matches_brute_force():
    model = mlp((32, 40, 24, 5))
    groups = unit_groups(model)
    small = prune_units(model, 0.5, scope="global", round_to=1)
    prunable = [g for g in groups if not g.pinned]
    norm = [scores(model, g) / scores(model, g).mean() for g in prunable]
    drop = set(torch.sort(torch.cat(norm), stable=True).indices[:int(0.5 * 64)].tolist())
    expect, start = [], 0
    for g in prunable:
        expect.append(g.size - sum(1 for i in drop if start <= i < start + g.size))
        start += g.size
    assert hidden_sizes(small)[:2] == expect and expect != [20, 12]   # not the per-layer split


def test_amount_per_layer_and_protect():
    model = mlp((16, 40, 24, 5))
    assert hidden_sizes(prune_units(model, {"0": 0.5}, round_to=1)) == [20, 24, 5]
    assert hidden_sizes(prune_units(model, 0.5, round_to=1, protect=["2"])) == [20, 24, 5]
    assert hidden_sizes(prune_units(model, 0.5, round_to=1, protect=model[0])) == [40, 12, 5]
    with pytest.raises(ValueError, match="'1'"):
        prune_units(model, 0.5, protect="1")          # a ReLU outputs no units of its own
    with pytest.raises(ValueError, match="scope='layer'"):
        prune_units(model, {"0": 0.5}, scope="global")
    residual = shapes.ResNet18(n_classes=4, width=0.125)
    with pytest.raises(ValueError, match="removed together"):
        prune_units(residual, {"conv1": 0.5, "layer1.0.conv2": 0.25},
                    example_inputs=torch.randn(1, 3, 16, 16))


def test_steps_call_back_with_a_growing_share():
    model = mlp((16, 300, 40, 5))
    seen = []

    def on_step(small, step):
        seen.append((step, hidden_sizes(small)))

    final = prune_units(model, 0.75, round_to=1, steps=3, on_step=on_step)
    # 25%, 50%, 75% of the original units gone after steps 1, 2, 3.
    assert seen == [(1, [225, 30, 5]), (2, [150, 20, 5]), (3, [75, 10, 5])]
    assert hidden_sizes(final) == [75, 10, 5]


def test_taylor_needs_gradients_and_steps_can_supply_them():
    model = mlp((16, 32, 24, 5))
    x, y = torch.randn(20, 16), torch.randint(0, 5, (20,))
    with pytest.raises(ValueError, match=r"'0\.weight' has no \.grad"):
        prune_units(model, 0.5, importance="taylor")

    def backward(m, step=None):
        m.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()

    backward(model)
    final = prune_units(model, 0.5, importance="taylor", round_to=1, steps=2, on_step=backward)
    assert hidden_sizes(final) == [16, 12, 5]


def test_bn_importance_needs_a_norm_in_every_group():
    with pytest.raises(ValueError, match="importance='bn'"):
        prune_units(mlp(), 0.5, importance="bn")


def test_consumers_restrict_and_are_checked_against_the_trace(assert_model_unchanged):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.bn = nn.Linear(10, 20), nn.BatchNorm1d(20)
            self.fc2, self.out = nn.Linear(20, 16), nn.Linear(16, 2)

        def forward(self, x):
            return self.out(torch.relu(self.fc2(torch.relu(self.bn(self.fc1(x))))))

    net = shapes.randomize_norms(Net()).eval()
    small = prune_units(net, 0.5, round_to=1, consumers={"fc1": ["bn", "fc2"]})
    assert (small.fc1.out_features, small.bn.num_features, small.fc2.out_features) == (10, 10, 16)
    # Five wrong ways to name consumers, each caught before anything is built.
    for consumers, exc, word in [({"fc1": "fc2"}, ValueError, "'bn'"),               # misses the norm
                                 ({"fc1": ["bn", "fc2", "out"]}, ValueError, "'out'"),  # one too many
                                 ({"fc2": "fc1"}, ValueError, "'fc1'"),               # wrong direction
                                 ({"fc1": ["bn", "fc9"]}, ValueError, "'fc9'"),       # no such module
                                 ({"bn": "fc2"}, ValueError, "'fc1'"),     # the norm holds fc1's units
                                 ({"out": "fc2"}, ValueError, "'fc2'"),
                                 (["fc1"], TypeError, "consumers"),
                                 ({"fc1": [3]}, TypeError, "consumers")]:
        assert_model_unchanged(net, lambda: prune_units(net, 0.5, consumers=consumers), exc, word)


def test_softmax_over_units_pins_them():
    model = nn.Sequential(nn.Linear(4, 8), nn.Softmax(dim=1), nn.Linear(8, 2))
    with pytest.warns(PruningWarning, match="mixes units"):
        small = prune_units(model, 0.5)
    assert small[0].out_features == 8
    group = unit_groups(model)[0]
    assert any("softmax" in why for why in group.pinned)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.lstm, self.out = nn.Linear(4, 8), nn.LSTM(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        h, _ = self.lstm(self.fc(x))
        return self.out(h)


@pytest.mark.parametrize("model, x, word", [
    (Recurrent(), None, "'lstm' (LSTM)"),
    (nn.Sequential(nn.Linear(4, 8), nn.Unflatten(1, (2, 4)), nn.Conv2d(2, 3, 1)), None, "unflatten"),
    (nn.Sequential(nn.Conv2d(3, 8, 1), nn.PixelShuffle(2), nn.Conv2d(2, 2, 1)), torch.randn(1, 3, 4, 4),
     "'1' (pixel_shuffle)"),
    (nn.Sequential(nn.Conv1d(3, 8, 3), nn.Conv1d(8, 2, 3)), None, "example_inputs"),
])
def test_what_cannot_be_grouped_is_a_type_error(model, x, word, assert_model_unchanged):
    assert_model_unchanged(model, lambda: prune_units(model, 0.5, example_inputs=x), TypeError, word)


def test_untraceable_model_names_module_and_op():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)
            self.inner = nn.Sequential(nn.Linear(8, 8))

        def forward(self, x):
            h = self.fc(x)
            return self.inner(h) if h.sum() > 0 else h

    with pytest.raises(TypeError, match=re.escape("torch.fx") + ".*control flow.*" + "torch.export"):
        prune_units(DataDependent(), 0.5, example_inputs=torch.randn(2, 4))
    with pytest.raises(TypeError, match="example_inputs"):
        prune_units(DataDependent(), 0.5)


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"amount": 1.0}, ValueError, "amount"),
    ({"amount": -1}, ValueError, "amount"),
    ({"amount": "half"}, TypeError, "amount"),
    ({"amount": {"9": 0.5}}, ValueError, "'9'"),
    ({"amount": {"0": 1.5}}, ValueError, "amount['0']"),
    ({"amount": 0.5, "importance": "l3"}, ValueError, "importance"),
    ({"amount": 0.5, "scope": "model"}, ValueError, "scope"),
    ({"amount": 0.5, "attention": "all"}, ValueError, "attention"),
    ({"amount": 0.5, "round_to": 0}, ValueError, "round_to"),
    ({"amount": 0.5, "round_to": 2.0}, TypeError, "round_to"),
    ({"amount": 0.5, "steps": 0}, ValueError, "steps"),
    ({"amount": 0.5, "on_step": 3}, TypeError, "on_step"),
    ({"amount": 0.5, "protect": ["9"]}, ValueError, "protect"),
    ({"amount": 0.5, "protect": [3]}, TypeError, "protect"),
    ({"amount": 0.5, "example_inputs": [1, 2]}, TypeError, "example_inputs"),
])
def test_bad_arguments(kwargs, exc, word, assert_model_unchanged):
    model = mlp((6, 5, 2))
    assert_model_unchanged(model, lambda: prune_units(model, **kwargs), exc, word)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_weights(bad, assert_model_unchanged):
    model = mlp((6, 16, 2))
    with torch.no_grad():
        model[0].weight[3, 1] = bad
    assert_model_unchanged(model, lambda: prune_units(model, 0.5), ValueError, "0.weight")
    with pytest.raises(TypeError, match="model"):
        prune_units([model], 0.5)


def test_original_untouched_in_training_mode():
    from .conftest import assert_same_snapshot, snapshot

    model = shapes.ResNet18(n_classes=4, width=0.125).train()
    before = snapshot(model)
    small = prune_units(model, 0.5, example_inputs=torch.randn(2, 3, 16, 16))
    assert_same_snapshot(before, snapshot(model))   # running statistics included
    assert all(m.training for m in model.modules()) and all(m.training for m in small.modules())


def test_unit_groups_describe_members():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 6 * 6, 4))
    first, last = unit_groups(net, example_inputs=torch.randn(1, 3, 8, 8))
    assert (first.size, first.modules, first.pinned, first.blocks) == (8, ("0", "1"), (), 1)
    assert set(first.members) == {("0.weight", 0, 0, 1, 1, 1), ("0.bias", 0, 0, 1, 1, 1),
                                  ("1.weight", 0, 0, 1, 1, 1), ("1.bias", 0, 0, 1, 1, 1),
                                  ("1.running_mean", 0, 0, 1, 1, 1), ("1.running_var", 0, 0, 1, 1, 1),
                                  ("4.weight", 1, 0, 1, 36, 1)}
    assert last.pinned == ("model output",) and last.size == 4


def test_removal_follows_importance_per_block():
    # GroupNorm(2, 8): units leave each half equally, the weakest of each half.
    net = shapes.randomize_norms(nn.Sequential(nn.Conv2d(2, 8, 1), nn.GroupNorm(2, 8), nn.Conv2d(8, 3, 1)))
    group = unit_groups(net, example_inputs=torch.randn(1, 2, 3, 3))[0]
    assert group.blocks == 2
    small = prune_units(net, 0.5, example_inputs=torch.randn(1, 2, 3, 3), round_to=1)
    gone = lowest(scores(net, group), 4, blocks=2)
    kept = [u for u in range(8) if u not in gone]
    assert torch.equal(small[0].weight, net[0].weight[kept])
    assert sum(u < 4 for u in kept) == 2


def test_magnitude_masks_follow_their_weights():
    from dlkernels.compress import prune_magnitude

    model = mlp((16, 32, 24, 5))
    prune_magnitude(model, 0.5, scope="layer")
    small = prune_units(model, 0.5, round_to=1)
    layers = [m for m in small if isinstance(m, nn.Linear)]
    assert all(m.weight_mask.shape == m.weight.shape for m in layers)
    assert all(torch.equal(m.weight == 0, ~m.weight_mask) for m in layers)
    opt = torch.optim.SGD(small.parameters(), lr=0.5, momentum=0.9)
    for _ in range(3):   # the masks still hold the pruned weights at zero
        opt.zero_grad()
        small(torch.randn(4, 16)).sum().backward()
        opt.step()
    assert all(bool((m.weight[~m.weight_mask] == 0).all()) for m in layers)


def test_quantized_weights_are_refused_by_name():
    from dlkernels.compress import quantize

    model = mlp((16, 32, 5))
    quantize(model, bits=3)
    with pytest.raises(TypeError, match=r"'0' \(linear\): the weight is computed"):
        prune_units(model, 0.5)


@pytest.mark.parametrize("build, x", [
    (lambda: mlp((6, 8, 5, 2)), torch.randn(2, 6)),
    (lambda: shapes.cnn((3, 8, 16, 8)), torch.randn(1, 3, 8, 8)),
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.Conv2d(8, 16, 3, groups=2),
                           nn.PReLU(16), nn.Conv2d(16, 32, 1, groups=16), nn.Softmax(dim=1),
                           nn.Sequential(nn.Flatten()), nn.Linear(32 * 16, 4)), torch.randn(1, 3, 8, 8)),
    (lambda: nn.Sequential(nn.Embedding(9, 8), nn.LayerNorm(8), nn.Linear(8, 6), nn.Dropout(),
                           nn.Linear(6, 3)), torch.randint(0, 9, (2, 4))),
])
def test_plain_sequentials_group_as_through_fx(build, x):
    """A plain Sequential is analysed without fx; wrapped in a module it goes through fx: same groups."""
    class Wrapped(nn.Module):
        def __init__(self, seq):
            super().__init__()
            self.seq = seq

        def forward(self, x):
            return self.seq(x)

    seq = build()

    def strip(groups):
        return [(g.size, tuple(m.removeprefix("seq.") for m in g.modules),
                 sorted(m._replace(tensor=m.tensor.removeprefix("seq.")) for m in g.members),
                 tuple(p.replace("'seq.", "'") for p in g.pinned), g.blocks) for g in groups]

    direct, traced = unit_groups(seq, example_inputs=x), unit_groups(Wrapped(seq), example_inputs=x)
    assert strip(direct) == strip(traced) and len(direct) >= 3
